// Ed25519 signing of model artifacts: keys, PEM files, the signed message,
// every refusal of VerifySignedArtifact, and interop with the openssl CLI.
#include "fedge/models/signing.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "fedge/models/artifact.h"
#include "fedge/models/quantization.h"
#include "fedge/proto/atomic_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"
#include "test_layouts.h"

namespace fedge::models {
namespace {

namespace fs = std::filesystem;
using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// An unencrypted PKCS#8 PEM for the raw Ed25519 private key `seed_hex`.
std::string PrivateKeyPem(const std::string& seed_hex) {
  const std::string der =
      absl::HexStringToBytes("302e020100300506032b657004220420") + absl::HexStringToBytes(seed_hex);
  return "-----BEGIN PRIVATE KEY-----\n" + absl::Base64Escape(der) +
         "\n-----END PRIVATE KEY-----\n";
}

v1::ModelArtifact MakeArtifact(uint64_t version) {
  const std::vector<ParameterLayout> layout = testing_layouts::LayoutOf(
      {{"fc1.weight", {8, 6}}, {"fc1.bias", {8}}, {"fc2.weight", {3, 8}}});
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<float> values(static_cast<size_t>(LayoutSize(layout)));
  for (float& v : values) v = normal(rng);
  ArtifactOptions options;
  options.version = version;
  options.parent_version = version - 1;
  options.created_at_unix_ms = 1700000000000;
  options.metrics = {{"accuracy", 0.875}, {"loss", 0.42}};
  absl::StatusOr<v1::ModelArtifact> artifact =
      BuildFp32Artifact(ModelSpec{"mlp", {6}, 3}, layout, values, options);
  EXPECT_THAT(artifact, IsOk());
  return *artifact;
}

class SigningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<SigningKey> key = SigningKey::Generate();
    ASSERT_THAT(key, IsOk());
    key_ = std::make_unique<SigningKey>(*std::move(key));
    artifact_ = MakeArtifact(7);
    dir_ = fs::path(::testing::TempDir()) /
           ("fedge_signing_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<SigningKey> key_;
  v1::ModelArtifact artifact_;
  fs::path dir_;
};

TEST(SigningKeyTest, MatchesRfc8032TestVector2) {
  FEDGE_ASSERT_OK_AND_ASSIGN(
      SigningKey key, SigningKey::FromPem(PrivateKeyPem(
                          "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")));
  EXPECT_EQ(absl::BytesToHexString(key.public_key().raw()),
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
  const std::string expected =
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
      "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string signature, key.Sign("\x72"));
  EXPECT_EQ(absl::BytesToHexString(signature), expected);
  FEDGE_ASSERT_OK_AND_ASSIGN(
      VerifyingKey public_key,
      VerifyingKey::FromRaw(absl::HexStringToBytes(
          "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")));
  FEDGE_EXPECT_OK(public_key.Verify("\x72", absl::HexStringToBytes(expected)));
  EXPECT_THAT(public_key.Verify("\x73", absl::HexStringToBytes(expected)),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bad signature")));
}

TEST(SigningKeyTest, KeyIdIsFirst16HexOfSha256OfRawPublicKey) {
  FEDGE_ASSERT_OK_AND_ASSIGN(
      VerifyingKey key, VerifyingKey::FromRaw(absl::HexStringToBytes(
                            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")));
  EXPECT_EQ(key.key_id().size(), 16u);
  EXPECT_EQ(key.key_id(), absl::AsciiStrToLower(key.key_id()));
  FEDGE_ASSERT_OK_AND_ASSIGN(SigningKey a, SigningKey::Generate());
  FEDGE_ASSERT_OK_AND_ASSIGN(SigningKey b, SigningKey::Generate());
  EXPECT_NE(a.key_id(), b.key_id());
  EXPECT_EQ(a.key_id(), a.public_key().key_id());
}

TEST(SigningKeyTest, FromRawRefusesWrongSize) {
  EXPECT_THAT(VerifyingKey::FromRaw(std::string(31, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32 bytes, got 31")));
}

TEST_F(SigningTest, SignedArtifactVerifies) {
  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  EXPECT_EQ(artifact_.signature().size(), kEd25519SignatureSize);
  EXPECT_EQ(artifact_.signing_key_id(), key_->key_id());
  FEDGE_EXPECT_OK(VerifySignedArtifact(artifact_, key_->public_key()));
  // Still valid after a trip through the wire format.
  v1::ModelArtifact parsed;
  ASSERT_TRUE(parsed.ParseFromString(artifact_.SerializeAsString()));
  FEDGE_EXPECT_OK(VerifySignedArtifact(parsed, key_->public_key()));
}

TEST_F(SigningTest, SignedMessageIsDomainTagNulAndDeterministicHeader) {
  const std::string message = ArtifactSigningMessage(artifact_.header());
  EXPECT_THAT(message, StartsWith(std::string("fedge/artifact/v1\0", 18)));
  // The same header with its map filled in another order gives the same bytes.
  v1::ArtifactHeader reordered = artifact_.header();
  reordered.clear_metrics();
  (*reordered.mutable_metrics())["loss"] = 0.42;
  (*reordered.mutable_metrics())["accuracy"] = 0.875;
  EXPECT_EQ(ArtifactSigningMessage(reordered), message);
  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  FEDGE_EXPECT_OK(key_->public_key().Verify(message, artifact_.signature()));
}

TEST_F(SigningTest, UnsignedArtifactIsRefused) {
  EXPECT_THAT(VerifySignedArtifact(artifact_, key_->public_key()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not signed")));
}

TEST_F(SigningTest, FlippedTensorByteIsDataLoss) {
  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  std::string& data = *artifact_.mutable_tensors(1)->mutable_data();
  data[5] = static_cast<char>(data[5] ^ 0x01);
  EXPECT_THAT(VerifySignedArtifact(artifact_, key_->public_key()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("SHA-256")));
}

TEST_F(SigningTest, FlippedTensorWithRecomputedHashIsABadSignature) {
  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  std::string& data = *artifact_.mutable_tensors(0)->mutable_data();
  data[0] = static_cast<char>(data[0] ^ 0x80);
  artifact_.mutable_header()->set_tensors_sha256(ComputeTensorsSha256(artifact_));
  EXPECT_THAT(VerifySignedArtifact(artifact_, key_->public_key()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bad signature")));
}

TEST_F(SigningTest, ChangedHeaderMetricIsABadSignature) {
  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  (*artifact_.mutable_header()->mutable_metrics())["accuracy"] = 0.999;
  EXPECT_THAT(VerifySignedArtifact(artifact_, key_->public_key()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bad signature")));
}

TEST_F(SigningTest, ChangedVersionOrActivationRangesIsABadSignature) {
  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  v1::ModelArtifact newer = artifact_;
  newer.mutable_header()->set_version(8);
  EXPECT_THAT(VerifySignedArtifact(newer, key_->public_key()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bad signature")));
  v1::ModelArtifact calibrated = artifact_;
  v1::ActivationRange* range = calibrated.mutable_header()->add_activation_ranges();
  range->set_name("input");
  range->set_max(1.0f);
  EXPECT_THAT(VerifySignedArtifact(calibrated, key_->public_key()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bad signature")));
}

TEST_F(SigningTest, FlippedOrTruncatedSignatureIsRefused) {
  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  for (size_t i : {size_t{0}, size_t{31}, size_t{63}}) {
    v1::ModelArtifact flipped = artifact_;
    (*flipped.mutable_signature())[i] = static_cast<char>(flipped.signature()[i] ^ 0x04);
    EXPECT_THAT(VerifySignedArtifact(flipped, key_->public_key()),
                StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bad signature")))
        << "byte " << i;
  }
  v1::ModelArtifact truncated = artifact_;
  truncated.mutable_signature()->pop_back();
  EXPECT_THAT(VerifySignedArtifact(truncated, key_->public_key()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("63 bytes")));
}

TEST_F(SigningTest, AnotherKeyIsRefused) {
  FEDGE_ASSERT_OK_AND_ASSIGN(SigningKey other, SigningKey::Generate());
  FEDGE_ASSERT_OK(SignArtifact(artifact_, other));
  EXPECT_THAT(VerifySignedArtifact(artifact_, key_->public_key()),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("unknown key '" + other.key_id() + "'")));
  // Claiming the pinned key's id does not help.
  artifact_.set_signing_key_id(key_->key_id());
  EXPECT_THAT(VerifySignedArtifact(artifact_, key_->public_key()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bad signature")));
}

TEST_F(SigningTest, SeveralTrustedKeysAllowRotation) {
  FEDGE_ASSERT_OK_AND_ASSIGN(SigningKey next, SigningKey::Generate());
  const std::vector<VerifyingKey> trusted = {key_->public_key(), next.public_key()};
  v1::ModelArtifact by_next = artifact_;
  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  FEDGE_ASSERT_OK(SignArtifact(by_next, next));
  FEDGE_EXPECT_OK(VerifySignedArtifact(artifact_, trusted));
  FEDGE_EXPECT_OK(VerifySignedArtifact(by_next, trusted));
  EXPECT_THAT(VerifySignedArtifact(by_next, std::span<const VerifyingKey>()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("trusted: none")));
}

TEST_F(SigningTest, SignArtifactRefusesTamperedTensorsAndChangesNothing) {
  std::string& data = *artifact_.mutable_tensors(2)->mutable_data();
  data[0] = static_cast<char>(data[0] ^ 0x01);
  const std::string before = artifact_.SerializeAsString();
  EXPECT_THAT(SignArtifact(artifact_, *key_),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("refusing to sign")));
  EXPECT_EQ(artifact_.SerializeAsString(), before);
}

TEST_F(SigningTest, ResigningReplacesTheSignature) {
  FEDGE_ASSERT_OK_AND_ASSIGN(SigningKey other, SigningKey::Generate());
  FEDGE_ASSERT_OK(SignArtifact(artifact_, other));
  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  FEDGE_EXPECT_OK(VerifySignedArtifact(artifact_, key_->public_key()));
}

TEST_F(SigningTest, QuantizingDropsTheSignatureSoSignAfterEncoding) {
  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::ModelArtifact int8, QuantizeArtifact(artifact_, {}));
  EXPECT_THAT(VerifySignedArtifact(int8, key_->public_key()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not signed")));
  FEDGE_ASSERT_OK(SignArtifact(int8, *key_));
  FEDGE_EXPECT_OK(VerifySignedArtifact(int8, key_->public_key()));
}

TEST_F(SigningTest, PemFilesRoundTrip) {
  FEDGE_ASSERT_OK(key_->SavePem(dir_ / "signing.key"));
  FEDGE_ASSERT_OK(key_->public_key().SavePem(dir_ / "signing.pub"));
  struct stat info;
  ASSERT_EQ(::stat((dir_ / "signing.key").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir_ / "signing.pub").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string pem, proto::ReadFile(dir_ / "signing.key"));
  EXPECT_THAT(pem, StartsWith("-----BEGIN PRIVATE KEY-----"));

  FEDGE_ASSERT_OK_AND_ASSIGN(SigningKey loaded, SigningKey::LoadPem(dir_ / "signing.key"));
  FEDGE_ASSERT_OK_AND_ASSIGN(VerifyingKey loaded_public,
                             VerifyingKey::LoadPem(dir_ / "signing.pub"));
  EXPECT_EQ(loaded.key_id(), key_->key_id());
  EXPECT_EQ(loaded_public.raw(), key_->public_key().raw());
  FEDGE_ASSERT_OK(SignArtifact(artifact_, loaded));
  FEDGE_EXPECT_OK(VerifySignedArtifact(artifact_, loaded_public));
}

TEST_F(SigningTest, BadKeyFilesAreRefusedByName) {
  const fs::path missing = dir_ / "missing.key";
  EXPECT_THAT(SigningKey::LoadPem(missing),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(missing.string())));
  EXPECT_THAT(VerifyingKey::LoadPem(missing),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(missing.string())));

  const fs::path garbage = dir_ / "garbage.pem";
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(garbage, "not a key\n"));
  EXPECT_THAT(SigningKey::LoadPem(garbage),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(garbage.string())));
  EXPECT_THAT(VerifyingKey::LoadPem(garbage),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(garbage.string())));

  // A public key where a private key belongs, and the other way round.
  const fs::path pub = dir_ / "signing.pub";
  const fs::path priv = dir_ / "signing.key";
  FEDGE_ASSERT_OK(key_->public_key().SavePem(pub));
  FEDGE_ASSERT_OK(key_->SavePem(priv));
  EXPECT_THAT(SigningKey::LoadPem(pub),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("private key")));
  EXPECT_THAT(VerifyingKey::LoadPem(priv),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("public key")));
}

// --- interop with the openssl command line ---------------------------------

bool HaveOpensslCli() { return std::system("command -v openssl >/dev/null 2>&1") == 0; }

int RunShell(const std::string& command) { return std::system((command + " 2>&1").c_str()); }

TEST_F(SigningTest, OpensslCliKeysLoadSignAndVerify) {
  if (!HaveOpensslCli()) GTEST_SKIP() << "openssl is not on PATH";
  const fs::path key_path = dir_ / "k.pem";
  const fs::path pub_path = dir_ / "k.pub";
  ASSERT_EQ(RunShell("openssl genpkey -algorithm ed25519 -out '" + key_path.string() + "'"), 0);
  ASSERT_EQ(RunShell("openssl pkey -in '" + key_path.string() + "' -pubout -out '" +
                     pub_path.string() + "'"),
            0);
  FEDGE_ASSERT_OK_AND_ASSIGN(SigningKey key, SigningKey::LoadPem(key_path));
  FEDGE_ASSERT_OK_AND_ASSIGN(VerifyingKey pinned, VerifyingKey::LoadPem(pub_path));
  EXPECT_EQ(key.key_id(), pinned.key_id());
  FEDGE_ASSERT_OK(SignArtifact(artifact_, key));
  FEDGE_EXPECT_OK(VerifySignedArtifact(artifact_, pinned));

  // Our public key PEM is byte-for-byte what openssl writes.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string ours, pinned.ToPem());
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string theirs, proto::ReadFile(pub_path));
  EXPECT_EQ(ours, theirs);
}

TEST_F(SigningTest, OpensslCliVerifiesOurSignatureAndReadsOurKey) {
  if (!HaveOpensslCli()) GTEST_SKIP() << "openssl is not on PATH";
  FEDGE_ASSERT_OK(key_->SavePem(dir_ / "ours.key"));
  FEDGE_ASSERT_OK(key_->public_key().SavePem(dir_ / "ours.pub"));
  // openssl derives the same public key from our private key file.
  ASSERT_EQ(RunShell("openssl pkey -in '" + (dir_ / "ours.key").string() + "' -pubout -out '" +
                     (dir_ / "derived.pub").string() + "'"),
            0);
  FEDGE_ASSERT_OK_AND_ASSIGN(VerifyingKey derived, VerifyingKey::LoadPem(dir_ / "derived.pub"));
  EXPECT_EQ(derived.raw(), key_->public_key().raw());

  FEDGE_ASSERT_OK(SignArtifact(artifact_, *key_));
  FEDGE_ASSERT_OK(
      proto::WriteFileAtomic(dir_ / "message", ArtifactSigningMessage(artifact_.header())));
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_ / "signature", artifact_.signature()));
  const std::string verify =
      "openssl pkeyutl -verify -pubin -inkey '" + (dir_ / "ours.pub").string() + "' -rawin -in '" +
      (dir_ / "message").string() + "' -sigfile '" + (dir_ / "signature").string() + "' >/dev/null";
  EXPECT_EQ(RunShell(verify), 0);
  // And rejects it for another message.
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(dir_ / "message", "something else"));
  EXPECT_NE(RunShell(verify), 0);
}

TEST_F(SigningTest, OtherKeyTypesAreRefused) {
  if (!HaveOpensslCli()) GTEST_SKIP() << "openssl is not on PATH";
  const fs::path x25519 = dir_ / "x25519.pem";
  ASSERT_EQ(RunShell("openssl genpkey -algorithm x25519 -out '" + x25519.string() + "'"), 0);
  EXPECT_THAT(SigningKey::LoadPem(x25519),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected an Ed25519 key")));
}

}  // namespace
}  // namespace fedge::models
