// Fixed-point encoding of float updates into Z_{2^32}, the group secure
// aggregation masks live in (see crypto.h for the protocol overview).
//
// Masks only cancel exactly in a finite group, so each client encodes its
// clipped update as integers mod 2^32 before masking, and the server decodes
// the unmasked SUM of the n encodings, read as two's complement int32.
//
// Scale and range. With per-coordinate bound B (values are clipped to
// [-B, B]), at most n encodings summed and `headroom_bits` h >= 1:
//
//     scale = 2^(31 - h) / (n * B)          (integer units per float unit)
//
// One coordinate encodes to q with |q| <= B * scale + 1 = 2^(31-h) / n + 1
// (the +1 is rounding), so a sum of m <= n encodings has
// |sum| <= 2^(31-h) + n < 2^31 as long as n < 2^30 (enforced): it never
// wraps, and int32 decoding is exact. h = 1 (the default) keeps one spare
// bit; larger h trades resolution (1/scale = n * B / 2^(31-h)) for room, e.g.
// for integer noise a distributed-DP mechanism adds after encoding.
//
// Rounding. kStochastic (default) rounds x * scale up with probability equal
// to its fractional part: unbiased, so errors average out across clients and
// rounds, |error| < 1/scale per coordinate per client. kDeterministic rounds
// to nearest (half away from zero): |error| <= 0.5/scale, but biased for
// values that repeat. Either way the decoded sum of n clients is within
// n / scale of the float sum (plus float rounding of the result).
//
// Out-of-range input. NaN or infinity is always INVALID_ARGUMENT. Finite
// values with |x| > B are clipped to +-B by default (an L2-clipped update with
// norm <= C has every coordinate within C, so B = C never clips); with
// `clip_out_of_range = false` they are INVALID_ARGUMENT instead.
//
// Thread safety: a FixedPointCodec is immutable after Create; all methods are
// const and may be called concurrently.
#ifndef FEDGE_PRIVACY_SECAGG_FIXED_POINT_H_
#define FEDGE_PRIVACY_SECAGG_FIXED_POINT_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge::privacy::secagg {

enum class FixedPointRounding {
  kStochastic,     // Unbiased; |error| < 1/scale.
  kDeterministic,  // Nearest, half away from zero; |error| <= 0.5/scale.
};

struct FixedPointOptions {
  // B: per-coordinate bound. REQUIRES: finite and > 0. Default: 1.
  double clip_bound = 1.0;
  // n: the most encodings that will be summed (cohort size).
  // REQUIRES: 1 <= num_clients < 2^30. Default: 1.
  int num_clients = 1;
  // h: spare bits above the worst-case sum. REQUIRES: 1 <= h <= 30. Default: 1.
  int headroom_bits = 1;
  // Default: kStochastic.
  FixedPointRounding rounding = FixedPointRounding::kStochastic;
  // Finite |x| > B: clip to +-B (true) or INVALID_ARGUMENT (false). Default: true.
  bool clip_out_of_range = true;
  // When > 0, the scale itself (integer units per float unit) instead of the
  // one derived from B; the bound then becomes 2^(31 - h) / (n * scale), the
  // largest magnitude the headroom allows, replacing `clip_bound`. For values
  // that are already integers divided by a known scale, e.g. updates noised by
  // an integer DP mechanism with scale gamma: with kDeterministic rounding they
  // encode to exactly those integers (|integer| < 2^23, float precision).
  // REQUIRES: finite, >= 0. Default: 0 (derive the scale from B).
  double scale = 0.0;
};

class FixedPointCodec {
 public:
  // INVALID_ARGUMENT naming the offending field when `options` breaks a
  // REQUIRES above.
  static absl::StatusOr<FixedPointCodec> Create(const FixedPointOptions& options);

  const FixedPointOptions& options() const { return options_; }
  // Integer units per float unit: 2^(31 - h) / (n * B).
  double scale() const { return scale_; }
  // Largest |q| a single encoded coordinate can take: floor(B * scale) + 1.
  std::int64_t max_encoded_magnitude() const { return max_magnitude_; }

  // out[k] = round(clip(values[k]) * scale) mod 2^32. `rounding_seed` seeds
  // stochastic rounding (ignored for kDeterministic); use a different seed
  // per client and round. Not cryptographic: rounding needs no secrecy.
  // INVALID_ARGUMENT on size mismatch, non-finite values, or (when not
  // clipping) values beyond the bound; `out` is unspecified after an error.
  absl::Status Encode(std::span<const float> values, std::span<std::uint32_t> out,
                      std::uint64_t rounding_seed = 0) const;

  // out[k] = int32(sum[k]) / scale, where `sum` is the mod-2^32 sum of
  // `num_summed` encodings (masks already removed).
  // INVALID_ARGUMENT on size mismatch or num_summed outside [0, n].
  // DATA_LOSS when a coordinate exceeds num_summed * max_encoded_magnitude():
  // the sum cannot come from num_summed honest encodings (typically a mask
  // that was not removed); `out` is unspecified after an error.
  absl::Status DecodeSum(std::span<const std::uint32_t> sum, int num_summed,
                         std::span<float> out) const;

 private:
  FixedPointCodec(const FixedPointOptions& options, double scale, std::int64_t max_magnitude)
      : options_(options), scale_(scale), max_magnitude_(max_magnitude) {}

  FixedPointOptions options_;
  double scale_;
  std::int64_t max_magnitude_;
};

}  // namespace fedge::privacy::secagg

#endif  // FEDGE_PRIVACY_SECAGG_FIXED_POINT_H_
