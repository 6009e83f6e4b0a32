// Reports of a simulation run: a per-round CSV, a JSON summary, and a
// self-contained HTML page with plots (inline SVG, no scripts or fonts from
// the network, so it opens in a browser offline).
//
// Every writer writes atomically (temp file + fsync + rename): a crash leaves
// the previous file or the new one, never half of one.
#ifndef FEDGE_SIMULATIONS_REPORT_H_
#define FEDGE_SIMULATIONS_REPORT_H_

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace fedge::simulations {

// What one round did. Accuracy in [0, 1]; losses are mean cross-entropy.
struct RoundRecord {
  int round = 0;               // 1-based
  double test_accuracy = 0.0;  // global model on the test split, after the round
  double test_loss = 0.0;
  double train_loss = 0.0;       // example-weighted mean of the clients' local losses
  int participants = 0;          // clients whose update was aggregated
  uint64_t bytes_up = 0;         // encoded updates sent by the participants
  uint64_t bytes_down = 0;       // tasks + model artifacts sent to them
  double wall_seconds = 0.0;     // this round, training + aggregation + evaluation
  double elapsed_seconds = 0.0;  // since the run started
  // Differential privacy: total ε spent after this round (at
  // RunSummary::delta; +inf when the run is not private) and the round's
  // clipping bound (0 when nothing was clipped).
  double epsilon = std::numeric_limits<double>::infinity();
  double clip_norm = 0.0;
  // Compression: the fraction of weights pruned in the model published
  // after this round, and its artifact's size as devices download it.
  double sparsity = 0.0;
  uint64_t artifact_bytes = 0;
  // Secure aggregation: cohort members whose input is not in the sum
  // (dropped or refused), and, when the round aborted (nothing published),
  // why.
  int secagg_dropped = 0;
  bool secagg_aborted = false;
  std::string secagg_abort_reason;
};

// A model as devices run it for predictions (fedge/models/inference.h).
// NaN where not measured.
struct DeviceModelSummary {
  std::string architecture;
  int64_t parameters = 0;                                      // packed by the inference engine
  uint64_t artifact_bytes = 0;                                 // as published
  double accuracy = std::numeric_limits<double>::quiet_NaN();  // test, fp32
  // The int8 version (weights per channel, activations calibrated on the
  // proxy set): its artifact's size, its test accuracy through the int8
  // engine, and the median latency of one single-example inference in fp32
  // and in int8, measured alternately in the same run on one thread.
  uint64_t int8_artifact_bytes = 0;
  double int8_accuracy = std::numeric_limits<double>::quiet_NaN();
  double fp32_latency_us = std::numeric_limits<double>::quiet_NaN();
  double int8_latency_us = std::numeric_limits<double>::quiet_NaN();
  std::string int8_engine;
};

struct RunSummary {
  std::string experiment;  // a short title, e.g. "fedavg cnn fashion-mnist"
  int rounds = 0;
  double final_accuracy = 0.0;
  double final_loss = 0.0;
  double best_accuracy = 0.0;
  double wall_seconds = 0.0;
  uint64_t bytes_up = 0;  // totals over all rounds
  uint64_t bytes_down = 0;
  int64_t num_parameters = 0;
  double peak_rss_mb = 0.0;
  // Differential privacy: the mode ("none", "central", "local",
  // "distributed"), the total ε spent (+inf when not private) at δ.
  std::string privacy_mode = "none";
  double epsilon = std::numeric_limits<double>::infinity();
  double delta = 0.0;
  // The final model as devices download it: its artifact's size, what a
  // dense fp32 artifact would take, and the fraction of weights pruned.
  uint64_t artifact_bytes = 0;
  uint64_t fp32_artifact_bytes = 0;
  double sparsity = 0.0;
  // The final model through the inference engines (eval.int8), and the
  // distilled student (distill.student); absent when not run.
  std::optional<DeviceModelSummary> device_model;
  std::optional<DeviceModelSummary> student;
  // Why the run ended before its last round ("" when it ran them all), e.g.
  // a privacy budget that did not allow another round.
  std::string stop_reason;
  // The resolved configuration, as key = value strings in key order.
  std::vector<std::pair<std::string, std::string>> config;
};

// How one detector did in a drift run (from every client's monitor).
struct DetectorDriftStats {
  std::string detector;  // "name:stream"
  int drifted_clients = 0;
  int detected_within_one_round = 0;  // first alarm in the injection round or the next
  int detected = 0;                   // first alarm at any round from the injection on
  double mean_delay_rounds = 0.0;     // over detected clients; 0 = the injection round
  double mean_delay_samples = 0.0;    // stream examples observed from the injection to the alarm
  double median_delay_samples = 0.0;
  int drifted_with_early_alarm = 0;  // drifted clients that alarmed before the injection
  int clean_clients = 0;
  int clean_with_alarm = 0;  // clients without drift that raised any alarm
};

// One round of a drift run.
struct DriftRoundRecord {
  int round = 0;
  double clean_accuracy = 0.0;    // global model on the test split
  double drifted_accuracy = 0.0;  // global model on the drifted test split
  int reports = 0;                // drift reports the aggregator accepted
  double reporting_share = 0.0;   // policy window share after the round
  bool alert = false;
  bool extra_round = false;  // an extra round ran before this round
};

struct DriftRunSummary {
  std::string type;  // drift.type
  int injection_round = 0;
  int drifted_clients = 0;
  int clients = 0;
  std::string reaction;             // policy.reaction
  double pre_drift_accuracy = 0.0;  // clean test accuracy after round injection_round - 1
  double recovery_target = 0.0;
  int recovery_rounds = -1;  // regular rounds from the injection until recovered; -1 never
  int extra_rounds = 0;
  int alerts = 0;
  // Local fine-tunes after a drift report, and the mean accuracy on a fresh
  // sample of the device's stream of the global model before and of the
  // fine-tuned model after.
  int fine_tunes = 0;
  double fine_tune_accuracy_before = 0.0;
  double fine_tune_accuracy_after = 0.0;
  std::vector<DetectorDriftStats> detectors;
  std::vector<DriftRoundRecord> rounds;
  std::map<uint64_t, int64_t> reports_by_version;
};

// drift.json: the summary, per-detector stats and per-round records.
absl::Status WriteDriftJson(const std::string& path, const DriftRunSummary& drift);

// Columns: round,test_accuracy,test_loss,train_loss,participants,bytes_up,
// bytes_down,wall_seconds,elapsed_seconds,epsilon,clip_norm,sparsity,
// artifact_bytes (header line first; epsilon is "inf" for rounds that are
// not private).
// Fills `summary`'s round count, final and best accuracy, final loss and ε,
// and byte totals from `rounds` (not empty).
void SummarizeRounds(const std::vector<RoundRecord>& rounds, RunSummary& summary);

absl::Status WriteRoundsCsv(const std::string& path, const std::vector<RoundRecord>& rounds);

// summary.json: every RunSummary field (config, device_model and student as
// objects, the latter two only when present; non-finite numbers as null),
// plus "per_round": the rounds' accuracy list, and "per_round_epsilon" when
// the run is private.
absl::Status WriteSummaryJson(const std::string& path, const RunSummary& summary,
                              const std::vector<RoundRecord>& rounds);

// report.html: title, the summary table, the configuration, and three plots
// (test accuracy, test/train loss, bytes up/down per round) as inline SVG.
absl::Status WriteHtmlReport(const std::string& path, const RunSummary& summary,
                             const std::vector<RoundRecord>& rounds);

}  // namespace fedge::simulations

#endif  // FEDGE_SIMULATIONS_REPORT_H_
