#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fedge/privacy/secagg/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::privacy::secagg {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::vector<std::uint8_t> FromHex(const std::string& hex) {
  std::vector<std::uint8_t> bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<std::uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

template <std::size_t N>
std::array<std::uint8_t, N> ArrayFromHex(const std::string& hex) {
  const std::vector<std::uint8_t> bytes = FromHex(hex);
  std::array<std::uint8_t, N> out{};
  EXPECT_EQ(bytes.size(), N);
  std::memcpy(out.data(), bytes.data(), std::min(N, bytes.size()));
  return out;
}

std::vector<std::uint8_t> Bytes(const std::string& text) {
  return std::vector<std::uint8_t>(text.begin(), text.end());
}

Seed SeedOf(std::uint8_t fill) {
  Seed seed;
  seed.fill(fill);
  return seed;
}

// --- RandomBytes -----------------------------------------------------------

TEST(RandomBytesTest, FillsBuffersDifferently) {
  std::array<std::uint8_t, 32> a{}, b{};
  FEDGE_ASSERT_OK(RandomBytes(a));
  FEDGE_ASSERT_OK(RandomBytes(b));
  EXPECT_NE(a, b);
  FEDGE_EXPECT_OK(RandomBytes(std::span<std::uint8_t>()));
}

// --- X25519 ----------------------------------------------------------------

TEST(X25519Test, AgreementIsSymmetric) {
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair alice, X25519KeyPair::Generate());
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair bob, X25519KeyPair::Generate());
  EXPECT_NE(alice.public_key(), bob.public_key());
  FEDGE_ASSERT_OK_AND_ASSIGN(SharedSecret ab, alice.DeriveSharedSecret(bob.public_key()));
  FEDGE_ASSERT_OK_AND_ASSIGN(SharedSecret ba, bob.DeriveSharedSecret(alice.public_key()));
  EXPECT_EQ(ab, ba);
  EXPECT_NE(ab, SharedSecret{});
}

TEST(X25519Test, ThirdPartyGetsADifferentSecret) {
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair alice, X25519KeyPair::Generate());
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair bob, X25519KeyPair::Generate());
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair eve, X25519KeyPair::Generate());
  FEDGE_ASSERT_OK_AND_ASSIGN(SharedSecret ab, alice.DeriveSharedSecret(bob.public_key()));
  FEDGE_ASSERT_OK_AND_ASSIGN(SharedSecret eb, eve.DeriveSharedSecret(bob.public_key()));
  EXPECT_NE(ab, eb);
}

// RFC 7748 section 6.1.
TEST(X25519Test, MatchesRfc7748Vectors) {
  const auto alice_private =
      ArrayFromHex<32>("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const auto bob_private =
      ArrayFromHex<32>("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair alice, X25519KeyPair::FromPrivateKey(alice_private));
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair bob, X25519KeyPair::FromPrivateKey(bob_private));
  EXPECT_EQ(alice.public_key(),
            ArrayFromHex<32>("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
  FEDGE_ASSERT_OK_AND_ASSIGN(SharedSecret secret, alice.DeriveSharedSecret(bob.public_key()));
  EXPECT_EQ(secret,
            ArrayFromHex<32>("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"));
}

TEST(X25519Test, PrivateKeyRoundTripRebuildsTheSameKey) {
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair original, X25519KeyPair::Generate());
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519PrivateKey private_key, original.ExportPrivateKey());
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair rebuilt, X25519KeyPair::FromPrivateKey(private_key));
  EXPECT_EQ(rebuilt.public_key(), original.public_key());
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair peer, X25519KeyPair::Generate());
  FEDGE_ASSERT_OK_AND_ASSIGN(SharedSecret a, original.DeriveSharedSecret(peer.public_key()));
  FEDGE_ASSERT_OK_AND_ASSIGN(SharedSecret b, rebuilt.DeriveSharedSecret(peer.public_key()));
  EXPECT_EQ(a, b);
}

TEST(X25519Test, LowOrderPeerKeyIsRefused) {
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair alice, X25519KeyPair::Generate());
  const X25519PublicKey zero_point{};  // u = 0: the shared secret would be all zeros.
  EXPECT_THAT(alice.DeriveSharedSecret(zero_point),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("X25519")));
}

TEST(X25519Test, MovedKeyPairStillWorks) {
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair a, X25519KeyPair::Generate());
  FEDGE_ASSERT_OK_AND_ASSIGN(X25519KeyPair b, X25519KeyPair::Generate());
  const X25519PublicKey a_public = a.public_key();
  X25519KeyPair moved = std::move(a);
  EXPECT_EQ(moved.public_key(), a_public);
  FEDGE_ASSERT_OK_AND_ASSIGN(SharedSecret x, moved.DeriveSharedSecret(b.public_key()));
  FEDGE_ASSERT_OK_AND_ASSIGN(SharedSecret y, b.DeriveSharedSecret(a_public));
  EXPECT_EQ(x, y);
}

// --- HKDF ------------------------------------------------------------------

// RFC 5869 appendix A.1 (test case 1, SHA-256).
TEST(HkdfSha256Test, MatchesRfc5869TestCase1) {
  const std::vector<std::uint8_t> ikm = FromHex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
  const std::vector<std::uint8_t> salt = FromHex("000102030405060708090a0b0c");
  const std::vector<std::uint8_t> info = FromHex("f0f1f2f3f4f5f6f7f8f9");
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::uint8_t> okm, HkdfSha256(ikm, salt, info, 42));
  EXPECT_THAT(okm,
              ElementsAreArray(FromHex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d5"
                                       "6ecc4c5bf34007208d5b887185865")));
}

// RFC 5869 appendix A.3 (test case 3: empty salt and info).
TEST(HkdfSha256Test, MatchesRfc5869TestCase3WithEmptySaltAndInfo) {
  const std::vector<std::uint8_t> ikm = FromHex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::uint8_t> okm, HkdfSha256(ikm, {}, {}, 42));
  EXPECT_THAT(okm,
              ElementsAreArray(FromHex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5"
                                       "f3c738d2d9d201395faa4b61a96c8")));
}

TEST(HkdfSha256Test, InfoSeparatesKeys) {
  const std::vector<std::uint8_t> ikm(32, 7);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto a, HkdfSha256(ikm, {}, Bytes("mask"), 32));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto b, HkdfSha256(ikm, {}, Bytes("channel"), 32));
  EXPECT_NE(a, b);
}

TEST(HkdfSha256Test, RejectsBadLengths) {
  const std::vector<std::uint8_t> ikm(32, 7);
  EXPECT_THAT(HkdfSha256(ikm, {}, {}, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HKDF-SHA256")));
  EXPECT_THAT(HkdfSha256(ikm, {}, {}, 255 * 32 + 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HKDF-SHA256")));
  FEDGE_EXPECT_OK(HkdfSha256(ikm, {}, {}, 255 * 32).status());
}

// --- AES-256-GCM -----------------------------------------------------------

class AesGcmTest : public ::testing::Test {
 protected:
  const std::vector<std::uint8_t> key_ = std::vector<std::uint8_t>(32, 0x42);
  const std::vector<std::uint8_t> nonce_ = std::vector<std::uint8_t>(12, 0x24);
  const std::vector<std::uint8_t> plaintext_ = Bytes("share of s_u^SK for client 7");
  const std::vector<std::uint8_t> ad_ = Bytes("round=3,from=2,to=7");
};

TEST_F(AesGcmTest, RoundTrips) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto sealed, AesGcmSeal(key_, nonce_, plaintext_, ad_));
  EXPECT_EQ(sealed.size(), plaintext_.size() + kGcmTagSize);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto opened, AesGcmOpen(key_, nonce_, sealed, ad_));
  EXPECT_EQ(opened, plaintext_);
}

TEST_F(AesGcmTest, RoundTripsEmptyPlaintextAndEmptyAssociatedData) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto sealed, AesGcmSeal(key_, nonce_, {}, {}));
  EXPECT_EQ(sealed.size(), kGcmTagSize);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto opened, AesGcmOpen(key_, nonce_, sealed, {}));
  EXPECT_TRUE(opened.empty());
}

// NIST GCM test vector (gcmEncryptExtIV256 "Test Case 14"): zero key, zero
// IV, 16 zero bytes of plaintext.
TEST_F(AesGcmTest, MatchesKnownAnswer) {
  const std::vector<std::uint8_t> zero_key(32, 0), zero_iv(12, 0), zero_block(16, 0);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto sealed, AesGcmSeal(zero_key, zero_iv, zero_block, {}));
  EXPECT_THAT(sealed, ElementsAreArray(FromHex("cea7403d4d606b6e074ec5d3baf39d18"
                                               "d0d1c8a799996bf0265b98b5d48ab919")));
}

TEST_F(AesGcmTest, TamperedCiphertextFails) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto sealed, AesGcmSeal(key_, nonce_, plaintext_, ad_));
  sealed[0] ^= 0x01;
  EXPECT_THAT(AesGcmOpen(key_, nonce_, sealed, ad_),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("authentication failed")));
}

TEST_F(AesGcmTest, TamperedTagFails) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto sealed, AesGcmSeal(key_, nonce_, plaintext_, ad_));
  sealed.back() ^= 0x80;
  EXPECT_THAT(AesGcmOpen(key_, nonce_, sealed, ad_), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(AesGcmTest, TamperedAssociatedDataFails) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto sealed, AesGcmSeal(key_, nonce_, plaintext_, ad_));
  std::vector<std::uint8_t> other_ad = Bytes("round=3,from=2,to=8");
  EXPECT_THAT(AesGcmOpen(key_, nonce_, sealed, other_ad), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(AesGcmOpen(key_, nonce_, sealed, {}), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(AesGcmTest, WrongKeyOrNonceFails) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto sealed, AesGcmSeal(key_, nonce_, plaintext_, ad_));
  std::vector<std::uint8_t> other_key = key_;
  other_key[31] ^= 1;
  std::vector<std::uint8_t> other_nonce = nonce_;
  other_nonce[0] ^= 1;
  EXPECT_THAT(AesGcmOpen(other_key, nonce_, sealed, ad_), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(AesGcmOpen(key_, other_nonce, sealed, ad_), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(AesGcmTest, TruncatedInputFails) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto sealed, AesGcmSeal(key_, nonce_, plaintext_, ad_));
  sealed.pop_back();
  EXPECT_THAT(AesGcmOpen(key_, nonce_, sealed, ad_), StatusIs(absl::StatusCode::kDataLoss));
  const std::vector<std::uint8_t> too_short(kGcmTagSize - 1, 0);
  EXPECT_THAT(AesGcmOpen(key_, nonce_, too_short, ad_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shorter than")));
}

TEST_F(AesGcmTest, RejectsBadKeyAndNonceSizes) {
  const std::vector<std::uint8_t> short_key(16, 1), long_nonce(16, 1);
  EXPECT_THAT(AesGcmSeal(short_key, nonce_, plaintext_, ad_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key must be 32")));
  EXPECT_THAT(AesGcmSeal(key_, long_nonce, plaintext_, ad_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nonce must be 12")));
  const std::vector<std::uint8_t> sealed(40, 0);
  EXPECT_THAT(AesGcmOpen(short_key, nonce_, sealed, ad_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("open")));
  EXPECT_THAT(AesGcmOpen(key_, long_nonce, sealed, ad_),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// --- AES-CTR PRG -----------------------------------------------------------

std::vector<std::uint32_t> Expand(const Seed& seed, std::size_t count) {
  absl::StatusOr<AesCtrPrg> prg = AesCtrPrg::Create(seed);
  EXPECT_TRUE(prg.ok()) << prg.status();
  std::vector<std::uint32_t> out(count);
  EXPECT_TRUE(prg->Fill(out).ok());
  return out;
}

TEST(AesCtrPrgTest, IsDeterministicPerSeed) {
  EXPECT_EQ(Expand(SeedOf(1), 10000), Expand(SeedOf(1), 10000));
}

TEST(AesCtrPrgTest, DifferentSeedsDiffer) {
  const std::vector<std::uint32_t> a = Expand(SeedOf(1), 1000);
  Seed other = SeedOf(1);
  other[31] ^= 1;
  const std::vector<std::uint32_t> b = Expand(other, 1000);
  int equal = 0;
  for (std::size_t k = 0; k < a.size(); ++k) equal += a[k] == b[k];
  EXPECT_LE(equal, 1);
}

// The stream is exactly AES-256_seed(counter block k), k = 0, 1, ..., read as
// little-endian words: cross-checked against single-block ECB encryption.
TEST(AesCtrPrgTest, IsAesOfCounterBlocksFromZero) {
  Seed seed;
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i * 11 + 3);
  const std::vector<std::uint32_t> words = Expand(seed, 12);  // Three blocks.

  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ASSERT_NE(ctx, nullptr);
  ASSERT_EQ(EVP_EncryptInit_ex2(ctx, EVP_aes_256_ecb(), seed.data(), nullptr, nullptr), 1);
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  for (std::uint8_t block = 0; block < 3; ++block) {
    std::uint8_t counter[16] = {};
    counter[15] = block;
    std::uint8_t expected[16];
    int length = 0;
    ASSERT_EQ(EVP_EncryptUpdate(ctx, expected, &length, counter, 16), 1);
    ASSERT_EQ(length, 16);
    for (int w = 0; w < 4; ++w) {
      const std::uint8_t* b = expected + 4 * w;
      const std::uint32_t word =
          b[0] | b[1] << 8 | b[2] << 16 | static_cast<std::uint32_t>(b[3]) << 24;
      EXPECT_EQ(words[4 * block + w], word) << "block " << int{block} << " word " << w;
    }
  }
  EVP_CIPHER_CTX_free(ctx);
}

TEST(AesCtrPrgTest, SuccessiveCallsContinueTheStream) {
  const Seed seed = SeedOf(9);
  const std::vector<std::uint32_t> whole = Expand(seed, 10007);
  FEDGE_ASSERT_OK_AND_ASSIGN(AesCtrPrg prg, AesCtrPrg::Create(seed));
  std::vector<std::uint32_t> pieces(whole.size());
  // Odd sizes, crossing AES blocks and the internal chunk size.
  std::size_t offset = 0;
  for (std::size_t size : {1u, 3u, 5u, 4096u, 4097u, 1805u}) {
    FEDGE_ASSERT_OK(prg.Fill(std::span<std::uint32_t>(pieces).subspan(offset, size)));
    offset += size;
  }
  ASSERT_EQ(offset, whole.size());
  EXPECT_EQ(pieces, whole);
}

TEST(AesCtrPrgTest, AddToAndSubtractFromApplyTheStreamModulo2To32) {
  const Seed seed = SeedOf(5);
  const std::vector<std::uint32_t> stream = Expand(seed, 9000);
  std::vector<std::uint32_t> values(stream.size());
  for (std::size_t k = 0; k < values.size(); ++k)
    values[k] = 0xFFFFFFF0u + static_cast<std::uint32_t>(k);
  const std::vector<std::uint32_t> original = values;

  FEDGE_ASSERT_OK_AND_ASSIGN(AesCtrPrg add, AesCtrPrg::Create(seed));
  FEDGE_ASSERT_OK(add.AddTo(values));
  for (std::size_t k = 0; k < values.size(); ++k) {
    ASSERT_EQ(values[k], static_cast<std::uint32_t>(original[k] + stream[k]));
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(AesCtrPrg subtract, AesCtrPrg::Create(seed));
  FEDGE_ASSERT_OK(subtract.SubtractFrom(values));
  EXPECT_EQ(values, original);
}

// Chi-square of byte frequencies over 4 MiB of stream (fixed seed, so the
// test is deterministic). 255 degrees of freedom: mean 255, sd ~22.6; the
// bound 340 is p ~ 3e-4 for a uniform source.
TEST(AesCtrPrgTest, BytesAreRoughlyUniform) {
  const std::vector<std::uint32_t> words = Expand(SeedOf(0x5A), 1 << 20);
  std::array<double, 256> counts{};
  for (std::uint32_t word : words) {
    for (int shift = 0; shift < 32; shift += 8) counts[(word >> shift) & 0xFF] += 1;
  }
  const double expected = 4.0 * static_cast<double>(words.size()) / 256.0;
  double chi_square = 0;
  for (double count : counts) chi_square += (count - expected) * (count - expected) / expected;
  EXPECT_LT(chi_square, 340.0);
  EXPECT_GT(chi_square, 180.0);  // Suspiciously perfect would also be wrong.
}

TEST(AesCtrPrgTest, EmptySpansAreNoOps) {
  FEDGE_ASSERT_OK_AND_ASSIGN(AesCtrPrg prg, AesCtrPrg::Create(SeedOf(3)));
  FEDGE_EXPECT_OK(prg.Fill({}));
  FEDGE_EXPECT_OK(prg.AddTo({}));
  std::vector<std::uint32_t> first(4);
  FEDGE_ASSERT_OK(prg.Fill(first));
  EXPECT_EQ(first, Expand(SeedOf(3), 4));
}

TEST(AesCtrPrgTest, MovedPrgContinuesItsStream) {
  const std::vector<std::uint32_t> whole = Expand(SeedOf(4), 8);
  FEDGE_ASSERT_OK_AND_ASSIGN(AesCtrPrg prg, AesCtrPrg::Create(SeedOf(4)));
  std::vector<std::uint32_t> head(3), tail(5);
  FEDGE_ASSERT_OK(prg.Fill(head));
  AesCtrPrg moved = std::move(prg);
  FEDGE_ASSERT_OK(moved.Fill(tail));
  head.insert(head.end(), tail.begin(), tail.end());
  EXPECT_EQ(head, whole);
}

}  // namespace
}  // namespace fedge::privacy::secagg
