#include "fedge/models/update_codec.h"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedge::models {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, UpdateCodecFactory, std::less<>> factories;
};

Registry& GetRegistry() {
  static Registry* registry = new Registry;
  return *registry;
}

absl::Status CheckHeader(std::string_view codec, const v1::EncodedUpdate& update, size_t dim) {
  if (update.codec() != codec) {
    return absl::InvalidArgumentError(absl::StrCat("update is encoded with codec '", update.codec(),
                                                   "', not '", std::string(codec), "'"));
  }
  if (update.dimension() != dim) {
    return absl::InvalidArgumentError(absl::StrCat("update has dimension ", update.dimension(),
                                                   ", the model has ", dim, " parameters"));
  }
  return absl::OkStatus();
}

// fp32: the delta's bytes as they are (fedge targets little-endian hosts).
class Fp32Codec final : public UpdateCodec {
 public:
  std::string_view name() const override { return "fp32"; }

  absl::Status Encode(std::span<const float> delta, v1::EncodedUpdate* update) const override {
    update->set_codec("fp32");
    update->set_dimension(delta.size());
    update->set_payload(reinterpret_cast<const char*>(delta.data()), delta.size_bytes());
    return absl::OkStatus();
  }

  absl::Status Decode(const v1::EncodedUpdate& update, std::span<float> out) const override {
    if (absl::Status s = CheckHeader("fp32", update, out.size()); !s.ok()) return s;
    if (update.payload().size() != out.size_bytes()) {
      return absl::InvalidArgumentError(absl::StrCat("fp32 payload holds ", update.payload().size(),
                                                     " bytes, expected ", out.size_bytes()));
    }
    std::memcpy(out.data(), update.payload().data(), out.size_bytes());
    return absl::OkStatus();
  }
};

[[maybe_unused]] const bool kFp32Registered =
    RegisterUpdateCodec("fp32", [] { return std::make_unique<Fp32Codec>(); });

}  // namespace

bool RegisterUpdateCodec(std::string_view name, UpdateCodecFactory factory) {
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mu);
  if (!registry.factories.emplace(std::string(name), std::move(factory)).second) {
    std::cerr << "fedge: update codec '" << name << "' registered twice\n";
    std::abort();
  }
  return true;
}

std::vector<std::string> RegisteredUpdateCodecs() {
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mu);
  std::vector<std::string> names;
  for (const auto& [name, factory] : registry.factories) names.push_back(name);
  return names;
}

absl::StatusOr<std::unique_ptr<UpdateCodec>> CreateUpdateCodec(std::string_view name) {
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> lock(registry.mu);
  auto it = registry.factories.find(name);
  if (it == registry.factories.end()) {
    std::vector<std::string> known;
    for (const auto& [n, f] : registry.factories) known.push_back(n);
    return absl::NotFoundError(
        absl::StrCat("unknown update codec '", std::string(name), "'; known: ", absl::StrJoin(known, ", ")));
  }
  return it->second();
}

}  // namespace fedge::models
