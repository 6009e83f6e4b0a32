// DeviceClient: one device's side of a round.
//
//   poll task -> fetch model version -> verify + load -> Trainer.Fit on local
//   data -> clip and noise as the task's privacy section says (local or
//   distributed DP; see fedge/privacy/update_privacy.h) -> encode -> submit
//
// A DeviceClient is small (an id, a LocalDataset view, options): a simulation
// keeps thousands and lends each one a worker's ModelInstance for the
// duration of a task. With error feedback on, a device also keeps the
// codec's residual (4 bytes per parameter), allocated on its first task, so
// only devices that took part pay for it.
//
// Encoding composes with privacy as follows. Whatever the device does after
// noising is post-processing and costs no privacy, so a lossy codec (and its
// error feedback) after local DP is sound; under central DP the aggregator
// clips the decoded update, so any codec is sound. Distributed DP is only
// private for the SUM of the cohort's shares (each share alone carries a
// fraction of the noise), so the shares must reach the sum exactly: only
// "fp32" is accepted, and a task asking for distributed DP with another
// codec is refused (FAILED_PRECONDITION) before training.
//
// Thread safety: RunTask on one DeviceClient must not run concurrently with
// itself; different DeviceClients may run concurrently on different models.
#ifndef FEDGE_CLIENT_DEVICE_CLIENT_H_
#define FEDGE_CLIENT_DEVICE_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "fedge/client/local_data.h"
#include "fedge/client/privacy_floor.h"
#include "fedge/client/trainer.h"
#include "fedge/client/transport.h"
#include "fedge/models/error_feedback.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/update_codec.h"
#include "fedge/privacy/secagg/protocol.h"

namespace fedge::client {

struct DeviceClientOptions {
  // Update codec used to encode updates. Default: "fp32". REQUIRES: registered.
  std::string codec = "fp32";
  // Its options (bits, density, seed); validated by the codec's factory.
  models::UpdateCodecOptions codec_options;
  // Keep what the codec drops and add it to the next update (Stich et al.
  // 2018; see fedge/models/error_feedback.h). Default: false. Meant for the
  // biased codecs (topk above all); the residual survives across rounds
  // for as long as this DeviceClient lives.
  bool error_feedback = false;
  // L2 norm bound applied to each update before encoding when the task asks
  // for no differential privacy; 0 disables. REQUIRES: >= 0.
  double clip_norm = 0.0;
  // Where this device's DP noise comes from: OpenSSL's generator, seeded by
  // the OS (false, the default, and the only choice for a real device), or a
  // std::mt19937_64 seeded from the task's seed (simulations, for
  // reproducible runs). The aggregator cannot choose this for the device.
  bool seeded_noise = false;
  // The device's privacy floor (above).
  PrivacyFloor floor;
};

// What one task cost and produced, for reports.
struct TaskReport {
  uint64_t round = 0;
  uint64_t model_version = 0;
  int64_t num_examples = 0;
  TrainMetrics metrics;
  uint64_t bytes_down = 0;  // task + model artifact as they would be sent
  uint64_t bytes_up = 0;    // the encoded update as it would be sent
  // Secure aggregation: the update is encoded and the protocol session
  // opened; the driver then calls DeviceClient::SecAggStep once per phase.
  bool secagg = false;
  // An evaluation task (a rollout canary; see v1::Task::KIND_EVALUATE): no
  // update was sent; these are the figures to report with ReportMetrics for
  // `model_version` (eval_loss, eval_accuracy, baseline_loss,
  // baseline_accuracy, eval_examples).
  bool evaluation = false;
  std::map<std::string, double> evaluation_metrics;
};

class DeviceClient {
 public:
  static constexpr int64_t kMaxEvaluationExamples = 4096;

  DeviceClient(std::string id, LocalDataset data, DeviceClientOptions options = {});

  const std::string& id() const { return id_; }
  const LocalDataset& data() const { return data_; }
  // Replaces the device's local data (e.g. its data drifted), keeping the
  // rest of its state (the error-feedback residual).
  void SetData(LocalDataset data) { data_ = std::move(data); }

  // Runs the task the transport has for this client, training on `model`
  // (or, for an evaluation task, evaluating the two versions it names on
  // the local data, at most kMaxEvaluationExamples of it)
  // (whose architecture must match the artifact). When the artifact is
  // sparse (a pruned model), the entries it does not store stay zero
  // throughout local training. NOT_FOUND when there is no task; other
  // errors say which step failed, and leave the error-feedback residual as
  // it was unless the update was encoded and the aggregator refused it.
  absl::StatusOr<TaskReport> RunTask(ClientTransport& transport, models::ModelInstance& model,
                                     const Trainer& trainer);

  // Secure aggregation (the task's `secagg` section set): RunTask trains,
  // clips and noises as usual, then fixed-point encodes the update
  // (weighted tasks: weight * update and the weight, see
  // fedge/aggregator/secure_aggregation.h) and opens a protocol session
  // instead of submitting. Each SecAggStep call then runs the next phase:
  // 1 advertise keys; 2, 3, 4 poll the aggregator's answer to the previous
  // phase and send the next message. Returns the bytes sent. UNAVAILABLE
  // (poll again later; nothing changed) while the aggregator has not closed
  // the previous phase; any other error ends the session (the device has
  // dropped out of the round). FAILED_PRECONDITION without a session.
  absl::StatusOr<uint64_t> SecAggStep(ClientTransport& transport);
  // True while a secure-aggregation session is open.
  bool secagg_pending() const { return secagg_ != nullptr; }
  // The phase the open session acts in next (UNSPECIFIED without one).
  v1::SecAggPhase secagg_phase() const {
    return secagg_ != nullptr ? secagg_->phase() : v1::SECAGG_PHASE_UNSPECIFIED;
  }
  // Leaves the open session without a word: the device dropped out.
  void AbandonSecAgg() {
    secagg_.reset();
    secagg_input_.clear();
    secagg_input_.shrink_to_fit();
  }

  // The error-feedback state; null before the first task or when error
  // feedback is off.
  const models::ErrorFeedback* error_feedback() const { return feedback_.get(); }

 private:
  // An evaluation task: evaluates the candidate, then the baseline (so the
  // model ends up holding the baseline, the version the device runs).
  absl::StatusOr<TaskReport> RunEvaluation(ClientTransport& transport, const v1::Task& task,
                                           models::ModelInstance& model);
  absl::StatusOr<TaskReport> StartSecAgg(const v1::Task& task, const LocalUpdate& local,
                                         const v1::ModelArtifact& artifact, bool within_bound);
  // The floor's local noise: clips `delta` to the task's bound (or the
  // floor's) and adds the device's own Gaussian noise.
  absl::Status AddFloorNoise(const v1::Task& task, std::span<float> delta);

  std::string id_;
  LocalDataset data_;
  DeviceClientOptions options_;
  std::shared_ptr<const models::UpdateCodec> codec_;  // created on the first task
  std::unique_ptr<models::ErrorFeedback> feedback_;
  std::unique_ptr<privacy::secagg::SecAggClient> secagg_;
  std::vector<uint32_t> secagg_input_;
  uint64_t secagg_round_ = 0;
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_DEVICE_CLIENT_H_
