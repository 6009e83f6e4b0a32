// The name -> factory registry behind CreateStrategy. Implementation files
// register at static-initialization time, so the map is a function-local
// static (constructed on first use, whatever the initialization order) and
// is never destroyed (lookups may still happen during static destruction).
// All access holds `mutex`, so registering and creating are thread-safe.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/aggregator/strategy.h"

namespace fedge::aggregator {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, StrategyFactory, std::less<>> factories;
};

Registry& GlobalRegistry() {
  static Registry* const registry = new Registry();
  return *registry;
}

std::vector<std::string> NamesLocked(const Registry& registry) {
  std::vector<std::string> names;
  names.reserve(registry.factories.size());
  for (const auto& [name, factory] : registry.factories) names.push_back(name);
  return names;
}

}  // namespace

bool RegisterStrategy(std::string_view name, StrategyFactory factory) {
  if (name.empty() || !factory) {
    std::fprintf(stderr, "fedge: RegisterStrategy(\"%.*s\") needs a name and a factory\n",
                 static_cast<int>(name.size()), name.data());
    std::abort();
  }
  Registry& registry = GlobalRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  if (!registry.factories.emplace(std::string(name), std::move(factory)).second) {
    std::fprintf(stderr, "fedge: strategy \"%.*s\" is registered twice\n",
                 static_cast<int>(name.size()), name.data());
    std::abort();
  }
  return true;
}

std::vector<std::string> RegisteredStrategies() {
  Registry& registry = GlobalRegistry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  return NamesLocked(registry);
}

absl::StatusOr<std::unique_ptr<Strategy>> CreateStrategy(std::string_view name,
                                                         const StrategyOptions& options) {
  StrategyFactory factory;
  {
    Registry& registry = GlobalRegistry();
    std::lock_guard<std::mutex> lock(registry.mutex);
    const auto it = registry.factories.find(name);
    if (it == registry.factories.end()) {
      return absl::NotFoundError(
          absl::StrCat("unknown strategy \"", std::string(name),
                       "\"; known strategies: ", absl::StrJoin(NamesLocked(registry), ", ")));
    }
    factory = it->second;
  }
  // Outside the lock: a factory may be slow, and must not deadlock if it
  // consults the registry itself.
  absl::StatusOr<std::unique_ptr<Strategy>> strategy = factory(options);
  if (strategy.ok() && *strategy == nullptr) {
    return absl::InternalError(
        absl::StrCat("the factory of strategy \"", std::string(name), "\" returned no strategy"));
  }
  return strategy;
}

}  // namespace fedge::aggregator
