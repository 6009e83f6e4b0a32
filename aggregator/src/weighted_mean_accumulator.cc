// Streaming weighted mean: sum_k w_k * delta_k in one float buffer, total
// weight in double; Aggregate divides. O(d) memory for any number of updates.
//
// Each Accumulate makes two passes over the update: MaxAbsBits validates it
// (and measures its magnitude) before anything is written, then FoldScaled
// folds it. Validating first is what keeps a rejected update from leaving a
// partial fold behind.
//
// Overflow: the accumulator tracks an upper bound on max_i |sum[i]| that
// includes float rounding, and rejects (INVALID_ARGUMENT, state unchanged) an
// update or merge that could push a sum past the float range. So the buffer
// never holds an infinity, and one client sending huge finite values cannot
// turn a whole round into NaN.
#include <bit>
#include <cmath>
#include <limits>
#include <memory>
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

constexpr absl::string_view kWhat = "weighted-mean accumulator";
constexpr double kFloatMax = std::numeric_limits<float>::max();
// A fold rounds twice (product, sum), each by at most 2^-24 relative; the
// bound grows by this factor per fold or merge to cover both with margin.
constexpr double kRoundingSlack = 1.0 + 0x1p-20;

class WeightedMeanAccumulator final : public UpdateAccumulator {
 public:
  explicit WeightedMeanAccumulator(std::size_t dimension) : sum_(dimension, 0.0f) {}

  WeightedMeanAccumulator(std::vector<float> sum, std::size_t count, double total_weight,
                          double magnitude_bound)
      : sum_(std::move(sum)),
        count_(count),
        total_weight_(total_weight),
        magnitude_bound_(magnitude_bound) {}

  // Weights are folded as floats (exact for integer example counts up to
  // 2^24); total_weight() sums those same rounded weights, so Aggregate is an
  // exact weighted mean of the weights actually applied.
  absl::Status Accumulate(std::span<const float> delta, double weight) override {
    FEDGE_ASSIGN_OR_RETURN(const float max_abs, ValidateUpdate(delta, weight, sum_.size()));
    const float w = static_cast<float>(weight);
    if (!(w > 0.0f) || !std::isfinite(w)) {
      return absl::InvalidArgumentError(
          absl::StrCat("update weight ", weight,
                       " is outside the float range of the weighted-mean accumulator"));
    }
    const double bound =
        (magnitude_bound_ + static_cast<double>(w) * static_cast<double>(max_abs)) * kRoundingSlack;
    if (!(bound <= kFloatMax)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "update would overflow the float accumulator: weight * max|value| = ", w, " * ", max_abs,
          " on top of accumulated magnitude ", magnitude_bound_, " exceeds ", kFloatMax));
    }
    FoldScaled(sum_.data(), delta.data(), w, sum_.size());
    ++count_;
    total_weight_ += static_cast<double>(w);
    magnitude_bound_ = bound;
    return absl::OkStatus();
  }

  absl::Status MergeWith(UpdateAccumulator& other) override {
    if (&other == this) {
      return absl::InvalidArgumentError("cannot merge an accumulator into itself");
    }
    auto* mean = dynamic_cast<WeightedMeanAccumulator*>(&other);
    if (mean == nullptr) {
      return absl::InvalidArgumentError(
          "cannot merge an accumulator of another kind into a weighted-mean accumulator");
    }
    if (mean->sum_.size() != sum_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot merge a weighted-mean accumulator of dimension ", mean->sum_.size(),
                       " into one of dimension ", sum_.size()));
    }
    const double bound = (magnitude_bound_ + mean->magnitude_bound_) * kRoundingSlack;
    if (!(bound <= kFloatMax)) {
      return absl::InvalidArgumentError(
          absl::StrCat("merging would overflow the float accumulator: magnitudes ",
                       magnitude_bound_, " + ", mean->magnitude_bound_, " exceed ", kFloatMax));
    }
    AddInto(sum_.data(), mean->sum_.data(), sum_.size());
    count_ += mean->count_;
    total_weight_ += mean->total_weight_;
    magnitude_bound_ = bound;
    return absl::OkStatus();
  }

  absl::Status Aggregate(std::span<float> out) const override {
    if (out.size() != sum_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("aggregate output has ", out.size(), " values, expected ", sum_.size()));
    }
    if (count_ == 0) {
      return absl::FailedPreconditionError(
          "weighted-mean accumulator is empty: aggregate needs at least one update");
    }
    ScaleToFloat(sum_.data(), 1.0 / total_weight_, out.data(), sum_.size());
    return absl::OkStatus();
  }

  // Layout after the header: u64 dimension, u64 count, f64 total_weight,
  // f64 magnitude_bound, f32[dimension] sum. Size is independent of count.
  std::string Serialize() const override {
    ByteWriter writer(StateTag::kWeightedMeanAccumulator);
    writer.PutU64(sum_.size());
    writer.PutU64(count_);
    writer.PutF64(total_weight_);
    writer.PutF64(magnitude_bound_);
    writer.PutFloats(sum_);
    return std::move(writer).Finish();
  }

  std::size_t dimension() const override { return sum_.size(); }
  std::size_t count() const override { return count_; }
  double total_weight() const override { return total_weight_; }
  bool streaming() const override { return true; }

 private:
  std::vector<float> sum_;
  std::size_t count_ = 0;
  double total_weight_ = 0.0;
  // Upper bound on max_i |sum_[i]|, rounding included; <= kFloatMax.
  double magnitude_bound_ = 0.0;
};

}  // namespace

std::unique_ptr<UpdateAccumulator> NewWeightedMeanAccumulator(std::size_t dimension) {
  return std::make_unique<WeightedMeanAccumulator>(dimension);
}

absl::StatusOr<std::unique_ptr<UpdateAccumulator>> RestoreWeightedMeanAccumulator(
    std::string_view serialized) {
  ByteReader reader(serialized, kWhat);
  FEDGE_RETURN_IF_ERROR(reader.ReadHeader(StateTag::kWeightedMeanAccumulator));
  FEDGE_ASSIGN_OR_RETURN(const std::uint64_t dimension, reader.U64("dimension"));
  FEDGE_ASSIGN_OR_RETURN(const std::uint64_t count, reader.U64("count"));
  FEDGE_ASSIGN_OR_RETURN(const double total_weight, reader.F64("total_weight"));
  FEDGE_ASSIGN_OR_RETURN(const double magnitude_bound, reader.F64("magnitude_bound"));
  FEDGE_ASSIGN_OR_RETURN(std::vector<float> sum, reader.Floats("sum", dimension));
  FEDGE_RETURN_IF_ERROR(reader.ExpectEnd());

  if (!std::isfinite(total_weight) || total_weight < 0.0 || (count == 0) != (total_weight == 0)) {
    return reader.Invalid(
        absl::StrCat("total_weight ", total_weight, " is inconsistent with count ", count));
  }
  if (!(magnitude_bound >= 0.0 && magnitude_bound <= kFloatMax)) {
    return reader.Invalid(absl::StrCat("magnitude_bound ", magnitude_bound, " is out of range"));
  }
  const std::uint32_t max_bits = MaxAbsBits(sum.data(), sum.size());
  if (max_bits >= kNonFiniteAbsBits ||
      static_cast<double>(std::bit_cast<float>(max_bits)) > magnitude_bound) {
    return reader.Invalid("sum holds values that are not finite or exceed magnitude_bound");
  }
  return std::make_unique<WeightedMeanAccumulator>(std::move(sum), count, total_weight,
                                                   magnitude_bound);
}

}  // namespace fedge::aggregator
