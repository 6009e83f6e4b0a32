#include "fedge/aggregator/state_store.h"

#include <cctype>

namespace fedge::aggregator {

bool ValidClientId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

bool ValidVersionStatus(const std::string& status) {
  return status == "live" || status == "canary" || status == "rejected" || status == "rolled_back";
}

}  // namespace fedge::aggregator
