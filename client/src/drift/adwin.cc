// ADWIN2 (Bifet & Gavalda 2007, "Learning from time-changing data with
// adaptive windowing"): a window of recent values kept as an exponential
// histogram (rows of at most max_buckets buckets; a bucket in row i summarizes
// 2^i values by their sum and sum of squared deviations), so a window of n
// values costs O(max_buckets * log n) memory. Every `clock` values the window
// is tested at each bucket boundary: when the means of an older part W0 and
// the newer rest W1 differ by more than
//   eps_cut = sqrt(2/m * var_W * ln(2/delta')) + 2/(3m) * ln(2/delta'),
//   m = 1 / (1/n0 + 1/n1),  delta' = delta / ln(n)
// (the variance-based bound of the paper's ADWIN2 section), the oldest bucket
// is dropped and the test repeats. A cut is a change; with increase_only it is
// reported as drift only when the newer mean is the higher one.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "detector_state.h"
#include "fedge/client/drift_detector.h"

namespace fedge::client {
namespace {

using drift_internal::CheckObservation;
using drift_internal::StateError;

struct Bucket {
  double total = 0.0;     // sum of the values (scaled to [0, 1])
  double variance = 0.0;  // sum of squared deviations from their mean
};

// Merges b (n values) into a (n values).
Bucket Merge(const Bucket& a, const Bucket& b, double n) {
  const double diff = a.total / n - b.total / n;
  return Bucket{a.total + b.total, a.variance + b.variance + n * n / (2.0 * n) * diff * diff};
}

class Adwin final : public DriftDetector {
 public:
  static constexpr std::string_view kName = "adwin";

  explicit Adwin(const AdwinOptions& options) : options_(options) {}

  std::string_view name() const override { return kName; }
  size_t observation_size() const override { return 1; }
  bool uses_reference() const override { return false; }
  bool ready() const override { return true; }
  absl::Status SetReference(std::span<const float>) override {
    return absl::FailedPreconditionError("adwin learns its baseline from the stream");
  }

  absl::StatusOr<DriftDecision> Add(std::span<const float> observation) override {
    if (observation.size() != 1 || !std::isfinite(observation[0])) {
      return CheckObservation(kName, observation, 1);
    }
    const double x = std::clamp(observation[0] / options_.value_range, 0.0, 1.0);
    Insert(x);
    DriftDecision decision;
    if (++ticks_ % options_.clock != 0 || width_ < options_.min_observations) return decision;
    ticks_ = 0;
    bool rose = false;
    double gap = 0.0, bound = 0.0;
    const bool cut = Cut(&rose, &gap, &bound);
    decision.statistic = gap;
    decision.threshold = bound;
    if (cut && (rose || !options_.increase_only)) decision.level = DriftLevel::kDrift;
    return decision;
  }

  void Reset() override {
    rows_.clear();
    width_ = 0;
    total_ = variance_ = 0.0;
    ticks_ = 0;
  }
  int64_t observations() const override { return width_; }

  std::string SaveState() const override {
    std::vector<double> values = {total_, variance_};
    std::vector<uint64_t> counts = {static_cast<uint64_t>(width_), static_cast<uint64_t>(ticks_)};
    for (const std::vector<Bucket>& row : rows_) {
      counts.push_back(row.size());
      for (const Bucket& b : row) {
        values.push_back(b.total);
        values.push_back(b.variance);
      }
    }
    return drift_internal::PackState(kName, 1, Shape(), values, counts);
  }

  absl::Status RestoreState(std::string_view blob) override {
    absl::StatusOr<drift_internal::UnpackedState> state =
        drift_internal::UnpackState(blob, kName, 1, Shape());
    if (!state.ok()) return state.status();
    const auto& counts = state->counts;
    const auto& values = state->values;
    if (counts.size() < 2 || values.size() < 2) return StateError(kName, "truncated");
    std::vector<std::vector<Bucket>> rows;
    size_t next = 2;
    uint64_t width = 0;
    for (size_t r = 2; r < counts.size(); ++r) {
      if (counts[r] > static_cast<uint64_t>(options_.max_buckets) || r - 2 >= 62) {
        return StateError(kName, absl::StrCat("row ", r - 2, " is too long or too deep"));
      }
      std::vector<Bucket>& row = rows.emplace_back();
      for (uint64_t b = 0; b < counts[r]; ++b) {
        if (next + 1 >= values.size()) return StateError(kName, "fewer buckets than rows claim");
        const double size = std::ldexp(1.0, static_cast<int>(r - 2));
        if (values[next] < 0.0 || values[next] > size || values[next + 1] < 0.0) {
          return StateError(kName, absl::StrCat("bucket ", b, " of row ", r - 2, " is invalid"));
        }
        row.push_back(Bucket{values[next], values[next + 1]});
        next += 2;
        width += uint64_t{1} << (r - 2);
      }
    }
    if (next != values.size()) return StateError(kName, "more buckets than rows claim");
    if (width != counts[0]) return StateError(kName, "the buckets do not add up to the width");
    if (counts[1] >= static_cast<uint64_t>(options_.clock)) return StateError(kName, "bad clock");
    rows_ = std::move(rows);
    width_ = static_cast<int64_t>(counts[0]);
    ticks_ = static_cast<int>(counts[1]);
    total_ = values[0];
    variance_ = values[1];
    return absl::OkStatus();
  }

 private:
  std::vector<uint64_t> Shape() const { return {static_cast<uint64_t>(options_.max_buckets)}; }

  void Insert(double x) {
    if (width_ > 0) {
      const double mean = total_ / static_cast<double>(width_);
      variance_ +=
          static_cast<double>(width_) / static_cast<double>(width_ + 1) * (x - mean) * (x - mean);
    }
    ++width_;
    total_ += x;
    if (rows_.empty()) rows_.emplace_back();
    rows_[0].push_back(Bucket{x, 0.0});
    // Rows are ordered oldest first; merge the two oldest of a full row.
    for (size_t r = 0; r < rows_.size(); ++r) {
      if (rows_[r].size() <= static_cast<size_t>(options_.max_buckets)) break;
      const Bucket merged = Merge(rows_[r][0], rows_[r][1], std::ldexp(1.0, static_cast<int>(r)));
      rows_[r].erase(rows_[r].begin(), rows_[r].begin() + 2);
      if (r + 1 == rows_.size()) rows_.emplace_back();
      rows_[r + 1].push_back(merged);
    }
  }

  // Drops the oldest bucket (in the highest non-empty row).
  void DropOldest() {
    while (!rows_.empty() && rows_.back().empty()) rows_.pop_back();
    if (rows_.empty()) return;
    const int r = static_cast<int>(rows_.size()) - 1;
    const Bucket b = rows_.back().front();
    rows_.back().erase(rows_.back().begin());
    const double nb = std::ldexp(1.0, r);
    const double n = static_cast<double>(width_);
    const double n_rest = n - nb;
    if (n_rest <= 0.0) {
      width_ = 0;
      total_ = variance_ = 0.0;
    } else {
      const double diff = b.total / nb - (total_ - b.total) / n_rest;
      variance_ = std::max(0.0, variance_ - b.variance - nb * n_rest / n * diff * diff);
      total_ -= b.total;
      width_ -= static_cast<int64_t>(nb);
    }
    while (!rows_.empty() && rows_.back().empty()) rows_.pop_back();
  }

  // Tests every boundary, dropping old buckets while a cut is found. Returns
  // whether any cut happened; `rose` tells whether the newer mean was higher
  // at the first cut; `gap`/`bound` are the |mean difference| and eps_cut at
  // the first cut, or at the boundary closest to one when none was found.
  bool Cut(bool* rose, double* gap, double* bound) {
    bool any = false;
    double best_margin = -std::numeric_limits<double>::infinity();
    for (bool again = true; again && width_ > 1;) {
      again = false;
      const double n = static_cast<double>(width_);
      const double var = variance_ / n;
      const double log_term = std::log(2.0 * std::log(n) / options_.delta);
      double n0 = 0.0, sum0 = 0.0;
      // Oldest buckets first: highest row, then within a row oldest first.
      for (int r = static_cast<int>(rows_.size()) - 1; r >= 0 && !again; --r) {
        const double size = std::ldexp(1.0, r);
        for (size_t b = 0; b < rows_[r].size(); ++b) {
          n0 += size;
          sum0 += rows_[r][b].total;
          const double n1 = n - n0;
          if (n1 < 5.0 || n0 < 5.0) continue;
          const double mean0 = sum0 / n0, mean1 = (total_ - sum0) / n1;
          const double m = 1.0 / (1.0 / n0 + 1.0 / n1);
          const double eps = std::sqrt(2.0 / m * var * log_term) + 2.0 / (3.0 * m) * log_term;
          const double diff = std::abs(mean1 - mean0);
          if (!any && diff - eps > best_margin) {
            best_margin = diff - eps;
            *gap = diff;
            *bound = eps;
          }
          if (diff > eps) {
            if (!any) *rose = mean1 > mean0;
            any = again = true;
            DropOldest();
            break;
          }
        }
      }
    }
    return any;
  }

  const AdwinOptions options_;
  std::vector<std::vector<Bucket>> rows_;  // rows_[i]: buckets of 2^i values, oldest first
  int64_t width_ = 0;
  double total_ = 0.0;
  double variance_ = 0.0;  // sum of squared deviations over the window
  int ticks_ = 0;
};

absl::Status FieldError(std::string_view field, std::string_view requirement, double value) {
  return absl::InvalidArgumentError(absl::StrCat("DriftDetectorOptions.adwin.", std::string(field),
                                                 " must be ", std::string(requirement), ", got ",
                                                 value));
}

absl::StatusOr<std::unique_ptr<DriftDetector>> CreateAdwin(const DriftDetectorOptions& o) {
  const AdwinOptions& a = o.adwin;
  if (!(a.delta > 0.0 && a.delta < 1.0)) return FieldError("delta", "in (0, 1)", a.delta);
  if (a.max_buckets < 2) return FieldError("max_buckets", ">= 2", a.max_buckets);
  if (a.clock < 1) return FieldError("clock", ">= 1", a.clock);
  if (a.min_observations < 1) return FieldError("min_observations", ">= 1", a.min_observations);
  if (!(a.value_range > 0.0) || !std::isfinite(a.value_range)) {
    return FieldError("value_range", "> 0", a.value_range);
  }
  return std::make_unique<Adwin>(a);
}

[[maybe_unused]] const bool kAdwin = DriftDetectors().Add("adwin", CreateAdwin);

}  // namespace
}  // namespace fedge::client
