// DeviceConfig: the settings of one device process, shared by the C API's
// YAML/JSON config (fedge_client_configure) and fedge-client (--config,
// --set and its flags), read through one key table
// (fedge/proto/key_table.h), so a key means the same thing in both.
//
//   aggregator: localhost:7443     # required
//   device_id: dev-1               # required
//   pinned_key: certs/signing.pub  # required
//   state_dir: dev-1-state         # required (fedge-client: ./fedge-device-ID)
//   tls: {ca: certs/ca.pem, cert: ..., key: ..., token: ..., insecure: false}
//   threads: 1                     # LibTorch intra-op threads
//   codec: fp32
//   poll_wait_ms: 5000
//   call_timeout_ms: 120000
//   max_tasks: 0                   # 0: no limit
//   budget: {max_training_memory_mb: 0, max_task_seconds: 0, policy_poll_ms: 1000}
//   drift: {detector: page-hinkley}  # a loss-stream detector, or none
//   privacy:                       # the device's own floor (device_client.h)
//     require_secure_aggregation: false
//     max_clip_norm: 0             # 0: no limit
//     min_noise_multiplier: 0      # 0: no minimum
//     local_noise_multiplier: 0    # the device's own Gaussian noise; 0: none
//     seeded_noise: false          # tests and simulations only
#ifndef FEDGE_CLIENT_DEVICE_CONFIG_H_
#define FEDGE_CLIENT_DEVICE_CONFIG_H_

#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "fedge/client/privacy_floor.h"
#include "fedge/client/transport_registry.h"
#include "fedge/client/training_budget.h"
#include "fedge/proto/key_table.h"

namespace fedge::client {

struct DeviceConfig {
  ClientTransportOptions transport;
  std::filesystem::path state_dir;
  // LibTorch intra-op threads. Default: 1.
  int threads = 1;
  // Update codec (models' registry). Default: fp32.
  std::string codec = "fp32";
  // Stop after this many completed tasks; 0: no limit.
  int64_t max_tasks = 0;
  TrainingBudget budget;
  // Loss-stream drift detector, or "none". Default: page-hinkley.
  std::string drift_detector = "page-hinkley";
  // The device's privacy floor: tasks weaker than it are refused.
  PrivacyFloor privacy_floor;
  // DP noise from a generator seeded by the task (simulations and tests
  // that compare runs); off: OpenSSL's generator.
  bool seeded_noise = false;
};

// The documented defaults (as above): a 5-second long poll.
DeviceConfig DefaultDeviceConfig();

// The keys above. Unknown keys are answered with the list of known keys
// (the C API has no --help); fedge-client's own table includes these.
const config::KeyTable<DeviceConfig>& DeviceKeys();

// What no single key can check: the required keys are set, TLS is
// configured consistently (a CA unless insecure; cert and key together; a
// certificate or a token). INVALID_ARGUMENT naming the keys.
absl::Status ValidateDeviceConfig(const DeviceConfig& config);

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_DEVICE_CONFIG_H_
