#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "fedge/privacy/secagg/crypto.h"
#include "fedge/privacy/secagg/fixed_point.h"
#include "fedge/privacy/secagg/masking.h"
#include "fedge/privacy/secagg/shamir.h"
#include "fedge/proto/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::privacy::secagg {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

Seed SeedOf(std::uint8_t fill) {
  Seed seed;
  seed.fill(fill);
  return seed;
}

std::vector<std::uint32_t> Stream(const Seed& seed, std::size_t count) {
  absl::StatusOr<AesCtrPrg> prg = AesCtrPrg::Create(seed);
  EXPECT_TRUE(prg.ok());
  std::vector<std::uint32_t> out(count);
  EXPECT_TRUE(prg->Fill(out).ok());
  return out;
}

TEST(PairwiseMaskTest, SignDependsOnIndexOrder) {
  const Seed seed = SeedOf(1);
  const std::vector<std::uint32_t> stream = Stream(seed, 100);
  std::vector<std::uint32_t> lower(100, 0), higher(100, 0);
  FEDGE_ASSERT_OK(AddPairwiseMask(2, 9, seed, lower));
  FEDGE_ASSERT_OK(AddPairwiseMask(9, 2, seed, higher));
  for (std::size_t k = 0; k < stream.size(); ++k) {
    EXPECT_EQ(lower[k], stream[k]);
    EXPECT_EQ(higher[k], static_cast<std::uint32_t>(0u - stream[k]));
    EXPECT_EQ(static_cast<std::uint32_t>(lower[k] + higher[k]), 0u);
  }
}

TEST(PairwiseMaskTest, RefusesPairingWithItself) {
  std::vector<std::uint32_t> values(4, 0);
  EXPECT_THAT(AddPairwiseMask(3, 3, SeedOf(1), values),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("both 3")));
  EXPECT_THAT(RemovePairwiseMask(3, 3, SeedOf(1), values),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("both 3")));
  EXPECT_THAT(DerivePairwiseMaskSeed(SharedSecret{}, 1, 4, 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("itself")));
  EXPECT_EQ(values, std::vector<std::uint32_t>(4, 0));
}

TEST(PairwiseMaskTest, SelfMaskRoundTrips) {
  std::vector<std::uint32_t> values = {1, 2, 3, 0xFFFFFFFFu};
  const std::vector<std::uint32_t> original = values;
  FEDGE_ASSERT_OK(AddSelfMask(SeedOf(7), values));
  EXPECT_NE(values, original);
  FEDGE_ASSERT_OK(RemoveSelfMask(SeedOf(7), values));
  EXPECT_EQ(values, original);
}

TEST(PairwiseMaskTest, SeedDerivationIsSymmetricAndBoundToRoundAndPair) {
  SharedSecret secret;
  secret.fill(0x33);
  FEDGE_ASSERT_OK_AND_ASSIGN(Seed ab, DerivePairwiseMaskSeed(secret, 5, 1, 2));
  FEDGE_ASSERT_OK_AND_ASSIGN(Seed ba, DerivePairwiseMaskSeed(secret, 5, 2, 1));
  FEDGE_ASSERT_OK_AND_ASSIGN(Seed other_round, DerivePairwiseMaskSeed(secret, 6, 1, 2));
  FEDGE_ASSERT_OK_AND_ASSIGN(Seed other_pair, DerivePairwiseMaskSeed(secret, 5, 1, 3));
  EXPECT_EQ(ab, ba);
  EXPECT_NE(ab, other_round);
  EXPECT_NE(ab, other_pair);
}

TEST(MaskUpdateTest, RefusesOwnOrRepeatedPeerWithoutTouchingValues) {
  std::vector<std::uint32_t> values(8, 5);
  const std::vector<PeerSeed> with_self = {{1, SeedOf(1)}, {4, SeedOf(2)}};
  EXPECT_THAT(MaskUpdate(4, SeedOf(9), with_self, values),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("own index 4")));
  const std::vector<PeerSeed> repeated = {{1, SeedOf(1)}, {2, SeedOf(2)}, {1, SeedOf(3)}};
  EXPECT_THAT(
      MaskUpdate(4, SeedOf(9), repeated, values),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("peer index 1 appears twice")));
  EXPECT_EQ(values, std::vector<std::uint32_t>(8, 5));
}

// One round of Bonawitz et al. 2017 without the network: X25519 + HKDF
// pairwise seeds, self masks, Shamir shares of b_u and s_u^SK, then server-side
// unmasking with and without dropouts. Every random source is seeded.
class SecureSumTest : public ::testing::Test {
 protected:
  static constexpr int kClients = 6;
  static constexpr int kThreshold = 4;
  static constexpr std::size_t kDimension = 3001;
  static constexpr std::uint64_t kRound = 17;

  struct Client {
    std::uint32_t index = 0;
    X25519KeyPair mask_key;  // s_u.
    Seed self_seed{};        // b_u.
    std::vector<float> update{};
    std::vector<std::uint32_t> encoded{};
    std::vector<ShamirShare> key_shares{};   // Of s_u^SK; share k goes to client k.
    std::vector<ShamirShare> seed_shares{};  // Of b_u.
  };

  void SetUp() override {
    FixedPointOptions options;
    options.clip_bound = 1.0;
    options.num_clients = kClients;
    FEDGE_ASSERT_OK_AND_ASSIGN(FixedPointCodec codec, FixedPointCodec::Create(options));
    codec_ = std::make_unique<FixedPointCodec>(codec);

    std::mt19937_64 engine(2017);
    RandomBytesSource random = [&engine](std::span<std::uint8_t> out) {
      for (std::uint8_t& byte : out) byte = static_cast<std::uint8_t>(engine());
      return absl::OkStatus();
    };
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    for (int c = 0; c < kClients; ++c) {
      X25519PrivateKey private_key;
      FEDGE_ASSERT_OK(random(private_key));
      FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair key, X25519KeyPair::FromPrivateKey(private_key));
      Client client{.index = static_cast<std::uint32_t>(10 + 3 * c), .mask_key = std::move(key)};
      FEDGE_ASSERT_OK(random(client.self_seed));
      client.update.resize(kDimension);
      for (float& v : client.update) v = value(engine);
      client.encoded.resize(kDimension);
      FEDGE_ASSERT_OK(codec_->Encode(client.update, client.encoded, engine()));
      FEDGE_ASSERT_OK_AND_ASSIGN(client.key_shares,
                                 ShareSecret(private_key, kThreshold, kClients, random));
      FEDGE_ASSERT_OK_AND_ASSIGN(client.seed_shares,
                                 ShareSecret(client.self_seed, kThreshold, kClients, random));
      clients_.push_back(std::move(client));
    }
  }

  // y_u for client position c, using only its own secrets and peers' public keys.
  std::vector<std::uint32_t> MaskedInput(int c) {
    const Client& self = clients_[c];
    std::vector<PeerSeed> peers;
    for (const Client& peer : clients_) {
      if (peer.index == self.index) continue;
      absl::StatusOr<SharedSecret> secret =
          self.mask_key.DeriveSharedSecret(peer.mask_key.public_key());
      EXPECT_TRUE(secret.ok()) << secret.status();
      absl::StatusOr<Seed> seed = DerivePairwiseMaskSeed(*secret, kRound, self.index, peer.index);
      EXPECT_TRUE(seed.ok()) << seed.status();
      peers.push_back({peer.index, *seed});
    }
    std::vector<std::uint32_t> masked = self.encoded;
    EXPECT_TRUE(MaskUpdate(self.index, self.self_seed, peers, masked).ok());
    return masked;
  }

  // The shares held by the clients at `holders` (positions), of the secret
  // whose shares are `all`.
  static std::vector<ShamirShare> SharesHeldBy(const std::vector<ShamirShare>& all,
                                               const std::vector<int>& holders) {
    std::vector<ShamirShare> held;
    for (int h : holders) held.push_back(all[h]);
    return held;
  }

  // The server's view: sums y_u over `survivors`, then unmasks with the shares
  // the survivors reveal (the first kThreshold survivors answer).
  absl::StatusOr<std::vector<std::uint32_t>> ServerSum(const std::vector<int>& survivors) {
    std::vector<std::uint32_t> sum(kDimension, 0);
    for (int c : survivors) {
      const std::vector<std::uint32_t> masked = MaskedInput(c);
      for (std::size_t k = 0; k < kDimension; ++k) sum[k] += masked[k];
    }
    std::vector<int> responders(survivors.begin(), survivors.begin() + kThreshold);
    const std::set<int> alive(survivors.begin(), survivors.end());
    for (int c = 0; c < kClients; ++c) {
      const Client& client = clients_[c];
      if (alive.count(c)) {
        FEDGE_ASSIGN_OR_RETURN(
            ShamirSecret self_seed,
            ReconstructSecret(SharesHeldBy(client.seed_shares, responders), kThreshold, kClients));
        FEDGE_RETURN_IF_ERROR(RemoveSelfMask(self_seed, sum));
        continue;
      }
      // Dropped: rebuild s_c^SK and strip every survivor's mask with c.
      FEDGE_ASSIGN_OR_RETURN(
          ShamirSecret private_key,
          ReconstructSecret(SharesHeldBy(client.key_shares, responders), kThreshold, kClients));
      FEDGE_ASSIGN_OR_RETURN(X25519KeyPair rebuilt, X25519KeyPair::FromPrivateKey(private_key));
      for (int s : survivors) {
        const Client& survivor = clients_[s];
        FEDGE_ASSIGN_OR_RETURN(SharedSecret secret,
                               rebuilt.DeriveSharedSecret(survivor.mask_key.public_key()));
        FEDGE_ASSIGN_OR_RETURN(
            Seed seed, DerivePairwiseMaskSeed(secret, kRound, client.index, survivor.index));
        FEDGE_RETURN_IF_ERROR(RemovePairwiseMask(survivor.index, client.index, seed, sum));
      }
    }
    return sum;
  }

  std::vector<std::uint32_t> PlainSum(const std::vector<int>& survivors) const {
    std::vector<std::uint32_t> sum(kDimension, 0);
    for (int c : survivors) {
      for (std::size_t k = 0; k < kDimension; ++k) sum[k] += clients_[c].encoded[k];
    }
    return sum;
  }

  std::unique_ptr<FixedPointCodec> codec_;
  std::vector<Client> clients_;
};

TEST_F(SecureSumTest, PairwiseMasksCancelInTheFullSum) {
  std::vector<std::uint32_t> sum(kDimension, 0);
  for (int c = 0; c < kClients; ++c) {
    const std::vector<std::uint32_t> masked = MaskedInput(c);
    EXPECT_NE(masked, clients_[c].encoded);
    for (std::size_t k = 0; k < kDimension; ++k) sum[k] += masked[k];
  }
  // Only the self masks are left.
  for (const Client& client : clients_) FEDGE_ASSERT_OK(RemoveSelfMask(client.self_seed, sum));
  EXPECT_EQ(sum, PlainSum({0, 1, 2, 3, 4, 5}));
}

TEST_F(SecureSumTest, NoDropoutsRecoversTheSumExactly) {
  const std::vector<int> everyone = {0, 1, 2, 3, 4, 5};
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::uint32_t> sum, ServerSum(everyone));
  EXPECT_EQ(sum, PlainSum(everyone));

  std::vector<float> decoded(kDimension);
  FEDGE_ASSERT_OK(codec_->DecodeSum(sum, kClients, decoded));
  for (std::size_t k = 0; k < kDimension; ++k) {
    double expected = 0;
    for (const Client& client : clients_) expected += client.update[k];
    ASSERT_NEAR(decoded[k], expected, kClients / codec_->scale() + 1e-6);
  }
}

TEST_F(SecureSumTest, OneDroppedClientIsRecoveredExactly) {
  const std::vector<int> survivors = {0, 1, 2, 4, 5};  // Client position 3 dropped.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::uint32_t> sum, ServerSum(survivors));
  EXPECT_EQ(sum, PlainSum(survivors));
  std::vector<float> decoded(kDimension);
  FEDGE_EXPECT_OK(codec_->DecodeSum(sum, static_cast<int>(survivors.size()), decoded));
}

TEST_F(SecureSumTest, TwoDroppedClientsDownToTheThresholdAreRecoveredExactly) {
  const std::vector<int> survivors = {1, 2, 4, 5};  // Positions 0 and 3 dropped.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::uint32_t> sum, ServerSum(survivors));
  EXPECT_EQ(sum, PlainSum(survivors));
}

TEST_F(SecureSumTest, UnremovedMasksOfADroppedClientLeaveGarbage) {
  const std::vector<int> survivors = {0, 1, 2, 4, 5};
  std::vector<std::uint32_t> sum(kDimension, 0);
  for (int c : survivors) {
    const std::vector<std::uint32_t> masked = MaskedInput(c);
    for (std::size_t k = 0; k < kDimension; ++k) sum[k] += masked[k];
  }
  for (int c : survivors) FEDGE_ASSERT_OK(RemoveSelfMask(clients_[c].self_seed, sum));
  EXPECT_NE(sum, PlainSum(survivors));
  std::vector<float> decoded(kDimension);
  EXPECT_THAT(codec_->DecodeSum(sum, static_cast<int>(survivors.size()), decoded),
              StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace fedge::privacy::secagg
