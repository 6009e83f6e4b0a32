// DeviceClient: one device's side of a round.
//
//   poll task -> fetch model version -> verify + load -> Trainer.Fit on local
//   data -> clip and noise as the task's privacy section says (local or
//   distributed DP; see fedge/privacy/update_privacy.h) -> encode -> submit
//
// A DeviceClient is small (an id, a LocalDataset view, options): a simulation
// keeps thousands and lends each one a worker's ModelInstance for the
// duration of a task.
//
// Thread safety: RunTask on one DeviceClient must not run concurrently with
// itself; different DeviceClients may run concurrently on different models.
#ifndef FEDGE_CLIENT_DEVICE_CLIENT_H_
#define FEDGE_CLIENT_DEVICE_CLIENT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "fedge/client/local_data.h"
#include "fedge/client/trainer.h"
#include "fedge/client/transport.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/update_codec.h"

namespace fedge::client {

struct DeviceClientOptions {
  // Update codec used to encode updates. Default: "fp32". REQUIRES: registered.
  std::string codec = "fp32";
  // L2 norm bound applied to each update before encoding when the task asks
  // for no differential privacy; 0 disables. REQUIRES: >= 0.
  double clip_norm = 0.0;
  // Where this device's DP noise comes from: OpenSSL's generator, seeded by
  // the OS (false, the default, and the only choice for a real device), or a
  // std::mt19937_64 seeded from the task's seed (simulations, for
  // reproducible runs). The aggregator cannot choose this for the device.
  bool seeded_noise = false;
};

// What one task cost and produced, for reports.
struct TaskReport {
  uint64_t round = 0;
  uint64_t model_version = 0;
  int64_t num_examples = 0;
  TrainMetrics metrics;
  uint64_t bytes_down = 0;  // task + model artifact as they would be sent
  uint64_t bytes_up = 0;    // the encoded update as it would be sent
};

class DeviceClient {
 public:
  DeviceClient(std::string id, LocalDataset data, DeviceClientOptions options = {});

  const std::string& id() const { return id_; }
  const LocalDataset& data() const { return data_; }

  // Runs the task the transport has for this client, training on `model`
  // (whose architecture must match the artifact). NOT_FOUND when there is no
  // task; other errors say which step failed.
  absl::StatusOr<TaskReport> RunTask(ClientTransport& transport, models::ModelInstance& model,
                                     const Trainer& trainer) const;

 private:
  std::string id_;
  LocalDataset data_;
  DeviceClientOptions options_;
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_DEVICE_CLIENT_H_
