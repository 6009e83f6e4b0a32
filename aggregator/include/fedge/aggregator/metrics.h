// Operational metrics of an aggregator, in the Prometheus text exposition
// format (version 0.0.4), served at GET /metrics by the ops endpoint
// (ops_server.h) on a separate port (loopback unless configured otherwise).
//
//   GET /metrics   ->  # HELP fedge_rounds_total Rounds ... \n
//                      # TYPE fedge_rounds_total counter \n
//                      fedge_rounds_total{outcome="closed"} 12 \n ...
//
// Names follow Prometheus conventions: counters end in _total, units are in
// the name (_bytes, _seconds).
//
// Thread safety: every method may be called concurrently.
#ifndef FEDGE_AGGREGATOR_METRICS_H_
#define FEDGE_AGGREGATOR_METRICS_H_

#include <atomic>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <string>

namespace fedge::aggregator {

struct AggregatorMetrics {
  std::atomic<uint64_t> rounds_opened{0};
  std::atomic<uint64_t> rounds_closed{0};
  std::atomic<uint64_t> rounds_failed{0};
  std::atomic<uint64_t> clients_joined{0};
  std::atomic<uint64_t> clients_selected{0};
  std::atomic<uint64_t> updates_accepted{0};
  std::atomic<uint64_t> updates_refused{0};
  std::atomic<uint64_t> update_bytes_received{0};
  std::atomic<uint64_t> model_downloads{0};
  std::atomic<uint64_t> drift_reports{0};
  std::atomic<uint64_t> secagg_messages{0};
  // Devices whose update a finished round counted, and cohort devices it
  // did not (a failed round drops its whole cohort).
  std::atomic<uint64_t> clients_reported{0};
  std::atomic<uint64_t> clients_dropped{0};
  std::atomic<uint64_t> model_bytes_served{0};  // model downloads, bytes sent
  // Gauges.
  std::atomic<uint64_t> model_version{0};
  std::atomic<int> round_open{0};
  std::atomic<uint64_t> clients_available{0};
  std::atomic<double> last_close_seconds{0.0};  // aggregation + publishing
  // Gated rollout decisions (the live version and its accuracy are
  // rendered by the server from its version records).
  std::atomic<uint64_t> rollouts_promoted{0};
  std::atomic<uint64_t> rollouts_rejected{0};     // by validation
  std::atomic<uint64_t> rollouts_rolled_back{0};  // by their canary
  // Alerts raised, by rule (see alerts.h); unknown rules count as "other".
  static constexpr const char* kAlertRules[] = {
      "round_failure_rate", "dropout", "drift_share", "accuracy_drop", "epsilon_budget", "other"};
  std::atomic<uint64_t> alerts[std::size(kAlertRules)] = {};
  void CountAlert(const std::string& rule);
  std::atomic<double> close_seconds_sum{0.0};   // over every closed round
  std::atomic<double> last_round_seconds{0.0};  // opened -> closed, last round

  // The exposition-format text of every metric above.
  std::string RenderPrometheus() const;
};

// Appends one metric family: HELP, TYPE ("counter" or "gauge") and one
// sample per entry of `samples`, labelled `label`="<key>" (label values are
// escaped). No samples: HELP and TYPE only.
void AppendMetricFamily(std::string& out, const std::string& name, const std::string& type,
                        const std::string& help, const std::string& label,
                        const std::map<std::string, double>& samples);
// One unlabelled sample.
void AppendMetric(std::string& out, const std::string& name, const std::string& type,
                  const std::string& help, double value);

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_METRICS_H_
