// t-of-n Shamir secret sharing of 32-byte secrets, for dropout recovery in
// secure aggregation (see crypto.h for the protocol overview).
//
// In Bonawitz et al. 2017 each client u shares two secrets with the others:
// its mask-agreement private key s_u^SK and its self-mask seed b_u. After the
// masked inputs are in, the server asks each survivor v, for each other client
// u, for exactly one of the two: the share of s_u^SK if u dropped (so the
// server can recompute and strip u's pairwise masks) or the share of b_u if u
// survived (so it can strip u's self mask); never both. Any t shares rebuild
// a secret and t-1 reveal nothing about it. In SecAgg+ (Bell et al. 2020) the
// same sharing runs over each client's neighbourhood in a sparse graph, so n
// here is the neighbourhood size, not the cohort size.
//
// Field and encoding: arithmetic is over GF(p), p = 2^61 - 1 (a Mersenne
// prime; products fit in 128 bits and reduce with shifts). A 32-byte secret is
// split into 8 little-endian 32-bit words, each shared with its own random
// polynomial of degree t-1 whose constant term is the word; share i holds the
// 8 polynomial values at x = i (i in [1, n]). Since every word is < 2^32 < p,
// reconstruction also checks that each recovered word fits in 32 bits, which
// catches garbled or mixed-up share sets (DATA_LOSS).
//
// The arithmetic is not hardened against timing side channels; it runs only
// on parties that legitimately hold the shares it processes.
#ifndef FEDGE_PRIVACY_SECAGG_SHAMIR_H_
#define FEDGE_PRIVACY_SECAGG_SHAMIR_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge::privacy::secagg {

inline constexpr std::uint64_t kShamirPrime = (std::uint64_t{1} << 61) - 1;
inline constexpr std::size_t kShamirSecretSize = 32;
inline constexpr std::size_t kShamirWords = kShamirSecretSize / 4;
// Most shares one secret can be split into (x coordinates 1..kMaxShamirShares).
inline constexpr int kMaxShamirShares = 65535;
// Bytes of a serialized share: 4-byte index + 8 words of 8 bytes.
inline constexpr std::size_t kShamirShareSize = 4 + 8 * kShamirWords;

using ShamirSecret = std::array<std::uint8_t, kShamirSecretSize>;

// One point of each of the 8 sharing polynomials.
struct ShamirShare {
  // The x coordinate, in [1, num_shares]. Share i goes to the i-th party.
  std::uint32_t index = 0;
  // f_k(index) mod p for word k = 0..7 of the secret; each < kShamirPrime.
  std::array<std::uint64_t, kShamirWords> values{};

  friend bool operator==(const ShamirShare&, const ShamirShare&) = default;
};

// Fills its argument with uniformly random bytes. Tests pass a seeded source;
// production code uses the default, OpenSSL's RAND_bytes.
using RandomBytesSource = std::function<absl::Status(std::span<std::uint8_t>)>;

// Splits `secret` into `num_shares` shares, any `threshold` of which rebuild
// it. Share k (0-based) has index k + 1. Polynomial coefficients are drawn
// from `random` (uniform in [0, p) by rejection).
// INVALID_ARGUMENT unless 1 <= threshold <= num_shares <= kMaxShamirShares;
// a failing random source's status is returned as is.
absl::StatusOr<std::vector<ShamirShare>> ShareSecret(const ShamirSecret& secret, int threshold,
                                                     int num_shares,
                                                     const RandomBytesSource& random = {});

// Rebuilds the secret by Lagrange interpolation at x = 0 from the first
// `threshold` of `shares` (extra shares are validated but not used).
// `threshold` and `num_shares` are those the secret was shared with.
//  - INVALID_ARGUMENT: threshold/num_shares out of range; a share index of 0,
//    above num_shares, or repeated; a share value >= p.
//  - FAILED_PRECONDITION: fewer than `threshold` shares.
//  - DATA_LOSS: a recovered word is >= 2^32, i.e. the shares do not come from
//    one sharing of a 32-byte secret (corrupted, or mixed from two sharings).
//    This is a sanity check, not an integrity check: a garbled share (random
//    values) is caught except with probability 2^-29 per word, but a small
//    deliberate offset to a share shifts the secret undetectably. Integrity of
//    shares in transit comes from AES-GCM (crypto.h).
absl::StatusOr<ShamirSecret> ReconstructSecret(std::span<const ShamirShare> shares, int threshold,
                                               int num_shares);

// Fixed-size little-endian encoding (kShamirShareSize bytes), e.g. as the
// plaintext of an AES-GCM message from one client to another.
std::array<std::uint8_t, kShamirShareSize> SerializeShare(const ShamirShare& share);
// INVALID_ARGUMENT when the size is wrong, the index is 0 or a value >= p.
absl::StatusOr<ShamirShare> ParseShare(std::span<const std::uint8_t> bytes);

}  // namespace fedge::privacy::secagg

#endif  // FEDGE_PRIVACY_SECAGG_SHAMIR_H_
