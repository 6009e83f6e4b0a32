// Operational metrics of an aggregator, in the Prometheus text exposition
// format (version 0.0.4), served over plain HTTP by MetricsHttpServer on a
// separate port (loopback unless configured otherwise).
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
#include <limits>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

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
  // Gauges.
  std::atomic<uint64_t> model_version{0};
  std::atomic<int> round_open{0};
  std::atomic<uint64_t> clients_available{0};
  std::atomic<double> last_close_seconds{0.0};  // aggregation + publishing
  // Gated rollout: decisions, and the live version with its validation
  // accuracy (NaN when it was not evaluated).
  std::atomic<uint64_t> rollouts_promoted{0};
  std::atomic<uint64_t> rollouts_rejected{0};     // by validation
  std::atomic<uint64_t> rollouts_rolled_back{0};  // by their canary
  std::atomic<uint64_t> live_version{0};
  std::atomic<double> live_validation_accuracy{
      std::numeric_limits<double>::quiet_NaN()};  // not rendered while NaN
  // Alerts raised, by rule (see alerts.h); unknown rules count as "other".
  static constexpr const char* kAlertRules[] = {
      "round_failure_rate", "dropout", "drift_share", "accuracy_drop", "epsilon_budget", "other"};
  std::atomic<uint64_t> alerts[std::size(kAlertRules)] = {};
  void CountAlert(const std::string& rule);

  // The exposition-format text of every metric above.
  std::string RenderPrometheus() const;
};

// A minimal HTTP/1.1 server (Boost.Beast) for GET /metrics; other paths get
// 404, other methods 405. One thread; connections are served one at a time.
class MetricsHttpServer {
 public:
  // Listens on `address` (host:port; port 0 picks one). `metrics` must
  // outlive the server. UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& address,
                                                                  const AggregatorMetrics* metrics);
  ~MetricsHttpServer();  // stops and joins

  int port() const;

  class Impl;

 private:
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_METRICS_H_
