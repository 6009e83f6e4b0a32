#include "fedge/aggregator/metrics.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fedge::aggregator {
namespace {

// Integers as integers; other values with enough digits; no NaN/Inf (the
// caller reports 0 or leaves the sample out).
std::string FormatValue(double v) {
  if (!std::isfinite(v)) return "0";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrCat(static_cast<int64_t>(v));
  return absl::StrFormat("%.9g", v);
}

void Metric(std::string& out, const char* name, const char* type, const char* help,
            const std::string& samples) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", samples);
}

}  // namespace

void AggregatorMetrics::CountAlert(const std::string& rule) {
  size_t i = 0;
  while (i + 1 < std::size(kAlertRules) && rule != kAlertRules[i]) ++i;
  alerts[i] += 1;
}

std::string AggregatorMetrics::RenderPrometheus() const {
  std::string out;
  Metric(out, "fedge_rollouts_total", "counter",
         "Gated-rollout decisions on new versions: promoted (went live), rejected by "
         "validation, rolled back after their canary.",
         absl::StrCat("fedge_rollouts_total{outcome=\"promoted\"} ", rollouts_promoted.load(), "\n",
                      "fedge_rollouts_total{outcome=\"rejected_validation\"} ",
                      rollouts_rejected.load(), "\n",
                      "fedge_rollouts_total{outcome=\"rolled_back_canary\"} ",
                      rollouts_rolled_back.load(), "\n"));
  std::string alert_samples;
  for (size_t i = 0; i < std::size(kAlertRules); ++i) {
    absl::StrAppend(&alert_samples, "fedge_alerts_total{rule=\"", kAlertRules[i], "\"} ",
                    alerts[i].load(), "\n");
  }
  Metric(out, "fedge_alerts_total", "counter", "Operator alerts raised, by rule.", alert_samples);
  Metric(out, "fedge_rounds_total", "counter", "Rounds by outcome (opened, closed, failed).",
         absl::StrCat("fedge_rounds_total{outcome=\"opened\"} ", rounds_opened.load(), "\n",
                      "fedge_rounds_total{outcome=\"closed\"} ", rounds_closed.load(), "\n",
                      "fedge_rounds_total{outcome=\"failed\"} ", rounds_failed.load(), "\n"));
  Metric(out, "fedge_updates_total", "counter", "Device updates by verdict.",
         absl::StrCat("fedge_updates_total{verdict=\"accepted\"} ", updates_accepted.load(), "\n",
                      "fedge_updates_total{verdict=\"refused\"} ", updates_refused.load(), "\n"));
  // The metrics with one unlabelled sample.
  struct Single {
    const char* name;
    const char* type;
    const char* help;
    uint64_t value;
  };
  for (const Single& m : {
           Single{"fedge_clients_joined_total", "counter", "Join calls of authenticated devices.",
                  clients_joined.load()},
           Single{"fedge_clients_selected_total", "counter", "Devices selected into cohorts.",
                  clients_selected.load()},
           Single{"fedge_clients_available", "gauge", "Devices polling when the last round opened.",
                  clients_available.load()},
           Single{"fedge_update_received_bytes_total", "counter",
                  "Serialized bytes of accepted updates (secure-aggregation messages included).",
                  update_bytes_received.load()},
           Single{"fedge_model_downloads_total", "counter", "Model downloads started.",
                  model_downloads.load()},
           Single{"fedge_drift_reports_total", "counter", "Drift reports recorded.",
                  drift_reports.load()},
           Single{"fedge_clients_reported_total", "counter",
                  "Cohort devices whose update a finished round counted.", clients_reported.load()},
           Single{"fedge_clients_dropped_total", "counter",
                  "Cohort devices without a counted update when their round finished.",
                  clients_dropped.load()},
           Single{"fedge_model_served_bytes_total", "counter",
                  "Model bytes sent to devices (downloads, from their requested offset).",
                  model_bytes_served.load()},
           Single{"fedge_secagg_messages_total", "counter",
                  "Secure-aggregation protocol messages accepted.", secagg_messages.load()},
           Single{"fedge_model_version", "gauge", "Newest published model version.",
                  model_version.load()},
           Single{"fedge_round_open", "gauge", "1 while a round is open.",
                  static_cast<uint64_t>(round_open.load())},
       }) {
    Metric(out, m.name, m.type, m.help, absl::StrCat(m.name, " ", m.value, "\n"));
  }
  Metric(out, "fedge_round_close_seconds", "gauge",
         "Time the last round took to aggregate, publish and store its version.",
         absl::StrFormat("fedge_round_close_seconds %.6f\n", last_close_seconds.load()));
  Metric(out, "fedge_round_close_seconds_total", "counter",
         "Time spent aggregating, publishing and storing versions, over every closed round.",
         absl::StrFormat("fedge_round_close_seconds_total %.6f\n", close_seconds_sum.load()));
  Metric(out, "fedge_round_duration_seconds", "gauge",
         "Wall time of the last finished round, from opening to closing.",
         absl::StrFormat("fedge_round_duration_seconds %.6f\n", last_round_seconds.load()));
  return out;
}

void AppendMetricFamily(std::string& out, const std::string& name, const std::string& type,
                        const std::string& help, const std::string& label,
                        const std::map<std::string, double>& samples) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  for (const auto& [key, value] : samples) {
    std::string escaped;
    for (char c : key) {
      if (c == '\\' || c == '"') escaped.push_back('\\');
      if (c == '\n') {
        escaped += "\\n";
        continue;
      }
      escaped.push_back(c);
    }
    absl::StrAppend(&out, name, "{", label, "=\"", escaped, "\"} ", FormatValue(value), "\n");
  }
}

void AppendMetric(std::string& out, const std::string& name, const std::string& type,
                  const std::string& help, double value) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ",
                  FormatValue(value), "\n");
}

}  // namespace fedge::aggregator
