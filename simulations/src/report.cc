// Run reports: rounds.csv, summary.json and a self-contained report.html.
//
// The HTML page references nothing outside itself: CSS is inline, plots are
// inline SVG drawn here (no xmlns attribute, which HTML5 does not need), and
// there is no script. Every string that comes from the run (experiment name,
// config keys and values) is HTML-escaped.
#include "fedge/simulations/report.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "fedge/proto/atomic_file.h"
#include "nlohmann/json.hpp"

namespace fedge::simulations {
namespace {

// ---------------------------------------------------------------- formatting

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Decimal (SI) byte units, as network traffic is usually quoted.
struct ByteUnit {
  double scale;
  const char* name;
};

ByteUnit ByteUnitFor(double bytes) {
  static constexpr ByteUnit kUnits[] = {{1e12, "TB"}, {1e9, "GB"}, {1e6, "MB"}, {1e3, "kB"}};
  for (const ByteUnit& unit : kUnits) {
    if (bytes >= unit.scale) return unit;
  }
  return {1.0, "B"};
}

std::string HumanBytes(uint64_t bytes) {
  const ByteUnit unit = ByteUnitFor(static_cast<double>(bytes));
  if (unit.scale == 1.0) return absl::StrFormat("%d B", bytes);
  return absl::StrFormat("%.2f %s", static_cast<double>(bytes) / unit.scale, unit.name);
}

std::string HumanSeconds(double seconds) {
  if (!std::isfinite(seconds)) return "n/a";
  if (seconds < 60.0) return absl::StrFormat("%.2f s", seconds);
  const int64_t whole = static_cast<int64_t>(seconds);
  if (seconds < 3600.0) {
    return absl::StrFormat("%dm %04.1fs", whole / 60,
                           seconds - static_cast<double>(whole / 60 * 60));
  }
  return absl::StrFormat("%dh %02dm %02ds", whole / 3600, whole / 60 % 60, whole % 60);
}

std::string Percent(double fraction) {
  if (!std::isfinite(fraction)) return "n/a";
  return absl::StrFormat("%.2f%%", 100.0 * fraction);
}

std::string Fixed(double value, int decimals) {
  if (!std::isfinite(value)) return "n/a";
  return absl::StrFormat("%.*f", decimals, value);
}

// 1234567 -> "1,234,567".
std::string WithThousands(int64_t value) {
  const std::string text = absl::StrCat(value);
  const absl::string_view digits = value < 0 ? absl::string_view(text).substr(1) : text;
  std::string out = value < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// ---------------------------------------------------------------- SVG charts

struct Series {
  std::string name;
  std::string color;
  std::vector<double> values;  // one per round; non-finite values are gaps
};

// Axis range [lo, hi] widened to multiples of `step`, and the ticks on it.
struct Ticks {
  double lo = 0.0;
  double hi = 1.0;
  double step = 0.25;
  std::vector<double> values;
};

// About `target` ticks at 1, 2 or 5 times a power of ten covering [lo, hi].
// An empty or degenerate range (one round, a constant series) is widened
// first, so the axis never has zero length. `integer` keeps steps >= 1.
Ticks NiceTicks(double lo, double hi, int target, bool integer) {
  const double magnitude = std::max(std::abs(lo), std::abs(hi));
  if (!(hi - lo > 1e-9 * magnitude)) {
    const double pad = integer ? 1.0 : (magnitude > 0.0 ? 0.1 * magnitude : 1.0);
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / target;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  const double fraction = raw / power;
  double step = (fraction <= 1.0   ? 1.0
                 : fraction <= 2.0 ? 2.0
                 : fraction <= 5.0 ? 5.0
                                   : 10.0) *
                power;
  if (integer) step = std::max(1.0, std::round(step));
  Ticks ticks;
  ticks.step = step;
  ticks.lo = std::floor(lo / step) * step;
  ticks.hi = std::ceil(hi / step) * step;
  for (int i = 0; i <= 2 * target + 2; ++i) {
    const double value = ticks.lo + i * step;
    if (value > ticks.hi + 1e-9 * step) break;
    ticks.values.push_back(std::abs(value) < 1e-9 * step ? 0.0 : value);
  }
  return ticks;
}

// Decimals needed to tell ticks `step` apart.
int TickDecimals(double step) {
  return std::clamp(static_cast<int>(-std::floor(std::log10(step) + 1e-9)), 0, 6);
}

constexpr double kWidth = 720;
constexpr double kHeight = 330;
constexpr double kLeft = 72;
constexpr double kRight = 24;
constexpr double kTop = 52;
constexpr double kBottom = 50;
// Points are marked with dots up to this many rounds.
constexpr size_t kMaxMarkedPoints = 40;

// A line chart of `series` against `rounds`, with axes, ticks, grid, axis
// labels and a legend. The y axis spans the finite values, and 0 too when
// `include_zero` (for quantities such as bytes, whose size matters).
std::string SvgLineChart(absl::string_view title, absl::string_view y_label,
                         const std::vector<int>& rounds, const std::vector<Series>& series,
                         bool include_zero) {
  double x_min = INFINITY, x_max = -INFINITY, y_min = INFINITY, y_max = -INFINITY;
  for (int r : rounds) {
    x_min = std::min<double>(x_min, r);
    x_max = std::max<double>(x_max, r);
  }
  bool has_data = false;
  for (const Series& s : series) {
    for (size_t i = 0; i < s.values.size() && i < rounds.size(); ++i) {
      if (!std::isfinite(s.values[i])) continue;
      has_data = true;
      y_min = std::min(y_min, s.values[i]);
      y_max = std::max(y_max, s.values[i]);
    }
  }
  if (rounds.empty()) x_min = x_max = 1;
  if (!has_data) {
    y_min = 0;
    y_max = 1;
  }
  if (include_zero) {
    y_min = std::min(y_min, 0.0);
    y_max = std::max(y_max, 0.0);
  }
  const Ticks x = NiceTicks(x_min, x_max, 8, /*integer=*/true);
  const Ticks y = NiceTicks(y_min, y_max, 5, /*integer=*/false);
  const double plot_w = kWidth - kLeft - kRight;
  const double plot_h = kHeight - kTop - kBottom;
  auto px = [&](double v) { return kLeft + (v - x.lo) / (x.hi - x.lo) * plot_w; };
  auto py = [&](double v) { return kTop + plot_h - (v - y.lo) / (y.hi - y.lo) * plot_h; };

  std::string svg = absl::StrFormat(
      "<svg class=\"chart\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" "
      "role=\"img\" aria-label=\"%s\">\n<title>%s</title>\n",
      kWidth, kHeight, kWidth, kHeight, HtmlEscape(title), HtmlEscape(title));
  absl::StrAppendFormat(&svg, "<text class=\"title\" x=\"%.1f\" y=\"18\">%s</text>\n", kLeft,
                        HtmlEscape(title));

  // Legend: one row under the title.
  double legend_x = kLeft;
  for (const Series& s : series) {
    absl::StrAppendFormat(
        &svg,
        "<line x1=\"%.1f\" y1=\"34\" x2=\"%.1f\" y2=\"34\" stroke=\"%s\" "
        "stroke-width=\"3\"/><text class=\"legend\" x=\"%.1f\" y=\"38\">%s</text>\n",
        legend_x, legend_x + 22, s.color, legend_x + 28, HtmlEscape(s.name));
    legend_x += 28 + 7.0 * static_cast<double>(s.name.size()) + 24;
  }

  // Grid and y ticks.
  const int y_decimals = TickDecimals(y.step);
  for (double v : y.values) {
    absl::StrAppendFormat(
        &svg,
        "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
        "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
        kLeft, py(v), kLeft + plot_w, py(v), kLeft - 6, py(v) + 4,
        absl::StrFormat("%.*f", y_decimals, v));
  }
  for (double v : x.values) {
    absl::StrAppendFormat(&svg,
                          "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                          "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f"
                          "</text>\n",
                          px(v), kTop + plot_h, px(v), kTop + plot_h + 5, px(v), kTop + plot_h + 18,
                          v);
  }
  // Axes and their labels.
  absl::StrAppendFormat(&svg,
                        "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n"
                        "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
                        kLeft, kTop, kLeft, kTop + plot_h, kLeft, kTop + plot_h, kLeft + plot_w,
                        kTop + plot_h);
  absl::StrAppendFormat(&svg,
                        "<text class=\"label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">round"
                        "</text>\n",
                        kLeft + plot_w / 2, kHeight - 10);
  absl::StrAppendFormat(&svg,
                        "<text class=\"label\" transform=\"translate(16 %.1f) rotate(-90)\" "
                        "text-anchor=\"middle\">%s</text>\n",
                        kTop + plot_h / 2, HtmlEscape(y_label));
  if (!has_data) {
    absl::StrAppendFormat(&svg,
                          "<text class=\"label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">no "
                          "data</text>\n",
                          kLeft + plot_w / 2, kTop + plot_h / 2);
  }

  // One polyline per run of finite values.
  for (const Series& s : series) {
    const size_t n = std::min(s.values.size(), rounds.size());
    std::string points;
    size_t run = 0;
    auto flush = [&]() {
      if (run >= 2) {
        absl::StrAppendFormat(&svg,
                              "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                              "stroke-linejoin=\"round\" points=\"%s\"/>\n",
                              s.color, points);
      }
      points.clear();
      run = 0;
    };
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(s.values[i])) {
        flush();
        continue;
      }
      absl::StrAppendFormat(&points, "%s%.1f,%.1f", run == 0 ? "" : " ", px(rounds[i]),
                            py(s.values[i]));
      ++run;
    }
    flush();
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(s.values[i])) continue;
      const bool isolated = (i == 0 || !std::isfinite(s.values[i - 1])) &&
                            (i + 1 == n || !std::isfinite(s.values[i + 1]));
      if (n <= kMaxMarkedPoints || isolated) {
        absl::StrAppendFormat(&svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                              px(rounds[i]), py(s.values[i]), s.color);
      }
    }
  }
  svg += "</svg>\n";
  return svg;
}

// ---------------------------------------------------------------- HTML page

constexpr char kStyle[] = R"css(
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #1f2933; max-width: 900px; margin: 2em auto; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; }
.subtitle { color: #52606d; margin-top: 0; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #d9e2ec; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { text-align: left; padding: 0.25em 1em 0.25em 0; border-bottom: 1px solid #eef2f6;
         vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.value { font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all; }
svg.chart { max-width: 100%; height: auto; background: #fff; }
svg .title { font-size: 14px; font-weight: 600; fill: #1f2933; }
svg .legend, svg .tick, svg .label { font-size: 12px; fill: #3e4c59; }
svg .grid { stroke: #e4e7eb; stroke-width: 1; }
svg .axis { stroke: #3e4c59; stroke-width: 1; }
figure { margin: 0.5em 0; }
footer { margin-top: 2em; color: #7b8794; font-size: 0.85em; }
)css";

constexpr char kBlue[] = "#2563eb";
constexpr char kOrange[] = "#ea580c";
constexpr char kGreen[] = "#16a34a";
constexpr char kPurple[] = "#9333ea";

void AppendRow(std::string* html, absl::string_view key, absl::string_view value) {
  absl::StrAppend(html, "<tr><th>", HtmlEscape(key), "</th><td>", HtmlEscape(value),
                  "</td></tr>\n");
}

std::string RenderHtml(const RunSummary& summary, const std::vector<RoundRecord>& rounds) {
  std::vector<int> xs;
  Series accuracy{"test accuracy", kBlue, {}};
  Series test_loss{"test loss", kBlue, {}};
  Series train_loss{"train loss", kOrange, {}};
  Series up{"bytes up", kGreen, {}};
  Series down{"bytes down", kPurple, {}};
  Series epsilon{"epsilon", kOrange, {}};
  std::vector<int> epsilon_xs;
  const bool is_private = summary.privacy_mode != "none";
  double max_bytes = 0.0;
  for (const RoundRecord& r : rounds) {
    if (std::isfinite(r.epsilon)) {
      epsilon_xs.push_back(r.round);
      epsilon.values.push_back(r.epsilon);
    }
    xs.push_back(r.round);
    accuracy.values.push_back(100.0 * r.test_accuracy);
    test_loss.values.push_back(r.test_loss);
    train_loss.values.push_back(r.train_loss);
    max_bytes =
        std::max({max_bytes, static_cast<double>(r.bytes_up), static_cast<double>(r.bytes_down)});
  }
  const ByteUnit unit = ByteUnitFor(max_bytes);
  for (const RoundRecord& r : rounds) {
    up.values.push_back(static_cast<double>(r.bytes_up) / unit.scale);
    down.values.push_back(static_cast<double>(r.bytes_down) / unit.scale);
  }

  const std::string title =
      summary.experiment.empty() ? "fedge run" : absl::StrCat("fedge run: ", summary.experiment);
  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
      HtmlEscape(title), "</title>\n<style>", kStyle, "</style>\n</head>\n<body>\n");
  absl::StrAppend(&html, "<h1>fedge run report</h1>\n<p class=\"subtitle\">",
                  HtmlEscape(summary.experiment), "</p>\n");

  html += "<h2>Summary</h2>\n<table class=\"summary\">\n";
  AppendRow(&html, "Final test accuracy", Percent(summary.final_accuracy));
  AppendRow(&html, "Best test accuracy", Percent(summary.best_accuracy));
  AppendRow(&html, "Final test loss", Fixed(summary.final_loss, 4));
  AppendRow(&html, "Rounds", absl::StrCat(summary.rounds));
  AppendRow(&html, "Wall time", HumanSeconds(summary.wall_seconds));
  AppendRow(&html, "Bytes up (total)", HumanBytes(summary.bytes_up));
  AppendRow(&html, "Bytes down (total)", HumanBytes(summary.bytes_down));
  AppendRow(&html, "Model parameters", WithThousands(summary.num_parameters));
  if (summary.artifact_bytes > 0) {
    AppendRow(&html, "Model artifact (final)",
              absl::StrFormat("%s (dense fp32: %s)", HumanBytes(summary.artifact_bytes),
                              HumanBytes(summary.fp32_artifact_bytes)));
  }
  if (summary.sparsity > 0.0) AppendRow(&html, "Weights pruned", Percent(summary.sparsity));
  const auto device_rows = [&](absl::string_view what, const DeviceModelSummary& m) {
    AppendRow(&html, what,
              absl::StrFormat("%s, %s parameters, %s, test accuracy %s", m.architecture,
                              WithThousands(m.parameters), HumanBytes(m.artifact_bytes),
                              Percent(m.accuracy)));
    if (m.int8_artifact_bytes > 0) {
      AppendRow(
          &html, absl::StrCat(what, " in int8"),
          absl::StrFormat("%s, test accuracy %s; latency (1 example) fp32 %s us, int8 %s "
                          "us (%s)",
                          HumanBytes(m.int8_artifact_bytes), Percent(m.int8_accuracy),
                          Fixed(m.fp32_latency_us, 0), Fixed(m.int8_latency_us, 0), m.int8_engine));
    }
  };
  if (summary.device_model.has_value()) device_rows("Device model", *summary.device_model);
  if (summary.student.has_value()) device_rows("Distilled student", *summary.student);
  AppendRow(&html, "Peak RSS", absl::StrCat(Fixed(summary.peak_rss_mb, 1), " MB"));
  if (is_private) {
    AppendRow(&html, "Differential privacy",
              absl::StrCat(summary.privacy_mode, ": \u03b5 = ",
                           std::isfinite(summary.epsilon) ? absl::StrFormat("%.4g", summary.epsilon)
                                                          : std::string("\u221e"),
                           " at \u03b4 = ", absl::StrFormat("%g", summary.delta)));
  }
  if (!summary.stop_reason.empty()) AppendRow(&html, "Stopped early", summary.stop_reason);
  html += "</table>\n";

  html += "<h2>Test accuracy</h2>\n<figure>\n";
  html += SvgLineChart("Test accuracy per round", "accuracy (%)", xs, {accuracy},
                       /*include_zero=*/false);
  html += "</figure>\n<h2>Loss</h2>\n<figure>\n";
  html += SvgLineChart("Test and train loss per round", "mean cross-entropy", xs,
                       {test_loss, train_loss}, /*include_zero=*/false);
  html += "</figure>\n<h2>Communication</h2>\n<figure>\n";
  html += SvgLineChart("Bytes up and down per round", absl::StrCat(unit.name, " per round"), xs,
                       {up, down}, /*include_zero=*/true);
  html += "</figure>\n";
  if (is_private && !epsilon.values.empty()) {
    html += "<h2>Privacy</h2>\n<figure>\n";
    html += SvgLineChart("Privacy spent after each round", "epsilon", epsilon_xs, {epsilon},
                         /*include_zero=*/true);
    html += "</figure>\n";
  }

  html += "<h2>Configuration</h2>\n<table class=\"config\">\n";
  for (const auto& [key, value] : summary.config) {
    absl::StrAppend(&html, "<tr><th>", HtmlEscape(key), "</th><td class=\"value\">",
                    HtmlEscape(value), "</td></tr>\n");
  }
  html += "</table>\n";

  // Collapsed by default; <details> needs no script.
  absl::StrAppend(&html, "<details>\n<summary>Per-round data (", rounds.size(),
                  " rounds)</summary>\n<table class=\"rounds\">\n<tr><th>round</th>"
                  "<th>test accuracy</th><th>test loss</th><th>train loss</th>"
                  "<th>participants</th><th>bytes up</th><th>bytes down</th>"
                  "<th>wall time</th></tr>\n");
  for (const RoundRecord& r : rounds) {
    absl::StrAppend(&html, "<tr><td class=\"num\">", r.round, "</td><td class=\"num\">",
                    Percent(r.test_accuracy), "</td><td class=\"num\">", Fixed(r.test_loss, 4),
                    "</td><td class=\"num\">", Fixed(r.train_loss, 4), "</td><td class=\"num\">",
                    r.participants, "</td><td class=\"num\">", HumanBytes(r.bytes_up),
                    "</td><td class=\"num\">", HumanBytes(r.bytes_down), "</td><td class=\"num\">",
                    HumanSeconds(r.wall_seconds), "</td></tr>\n");
  }
  html += "</table>\n</details>\n<footer>Generated by fedge-sim.</footer>\n</body>\n</html>\n";
  return html;
}

}  // namespace

void SummarizeRounds(const std::vector<RoundRecord>& rounds, RunSummary& summary) {
  summary.rounds = static_cast<int>(rounds.size());
  summary.final_accuracy = rounds.back().test_accuracy;
  summary.final_loss = rounds.back().test_loss;
  summary.epsilon = rounds.back().epsilon;
  for (const RoundRecord& record : rounds) {
    summary.best_accuracy = std::max(summary.best_accuracy, record.test_accuracy);
    summary.bytes_up += record.bytes_up;
    summary.bytes_down += record.bytes_down;
  }
}

absl::Status WriteRoundsCsv(const std::string& path, const std::vector<RoundRecord>& rounds) {
  std::string csv =
      "round,test_accuracy,test_loss,train_loss,participants,bytes_up,bytes_down,wall_seconds,"
      "elapsed_seconds,epsilon,clip_norm,sparsity,artifact_bytes,secagg_dropped,secagg_aborted\n";
  for (const RoundRecord& r : rounds) {
    absl::StrAppendFormat(&csv, "%d,%.6f,%.6f,%.6f,%d,%d,%d,%.6f,%.6f,%s,%.6g,%.6f,%d,%d,%d\n",
                          r.round, r.test_accuracy, r.test_loss, r.train_loss, r.participants,
                          r.bytes_up, r.bytes_down, r.wall_seconds, r.elapsed_seconds,
                          std::isfinite(r.epsilon) ? absl::StrFormat("%.6g", r.epsilon) : "inf",
                          r.clip_norm, r.sparsity, r.artifact_bytes, r.secagg_dropped,
                          r.secagg_aborted ? 1 : 0);
  }
  return proto::WriteFileAtomic(path, csv);
}

absl::Status WriteSummaryJson(const std::string& path, const RunSummary& summary,
                              const std::vector<RoundRecord>& rounds) {
  // ordered_json keeps fields (and config keys) in the order written.
  nlohmann::ordered_json json;
  json["experiment"] = summary.experiment;
  json["rounds"] = summary.rounds;
  json["final_accuracy"] = summary.final_accuracy;
  json["final_loss"] = summary.final_loss;
  json["best_accuracy"] = summary.best_accuracy;
  json["wall_seconds"] = summary.wall_seconds;
  json["bytes_up"] = summary.bytes_up;
  json["bytes_down"] = summary.bytes_down;
  json["num_parameters"] = summary.num_parameters;
  json["peak_rss_mb"] = summary.peak_rss_mb;
  json["privacy_mode"] = summary.privacy_mode;
  json["epsilon"] = summary.epsilon;
  json["delta"] = summary.delta;
  json["stop_reason"] = summary.stop_reason;
  json["artifact_bytes"] = summary.artifact_bytes;
  json["fp32_artifact_bytes"] = summary.fp32_artifact_bytes;
  json["sparsity"] = summary.sparsity;
  const auto device_json = [](const DeviceModelSummary& m) {
    nlohmann::ordered_json j;
    j["architecture"] = m.architecture;
    j["parameters"] = m.parameters;
    j["artifact_bytes"] = m.artifact_bytes;
    j["accuracy"] = m.accuracy;
    j["int8_artifact_bytes"] = m.int8_artifact_bytes;
    j["int8_accuracy"] = m.int8_accuracy;
    j["fp32_latency_us"] = m.fp32_latency_us;
    j["int8_latency_us"] = m.int8_latency_us;
    j["int8_engine"] = m.int8_engine;
    return j;
  };
  if (summary.device_model.has_value()) json["device_model"] = device_json(*summary.device_model);
  if (summary.student.has_value()) json["student"] = device_json(*summary.student);
  nlohmann::ordered_json config = nlohmann::ordered_json::object();
  for (const auto& [key, value] : summary.config) config[key] = value;
  json["config"] = std::move(config);
  nlohmann::ordered_json per_round = nlohmann::ordered_json::array();
  for (const RoundRecord& r : rounds) per_round.push_back(r.test_accuracy);
  json["per_round"] = std::move(per_round);
  if (summary.privacy_mode != "none") {
    nlohmann::ordered_json per_round_epsilon = nlohmann::ordered_json::array();
    for (const RoundRecord& r : rounds) per_round_epsilon.push_back(r.epsilon);
    json["per_round_epsilon"] = std::move(per_round_epsilon);
  }
  // Non-finite numbers become null; invalid UTF-8 in strings becomes U+FFFD
  // rather than an exception.
  std::string text =
      json.dump(2, ' ', /*ensure_ascii=*/false, nlohmann::ordered_json::error_handler_t::replace);
  text += '\n';
  return proto::WriteFileAtomic(path, text);
}

absl::Status WriteHtmlReport(const std::string& path, const RunSummary& summary,
                             const std::vector<RoundRecord>& rounds) {
  return proto::WriteFileAtomic(path, RenderHtml(summary, rounds));
}

absl::Status WriteDriftJson(const std::string& path, const DriftRunSummary& drift) {
  nlohmann::json j;
  j["type"] = drift.type;
  j["injection_round"] = drift.injection_round;
  j["drifted_clients"] = drift.drifted_clients;
  j["clients"] = drift.clients;
  j["reaction"] = drift.reaction;
  j["pre_drift_accuracy"] = drift.pre_drift_accuracy;
  j["recovery_target"] = drift.recovery_target;
  j["recovery_rounds"] = drift.recovery_rounds;
  j["extra_rounds"] = drift.extra_rounds;
  j["alerts"] = drift.alerts;
  j["fine_tunes"] = drift.fine_tunes;
  j["fine_tune_accuracy_before"] = drift.fine_tune_accuracy_before;
  j["fine_tune_accuracy_after"] = drift.fine_tune_accuracy_after;
  nlohmann::json detectors = nlohmann::json::array();
  for (const DetectorDriftStats& d : drift.detectors) {
    detectors.push_back({{"detector", d.detector},
                         {"drifted_clients", d.drifted_clients},
                         {"detected_within_one_round", d.detected_within_one_round},
                         {"detected", d.detected},
                         {"mean_delay_rounds", d.mean_delay_rounds},
                         {"mean_delay_samples", d.mean_delay_samples},
                         {"median_delay_samples", d.median_delay_samples},
                         {"drifted_with_early_alarm", d.drifted_with_early_alarm},
                         {"clean_clients", d.clean_clients},
                         {"clean_with_alarm", d.clean_with_alarm}});
  }
  j["detectors"] = detectors;
  nlohmann::json rounds = nlohmann::json::array();
  for (const DriftRoundRecord& r : drift.rounds) {
    rounds.push_back({{"round", r.round},
                      {"clean_accuracy", r.clean_accuracy},
                      {"drifted_accuracy", r.drifted_accuracy},
                      {"reports", r.reports},
                      {"reporting_share", r.reporting_share},
                      {"alert", r.alert},
                      {"extra_round", r.extra_round}});
  }
  j["rounds"] = rounds;
  nlohmann::json versions = nlohmann::json::object();
  for (const auto& [version, count] : drift.reports_by_version) {
    versions[std::to_string(version)] = count;
  }
  j["reports_by_version"] = versions;
  return proto::WriteFileAtomic(path, j.dump(2) + "\n");
}

}  // namespace fedge::simulations
