// The vectorized inner loops of aggregation. fold_kernels.cc is compiled with
// -O3 (see strategies.cmake) so GCC auto-vectorizes every loop in it; the
// loops are written for that: raw __restrict pointers, no per-element
// branches, no floating-point reductions whose order the compiler must keep.
//
// All functions are pure over their arguments and thread-compatible.
#ifndef FEDGE_AGGREGATOR_SRC_FOLD_KERNELS_H_
#define FEDGE_AGGREGATOR_SRC_FOLD_KERNELS_H_

#include <cstddef>
#include <cstdint>

namespace fedge::aggregator {

// IEEE-754 bits of +infinity: a float's absolute-value bits are >= this
// exactly when the float is infinite or NaN.
inline constexpr std::uint32_t kNonFiniteAbsBits = 0x7f800000u;

// The largest absolute-value bit pattern among values[0, n): for non-negative
// floats, integer order of the bits equals numeric order, so the result is
// the bits of max_i |values[i]| when all values are finite, and
// >= kNonFiniteAbsBits when any value is infinite or NaN. 0 for n == 0.
std::uint32_t MaxAbsBits(const float* values, std::size_t n);

// sum[i] += weight * delta[i] for i in [0, n). `sum` and `delta` must not
// overlap. Each element is rounded exactly as the scalar expression would be
// (no fused multiply-add), so results do not depend on the vector width.
void FoldScaled(float* sum, const float* delta, float weight, std::size_t n);

// sum[i] += other[i] for i in [0, n). `sum` and `other` must not overlap.
void AddInto(float* sum, const float* other, std::size_t n);

// out[i] = static_cast<float>(sum[i] * scale), computed in double.
void ScaleToFloat(const float* sum, double scale, float* out, std::size_t n);

// sum_i (a[i] - b[i])^2, with the squares accumulated in float blocks of a
// few hundred elements and the blocks summed in double.
double SquaredDistance(const float* a, const float* b, std::size_t n);

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SRC_FOLD_KERNELS_H_
