// The robust rules, which must see every update: O(n*d) memory.
//
//  * Coordinate-wise median (Yin et al. 2018, "Byzantine-Robust Distributed
//    Learning: Towards Optimal Statistical Rates"): per coordinate, the median
//    of the n values; for even n, the mean of the two middle values.
//  * Coordinate-wise trimmed mean (same paper): per coordinate, drop the
//    k = floor(trim_fraction * n) smallest and k largest values and average
//    the n - 2k left (at least one, since trim_fraction < 0.5).
//  * Krum / Multi-Krum (Blanchard et al. 2017, "Machine Learning with
//    Adversaries: Byzantine Tolerant Gradient Descent"): the score of update
//    i is the sum of its squared L2 distances to its n - f - 2 nearest other
//    updates; the krum_select updates with the lowest scores (ties broken by
//    arrival order) are averaged. Requires n > 2f + 2.
//
// All three are UNWEIGHTED, as in the papers: a client's weight (example
// count) is validated and reported in total_weight() but does not change the
// result, so a client cannot buy influence by claiming many examples.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "byte_codec.h"
#include "fedge/proto/status_macros.h"
#include "fold_kernels.h"
#include "update_accumulators.h"

namespace fedge::aggregator {
namespace {

constexpr absl::string_view kWhat = "robust-rule accumulator";

// Coordinates gathered per block when transposing updates into columns: the
// block (kColumnBlock * n floats) stays in cache while its columns are sorted.
constexpr std::size_t kColumnBlock = 64;

// Calls out[j] = reduce(column j) for every coordinate j, where a column is a
// scratch span holding the n values of coordinate j (reduce may reorder it).
template <typename Reduce>
void ReduceColumns(const std::vector<float>& updates, std::size_t n, std::span<float> out,
                   Reduce reduce) {
  const std::size_t d = out.size();
  std::vector<float> columns(kColumnBlock * n);
  for (std::size_t first = 0; first < d; first += kColumnBlock) {
    const std::size_t width = std::min(kColumnBlock, d - first);
    for (std::size_t r = 0; r < n; ++r) {
      const float* row = updates.data() + r * d + first;
      for (std::size_t c = 0; c < width; ++c) columns[c * n + r] = row[c];
    }
    for (std::size_t c = 0; c < width; ++c) {
      out[first + c] = reduce(std::span<float>(columns.data() + c * n, n));
    }
  }
}

float MedianOf(std::span<float> values) {
  const std::size_t n = values.size();
  const auto middle = values.begin() + n / 2;
  std::nth_element(values.begin(), middle, values.end());
  if (n % 2 == 1) return *middle;
  const float lower = *std::max_element(values.begin(), middle);
  return static_cast<float>((static_cast<double>(lower) + static_cast<double>(*middle)) / 2.0);
}

float TrimmedMeanOf(std::span<float> values, std::size_t trim) {
  const std::size_t n = values.size();
  if (trim > 0) {
    std::nth_element(values.begin(), values.begin() + trim, values.end());
    std::nth_element(values.begin() + trim, values.begin() + (n - trim), values.end());
  }
  double sum = 0.0;
  for (std::size_t i = trim; i < n - trim; ++i) sum += values[i];
  return static_cast<float>(sum / static_cast<double>(n - 2 * trim));
}

// Number of values dropped at each end. The tiny epsilon keeps products such
// as 0.29 * 100 = 28.999999999999996 from losing a whole update to rounding.
std::size_t TrimCount(double trim_fraction, std::size_t n) {
  return static_cast<std::size_t>(std::floor(trim_fraction * static_cast<double>(n) + 1e-9));
}

class StoredUpdatesAccumulator final : public UpdateAccumulator {
 public:
  StoredUpdatesAccumulator(const AggregationConfig& config, std::size_t dimension)
      : config_(config), dimension_(dimension) {}

  StoredUpdatesAccumulator(const AggregationConfig& config, std::size_t dimension,
                           std::vector<float> updates, std::vector<double> weights,
                           double total_weight)
      : config_(config),
        dimension_(dimension),
        updates_(std::move(updates)),
        weights_(std::move(weights)),
        total_weight_(total_weight) {}

  absl::Status Accumulate(std::span<const float> delta, double weight) override {
    FEDGE_RETURN_IF_ERROR(ValidateUpdate(delta, weight, dimension_).status());
    updates_.insert(updates_.end(), delta.begin(), delta.end());
    weights_.push_back(weight);
    total_weight_ += weight;
    return absl::OkStatus();
  }

  absl::Status MergeWith(UpdateAccumulator& other) override {
    if (&other == this) {
      return absl::InvalidArgumentError("cannot merge an accumulator into itself");
    }
    auto* stored = dynamic_cast<StoredUpdatesAccumulator*>(&other);
    if (stored == nullptr || !(stored->config_ == config_)) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot merge an accumulator of another kind or configuration into a ",
                       RuleName(config_.rule), " accumulator"));
    }
    if (stored->dimension_ != dimension_) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot merge a ", RuleName(config_.rule), " accumulator of dimension ",
                       stored->dimension_, " into one of dimension ", dimension_));
    }
    updates_.insert(updates_.end(), stored->updates_.begin(), stored->updates_.end());
    weights_.insert(weights_.end(), stored->weights_.begin(), stored->weights_.end());
    total_weight_ += stored->total_weight_;
    return absl::OkStatus();
  }

  absl::Status Aggregate(std::span<float> out) const override {
    if (out.size() != dimension_) {
      return absl::InvalidArgumentError(
          absl::StrCat("aggregate output has ", out.size(), " values, expected ", dimension_));
    }
    const std::size_t n = weights_.size();
    if (n == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          RuleName(config_.rule), " accumulator is empty: aggregate needs at least one update"));
    }
    switch (config_.rule) {
      case AggregationRule::kCoordinateMedian:
        ReduceColumns(updates_, n, out, MedianOf);
        return absl::OkStatus();
      case AggregationRule::kTrimmedMean: {
        const std::size_t trim = TrimCount(config_.trim_fraction, n);
        ReduceColumns(updates_, n, out,
                      [trim](std::span<float> column) { return TrimmedMeanOf(column, trim); });
        return absl::OkStatus();
      }
      case AggregationRule::kMultiKrum:
        return MultiKrum(out);
      case AggregationRule::kWeightedMean:
        break;
    }
    return absl::InternalError("stored-updates accumulator configured with a streaming rule");
  }

  // Layout after the header: u16 rule, f64 trim_fraction, u32 krum_byzantine,
  // u32 krum_select, u64 dimension, u64 count, f64 total_weight,
  // f64[count] weights, f32[count * dimension] updates (row-major).
  std::string Serialize() const override {
    ByteWriter writer(StateTag::kStoredUpdatesAccumulator);
    writer.PutU16(static_cast<std::uint16_t>(config_.rule));
    writer.PutF64(config_.trim_fraction);
    writer.PutU32(static_cast<std::uint32_t>(config_.krum_byzantine));
    writer.PutU32(static_cast<std::uint32_t>(config_.krum_select));
    writer.PutU64(dimension_);
    writer.PutU64(weights_.size());
    writer.PutF64(total_weight_);
    writer.PutDoubles(weights_);
    writer.PutFloats(updates_);
    return std::move(writer).Finish();
  }

  std::size_t dimension() const override { return dimension_; }
  std::size_t count() const override { return weights_.size(); }
  double total_weight() const override { return total_weight_; }
  bool streaming() const override { return false; }

 private:
  absl::Status MultiKrum(std::span<float> out) const {
    const std::size_t n = weights_.size();
    const std::uint64_t f = static_cast<std::uint64_t>(config_.krum_byzantine);
    if (n <= 2 * f + 2) {
      return absl::FailedPreconditionError(absl::StrCat("krum needs n > 2f + 2 = ", 2 * f + 2,
                                                        " updates for krum_byzantine f = ", f,
                                                        ", got n = ", n));
    }
    const std::size_t select = static_cast<std::size_t>(config_.krum_select);
    if (select > n) {
      return absl::FailedPreconditionError(
          absl::StrCat("krum_select = ", select, " exceeds the ", n, " updates accumulated"));
    }
    const std::size_t d = dimension_;
    std::vector<double> distance(n * n, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = i + 1; j < n; ++j) {
        const double dist = SquaredDistance(updates_.data() + i * d, updates_.data() + j * d, d);
        distance[i * n + j] = dist;
        distance[j * n + i] = dist;
      }
    }
    // n > 2f + 2 makes this >= f + 1 >= 1.
    const std::size_t neighbours = n - static_cast<std::size_t>(f) - 2;
    std::vector<double> scores(n);
    std::vector<double> others;
    others.reserve(n - 1);
    for (std::size_t i = 0; i < n; ++i) {
      others.clear();
      for (std::size_t j = 0; j < n; ++j) {
        if (j != i) others.push_back(distance[i * n + j]);
      }
      std::nth_element(others.begin(), others.begin() + (neighbours - 1), others.end());
      scores[i] = std::accumulate(others.begin(), others.begin() + neighbours, 0.0);
    }
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&scores](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });

    std::vector<double> mean(d, 0.0);
    for (std::size_t s = 0; s < select; ++s) {
      const float* row = updates_.data() + order[s] * d;
      for (std::size_t c = 0; c < d; ++c) mean[c] += row[c];
    }
    for (std::size_t c = 0; c < d; ++c) {
      out[c] = static_cast<float>(mean[c] / static_cast<double>(select));
    }
    return absl::OkStatus();
  }

  AggregationConfig config_;
  std::size_t dimension_;
  std::vector<float> updates_;  // count() rows of dimension_ floats
  std::vector<double> weights_;
  double total_weight_ = 0.0;
};

}  // namespace

std::unique_ptr<UpdateAccumulator> NewStoredUpdatesAccumulator(const AggregationConfig& config,
                                                               std::size_t dimension) {
  return std::make_unique<StoredUpdatesAccumulator>(config, dimension);
}

absl::StatusOr<std::unique_ptr<UpdateAccumulator>> RestoreStoredUpdatesAccumulator(
    const AggregationConfig& config, std::string_view serialized) {
  ByteReader reader(serialized, kWhat);
  FEDGE_RETURN_IF_ERROR(reader.ReadHeader(StateTag::kStoredUpdatesAccumulator));
  FEDGE_ASSIGN_OR_RETURN(const std::uint16_t rule, reader.U16("rule"));
  FEDGE_ASSIGN_OR_RETURN(const double trim_fraction, reader.F64("trim_fraction"));
  FEDGE_ASSIGN_OR_RETURN(const std::uint32_t krum_byzantine, reader.U32("krum_byzantine"));
  FEDGE_ASSIGN_OR_RETURN(const std::uint32_t krum_select, reader.U32("krum_select"));
  AggregationConfig stored;
  stored.rule = static_cast<AggregationRule>(rule);
  stored.trim_fraction = trim_fraction;
  stored.krum_byzantine = static_cast<int>(krum_byzantine);
  stored.krum_select = static_cast<int>(krum_select);
  if (!(stored == config)) {
    return reader.Invalid(
        absl::StrCat("written for rule ", RuleName(stored.rule), " (trim_fraction ", trim_fraction,
                     ", krum_byzantine ", krum_byzantine, ", krum_select ", krum_select,
                     "), but this strategy uses ", RuleName(config.rule), " (trim_fraction ",
                     config.trim_fraction, ", krum_byzantine ", config.krum_byzantine,
                     ", krum_select ", config.krum_select, ")"));
  }
  FEDGE_ASSIGN_OR_RETURN(const std::uint64_t dimension, reader.U64("dimension"));
  FEDGE_ASSIGN_OR_RETURN(const std::uint64_t count, reader.U64("count"));
  FEDGE_ASSIGN_OR_RETURN(const double total_weight, reader.F64("total_weight"));
  FEDGE_ASSIGN_OR_RETURN(std::vector<double> weights, reader.Doubles("weights", count));
  if (dimension != 0 && count > std::numeric_limits<std::uint64_t>::max() / dimension) {
    return reader.Invalid("count * dimension overflows");
  }
  FEDGE_ASSIGN_OR_RETURN(std::vector<float> updates, reader.Floats("updates", count * dimension));
  FEDGE_RETURN_IF_ERROR(reader.ExpectEnd());

  for (const double weight : weights) {
    if (!(weight > 0.0) || !std::isfinite(weight)) {
      return reader.Invalid(absl::StrCat("weight ", weight, " is not a finite number > 0"));
    }
  }
  if (!std::isfinite(total_weight) || total_weight < 0.0 || (count == 0) != (total_weight == 0)) {
    return reader.Invalid(
        absl::StrCat("total_weight ", total_weight, " is inconsistent with count ", count));
  }
  if (MaxAbsBits(updates.data(), updates.size()) >= kNonFiniteAbsBits) {
    return reader.Invalid("updates hold values that are not finite");
  }
  return std::make_unique<StoredUpdatesAccumulator>(config, dimension, std::move(updates),
                                                    std::move(weights), total_weight);
}

}  // namespace fedge::aggregator
