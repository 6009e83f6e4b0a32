// PrivacyFloor: the least privacy a device accepts, whatever the
// aggregator asks (DeviceClientOptions::floor; fedge-client's and the C
// API's privacy.* keys, fedge/client/device_config.h).
#ifndef FEDGE_CLIENT_PRIVACY_FLOOR_H_
#define FEDGE_CLIENT_PRIVACY_FLOOR_H_

#include "absl/status/status.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::client {

// A device's own minimum of privacy (fedge-client's and the C API's
// `privacy.*` keys). The aggregator chooses each round's privacy; a task
// weaker than the floor is refused before the device trains, with a reason
// the aggregator records (MetricsReport.task_refused). The device can verify
// what it does itself (clipping, secure aggregation, its own noise); the
// noise a task says the aggregate carries is the aggregator's word, which
// the floor holds it to. All zero / false: no floor.
struct PrivacyFloor {
  // Refuse tasks that do not run secure aggregation.
  bool require_secure_aggregation = false;
  // Refuse tasks whose clip bound is larger (or that set none). 0: no limit.
  double max_clip_norm = 0.0;
  // Refuse tasks with a smaller noise multiplier: in local mode the one the
  // device applies itself, in distributed mode its share times the square
  // root of the cohort, in central mode the aggregator's claim
  // (PrivacyConfig.aggregate_noise_multiplier). 0: no minimum.
  double min_noise_multiplier = 0.0;
  // Gaussian noise the device adds to its clipped update itself, with std
  // local_noise_multiplier times the clip bound (the task's, or
  // max_clip_norm when the task sets none). 0: none.
  double local_noise_multiplier = 0.0;
};

// Why `task` falls below `floor`, or OK when it does not. The message names
// the floor key and the task's value. An evaluation task (a rollout canary)
// sends no update but its metrics in the clear: only
// require_secure_aggregation refuses it.
absl::Status CheckPrivacyFloor(const PrivacyFloor& floor, const v1::Task& task);

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_PRIVACY_FLOOR_H_
