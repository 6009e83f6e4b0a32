// DriftMonitor: a device's drift watch. It feeds its detectors from what the
// device sees and decides when to tell the aggregator.
//
//   inference   ObserveInference(feature rows, top-class probabilities)
//               -> ks / psi (features), confidence; no labels needed
//   feedback    ObserveFeedback(losses, 0/1 errors) when labels arrive
//               -> page-hinkley, adwin, ddm
//   reference   SetReference(feature rows, probabilities) from the data the
//               current model was trained on (probabilities under the current
//               model); call again after a new model or a fine-tune
//
// Every alarm is recorded as a v1::DriftEvent (detector, stream, statistic,
// threshold, observations, model version, time). When a *trigger* detector
// fires and the last report is at least `cooldown` time units old, the call
// also returns a v1::DriftReport for the aggregator with request_join set:
// the device should fine-tune on its recent data, send the report and ask to
// join the next round, then re-reference. Alarms inside the cooldown are
// recorded but not reported (false alarms are rate-limited).
//
// `time` is the caller's clock: milliseconds on a device, the round in
// fedge-sim; `cooldown` is in the same units.
//
// No LibTorch: the caller computes summaries and probabilities with whatever
// runs its model. Thread safety: none; one monitor per device.
#ifndef FEDGE_CLIENT_DRIFT_MONITOR_H_
#define FEDGE_CLIENT_DRIFT_MONITOR_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/client/drift_detector.h"
#include "fedge/v1/drift.pb.h"

namespace fedge::client {

struct DriftMonitorOptions {
  // Detectors to run, each "name" or "name:stream" with stream one of error,
  // loss, confidence, features. Built-ins have a default stream
  // (page-hinkley, adwin, ddm: error; confidence: confidence; ks, psi:
  // features); other registered detectors must name theirs.
  // Default: all six built-ins. REQUIRES: non-empty, no duplicates.
  std::vector<std::string> detectors = {"page-hinkley", "adwin", "ddm", "confidence", "ks", "psi"};
  // Whose alarms produce a report: "any", or an entry of `detectors`.
  // Default: "any".
  std::string trigger = "any";
  // Values per feature row (input summaries or an embedding). REQUIRES: >= 1
  // when a detector watches features; detector_options.features is set from it.
  int features = 0;
  DriftDetectorOptions detector_options;
  // Least time between two reports. Default: 3. REQUIRES: >= 0.
  int64_t cooldown = 3;
  // Events kept (the most recent). Default: 64. REQUIRES: >= 1.
  int max_events = 64;
};

// What one Observe call found.
struct MonitorOutcome {
  std::vector<v1::DriftEvent> alarms;     // every detector that fired, in order
  std::optional<v1::DriftReport> report;  // set when a trigger fired outside the cooldown
};

class DriftMonitor {
 public:
  // INVALID_ARGUMENT names the offending option; NOT_FOUND an unknown detector.
  static absl::StatusOr<std::unique_ptr<DriftMonitor>> Create(std::string client_id,
                                                              DriftMonitorOptions options);

  // Either span may be empty (that family is left as it is). `features` holds
  // whole rows of options.features values. INVALID_ARGUMENT, and nothing
  // changes, when a span is malformed.
  absl::Status SetReference(std::span<const float> features, std::span<const float> confidence);

  // Label-free observations of n examples: `features` n rows (or empty when
  // no detector watches features), `confidence` n top-class probabilities
  // (or empty). INVALID_ARGUMENT (nothing changes) for mismatched sizes or
  // non-finite values; FAILED_PRECONDITION when a feature detector has no
  // reference yet.
  absl::StatusOr<MonitorOutcome> ObserveInference(std::span<const float> features,
                                                  std::span<const float> confidence,
                                                  uint64_t model_version, int64_t time);

  // Labelled feedback on n examples: per-example losses and 0/1 errors (either
  // may be empty, not both). Same errors as ObserveInference.
  absl::StatusOr<MonitorOutcome> ObserveFeedback(std::span<const float> loss,
                                                 std::span<const float> error,
                                                 uint64_t model_version, int64_t time);

  // Forgets every detector's stream (keeps references), e.g. after a fine-tune.
  void ResetDetectors();

  const std::string& client_id() const { return client_id_; }
  // Detector keys "name:stream", in order.
  std::vector<std::string> detector_keys() const;
  // Examples seen through ObserveInference and ObserveFeedback.
  uint64_t samples() const { return samples_; }
  // The most recent events, oldest first.
  const std::deque<v1::DriftEvent>& events() const { return events_; }

  // Serialized v1::DriftMonitorState (detectors, counters, recent events).
  std::string SaveState() const;
  // INVALID_ARGUMENT naming what is wrong (unparsable, other detectors, a
  // detector's state); the monitor is unchanged on error.
  absl::Status RestoreState(std::string_view blob);

 private:
  enum class Stream { kError, kLoss, kConfidence, kFeatures };
  struct Watch {
    std::string name;
    Stream stream;
    std::string stream_name;
    std::unique_ptr<DriftDetector> detector;
    bool trigger;
  };

  DriftMonitor(std::string client_id, DriftMonitorOptions options, std::vector<Watch> watches)
      : client_id_(std::move(client_id)),
        options_(std::move(options)),
        watches_(std::move(watches)) {}

  // Validates every input of one call before any detector sees it.
  absl::Status CheckBatch(Stream a, std::span<const float> va, Stream b, std::span<const float> vb,
                          size_t* n) const;
  absl::StatusOr<MonitorOutcome> Feed(Stream a, std::span<const float> va, Stream b,
                                      std::span<const float> vb, uint64_t model_version,
                                      int64_t time);

  std::string client_id_;
  DriftMonitorOptions options_;
  std::vector<Watch> watches_;
  uint64_t samples_ = 0;
  bool has_reported_ = false;
  int64_t last_report_time_ = 0;
  std::deque<v1::DriftEvent> events_;
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_DRIFT_MONITOR_H_
