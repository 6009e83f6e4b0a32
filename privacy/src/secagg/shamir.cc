#include "fedge/privacy/secagg/shamir.h"

#include <openssl/crypto.h>

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "fedge/privacy/secagg/crypto.h"

namespace fedge::privacy::secagg {
namespace {

using Field = std::uint64_t;  // Elements of GF(p), always reduced to [0, p).

Field Add(Field a, Field b) {
  const Field sum = a + b;  // < 2^62: no overflow.
  return sum >= kShamirPrime ? sum - kShamirPrime : sum;
}

Field Subtract(Field a, Field b) { return a >= b ? a - b : a + kShamirPrime - b; }

Field Multiply(Field a, Field b) {
  // x < p^2 < 2^122; x = hi * 2^61 + lo and 2^61 = 1 (mod p).
  const unsigned __int128 x = static_cast<unsigned __int128>(a) * b;
  const Field lo = static_cast<Field>(x) & kShamirPrime;
  const Field hi = static_cast<Field>(x >> 61);
  return Add(lo, hi);  // lo <= p, hi < p.
}

Field Power(Field base, std::uint64_t exponent) {
  Field result = 1;
  while (exponent > 0) {
    if (exponent & 1) result = Multiply(result, base);
    base = Multiply(base, base);
    exponent >>= 1;
  }
  return result;
}

// REQUIRES: a != 0 (mod p).
Field Inverse(Field a) { return Power(a, kShamirPrime - 2); }

absl::Status CheckParameters(const char* operation, int threshold, int num_shares) {
  if (num_shares < 1 || num_shares > kMaxShamirShares) {
    return absl::InvalidArgumentError(absl::StrCat(operation, ": num_shares ", num_shares,
                                                   " not in [1, ", kMaxShamirShares, "]"));
  }
  if (threshold < 1 || threshold > num_shares) {
    return absl::InvalidArgumentError(absl::StrCat(operation, ": threshold ", threshold,
                                                   " not in [1, num_shares = ", num_shares, "]"));
  }
  return absl::OkStatus();
}

// Uniform elements of GF(p): 61 random bits each, redrawing the single
// out-of-range value p itself.
absl::Status RandomFieldElements(const RandomBytesSource& random, std::span<Field> out) {
  std::vector<std::uint8_t> bytes(out.size() * 8);
  auto draw = [&](std::span<std::uint8_t> buffer) -> absl::Status {
    if (random) return random(buffer);
    return RandomBytes(buffer);
  };
  if (absl::Status s = draw(bytes); !s.ok()) return s;
  for (std::size_t k = 0; k < out.size(); ++k) {
    std::uint64_t word = 0;
    for (int b = 0; b < 8; ++b) word |= std::uint64_t{bytes[8 * k + b]} << (8 * b);
    word &= kShamirPrime;
    while (word == kShamirPrime) {
      std::array<std::uint8_t, 8> again{};
      if (absl::Status s = draw(again); !s.ok()) return s;
      word = 0;
      for (int b = 0; b < 8; ++b) word |= std::uint64_t{again[b]} << (8 * b);
      word &= kShamirPrime;
    }
    out[k] = word;
  }
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<ShamirShare>> ShareSecret(const ShamirSecret& secret, int threshold,
                                                     int num_shares, const RandomBytesSource& random) {
  if (absl::Status s = CheckParameters("Shamir ShareSecret", threshold, num_shares); !s.ok()) {
    return s;
  }
  // coefficients[k * threshold + j]: coefficient of x^j in word k's polynomial.
  const auto degree_plus_one = static_cast<std::size_t>(threshold);
  std::vector<Field> coefficients(kShamirWords * degree_plus_one);
  for (std::size_t k = 0; k < kShamirWords; ++k) {
    Field& constant = coefficients[k * degree_plus_one];
    constant = Field{secret[4 * k]} | Field{secret[4 * k + 1]} << 8 |
               Field{secret[4 * k + 2]} << 16 | Field{secret[4 * k + 3]} << 24;
    if (threshold > 1) {
      absl::Status s = RandomFieldElements(
          random, std::span<Field>(coefficients).subspan(k * degree_plus_one + 1, threshold - 1));
      if (!s.ok()) {
        OPENSSL_cleanse(coefficients.data(), coefficients.size() * sizeof(Field));
        return s;
      }
    }
  }
  std::vector<ShamirShare> shares(static_cast<std::size_t>(num_shares));
  for (int i = 0; i < num_shares; ++i) {
    ShamirShare& share = shares[static_cast<std::size_t>(i)];
    share.index = static_cast<std::uint32_t>(i + 1);
    for (std::size_t k = 0; k < kShamirWords; ++k) {
      // Horner's rule from the highest coefficient down.
      const Field* poly = &coefficients[k * degree_plus_one];
      Field value = 0;
      for (std::size_t j = degree_plus_one; j-- > 0;) {
        value = Add(Multiply(value, share.index), poly[j]);
      }
      share.values[k] = value;
    }
  }
  OPENSSL_cleanse(coefficients.data(), coefficients.size() * sizeof(Field));
  return shares;
}

absl::StatusOr<ShamirSecret> ReconstructSecret(std::span<const ShamirShare> shares, int threshold,
                                               int num_shares) {
  constexpr const char* kOp = "Shamir ReconstructSecret";
  if (absl::Status s = CheckParameters(kOp, threshold, num_shares); !s.ok()) return s;
  std::vector<bool> seen(static_cast<std::size_t>(num_shares) + 1, false);
  for (const ShamirShare& share : shares) {
    if (share.index == 0 || share.index > static_cast<std::uint32_t>(num_shares)) {
      return absl::InvalidArgumentError(
          absl::StrCat(kOp, ": share index ", share.index, " not in [1, ", num_shares, "]"));
    }
    if (seen[share.index]) {
      return absl::InvalidArgumentError(
          absl::StrCat(kOp, ": share index ", share.index, " appears twice"));
    }
    seen[share.index] = true;
    for (Field value : share.values) {
      if (value >= kShamirPrime) {
        return absl::InvalidArgumentError(
            absl::StrCat(kOp, ": share ", share.index, " holds a value outside the field"));
      }
    }
  }
  if (shares.size() < static_cast<std::size_t>(threshold)) {
    return absl::FailedPreconditionError(
        absl::StrCat(kOp, ": ", shares.size(), " shares, need at least ", threshold));
  }

  // Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i).
  const auto used = shares.first(static_cast<std::size_t>(threshold));
  std::array<Field, kShamirWords> words{};
  for (std::size_t i = 0; i < used.size(); ++i) {
    Field numerator = 1;
    Field denominator = 1;
    for (std::size_t j = 0; j < used.size(); ++j) {
      if (j == i) continue;
      numerator = Multiply(numerator, used[j].index);
      denominator = Multiply(denominator, Subtract(used[j].index, used[i].index));
    }
    const Field basis = Multiply(numerator, Inverse(denominator));
    for (std::size_t k = 0; k < kShamirWords; ++k) {
      words[k] = Add(words[k], Multiply(basis, used[i].values[k]));
    }
  }

  ShamirSecret secret{};
  for (std::size_t k = 0; k < kShamirWords; ++k) {
    if (words[k] > 0xFFFFFFFFu) {
      OPENSSL_cleanse(words.data(), sizeof(words));
      return absl::DataLossError(
          absl::StrCat(kOp, ": shares are inconsistent (recovered word ", k,
                       " does not fit in 32 bits); corrupted, or from different sharings"));
    }
    for (int b = 0; b < 4; ++b) secret[4 * k + b] = static_cast<std::uint8_t>(words[k] >> (8 * b));
  }
  OPENSSL_cleanse(words.data(), sizeof(words));
  return secret;
}

std::array<std::uint8_t, kShamirShareSize> SerializeShare(const ShamirShare& share) {
  std::array<std::uint8_t, kShamirShareSize> bytes{};
  for (int b = 0; b < 4; ++b) bytes[b] = static_cast<std::uint8_t>(share.index >> (8 * b));
  for (std::size_t k = 0; k < kShamirWords; ++k) {
    for (int b = 0; b < 8; ++b) {
      bytes[4 + 8 * k + b] = static_cast<std::uint8_t>(share.values[k] >> (8 * b));
    }
  }
  return bytes;
}

absl::StatusOr<ShamirShare> ParseShare(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != kShamirShareSize) {
    return absl::InvalidArgumentError(absl::StrCat("Shamir ParseShare: expected ", kShamirShareSize,
                                                   " bytes, got ", bytes.size()));
  }
  ShamirShare share;
  for (int b = 0; b < 4; ++b) share.index |= std::uint32_t{bytes[b]} << (8 * b);
  if (share.index == 0) return absl::InvalidArgumentError("Shamir ParseShare: share index 0");
  for (std::size_t k = 0; k < kShamirWords; ++k) {
    for (int b = 0; b < 8; ++b) share.values[k] |= Field{bytes[4 + 8 * k + b]} << (8 * b);
    if (share.values[k] >= kShamirPrime) {
      return absl::InvalidArgumentError(
          absl::StrCat("Shamir ParseShare: value ", k, " outside the field"));
    }
  }
  return share;
}

}  // namespace fedge::privacy::secagg
