// Stream detectors with O(1) state: page-hinkley, ddm and confidence.
#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "detector_state.h"
#include "fedge/client/drift_detector.h"

namespace fedge::client {
namespace {

using drift_internal::CheckObservation;
using drift_internal::PackState;
using drift_internal::StateError;
using drift_internal::UnpackState;

absl::Status FieldError(std::string_view field, std::string_view requirement, double value) {
  return absl::InvalidArgumentError(absl::StrCat("DriftDetectorOptions.", std::string(field),
                                                 " must be ", std::string(requirement), ", got ",
                                                 value));
}

// --- page-hinkley -----------------------------------------------------------
//
// Page-Hinkley for an increase of the mean (Page 1954; the form of Gama et
// al. 2013, "On evaluating stream learning algorithms"): with x̄_t the running
// mean, m_T = sum_t (x_t - x̄_t - delta) and M_T = min_t m_t, alarm when
// m_T - M_T > threshold.
class PageHinkley final : public DriftDetector {
 public:
  static constexpr std::string_view kName = "page-hinkley";

  explicit PageHinkley(const PageHinkleyOptions& options) : options_(options) {}

  std::string_view name() const override { return kName; }
  size_t observation_size() const override { return 1; }
  bool uses_reference() const override { return false; }
  bool ready() const override { return true; }
  absl::Status SetReference(std::span<const float>) override {
    return absl::FailedPreconditionError("page-hinkley learns its baseline from the stream");
  }

  absl::StatusOr<DriftDecision> Add(std::span<const float> observation) override {
    if (observation.size() != 1 || !std::isfinite(observation[0])) {
      return CheckObservation(kName, observation, 1);
    }
    const double x = observation[0];
    ++n_;
    mean_ += (x - mean_) / static_cast<double>(n_);
    sum_ += x - mean_ - options_.delta;
    min_sum_ = std::min(min_sum_, sum_);
    DriftDecision decision;
    decision.statistic = sum_ - min_sum_;
    decision.threshold = options_.threshold;
    if (n_ >= options_.min_observations && decision.statistic > options_.threshold) {
      decision.level = DriftLevel::kDrift;
      Reset();
    }
    return decision;
  }

  void Reset() override {
    n_ = 0;
    mean_ = 0.0;
    sum_ = 0.0;
    min_sum_ = 0.0;
  }
  int64_t observations() const override { return n_; }

  std::string SaveState() const override {
    return PackState(kName, 1, {}, {mean_, sum_, min_sum_}, {static_cast<uint64_t>(n_)});
  }
  absl::Status RestoreState(std::string_view blob) override {
    absl::StatusOr<drift_internal::UnpackedState> state = UnpackState(blob, kName, 1, {});
    if (!state.ok()) return state.status();
    if (state->values.size() != 3 || state->counts.size() != 1) {
      return StateError(kName, "expected 3 values and 1 count");
    }
    if (state->values[2] > 0.0 || state->values[2] > state->values[1]) {
      return StateError(kName, "the running minimum exceeds the cumulative sum");
    }
    mean_ = state->values[0];
    sum_ = state->values[1];
    min_sum_ = state->values[2];
    n_ = static_cast<int64_t>(state->counts[0]);
    return absl::OkStatus();
  }

 private:
  const PageHinkleyOptions options_;
  int64_t n_ = 0;
  double mean_ = 0.0;
  double sum_ = 0.0;
  double min_sum_ = 0.0;
};

absl::StatusOr<std::unique_ptr<DriftDetector>> CreatePageHinkley(const DriftDetectorOptions& o) {
  const PageHinkleyOptions& p = o.page_hinkley;
  if (!(p.delta >= 0.0) || !std::isfinite(p.delta)) {
    return FieldError("page_hinkley.delta", ">= 0", p.delta);
  }
  if (!(p.threshold > 0.0) || !std::isfinite(p.threshold)) {
    return FieldError("page_hinkley.threshold", "> 0", p.threshold);
  }
  if (p.min_observations < 1) {
    return FieldError("page_hinkley.min_observations", ">= 1", p.min_observations);
  }
  return std::make_unique<PageHinkley>(p);
}

// --- ddm --------------------------------------------------------------------
//
// Gama et al. 2004: with p the error rate over the stream and
// s = sqrt(p(1-p)/n), remember the (p, s) that minimized p + s; warn when
// p + s > p_min + warning_level * s_min, signal drift (and restart) when
// p + s > p_min + drift_level * s_min. One deviation from the paper: p in s
// is the smoothed (errors + 0.5) / (n + 1), so an error-free start does not
// leave s_min = 0 (which would make the first error a drift).
class Ddm final : public DriftDetector {
 public:
  static constexpr std::string_view kName = "ddm";

  explicit Ddm(const DdmOptions& options) : options_(options) {}

  std::string_view name() const override { return kName; }
  size_t observation_size() const override { return 1; }
  bool uses_reference() const override { return false; }
  bool ready() const override { return true; }
  absl::Status SetReference(std::span<const float>) override {
    return absl::FailedPreconditionError("ddm learns its baseline from the stream");
  }

  absl::StatusOr<DriftDecision> Add(std::span<const float> observation) override {
    if (observation.size() != 1 || !(observation[0] == 0.0f || observation[0] == 1.0f)) {
      if (observation.size() == 1 && std::isfinite(observation[0])) {
        return absl::InvalidArgumentError(
            absl::StrCat("ddm: observations are 0/1 errors, got ", observation[0]));
      }
      return CheckObservation(kName, observation, 1);
    }
    ++n_;
    errors_ += observation[0] == 1.0f ? 1 : 0;
    DriftDecision decision;
    if (n_ < options_.min_observations) return decision;
    const double n = static_cast<double>(n_);
    const double p = static_cast<double>(errors_) / n;
    const double smoothed = (static_cast<double>(errors_) + 0.5) / (n + 1.0);
    const double s = std::sqrt(smoothed * (1.0 - smoothed) / n);
    if (p + s < p_min_ + s_min_) {
      p_min_ = p;
      s_min_ = s;
    }
    decision.statistic = p + s;
    decision.threshold = p_min_ + options_.drift_level * s_min_;
    if (decision.statistic > decision.threshold) {
      decision.level = DriftLevel::kDrift;
      Reset();
    } else if (decision.statistic > p_min_ + options_.warning_level * s_min_) {
      decision.level = DriftLevel::kWarning;
    }
    return decision;
  }

  void Reset() override {
    n_ = 0;
    errors_ = 0;
    p_min_ = std::numeric_limits<double>::max();
    s_min_ = std::numeric_limits<double>::max();
  }
  int64_t observations() const override { return n_; }

  std::string SaveState() const override {
    const bool has_min = n_ >= options_.min_observations;
    return PackState(kName, 1, {}, {has_min ? p_min_ : 0.0, has_min ? s_min_ : 0.0},
                     {static_cast<uint64_t>(n_), static_cast<uint64_t>(errors_), has_min});
  }
  absl::Status RestoreState(std::string_view blob) override {
    absl::StatusOr<drift_internal::UnpackedState> state = UnpackState(blob, kName, 1, {});
    if (!state.ok()) return state.status();
    if (state->values.size() != 2 || state->counts.size() != 3) {
      return StateError(kName, "expected 2 values and 3 counts");
    }
    if (state->counts[1] > state->counts[0])
      return StateError(kName, "more errors than observations");
    if (state->counts[2] > 1) return StateError(kName, "bad minimum flag");
    const bool has_min = state->counts[2] == 1;
    if (has_min != (static_cast<int64_t>(state->counts[0]) >= options_.min_observations)) {
      return StateError(kName, "minimum flag disagrees with the observation count");
    }
    n_ = static_cast<int64_t>(state->counts[0]);
    errors_ = static_cast<int64_t>(state->counts[1]);
    p_min_ = has_min ? state->values[0] : std::numeric_limits<double>::max();
    s_min_ = has_min ? state->values[1] : std::numeric_limits<double>::max();
    return absl::OkStatus();
  }

 private:
  const DdmOptions options_;
  int64_t n_ = 0;
  int64_t errors_ = 0;
  double p_min_ = std::numeric_limits<double>::max();
  double s_min_ = std::numeric_limits<double>::max();
};

absl::StatusOr<std::unique_ptr<DriftDetector>> CreateDdm(const DriftDetectorOptions& o) {
  const DdmOptions& d = o.ddm;
  if (d.min_observations < 1) return FieldError("ddm.min_observations", ">= 1", d.min_observations);
  if (!(d.warning_level > 0.0) || !std::isfinite(d.warning_level)) {
    return FieldError("ddm.warning_level", "> 0", d.warning_level);
  }
  if (!(d.drift_level >= d.warning_level) || !std::isfinite(d.drift_level)) {
    return FieldError("ddm.drift_level", ">= ddm.warning_level", d.drift_level);
  }
  return std::make_unique<Ddm>(d);
}

// --- confidence ---------------------------------------------------------------
//
// One-sided CUSUM (Page 1954) on the standardized drop of the top-class
// probability: g_t = max(0, g_{t-1} + (mu0 - c_t) / sigma0 - slack), alarm
// when g_t > threshold. mu0 and sigma0 come from SetReference (confidences on
// reference data under the current model) or from a warm-up on the stream.
class ConfidenceMonitor final : public DriftDetector {
 public:
  static constexpr std::string_view kName = "confidence";

  explicit ConfidenceMonitor(const ConfidenceOptions& options) : options_(options) {}

  std::string_view name() const override { return kName; }
  size_t observation_size() const override { return 1; }
  bool uses_reference() const override { return true; }
  bool ready() const override { return true; }

  absl::Status SetReference(std::span<const float> rows) override {
    if (absl::Status s = drift_internal::CheckReference(kName, rows, 1); !s.ok()) return s;
    double mean = 0.0, m2 = 0.0;
    for (size_t i = 0; i < rows.size(); ++i) {
      const double d = rows[i] - mean;
      mean += d / static_cast<double>(i + 1);
      m2 += d * (rows[i] - mean);
    }
    SetBaseline(mean, std::sqrt(m2 / static_cast<double>(rows.size() - 1)));
    warm_n_ = 0;
    warm_mean_ = warm_m2_ = 0.0;
    Reset();
    return absl::OkStatus();
  }

  absl::StatusOr<DriftDecision> Add(std::span<const float> observation) override {
    if (observation.size() != 1 || !std::isfinite(observation[0])) {
      return CheckObservation(kName, observation, 1);
    }
    const double c = observation[0];
    ++n_;
    DriftDecision decision;
    if (!has_reference_) {
      ++warm_n_;
      const double d = c - warm_mean_;
      warm_mean_ += d / static_cast<double>(warm_n_);
      warm_m2_ += d * (c - warm_mean_);
      if (warm_n_ >= options_.warmup) {
        SetBaseline(warm_mean_, std::sqrt(warm_m2_ / static_cast<double>(warm_n_ - 1)));
      }
      return decision;
    }
    g_ = std::max(0.0, g_ + (mean_ - c) / stddev_ - options_.slack);
    decision.statistic = g_;
    decision.threshold = options_.threshold;
    if (g_ > options_.threshold) {
      decision.level = DriftLevel::kDrift;
      Reset();
    }
    return decision;
  }

  void Reset() override {
    n_ = 0;
    g_ = 0.0;
  }
  int64_t observations() const override { return n_; }

  std::string SaveState() const override {
    return PackState(kName, 1, {}, {mean_, stddev_, g_, warm_mean_, warm_m2_},
                     {static_cast<uint64_t>(n_), static_cast<uint64_t>(warm_n_), has_reference_});
  }
  absl::Status RestoreState(std::string_view blob) override {
    absl::StatusOr<drift_internal::UnpackedState> state = UnpackState(blob, kName, 1, {});
    if (!state.ok()) return state.status();
    if (state->values.size() != 5 || state->counts.size() != 3) {
      return StateError(kName, "expected 5 values and 3 counts");
    }
    const auto& v = state->values;
    if (state->counts[2] > 1) return StateError(kName, "bad reference flag");
    if (state->counts[2] == 1 && !(v[1] >= options_.min_stddev)) {
      return StateError(kName, "reference standard deviation below min_stddev");
    }
    if (v[2] < 0.0 || v[4] < 0.0) return StateError(kName, "negative CUSUM or variance sum");
    mean_ = v[0];
    stddev_ = v[1];
    g_ = v[2];
    warm_mean_ = v[3];
    warm_m2_ = v[4];
    n_ = static_cast<int64_t>(state->counts[0]);
    warm_n_ = static_cast<int64_t>(state->counts[1]);
    has_reference_ = state->counts[2] == 1;
    return absl::OkStatus();
  }

 private:
  void SetBaseline(double mean, double stddev) {
    mean_ = mean;
    stddev_ = std::max(stddev, options_.min_stddev);
    has_reference_ = true;
  }

  const ConfidenceOptions options_;
  bool has_reference_ = false;
  double mean_ = 0.0;
  double stddev_ = 1.0;
  double g_ = 0.0;
  int64_t n_ = 0;
  int64_t warm_n_ = 0;
  double warm_mean_ = 0.0;
  double warm_m2_ = 0.0;
};

absl::StatusOr<std::unique_ptr<DriftDetector>> CreateConfidence(const DriftDetectorOptions& o) {
  const ConfidenceOptions& c = o.confidence;
  if (!(c.slack >= 0.0) || !std::isfinite(c.slack)) {
    return FieldError("confidence.slack", ">= 0", c.slack);
  }
  if (!(c.threshold > 0.0) || !std::isfinite(c.threshold)) {
    return FieldError("confidence.threshold", "> 0", c.threshold);
  }
  if (c.warmup < 2) return FieldError("confidence.warmup", ">= 2", c.warmup);
  if (!(c.min_stddev > 0.0) || !std::isfinite(c.min_stddev)) {
    return FieldError("confidence.min_stddev", "> 0", c.min_stddev);
  }
  return std::make_unique<ConfidenceMonitor>(c);
}

[[maybe_unused]] const bool kPageHinkley = DriftDetectors().Add("page-hinkley", CreatePageHinkley);
[[maybe_unused]] const bool kDdm = DriftDetectors().Add("ddm", CreateDdm);
[[maybe_unused]] const bool kConfidence = DriftDetectors().Add("confidence", CreateConfidence);

}  // namespace
}  // namespace fedge::client
