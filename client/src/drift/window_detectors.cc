// Window detectors: ks and psi. Both summarize each feature by bins cut at
// the reference's quantiles (bins - 1 cut points, duplicates merged), hold the
// reference's bin counts and the current window's, and test when the window
// is full. Memory O(features * bins) whatever the stream's length; an
// observation costs one binary search per feature; a test costs
// O(features * bins) (+ a sort of the p-values for Benjamini-Hochberg).
//
// The KS statistic on bins is the largest CDF gap at the cut points: a lower
// bound on the exact statistic, so the test is conservative (Conover 1971
// discusses KS with grouped data).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "detector_state.h"
#include "fedge/client/drift_detector.h"

namespace fedge::client {
namespace {

using drift_internal::CheckObservation;
using drift_internal::StateError;

// Per-feature quantile bins with reference and window counts.
class BinnedWindow {
 public:
  BinnedWindow(size_t features, int bins) : features_(features), max_edges_(bins - 1) {}

  bool has_reference() const { return n_ref_ > 0; }
  size_t features() const { return features_; }
  int64_t n_ref() const { return n_ref_; }
  int64_t n_cur() const { return n_cur_; }
  int num_bins(size_t f) const { return num_edges_[f] + 1; }
  // Count of bin b of feature f in the reference / the current window.
  uint64_t ref(size_t f, int b) const { return ref_counts_[f * (max_edges_ + 1) + b]; }
  uint64_t cur(size_t f, int b) const { return cur_counts_[f * (max_edges_ + 1) + b]; }

  void SetReference(std::span<const float> rows) {
    const size_t n = rows.size() / features_;
    edges_.assign(features_ * max_edges_, 0.0f);
    num_edges_.assign(features_, 0);
    ref_counts_.assign(features_ * (max_edges_ + 1), 0);
    std::vector<float> column(n);
    for (size_t f = 0; f < features_; ++f) {
      for (size_t i = 0; i < n; ++i) column[i] = rows[i * features_ + f];
      std::sort(column.begin(), column.end());
      float* edges = &edges_[f * max_edges_];
      int count = 0;
      for (int k = 1; k <= max_edges_; ++k) {
        const size_t at = std::min(n - 1, (k * n) / (max_edges_ + 1));
        const float edge = column[at];
        if (count == 0 || edge > edges[count - 1]) edges[count++] = edge;
      }
      num_edges_[f] = count;
    }
    n_ref_ = static_cast<int64_t>(n);
    for (size_t i = 0; i < n; ++i) Count(rows.subspan(i * features_, features_), ref_counts_);
    ResetWindow();
  }

  void Add(std::span<const float> row) {
    Count(row, cur_counts_);
    ++n_cur_;
  }

  void ResetWindow() {
    cur_counts_.assign(features_ * (max_edges_ + 1), 0);
    n_cur_ = 0;
  }

  // Shape and flat state for serialization.
  void Save(std::vector<double>& values, std::vector<uint64_t>& counts) const {
    counts.push_back(static_cast<uint64_t>(n_ref_));
    counts.push_back(static_cast<uint64_t>(n_cur_));
    if (n_ref_ == 0) return;
    for (size_t f = 0; f < features_; ++f) {
      counts.push_back(static_cast<uint64_t>(num_edges_[f]));
      for (int e = 0; e < num_edges_[f]; ++e) values.push_back(edges_[f * max_edges_ + e]);
    }
    counts.insert(counts.end(), ref_counts_.begin(), ref_counts_.end());
    counts.insert(counts.end(), cur_counts_.begin(), cur_counts_.end());
  }

  // Validates everything before changing anything.
  absl::Status Restore(std::string_view detector, const std::vector<double>& values,
                       const std::vector<uint64_t>& counts, int64_t window) {
    if (counts.size() < 2) return StateError(detector, "truncated");
    const uint64_t n_ref = counts[0], n_cur = counts[1];
    if (n_ref == 0) {
      if (n_cur != 0 || counts.size() != 2 || !values.empty()) {
        return StateError(detector, "a window without a reference");
      }
      *this = BinnedWindow(features_, max_edges_ + 1);
      return absl::OkStatus();
    }
    if (n_cur >= static_cast<uint64_t>(window)) return StateError(detector, "window overfull");
    const size_t cells = features_ * (max_edges_ + 1);
    if (counts.size() != 2 + features_ + 2 * cells) {
      return StateError(detector, absl::StrCat("expected ", 2 + features_ + 2 * cells,
                                               " counts, got ", counts.size()));
    }
    BinnedWindow next(features_, max_edges_ + 1);
    next.edges_.assign(features_ * max_edges_, 0.0f);
    next.num_edges_.assign(features_, 0);
    size_t v = 0;
    for (size_t f = 0; f < features_; ++f) {
      const uint64_t ne = counts[2 + f];
      if (ne < 1 || ne > static_cast<uint64_t>(max_edges_) || v + ne > values.size()) {
        return StateError(detector, absl::StrCat("feature ", f, " has a bad cut-point count"));
      }
      for (uint64_t e = 0; e < ne; ++e, ++v) {
        if (e > 0 && !(values[v] > values[v - 1])) {
          return StateError(detector,
                            absl::StrCat("feature ", f, " cut points are not increasing"));
        }
        next.edges_[f * max_edges_ + e] = static_cast<float>(values[v]);
      }
      next.num_edges_[f] = static_cast<int>(ne);
    }
    if (v != values.size()) return StateError(detector, "more cut points than features claim");
    next.ref_counts_.assign(counts.begin() + 2 + features_, counts.begin() + 2 + features_ + cells);
    next.cur_counts_.assign(counts.begin() + 2 + features_ + cells, counts.end());
    for (size_t f = 0; f < features_; ++f) {
      uint64_t ref_sum = 0, cur_sum = 0;
      for (int b = 0; b <= max_edges_; ++b) {
        if (b > next.num_edges_[f] && (next.ref(f, b) != 0 || next.cur(f, b) != 0)) {
          return StateError(detector, absl::StrCat("feature ", f, " counts an unused bin"));
        }
        ref_sum += next.ref(f, b);
        cur_sum += next.cur(f, b);
      }
      if (ref_sum != n_ref || cur_sum != n_cur) {
        return StateError(detector, absl::StrCat("feature ", f, " counts do not add up"));
      }
    }
    next.n_ref_ = static_cast<int64_t>(n_ref);
    next.n_cur_ = static_cast<int64_t>(n_cur);
    *this = std::move(next);
    return absl::OkStatus();
  }

 private:
  void Count(std::span<const float> row, std::vector<uint64_t>& counts) const {
    for (size_t f = 0; f < features_; ++f) {
      const float* edges = &edges_[f * max_edges_];
      // Bin b holds values in (edge[b-1], edge[b]]; the last bin the rest.
      const int b =
          static_cast<int>(std::lower_bound(edges, edges + num_edges_[f], row[f]) - edges);
      ++counts[f * (max_edges_ + 1) + b];
    }
  }

  size_t features_;
  int max_edges_;
  std::vector<float> edges_;          // features x max_edges_
  std::vector<int> num_edges_;        // distinct cut points per feature
  std::vector<uint64_t> ref_counts_;  // features x (max_edges_ + 1)
  std::vector<uint64_t> cur_counts_;
  int64_t n_ref_ = 0;
  int64_t n_cur_ = 0;
};

// P(K > lambda) for the Kolmogorov distribution.
double KolmogorovSurvival(double lambda) {
  if (lambda < 0.2) return 1.0;
  double sum = 0.0;
  for (int k = 1; k <= 100; ++k) {
    const double term = std::exp(-2.0 * k * k * lambda * lambda);
    sum += (k % 2 == 1 ? term : -term);
    if (term < 1e-12) break;
  }
  return std::clamp(2.0 * sum, 0.0, 1.0);
}

// Shared shell of the two window detectors.
class WindowDetector : public DriftDetector {
 public:
  WindowDetector(std::string_view name, size_t features, int bins, int64_t window)
      : name_(name), bins_(bins), window_(window), data_(features, bins) {}

  std::string_view name() const override { return name_; }
  size_t observation_size() const override { return data_.features(); }
  bool uses_reference() const override { return true; }
  bool ready() const override { return data_.has_reference(); }

  absl::Status SetReference(std::span<const float> rows) override {
    if (absl::Status s = drift_internal::CheckReference(name_, rows, data_.features()); !s.ok()) {
      return s;
    }
    data_.SetReference(rows);
    return absl::OkStatus();
  }

  absl::StatusOr<DriftDecision> Add(std::span<const float> observation) override {
    if (absl::Status s = CheckObservation(name_, observation, data_.features()); !s.ok()) return s;
    if (!data_.has_reference()) {
      return absl::FailedPreconditionError(
          absl::StrCat(std::string(name_), ": set a reference before adding observations"));
    }
    data_.Add(observation);
    if (data_.n_cur() < window_) return DriftDecision{};
    DriftDecision decision = Test(data_);
    data_.ResetWindow();
    return decision;
  }

  void Reset() override {
    if (data_.has_reference()) data_.ResetWindow();
  }
  int64_t observations() const override { return data_.n_cur(); }

  std::string SaveState() const override {
    std::vector<double> values;
    std::vector<uint64_t> counts;
    data_.Save(values, counts);
    return drift_internal::PackState(name_, 1, Shape(), values, counts);
  }

  absl::Status RestoreState(std::string_view blob) override {
    absl::StatusOr<drift_internal::UnpackedState> state =
        drift_internal::UnpackState(blob, name_, 1, Shape());
    if (!state.ok()) return state.status();
    return data_.Restore(name_, state->values, state->counts, window_);
  }

 protected:
  virtual DriftDecision Test(const BinnedWindow& data) const = 0;

 private:
  std::vector<uint64_t> Shape() const {
    return {data_.features(), static_cast<uint64_t>(bins_), static_cast<uint64_t>(window_)};
  }

  std::string_view name_;
  int bins_;
  int64_t window_;
  BinnedWindow data_;
};

class KsDetector final : public WindowDetector {
 public:
  KsDetector(size_t features, const KsOptions& options)
      : WindowDetector("ks", features, options.bins, options.window),
        options_(options),
        benjamini_hochberg_(options.correction == "benjamini-hochberg") {}

 protected:
  DriftDecision Test(const BinnedWindow& data) const override {
    const double n = static_cast<double>(data.n_ref()), m = static_cast<double>(data.n_cur());
    const double ne = n * m / (n + m);
    const double sqrt_ne = std::sqrt(ne);
    const size_t d = data.features();
    p_values_.resize(d);
    for (size_t f = 0; f < d; ++f) {
      uint64_t ref_cum = 0, cur_cum = 0;
      double gap = 0.0;
      for (int b = 0; b + 1 < data.num_bins(f); ++b) {
        ref_cum += data.ref(f, b);
        cur_cum += data.cur(f, b);
        gap = std::max(
            gap, std::abs(static_cast<double>(ref_cum) / n - static_cast<double>(cur_cum) / m));
      }
      // Stephens' (1970) small-sample correction of the asymptotic law.
      p_values_[f] = KolmogorovSurvival((sqrt_ne + 0.12 + 0.11 / sqrt_ne) * gap);
    }
    double adjusted = 1.0;
    if (benjamini_hochberg_) {
      std::sort(p_values_.begin(), p_values_.end());
      for (size_t k = 0; k < d; ++k) {
        adjusted =
            std::min(adjusted, p_values_[k] * static_cast<double>(d) / static_cast<double>(k + 1));
      }
    } else {
      adjusted = std::min(
          1.0, *std::min_element(p_values_.begin(), p_values_.end()) * static_cast<double>(d));
    }
    DriftDecision decision;
    decision.statistic = adjusted;
    decision.threshold = options_.alpha;
    if (adjusted <= options_.alpha) decision.level = DriftLevel::kDrift;
    return decision;
  }

 private:
  const KsOptions options_;
  const bool benjamini_hochberg_;
  mutable std::vector<double> p_values_;  // scratch
};

class PsiDetector final : public WindowDetector {
 public:
  PsiDetector(size_t features, const PsiOptions& options)
      : WindowDetector("psi", features, options.bins, options.window), options_(options) {}

 protected:
  DriftDecision Test(const BinnedWindow& data) const override {
    const double n = static_cast<double>(data.n_ref()), m = static_cast<double>(data.n_cur());
    const double k = options_.pseudo_count;
    double total = 0.0;
    for (size_t f = 0; f < data.features(); ++f) {
      const double bins = data.num_bins(f);
      for (int b = 0; b < data.num_bins(f); ++b) {
        const double expected = (static_cast<double>(data.ref(f, b)) + k) / (n + k * bins);
        const double actual = (static_cast<double>(data.cur(f, b)) + k) / (m + k * bins);
        total += (actual - expected) * std::log(actual / expected);
      }
      if (options_.bias_correction) total -= (bins - 1.0) * (1.0 / n + 1.0 / m);
    }
    DriftDecision decision;
    decision.statistic = total / static_cast<double>(data.features());
    decision.threshold = options_.threshold;
    if (decision.statistic > options_.threshold) decision.level = DriftLevel::kDrift;
    return decision;
  }

 private:
  const PsiOptions options_;
};

absl::Status FieldError(std::string_view field, std::string_view requirement,
                        const std::string& value) {
  return absl::InvalidArgumentError(absl::StrCat("DriftDetectorOptions.", std::string(field),
                                                 " must be ", std::string(requirement), ", got ",
                                                 value));
}

absl::Status CheckFeatures(const DriftDetectorOptions& o) {
  if (o.features < 1)
    return FieldError("features", ">= 1 for ks and psi", absl::StrCat(o.features));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DriftDetector>> CreateKs(const DriftDetectorOptions& o) {
  if (absl::Status s = CheckFeatures(o); !s.ok()) return s;
  const KsOptions& k = o.ks;
  if (!(k.alpha > 0.0 && k.alpha < 1.0))
    return FieldError("ks.alpha", "in (0, 1)", absl::StrCat(k.alpha));
  if (k.correction != "bonferroni" && k.correction != "benjamini-hochberg") {
    return FieldError("ks.correction", "'bonferroni' or 'benjamini-hochberg'",
                      absl::StrCat("'", k.correction, "'"));
  }
  if (k.bins < 2 || k.bins > 4096)
    return FieldError("ks.bins", "in [2, 4096]", absl::StrCat(k.bins));
  if (k.window < 8) return FieldError("ks.window", ">= 8", absl::StrCat(k.window));
  return std::make_unique<KsDetector>(static_cast<size_t>(o.features), k);
}

absl::StatusOr<std::unique_ptr<DriftDetector>> CreatePsi(const DriftDetectorOptions& o) {
  if (absl::Status s = CheckFeatures(o); !s.ok()) return s;
  const PsiOptions& p = o.psi;
  if (!(p.threshold > 0.0) || !std::isfinite(p.threshold)) {
    return FieldError("psi.threshold", "> 0", absl::StrCat(p.threshold));
  }
  if (p.bins < 2 || p.bins > 4096)
    return FieldError("psi.bins", "in [2, 4096]", absl::StrCat(p.bins));
  if (p.window < 8) return FieldError("psi.window", ">= 8", absl::StrCat(p.window));
  if (!(p.pseudo_count > 0.0) || !std::isfinite(p.pseudo_count)) {
    return FieldError("psi.pseudo_count", "> 0", absl::StrCat(p.pseudo_count));
  }
  return std::make_unique<PsiDetector>(static_cast<size_t>(o.features), p);
}

[[maybe_unused]] const bool kKs = DriftDetectors().Add("ks", CreateKs);
[[maybe_unused]] const bool kPsi = DriftDetectors().Add("psi", CreatePsi);

}  // namespace
}  // namespace fedge::client
