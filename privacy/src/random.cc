#include "fedge/privacy/random.h"

#include <openssl/rand.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numbers>

namespace fedge::privacy {
namespace {

using uint128 = unsigned __int128;

// |Y| above this is rejected in SampleDiscreteGaussian so that the integer
// arithmetic cannot overflow; with σ <= 1e4 the discrete Laplace proposal
// exceeds it with probability below exp(-1e5), so the output distribution
// is unchanged for all practical purposes.
constexpr uint64_t kMaxDiscreteMagnitude = 1'000'000'000;

}  // namespace

uint64_t SecureRandom::Next() {
  if (next_ == kBufferWords) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(buffer_.data()),
                   static_cast<int>(sizeof(buffer_))) != 1) {
      std::fprintf(stderr, "fedge: OpenSSL RAND_bytes failed; refusing to add non-random noise\n");
      std::abort();
    }
    next_ = 0;
  }
  return buffer_[next_++];
}

RandomSource& DefaultRandom() {
  thread_local SecureRandom random;
  return random;
}

double UniformOpen01(RandomSource& random) {
  return (static_cast<double>(random.Next() >> 11) + 0.5) * 0x1.0p-53;
}

uint64_t UniformBelow(RandomSource& random, uint64_t bound) {
  if (bound == 0) std::abort();
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
  while (true) {
    const uint64_t r = random.Next();
    if (r >= threshold) return r % bound;
  }
}

uint128 UniformBelow128(RandomSource& random, uint128 bound) {
  if (bound == 0) std::abort();
  const uint128 threshold = (0 - bound) % bound;  // 2^128 mod bound
  while (true) {
    const uint128 r = (static_cast<uint128>(random.Next()) << 64) | random.Next();
    if (r >= threshold) return r % bound;
  }
}

bool BernoulliRational(RandomSource& random, uint128 numerator, uint128 denominator) {
  if (denominator == 0 || numerator > denominator) std::abort();
  return UniformBelow128(random, denominator) < numerator;
}

bool BernoulliExpMinus(RandomSource& random, uint128 numerator, uint128 denominator) {
  if (denominator == 0) std::abort();
  if (numerator <= denominator) {
    // γ = n/d in [0, 1]: return 1 iff the first K with A_K = 0 is odd,
    // A_k ~ Bernoulli(γ/k).
    uint128 k = 1;
    while (true) {
      const uint128 scaled = denominator * k;
      // Overflow needs k > 2^128 / denominator consecutive successes, which
      // happens with probability below 1/k! (negligible).
      if (scaled / k != denominator) break;
      if (!BernoulliRational(random, numerator, scaled)) break;
      ++k;
    }
    return k % 2 == 1;
  }
  const uint128 whole = numerator / denominator;
  for (uint128 i = 0; i < whole; ++i) {
    if (!BernoulliExpMinus(random, 1, 1)) return false;
  }
  return BernoulliExpMinus(random, numerator - whole * denominator, denominator);
}

int64_t SampleDiscreteLaplace(RandomSource& random, uint64_t scale) {
  if (scale == 0) std::abort();
  while (true) {
    const uint64_t u = UniformBelow(random, scale);
    if (!BernoulliExpMinus(random, u, scale)) continue;
    uint64_t v = 0;
    while (BernoulliExpMinus(random, 1, 1)) ++v;
    const uint64_t x = u + scale * v;
    const bool negative = (random.Next() & 1) != 0;
    if (negative && x == 0) continue;
    return negative ? -static_cast<int64_t>(x) : static_cast<int64_t>(x);
  }
}

int64_t SampleDiscreteGaussian(RandomSource& random, uint64_t variance_numerator,
                               uint64_t variance_denominator) {
  if (variance_numerator == 0 || variance_denominator == 0) std::abort();
  const double sigma = std::sqrt(static_cast<double>(variance_numerator) /
                                 static_cast<double>(variance_denominator));
  if (!(sigma <= 1e4)) std::abort();
  // Any t >= 1 gives the exact distribution; floor(σ) + 1 makes it efficient.
  const uint64_t t = static_cast<uint64_t>(std::floor(sigma)) + 1;
  const uint128 sn = variance_numerator;
  const uint128 sd = variance_denominator;
  while (true) {
    const int64_t y = SampleDiscreteLaplace(random, t);
    const uint64_t magnitude = y < 0 ? static_cast<uint64_t>(-y) : static_cast<uint64_t>(y);
    if (magnitude > kMaxDiscreteMagnitude) continue;
    // Accept with probability exp(-(|y| - σ²/t)² / (2σ²))
    //   = exp(-(|y|·t·sd - sn)² / (2·sn·t²·sd)).
    const uint128 scaled = static_cast<uint128>(magnitude) * t * sd;
    const uint128 diff = scaled >= sn ? scaled - sn : sn - scaled;
    if (BernoulliExpMinus(random, diff * diff, 2 * sn * t * t * sd)) return y;
  }
}

double SampleStandardGaussian(RandomSource& random) {
  const double u1 = UniformOpen01(random);
  const double u2 = UniformOpen01(random);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

double SampleStandardLaplace(RandomSource& random) {
  const double u = UniformOpen01(random) - 0.5;  // never exactly 0
  const double magnitude = -std::log1p(-2.0 * std::abs(u));
  return u < 0 ? -magnitude : magnitude;
}

}  // namespace fedge::privacy
