#include "fold_kernels.h"

#include <algorithm>
#include <bit>

// On x86-64, GCC builds each kernel for AVX-512 (x86-64-v4), AVX2 and the
// SSE2 baseline and picks one at load time (ifunc). SSE2 lacks an unsigned
// 32-bit max, which makes MaxAbsBits compute-bound there (~12 GB/s against
// ~70 GB/s with AVX2 on a Zen 4 core). -ffp-contract=off (strategies.cmake)
// keeps the clones from fusing multiply-adds, so all give identical results.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FEDGE_KERNEL_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define FEDGE_KERNEL_CLONES
#endif

namespace fedge::aggregator {

FEDGE_KERNEL_CLONES std::uint32_t MaxAbsBits(const float* __restrict values, std::size_t n) {
  std::uint32_t max_bits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(values[i]) & 0x7fffffffu;
    max_bits = std::max(max_bits, bits);
  }
  return max_bits;
}

FEDGE_KERNEL_CLONES void FoldScaled(float* __restrict sum, const float* __restrict delta,
                                    float weight, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) sum[i] += weight * delta[i];
}

FEDGE_KERNEL_CLONES void AddInto(float* __restrict sum, const float* __restrict other,
                                 std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) sum[i] += other[i];
}

FEDGE_KERNEL_CLONES void ScaleToFloat(const float* __restrict sum, double scale,
                                      float* __restrict out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<float>(static_cast<double>(sum[i]) * scale);
  }
}

FEDGE_KERNEL_CLONES double SquaredDistance(const float* __restrict a, const float* __restrict b,
                                           std::size_t n) {
  // Float lanes make the loop vectorizable without -ffast-math; flushing them
  // into a double every kBlock elements bounds the float rounding error.
  constexpr std::size_t kLanes = 16;
  constexpr std::size_t kBlock = 256;
  double total = 0.0;
  std::size_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    float lanes[kLanes] = {};
    for (std::size_t j = 0; j < kBlock; j += kLanes) {
      for (std::size_t k = 0; k < kLanes; ++k) {
        const float diff = a[i + j + k] - b[i + j + k];
        lanes[k] += diff * diff;
      }
    }
    for (std::size_t k = 0; k < kLanes; ++k) total += lanes[k];
  }
  for (; i < n; ++i) {
    const double diff = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    total += diff * diff;
  }
  return total;
}

}  // namespace fedge::aggregator
