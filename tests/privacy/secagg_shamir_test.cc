#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "fedge/privacy/secagg/shamir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::privacy::secagg {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

// A deterministic random source for tests (not cryptographic).
RandomBytesSource SeededSource(std::uint64_t seed) {
  auto engine = std::make_shared<std::mt19937_64>(seed);
  return [engine](std::span<std::uint8_t> out) {
    for (std::uint8_t& byte : out) byte = static_cast<std::uint8_t>((*engine)() >> 56);
    return absl::OkStatus();
  };
}

ShamirSecret RandomSecret(std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  ShamirSecret secret;
  for (std::uint8_t& byte : secret) byte = static_cast<std::uint8_t>(engine());
  return secret;
}

// Calls `visit` with every size-k subset of `shares`.
template <typename Visit>
void ForEachSubset(const std::vector<ShamirShare>& shares, std::size_t k, Visit visit) {
  std::vector<bool> chosen(shares.size(), false);
  std::fill(chosen.begin(), chosen.begin() + static_cast<std::ptrdiff_t>(k), true);
  do {
    std::vector<ShamirShare> subset;
    for (std::size_t i = 0; i < shares.size(); ++i) {
      if (chosen[i]) subset.push_back(shares[i]);
    }
    visit(subset);
  } while (std::prev_permutation(chosen.begin(), chosen.end()));
}

TEST(ShamirTest, EveryThresholdSubsetOfSevenReconstructs) {
  constexpr int kShares = 7;
  for (int threshold = 1; threshold <= kShares; ++threshold) {
    const ShamirSecret secret = RandomSecret(100 + threshold);
    FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<ShamirShare> shares,
                               ShareSecret(secret, threshold, kShares, SeededSource(threshold)));
    ASSERT_EQ(shares.size(), static_cast<std::size_t>(kShares));
    int subsets = 0;
    ForEachSubset(
        shares, static_cast<std::size_t>(threshold), [&](const std::vector<ShamirShare>& subset) {
          ++subsets;
          absl::StatusOr<ShamirSecret> rebuilt = ReconstructSecret(subset, threshold, kShares);
          ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
          EXPECT_EQ(*rebuilt, secret);
        });
    // C(7, t) subsets.
    const int expected[] = {0, 7, 21, 35, 35, 21, 7, 1};
    EXPECT_EQ(subsets, expected[threshold]);
  }
}

TEST(ShamirTest, MoreThanThresholdSharesAndAnyOrderReconstruct) {
  const ShamirSecret secret = RandomSecret(7);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<ShamirShare> shares,
                             ShareSecret(secret, 4, 9, SeededSource(7)));
  std::reverse(shares.begin(), shares.end());
  FEDGE_ASSERT_OK_AND_ASSIGN(ShamirSecret rebuilt, ReconstructSecret(shares, 4, 9));
  EXPECT_EQ(rebuilt, secret);
}

TEST(ShamirTest, RandomSecretsWithFixedSeedRoundTrip) {
  std::mt19937 pick(2024);
  for (std::uint64_t trial = 0; trial < 200; ++trial) {
    const int num_shares = std::uniform_int_distribution<int>(1, 40)(pick);
    const int threshold = std::uniform_int_distribution<int>(1, num_shares)(pick);
    const ShamirSecret secret = RandomSecret(trial);
    FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<ShamirShare> shares,
                               ShareSecret(secret, threshold, num_shares, SeededSource(trial)));
    std::shuffle(shares.begin(), shares.end(), pick);
    shares.resize(static_cast<std::size_t>(threshold));
    FEDGE_ASSERT_OK_AND_ASSIGN(ShamirSecret rebuilt,
                               ReconstructSecret(shares, threshold, num_shares));
    EXPECT_EQ(rebuilt, secret) << "t=" << threshold << " n=" << num_shares;
  }
}

TEST(ShamirTest, SameSeedGivesSameSharesDifferentSeedsDiffer) {
  const ShamirSecret secret = RandomSecret(1);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto a, ShareSecret(secret, 3, 5, SeededSource(1)));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto b, ShareSecret(secret, 3, 5, SeededSource(1)));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, ShareSecret(secret, 3, 5, SeededSource(2)));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(ShamirTest, DefaultSourceIsOpenSslAndRoundTrips) {
  const ShamirSecret secret = RandomSecret(3);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto a, ShareSecret(secret, 3, 5));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto b, ShareSecret(secret, 3, 5));
  EXPECT_NE(a, b);  // Fresh coefficients each time.
  FEDGE_ASSERT_OK_AND_ASSIGN(ShamirSecret rebuilt, ReconstructSecret(a, 3, 5));
  EXPECT_EQ(rebuilt, secret);
}

TEST(ShamirTest, ThresholdOneSharesAreTheSecretItself) {
  const ShamirSecret secret = RandomSecret(4);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto shares, ShareSecret(secret, 1, 3, SeededSource(4)));
  for (const ShamirShare& share : shares) {
    FEDGE_ASSERT_OK_AND_ASSIGN(ShamirSecret rebuilt, ReconstructSecret(std::span(&share, 1), 1, 3));
    EXPECT_EQ(rebuilt, secret);
  }
}

// With t-1 shares the secret is information-theoretically hidden. Claiming a
// lower threshold interpolates the wrong (degree t-2) polynomial: the result
// is refused as inconsistent or is a different secret, for every subset.
TEST(ShamirTest, FewerThanThresholdSharesDoNotRevealTheSecret) {
  constexpr int kShares = 7;
  constexpr int kThreshold = 4;
  const ShamirSecret secret = RandomSecret(11);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<ShamirShare> shares,
                             ShareSecret(secret, kThreshold, kShares, SeededSource(11)));
  ForEachSubset(shares, kThreshold - 1, [&](const std::vector<ShamirShare>& subset) {
    EXPECT_THAT(ReconstructSecret(subset, kThreshold, kShares),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("need at least 4")));
    absl::StatusOr<ShamirSecret> guess = ReconstructSecret(subset, kThreshold - 1, kShares);
    if (guess.ok()) {
      EXPECT_NE(*guess, secret);
    } else {
      EXPECT_THAT(guess, StatusIs(absl::StatusCode::kDataLoss));
    }
  });
}

TEST(ShamirTest, ShareSecretRejectsBadParameters) {
  const ShamirSecret secret{};
  EXPECT_THAT(ShareSecret(secret, 0, 5),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("threshold 0")));
  EXPECT_THAT(ShareSecret(secret, 6, 5),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("threshold 6")));
  EXPECT_THAT(ShareSecret(secret, 1, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_shares 0")));
  EXPECT_THAT(ShareSecret(secret, 1, kMaxShamirShares + 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_shares")));
}

TEST(ShamirTest, ShareSecretPropagatesRandomSourceFailure) {
  RandomBytesSource broken = [](std::span<std::uint8_t>) {
    return absl::UnavailableError("entropy pool empty");
  };
  EXPECT_THAT(ShareSecret(ShamirSecret{}, 2, 3, broken),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("entropy")));
}

TEST(ShamirTest, ReconstructRejectsBadParameters) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto shares, ShareSecret(RandomSecret(5), 3, 5, SeededSource(5)));
  EXPECT_THAT(ReconstructSecret(shares, 0, 5), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ReconstructSecret(shares, 6, 5), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ReconstructSecret(shares, 3, 0), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ShamirTest, ReconstructRejectsDuplicateIndices) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto shares, ShareSecret(RandomSecret(5), 3, 5, SeededSource(5)));
  std::vector<ShamirShare> duplicated = {shares[0], shares[1], shares[1]};
  EXPECT_THAT(ReconstructSecret(duplicated, 3, 5),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("appears twice")));
}

TEST(ShamirTest, ReconstructRejectsOutOfRangeIndices) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto shares, ShareSecret(RandomSecret(5), 3, 5, SeededSource(5)));
  std::vector<ShamirShare> subset = {shares[0], shares[1], shares[2]};
  subset[2].index = 0;
  EXPECT_THAT(ReconstructSecret(subset, 3, 5),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("share index 0")));
  subset[2].index = 6;
  EXPECT_THAT(ReconstructSecret(subset, 3, 5),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("share index 6")));
}

TEST(ShamirTest, ReconstructRejectsValuesOutsideTheField) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto shares, ShareSecret(RandomSecret(5), 3, 5, SeededSource(5)));
  shares[1].values[3] = kShamirPrime;
  EXPECT_THAT(ReconstructSecret(shares, 3, 5),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside the field")));
}

// Garbled (random-looking) share values are caught; a small deliberate offset
// would not be (see the header: this is no integrity check).
TEST(ShamirTest, GarbledShareIsDetected) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto shares, ShareSecret(RandomSecret(6), 3, 5, SeededSource(6)));
  std::mt19937_64 garble(6);
  for (std::uint64_t& value : shares[0].values) value = garble() % kShamirPrime;
  EXPECT_THAT(ReconstructSecret(shares, 3, 5),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("inconsistent")));
}

TEST(ShamirTest, SharesFromDifferentSharingsAreDetected) {
  const ShamirSecret secret = RandomSecret(8);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto a, ShareSecret(secret, 3, 5, SeededSource(1)));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto b, ShareSecret(secret, 3, 5, SeededSource(2)));
  const std::vector<ShamirShare> mixed = {a[0], a[1], b[2]};
  EXPECT_THAT(ReconstructSecret(mixed, 3, 5), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(ShamirTest, SerializeParseRoundTrip) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto shares, ShareSecret(RandomSecret(9), 4, 6, SeededSource(9)));
  for (const ShamirShare& share : shares) {
    const auto bytes = SerializeShare(share);
    FEDGE_ASSERT_OK_AND_ASSIGN(ShamirShare parsed, ParseShare(bytes));
    EXPECT_EQ(parsed, share);
  }
}

TEST(ShamirTest, ParseRejectsMalformedBytes) {
  ShamirShare share;
  share.index = 2;
  share.values.fill(5);
  auto bytes = SerializeShare(share);
  EXPECT_THAT(ParseShare(std::span(bytes).first(kShamirShareSize - 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 68 bytes")));
  auto zero_index = bytes;
  std::fill(zero_index.begin(), zero_index.begin() + 4, 0);
  EXPECT_THAT(ParseShare(zero_index),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("index 0")));
  auto out_of_field = bytes;
  std::fill(out_of_field.begin() + 4, out_of_field.begin() + 12, 0xFF);
  EXPECT_THAT(ParseShare(out_of_field),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside the field")));
}

}  // namespace
}  // namespace fedge::privacy::secagg
