// Registry<Factory>: the string-keyed plug-in registry behind every fedge
// extension point (model architectures, update codecs, strategies, and the
// mechanisms, detectors and transports to come).
//
// Each plug-in kind owns one registry, reached through a function-local
// static so registration from static initializers works whatever the
// initialization order; it is never destroyed. Registering a name twice, or
// an empty name or factory, aborts: that is a programmer error found at
// start-up. A lookup of an unknown name is NOT_FOUND and lists the known
// names. All methods are thread-safe; the factory is returned by value so
// callers run it outside the lock.
//
//   Registry<StrategyFactory>& Strategies() {
//     static auto* registry = new Registry<StrategyFactory>("strategy");
//     return *registry;
//   }
#ifndef FEDGE_PROTO_REGISTRY_H_
#define FEDGE_PROTO_REGISTRY_H_

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedge {

template <typename Factory>
class Registry {
 public:
  // `kind` names what is registered, for messages: "strategy", "update codec".
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  // Returns true so that it can initialize a static:
  //   [[maybe_unused]] const bool kRegistered = Add("fedavg", ...);
  bool Add(std::string_view name, Factory factory) {
    if (name.empty() || !factory) Die("needs a name and a factory", name);
    std::lock_guard<std::mutex> lock(mu_);
    if (!factories_.emplace(std::string(name), std::move(factory)).second) {
      Die("is registered twice", name);
    }
    return true;
  }

  // The factory registered as `name`, or NOT_FOUND listing the known names.
  absl::StatusOr<Factory> Find(std::string_view name) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = factories_.find(name);
    if (it == factories_.end()) {
      return absl::NotFoundError(absl::StrCat(
          "unknown ", kind_, " '", std::string(name), "'; known: ",
          absl::StrJoin(NamesLocked(), ", "),
          " (a plug-in's are known once its library is loaded: --plugin LIB)"));
    }
    return it->second;
  }

  // Sorted registered names.
  std::vector<std::string> Names() const {
    std::lock_guard<std::mutex> lock(mu_);
    return NamesLocked();
  }

 private:
  std::vector<std::string> NamesLocked() const {
    std::vector<std::string> names;
    names.reserve(factories_.size());
    for (const auto& entry : factories_) names.push_back(entry.first);
    return names;
  }

  [[noreturn]] void Die(const char* what, std::string_view name) const {
    std::fprintf(stderr, "fedge: %s '%.*s' %s\n", kind_.c_str(), static_cast<int>(name.size()),
                 name.data(), what);
    std::abort();
  }

  const std::string kind_;
  mutable std::mutex mu_;
  std::map<std::string, Factory, std::less<>> factories_;
};

}  // namespace fedge

#endif  // FEDGE_PROTO_REGISTRY_H_
