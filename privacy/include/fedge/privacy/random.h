// Random sources for the DP mechanisms, and the samplers built on them.
//
// A RandomSource yields uniform 64-bit words. Deployments use SecureRandom
// (OpenSSL's CSPRNG; the default everywhere a source is not given
// explicitly); simulations and tests pick SeededRandom for reproducibility.
// Never use SeededRandom to protect real data: its output is predictable.
//
// The samplers below turn words into the distributions the mechanisms need
// with fixed algorithms (no std::*_distribution), so a seed gives the same
// draws with every standard library.
//
// Thread safety: a RandomSource is not thread-safe; give each thread its own.
#ifndef FEDGE_PRIVACY_RANDOM_H_
#define FEDGE_PRIVACY_RANDOM_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <random>

namespace fedge::privacy {

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // A uniformly distributed 64-bit word.
  virtual uint64_t Next() = 0;
};

// OpenSSL RAND_bytes, read kBufferWords words at a time. Aborts (with a
// message) if OpenSSL cannot produce randomness: noise that is not random
// would silently void the privacy guarantee.
class SecureRandom final : public RandomSource {
 public:
  SecureRandom() = default;
  uint64_t Next() override;

 private:
  static constexpr std::size_t kBufferWords = 64;
  std::array<uint64_t, kBufferWords> buffer_{};
  std::size_t next_ = kBufferWords;
};

// std::mt19937_64 seeded with `seed`: fast and reproducible, NOT secure.
class SeededRandom final : public RandomSource {
 public:
  explicit SeededRandom(uint64_t seed) : engine_(seed) {}
  uint64_t Next() override { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

// The default source for deployments: this thread's own SecureRandom
// (created on first use, lives as long as the thread).
RandomSource& DefaultRandom();

// Uniform double in the open interval (0, 1), with 53 random bits.
double UniformOpen01(RandomSource& random);

// Uniform integer in [0, bound). REQUIRES: bound > 0. Unbiased (rejection).
uint64_t UniformBelow(RandomSource& random, uint64_t bound);
unsigned __int128 UniformBelow128(RandomSource& random, unsigned __int128 bound);

// Exact Bernoulli(numerator / denominator). REQUIRES: 0 <= numerator <= denominator, denominator >
// 0.
bool BernoulliRational(RandomSource& random, unsigned __int128 numerator,
                       unsigned __int128 denominator);

// Exact Bernoulli(exp(-numerator / denominator)) (Canonne, Kamath, Steinke
// 2020, Algorithm 1). REQUIRES: denominator > 0.
bool BernoulliExpMinus(RandomSource& random, unsigned __int128 numerator,
                       unsigned __int128 denominator);

// Exact discrete Laplace with scale `scale` (P[x] ∝ exp(-|x|/scale)), CKS
// 2020 Algorithm 2. REQUIRES: scale >= 1.
int64_t SampleDiscreteLaplace(RandomSource& random, uint64_t scale);

// Exact discrete Gaussian N_Z(0, σ²) with σ² = variance_numerator /
// variance_denominator (P[x] ∝ exp(-x²/(2σ²))), CKS 2020 Algorithm 3, all in
// integer arithmetic. REQUIRES: both > 0 and sqrt(σ²) <= 1e4.
int64_t SampleDiscreteGaussian(RandomSource& random, uint64_t variance_numerator,
                               uint64_t variance_denominator);

// Standard normal N(0, 1) by the Box-Muller transform (one of the pair is
// used, so each call costs two words).
double SampleStandardGaussian(RandomSource& random);

// Laplace(0, 1) (density exp(-|x|)/2) by inversion.
double SampleStandardLaplace(RandomSource& random);

}  // namespace fedge::privacy

#endif  // FEDGE_PRIVACY_RANDOM_H_
