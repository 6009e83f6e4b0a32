// The name -> factory registry behind CreateStrategy (see fedge/proto/registry.h).
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/aggregator/strategy.h"
#include "fedge/proto/registry.h"

namespace fedge::aggregator {
namespace {

Registry<StrategyFactory>& Strategies() {
  static auto* const registry = new Registry<StrategyFactory>("strategy");
  return *registry;
}

}  // namespace

bool RegisterStrategy(std::string_view name, StrategyFactory factory) {
  return Strategies().Add(name, std::move(factory));
}

std::vector<std::string> RegisteredStrategies() { return Strategies().Names(); }

absl::StatusOr<std::unique_ptr<Strategy>> CreateStrategy(std::string_view name,
                                                         const StrategyOptions& options) {
  absl::StatusOr<StrategyFactory> factory = Strategies().Find(name);
  if (!factory.ok()) return factory.status();
  // Outside the registry's lock: a factory may be slow, and may consult the
  // registry itself.
  absl::StatusOr<std::unique_ptr<Strategy>> strategy = (*factory)(options);
  if (strategy.ok() && *strategy == nullptr) {
    return absl::InternalError(
        absl::StrCat("the factory of strategy \"", std::string(name), "\" returned no strategy"));
  }
  return strategy;
}

}  // namespace fedge::aggregator
