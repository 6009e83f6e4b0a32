#include "fedge/privacy/secagg/fixed_point.h"

#include <cmath>
#include <cstdlib>
#include <random>

#include "absl/strings/str_cat.h"

namespace fedge::privacy::secagg {

absl::StatusOr<FixedPointCodec> FixedPointCodec::Create(const FixedPointOptions& options) {
  constexpr const char* kOp = "FixedPointCodec::Create";
  if (!std::isfinite(options.clip_bound) || options.clip_bound <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": clip_bound must be finite and > 0, got ", options.clip_bound));
  }
  constexpr int kMaxClients = (1 << 30) - 1;
  if (options.num_clients < 1 || options.num_clients > kMaxClients) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": num_clients must be in [1, 2^30 - 1], got ", options.num_clients));
  }
  if (options.headroom_bits < 1 || options.headroom_bits > 30) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": headroom_bits must be in [1, 30], got ", options.headroom_bits));
  }
  const double budget = std::ldexp(1.0, 31 - options.headroom_bits);
  if (!std::isfinite(options.scale) || options.scale < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": scale must be finite and >= 0, got ", options.scale));
  }
  if (options.scale > 0) {
    FixedPointOptions fixed = options;
    fixed.scale = 0.0;
    fixed.clip_bound = budget / (static_cast<double>(options.num_clients) * options.scale);
    absl::StatusOr<FixedPointCodec> codec = Create(fixed);
    if (!codec.ok()) return codec.status();
    // The derived scale equals options.scale up to one rounding; keep the
    // exact one so integers / scale encode back to those integers.
    codec->options_.scale = options.scale;
    codec->scale_ = options.scale;
    codec->max_magnitude_ =
        static_cast<std::int64_t>(std::floor(fixed.clip_bound * options.scale)) + 1;
    return codec;
  }
  const double scale = budget / (static_cast<double>(options.num_clients) * options.clip_bound);
  if (!std::isfinite(scale) || scale <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": clip_bound ", options.clip_bound, " gives an unusable scale"));
  }
  // floor(B * scale) + 1 bounds both rounding modes; B * scale <= 2^30.
  const auto max_magnitude = static_cast<std::int64_t>(std::floor(options.clip_bound * scale)) + 1;
  return FixedPointCodec(options, scale, max_magnitude);
}

absl::Status FixedPointCodec::Encode(std::span<const float> values, std::span<std::uint32_t> out,
                                     std::uint64_t rounding_seed) const {
  constexpr const char* kOp = "FixedPointCodec::Encode";
  if (values.size() != out.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": ", values.size(), " values but ", out.size(), " output slots"));
  }
  const double bound = options_.clip_bound;
  const bool stochastic = options_.rounding == FixedPointRounding::kStochastic;
  std::mt19937_64 engine(rounding_seed);
  for (std::size_t k = 0; k < values.size(); ++k) {
    double x = values[k];
    if (!std::isfinite(x)) {
      return absl::InvalidArgumentError(
          absl::StrCat(kOp, ": value at index ", k, " is not finite (", x, ")"));
    }
    if (std::abs(x) > bound) {
      if (!options_.clip_out_of_range) {
        return absl::InvalidArgumentError(
            absl::StrCat(kOp, ": value ", x, " at index ", k, " exceeds clip_bound ", bound));
      }
      x = std::copysign(bound, x);
    }
    const double scaled = x * scale_;
    double rounded;
    if (stochastic) {
      const double floor = std::floor(scaled);
      // Uniform in [0, 1) with 53 random bits.
      const double u = static_cast<double>(engine() >> 11) * 0x1.0p-53;
      rounded = floor + (u < scaled - floor ? 1.0 : 0.0);
    } else {
      rounded = std::round(scaled);
    }
    // |rounded| <= max_magnitude_ < 2^31: exact in int64, then two's
    // complement mod 2^32.
    out[k] = static_cast<std::uint32_t>(static_cast<std::int64_t>(rounded));
  }
  return absl::OkStatus();
}

absl::Status FixedPointCodec::DecodeSum(std::span<const std::uint32_t> sum, int num_summed,
                                        std::span<float> out) const {
  constexpr const char* kOp = "FixedPointCodec::DecodeSum";
  if (sum.size() != out.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": ", sum.size(), " sums but ", out.size(), " output slots"));
  }
  if (num_summed < 0 || num_summed > options_.num_clients) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": num_summed ", num_summed, " not in [0, num_clients = ", options_.num_clients, "]"));
  }
  const std::int64_t limit = static_cast<std::int64_t>(num_summed) * max_magnitude_;
  const double inverse_scale = 1.0 / scale_;
  for (std::size_t k = 0; k < sum.size(); ++k) {
    const auto value = static_cast<std::int32_t>(sum[k]);  // Two's complement (C++20).
    if (std::llabs(value) > limit) {
      return absl::DataLossError(absl::StrCat(
          kOp, ": coordinate ", k, " = ", value, " exceeds the bound ", limit, " for ", num_summed,
          " encodings (a mask not removed, or more encodings summed than declared)"));
    }
    out[k] = static_cast<float>(static_cast<double>(value) * inverse_scale);
  }
  return absl::OkStatus();
}

}  // namespace fedge::privacy::secagg
