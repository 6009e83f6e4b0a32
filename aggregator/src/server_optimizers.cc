#include "server_optimizers.h"

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "byte_codec.h"
#include "fedge/proto/status_macros.h"
#include "fold_kernels.h"

namespace fedge::aggregator {
namespace {

// The dimension part shared by every optimizer state: u8 has_dimension,
// u64 dimension.
void PutDimension(ByteWriter& writer, bool has_dimension, std::size_t dimension) {
  writer.PutU8(has_dimension ? 1 : 0);
  writer.PutU64(dimension);
}

struct DimensionState {
  bool has_dimension = false;
  std::uint64_t dimension = 0;
};

absl::StatusOr<DimensionState> ReadDimension(ByteReader& reader) {
  FEDGE_ASSIGN_OR_RETURN(const std::uint8_t has_dimension, reader.U8("has_dimension"));
  FEDGE_ASSIGN_OR_RETURN(const std::uint64_t dimension, reader.U64("dimension"));
  if (has_dimension > 1 || (has_dimension == 0 && dimension != 0)) {
    return reader.Invalid(absl::StrCat("has_dimension ", has_dimension, " with dimension ",
                                       dimension, " is inconsistent"));
  }
  return DimensionState{has_dimension == 1, dimension};
}

// Reads a state vector: `dimension` floats, all finite (and >= 0 if
// `non_negative`).
absl::StatusOr<std::vector<float>> ReadStateVector(ByteReader& reader, absl::string_view field,
                                                   std::uint64_t dimension, bool non_negative) {
  FEDGE_ASSIGN_OR_RETURN(std::vector<float> values, reader.Floats(field, dimension));
  for (const float value : values) {
    if (!std::isfinite(value) || (non_negative && value < 0.0f)) {
      return reader.Invalid(absl::StrCat("'", field, "' holds the invalid value ", value));
    }
  }
  return values;
}

class PlainServerStep final : public ServerOptimizer {
 public:
  explicit PlainServerStep(double learning_rate) : learning_rate_(learning_rate) {}

  // Layout after the header: u8 has_dimension, u64 dimension.
  std::string SerializeState() const override {
    ByteWriter writer(StateTag::kPlainServerStep);
    PutDimension(writer, has_dimension(), dimension());
    return std::move(writer).Finish();
  }

  absl::Status RestoreState(std::string_view serialized) override {
    ByteReader reader(serialized, "plain server step");
    FEDGE_RETURN_IF_ERROR(reader.ReadHeader(StateTag::kPlainServerStep));
    FEDGE_ASSIGN_OR_RETURN(const DimensionState state, ReadDimension(reader));
    FEDGE_RETURN_IF_ERROR(reader.ExpectEnd());
    RestoreDimension(state.has_dimension, state.dimension);
    return absl::OkStatus();
  }

 protected:
  void InitializeState(std::size_t) override {}

  void Step(std::span<const float> delta, std::span<float> global) override {
    for (std::size_t i = 0; i < global.size(); ++i) {
      global[i] = static_cast<float>(global[i] + learning_rate_ * delta[i]);
    }
  }

 private:
  double learning_rate_;
};

class MomentumServerStep final : public ServerOptimizer {
 public:
  MomentumServerStep(double learning_rate, double momentum)
      : learning_rate_(learning_rate), momentum_(momentum) {}

  // Layout after the header: u8 has_dimension, u64 dimension,
  // f32[dimension] velocity.
  std::string SerializeState() const override {
    ByteWriter writer(StateTag::kMomentumServerStep);
    PutDimension(writer, has_dimension(), dimension());
    writer.PutFloats(velocity_);
    return std::move(writer).Finish();
  }

  absl::Status RestoreState(std::string_view serialized) override {
    ByteReader reader(serialized, "FedAvgM server step");
    FEDGE_RETURN_IF_ERROR(reader.ReadHeader(StateTag::kMomentumServerStep));
    FEDGE_ASSIGN_OR_RETURN(const DimensionState state, ReadDimension(reader));
    FEDGE_ASSIGN_OR_RETURN(std::vector<float> velocity,
                           ReadStateVector(reader, "velocity", state.dimension, false));
    FEDGE_RETURN_IF_ERROR(reader.ExpectEnd());
    RestoreDimension(state.has_dimension, state.dimension);
    velocity_ = std::move(velocity);
    return absl::OkStatus();
  }

 protected:
  void InitializeState(std::size_t dimension) override { velocity_.assign(dimension, 0.0f); }

  void Step(std::span<const float> delta, std::span<float> global) override {
    for (std::size_t i = 0; i < global.size(); ++i) {
      const double v = momentum_ * velocity_[i] + delta[i];
      velocity_[i] = static_cast<float>(v);
      global[i] = static_cast<float>(global[i] + learning_rate_ * v);
    }
  }

 private:
  double learning_rate_;
  double momentum_;
  std::vector<float> velocity_;
};

absl::string_view VariantName(AdaptiveVariant variant) {
  switch (variant) {
    case AdaptiveVariant::kAdagrad:
      return "FedAdagrad";
    case AdaptiveVariant::kAdam:
      return "FedAdam";
    case AdaptiveVariant::kYogi:
      return "FedYogi";
  }
  return "unknown";
}

class AdaptiveServerStep final : public ServerOptimizer {
 public:
  AdaptiveServerStep(AdaptiveVariant variant, double learning_rate, double beta1, double beta2,
                     double tau)
      : variant_(variant), learning_rate_(learning_rate), beta1_(beta1), beta2_(beta2), tau_(tau) {}

  // Layout after the header: u8 variant, u8 has_dimension, u64 dimension,
  // f32[dimension] m, f32[dimension] v.
  std::string SerializeState() const override {
    ByteWriter writer(StateTag::kAdaptiveServerStep);
    writer.PutU8(static_cast<std::uint8_t>(variant_));
    PutDimension(writer, has_dimension(), dimension());
    writer.PutFloats(m_);
    writer.PutFloats(v_);
    return std::move(writer).Finish();
  }

  absl::Status RestoreState(std::string_view serialized) override {
    ByteReader reader(serialized, absl::StrCat(VariantName(variant_), " server step"));
    FEDGE_RETURN_IF_ERROR(reader.ReadHeader(StateTag::kAdaptiveServerStep));
    FEDGE_ASSIGN_OR_RETURN(const std::uint8_t variant, reader.U8("variant"));
    if (variant != static_cast<std::uint8_t>(variant_)) {
      return reader.Invalid(absl::StrCat("written by adaptive variant ", variant, " (",
                                         VariantName(static_cast<AdaptiveVariant>(variant)),
                                         "), not ", VariantName(variant_)));
    }
    FEDGE_ASSIGN_OR_RETURN(const DimensionState state, ReadDimension(reader));
    FEDGE_ASSIGN_OR_RETURN(std::vector<float> m,
                           ReadStateVector(reader, "m", state.dimension, false));
    FEDGE_ASSIGN_OR_RETURN(std::vector<float> v,
                           ReadStateVector(reader, "v", state.dimension, true));
    FEDGE_RETURN_IF_ERROR(reader.ExpectEnd());
    RestoreDimension(state.has_dimension, state.dimension);
    m_ = std::move(m);
    v_ = std::move(v);
    return absl::OkStatus();
  }

 protected:
  void InitializeState(std::size_t dimension) override {
    m_.assign(dimension, 0.0f);
    v_.assign(dimension, static_cast<float>(tau_ * tau_));
  }

  void Step(std::span<const float> delta, std::span<float> global) override {
    for (std::size_t i = 0; i < global.size(); ++i) {
      const double d = delta[i];
      const double d2 = d * d;
      const double m = beta1_ * m_[i] + (1.0 - beta1_) * d;
      double v = v_[i];
      switch (variant_) {
        case AdaptiveVariant::kAdagrad:
          v += d2;
          break;
        case AdaptiveVariant::kAdam:
          v = beta2_ * v + (1.0 - beta2_) * d2;
          break;
        case AdaptiveVariant::kYogi: {
          const double gap = v - d2;
          const double sign = gap > 0.0 ? 1.0 : (gap < 0.0 ? -1.0 : 0.0);
          v -= (1.0 - beta2_) * d2 * sign;
          break;
        }
      }
      m_[i] = static_cast<float>(m);
      v_[i] = static_cast<float>(v);
      global[i] = static_cast<float>(global[i] + learning_rate_ * m / (std::sqrt(v) + tau_));
    }
  }

 private:
  AdaptiveVariant variant_;
  double learning_rate_;
  double beta1_;
  double beta2_;
  double tau_;
  std::vector<float> m_;
  std::vector<float> v_;
};

}  // namespace

absl::Status ServerOptimizer::Apply(std::span<const float> aggregated_delta,
                                    std::span<float> global) {
  if (aggregated_delta.size() != global.size()) {
    return absl::InvalidArgumentError(absl::StrCat("aggregated delta has ", aggregated_delta.size(),
                                                   " values but the global model has ",
                                                   global.size()));
  }
  if (has_dimension_ && global.size() != dimension_) {
    return absl::InvalidArgumentError(
        absl::StrCat("global model has ", global.size(), " parameters but earlier rounds had ",
                     dimension_, "; the dimension cannot change between rounds"));
  }
  if (MaxAbsBits(aggregated_delta.data(), aggregated_delta.size()) >= kNonFiniteAbsBits) {
    for (std::size_t i = 0; i < aggregated_delta.size(); ++i) {
      if (!std::isfinite(aggregated_delta[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "aggregated delta value at index ", i, " is not finite (", aggregated_delta[i], ")"));
      }
    }
  }
  if (!has_dimension_) {
    InitializeState(global.size());
    has_dimension_ = true;
    dimension_ = global.size();
  }
  Step(aggregated_delta, global);
  return absl::OkStatus();
}

std::unique_ptr<ServerOptimizer> NewPlainServerStep(double learning_rate) {
  return std::make_unique<PlainServerStep>(learning_rate);
}

std::unique_ptr<ServerOptimizer> NewMomentumServerStep(double learning_rate, double momentum) {
  return std::make_unique<MomentumServerStep>(learning_rate, momentum);
}

std::unique_ptr<ServerOptimizer> NewAdaptiveServerStep(AdaptiveVariant variant,
                                                       double learning_rate, double beta1,
                                                       double beta2, double tau) {
  return std::make_unique<AdaptiveServerStep>(variant, learning_rate, beta1, beta2, tau);
}

}  // namespace fedge::aggregator
