#include "fedge/client/drift_detector.h"

namespace fedge::client {

Registry<DriftDetectorFactory>& DriftDetectors() {
  static auto* registry = new Registry<DriftDetectorFactory>("drift detector");
  return *registry;
}

absl::StatusOr<std::unique_ptr<DriftDetector>> CreateDriftDetector(
    std::string_view name, const DriftDetectorOptions& options) {
  absl::StatusOr<DriftDetectorFactory> factory = DriftDetectors().Find(name);
  if (!factory.ok()) return factory.status();
  return (*factory)(options);
}

std::vector<std::string> RegisteredDriftDetectors() { return DriftDetectors().Names(); }

}  // namespace fedge::client
