// Quantization for fedge: IEEE binary16 conversion and int8 model artifacts.
// LibTorch-free.
//
// QuantizeArtifact turns an fp32 artifact (artifact.h) into an int8 one that a
// device downloads at about a quarter of the size; DecodeArtifact dequantizes
// it. Quantization is symmetric (zero points are all 0): q = round(x / scale)
// clamped to [-127, 127], x' = q * scale, so |x' - x| <= scale / 2 per value.
//   per channel: one scale per slice along axis 0 (output channels of conv
//                and linear weights), scale_c = max|x in slice c| / 127;
//   per tensor:  one scale for the whole tensor.
// Tensors of rank < 2 (biases, norm parameters) stay fp32: they are tiny
// (a few KB in the zoo's models) and carry error straight to the outputs.
#ifndef FEDGE_MODELS_QUANTIZATION_H_
#define FEDGE_MODELS_QUANTIZATION_H_

#include <bit>
#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "fedge/v1/model.pb.h"

namespace fedge::models {

// IEEE 754 binary32 -> binary16, round to nearest, ties to even. Handles
// subnormals (down to 2^-24), overflow to infinity (|x| >= 65520), infinities
// and NaN (stays a quiet NaN, sign kept). Inline so codec loops vectorize.
inline uint16_t FloatToHalf(float value);
// Exact binary16 -> binary32.
inline float HalfToFloat(uint16_t half);

struct QuantizeOptions {
  // Default: true. false gives one scale per tensor (INT8_PER_TENSOR).
  bool per_channel = true;
};

// The int8 version of `fp32` (every tensor TENSOR_ENCODING_FP32, dense or
// sparse): tensors of rank >= 2 become INT8_PER_CHANNEL (channel_axis 0) or
// INT8_PER_TENSOR, the others stay FP32; sparse tensors keep their mask. The header keeps version,
// model, metrics and created_at; its encoding becomes the int8 encoding used, the hash is
// recomputed and any signature is dropped (the content changed; sign the result again). DATA_LOSS
// if `fp32` fails VerifyArtifact; INVALID_ARGUMENT if a tensor is not fp32, its data does not match
// its shape, or it holds non-finite values.
absl::StatusOr<v1::ModelArtifact> QuantizeArtifact(const v1::ModelArtifact& fp32,
                                                   const QuantizeOptions& options);

// Implementation details follow.

inline uint16_t FloatToHalf(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) {
    // NaN: keep the top payload bits, force the quiet bit so it stays a NaN.
    return static_cast<uint16_t>(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu));
  }
  // 65520 = (2 - 2^-11) * 2^15 is halfway between 65504 (odd mantissa) and
  // 2^16, so it and everything above round to infinity.
  if (magnitude >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  if (magnitude < 0x38800000u) {
    // Below 2^-14: a binary16 subnormal m * 2^-24, or zero. 2^-25 itself is a
    // tie between 0 and 2^-24 and goes to the even 0.
    if (magnitude <= 0x33000000u) return sign;
    const uint32_t exponent = magnitude >> 23;  // 102..112
    const uint32_t mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - exponent;  // 14..24
    uint32_t m = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (m & 1u))) ++m;  // may carry into 2^-14: fine
    return static_cast<uint16_t>(sign | m);
  }
  // Normal: rebias the exponent (127 - 15 = 112), round away 13 mantissa bits.
  uint32_t h = (magnitude - 0x38000000u) >> 13;
  const uint32_t rest = magnitude & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry may reach infinity
  return static_cast<uint16_t>(sign | h);
}

inline float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1Fu;
  const uint32_t mantissa = half & 0x3FFu;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;  // exact
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

}  // namespace fedge::models

#endif  // FEDGE_MODELS_QUANTIZATION_H_
