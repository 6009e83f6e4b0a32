// Random sampling built only on std::mt19937_64's output sequence, which the
// C++ standard fixes bit for bit. The <random> distributions (normal, gamma,
// uniform_int, std::shuffle) are implementation-defined and differ between
// standard libraries; these do not, so a seed names the same partition or
// dataset everywhere (up to libm's last-bit rounding of log/exp/cos).
//
// Private to fedge::data; not API.
#ifndef FEDGE_MODELS_SRC_DATA_SAMPLING_H_
#define FEDGE_MODELS_SRC_DATA_SAMPLING_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace fedge::data::internal {

// Uniform on the open interval (0, 1), 53 random bits; never 0, so its log is
// finite.
inline double UniformOpen01(std::mt19937_64& rng) {
  return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
}

// Uniform integer in [0, n). REQUIRES: n >= 1. Lemire's multiply-and-reject,
// exactly unbiased.
inline uint64_t UniformBelow(std::mt19937_64& rng, uint64_t n) {
  unsigned __int128 product = static_cast<unsigned __int128>(rng()) * n;
  uint64_t low = static_cast<uint64_t>(product);
  if (low < n) {
    const uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      product = static_cast<unsigned __int128>(rng()) * n;
      low = static_cast<uint64_t>(product);
    }
  }
  return static_cast<uint64_t>(product >> 64);
}

// Standard normal N(0, 1) by Box-Muller (one value per call, two draws).
inline double StandardNormal(std::mt19937_64& rng) {
  const double u1 = UniformOpen01(rng);
  const double u2 = UniformOpen01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

// N(mean, stddev^2).
inline double Normal(std::mt19937_64& rng, double mean, double stddev) {
  return mean + stddev * StandardNormal(rng);
}

// log of a Gamma(shape, 1) draw. REQUIRES: shape > 0. Works in log space so
// that shapes far below 1 (e.g. 0.01, where the draw itself underflows to 0)
// still give usable Dirichlet weights. Marsaglia & Tsang (2000); for
// shape < 1, Gamma(shape) = Gamma(shape + 1) * U^(1/shape).
inline double LogGamma(std::mt19937_64& rng, double shape) {
  if (shape < 1.0) {
    const double log_u = std::log(UniformOpen01(rng));
    return LogGamma(rng, shape + 1.0) + log_u / shape;
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    const double x = StandardNormal(rng);
    const double t = 1.0 + c * x;
    if (t <= 0.0) continue;
    const double v = t * t * t;
    const double log_u = std::log(UniformOpen01(rng));
    if (log_u < 0.5 * x * x + d - d * v + d * std::log(v)) return std::log(d) + std::log(v);
  }
}

// Turns log-weights into weights that sum to 1 (a softmax), shifting by the
// maximum first so that very negative logs (Gamma draws with a tiny shape)
// do not all underflow to 0. REQUIRES: !log_weights.empty(),
// weights.size() == log_weights.size(). Normalized Gamma(alpha) draws are a
// Dir(alpha, ..., alpha) draw.
inline void NormalizeLogWeights(std::span<const double> log_weights, std::span<double> weights) {
  const double max_log = *std::max_element(log_weights.begin(), log_weights.end());
  double sum = 0.0;
  for (size_t i = 0; i < log_weights.size(); ++i) {
    weights[i] = std::exp(log_weights[i] - max_log);
    sum += weights[i];
  }
  for (double& w : weights) w /= sum;
}

// Fisher-Yates shuffle driven by UniformBelow.
template <typename T>
void Shuffle(std::mt19937_64& rng, std::span<T> items) {
  for (size_t i = items.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(UniformBelow(rng, i));
    std::swap(items[i - 1], items[j]);
  }
}

// Splits `total` items into weights.size() integer counts proportional to
// `weights` (non-negative, summing to 1) by the largest-remainder method:
// each count is floor(total * weight), and the items left over go one each
// to the largest fractional parts (ties to the lower index). The counts add
// up to exactly `total`, each is within 1 of total * weight, and a count
// depends on its own weight and one shared threshold only, so changing a few
// weights leaves the other counts (nearly) unchanged.
inline void ProportionalCounts(std::span<const double> weights, int64_t total,
                               std::span<int64_t> counts) {
  const size_t n = weights.size();
  std::vector<std::pair<double, size_t>> remainders(n);
  int64_t assigned = 0;
  for (size_t i = 0; i < n; ++i) {
    const double exact = weights[i] * static_cast<double>(total);
    const double whole = std::floor(exact);
    counts[i] = static_cast<int64_t>(whole);
    assigned += counts[i];
    remainders[i] = {exact - whole, i};
  }
  // 0 <= left < n, except that floating-point error in the weights' sum can
  // make it n, or (for totals near 2^53) negative.
  int64_t left = total - assigned;
  auto larger = [](const std::pair<double, size_t>& a, const std::pair<double, size_t>& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  while (left > 0) {
    const size_t take = static_cast<size_t>(std::min<int64_t>(left, static_cast<int64_t>(n)));
    std::nth_element(remainders.begin(), remainders.begin() + (take - 1), remainders.end(), larger);
    for (size_t j = 0; j < take; ++j) ++counts[remainders[j].second];
    left -= static_cast<int64_t>(take);
  }
  for (size_t i = n; left < 0 && i > 0; --i) {
    const int64_t give_back = std::min(counts[i - 1], -left);
    counts[i - 1] -= give_back;
    left += give_back;
  }
}

}  // namespace fedge::data::internal

#endif  // FEDGE_MODELS_SRC_DATA_SAMPLING_H_
