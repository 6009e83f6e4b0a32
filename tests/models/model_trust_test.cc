// What a device accepts beyond one signature: no downgrade without a signed
// rollback record, and signing keys only through a chain from the pinned key.
#include "fedge/models/model_trust.h"

#include <string>
#include <vector>

#include "fedge/models/artifact.h"
#include "fedge/proto/atomic_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"
#include "temp_dir.h"
#include "test_layouts.h"

namespace fedge::models {
namespace {

using ::testing::HasSubstr;
using testing_util::IsOk;
using testing_util::StatusIs;

constexpr int64_t kNow = 1760000000000;

v1::ModelArtifact Signed(uint64_t version, const SigningKey& key) {
  v1::ModelArtifact artifact = testing_layouts::TinyArtifact(version, 101 + version);
  EXPECT_THAT(SignArtifact(artifact, key), IsOk());
  return artifact;
}

class ModelTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 4; ++i) {
      absl::StatusOr<SigningKey> key = SigningKey::Generate();
      ASSERT_THAT(key, IsOk());
      keys_.push_back(*std::move(key));
    }
  }
  const SigningKey& root() const { return keys_[0]; }

  std::vector<SigningKey> keys_;
};

TEST_F(ModelTrustTest, AReplayedOldVersionIsRefused) {
  ModelTrust trust(root().public_key());
  FEDGE_ASSERT_OK(trust.Accept(Signed(3, root()), nullptr));
  FEDGE_ASSERT_OK(trust.Accept(Signed(5, root()), nullptr));
  FEDGE_EXPECT_OK(trust.Accept(Signed(5, root()), nullptr));  // the same version again
  // Version 3 is correctly signed, but older than the one running.
  EXPECT_THAT(trust.Accept(Signed(3, root()), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("older than version 5 this device runs")));
  EXPECT_EQ(trust.running(), 5u);
  FEDGE_EXPECT_OK(trust.Accept(Signed(6, root()), nullptr));
}

TEST_F(ModelTrustTest, ASignedRollbackRecordIsAccepted) {
  ModelTrust trust(root().public_key());
  FEDGE_ASSERT_OK(trust.Accept(Signed(5, root()), nullptr));
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::RollbackRecord record, SignRollback(root(), 3, 5, kNow));
  FEDGE_ASSERT_OK(trust.Accept(Signed(3, root()), &record));
  EXPECT_EQ(trust.running(), 3u);
}

TEST_F(ModelTrustTest, ARollbackRecordIsRefusedUnlessItCoversTheDowngrade) {
  ModelTrust trust(root().public_key());
  FEDGE_ASSERT_OK(trust.Accept(Signed(6, root()), nullptr));
  const v1::ModelArtifact three = Signed(3, root());
  // Issued when version 5 was the newest: it does not cover version 6.
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::RollbackRecord stale, SignRollback(root(), 3, 5, kNow));
  EXPECT_THAT(trust.Accept(three, &stale),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("up to 5")));
  // For another version.
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::RollbackRecord other, SignRollback(root(), 4, 6, kNow));
  EXPECT_THAT(trust.Accept(three, &other),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no rollback record")));
  // Altered after signing.
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::RollbackRecord altered, SignRollback(root(), 3, 6, kNow));
  altered.set_supersedes(9);
  EXPECT_THAT(trust.Accept(three, &altered),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not verify")));
  // Signed by a key the device does not trust.
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::RollbackRecord foreign, SignRollback(keys_[3], 3, 6, kNow));
  EXPECT_THAT(trust.Accept(three, &foreign),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("untrusted key")));
  EXPECT_EQ(trust.running(), 6u);
  EXPECT_THAT(SignRollback(root(), 6, 6, kNow), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(ModelTrustTest, ARotatedKeyIsAcceptedThroughTheChain) {
  std::vector<v1::KeyEndorsement> chain;
  for (int i = 1; i <= 2; ++i) {
    FEDGE_ASSERT_OK_AND_ASSIGN(v1::KeyEndorsement link,
                               EndorseKey(keys_[i - 1], keys_[i].public_key(), kNow + i));
    chain.push_back(link);
  }
  ModelTrust trust(root().public_key());
  // Before the device has the chain, the new key is unknown to it.
  EXPECT_THAT(trust.Accept(Signed(1, keys_[2]), nullptr),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown key")));
  FEDGE_ASSERT_OK(trust.AdoptChain(chain, keys_[2].key_id()));
  EXPECT_EQ(trust.trusted().size(), 3u);
  FEDGE_EXPECT_OK(trust.Accept(Signed(1, keys_[2]), nullptr));
  // Versions signed before the rotation still verify.
  FEDGE_EXPECT_OK(trust.Accept(Signed(2, keys_[1]), nullptr));
}

TEST_F(ModelTrustTest, AKeyThatDoesNotChainToThePinnedOneIsRefused) {
  ModelTrust trust(root().public_key());
  // keys_[3] endorses keys_[2]: a valid signature, but not from the root.
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::KeyEndorsement rogue,
                             EndorseKey(keys_[3], keys_[2].public_key(), kNow));
  std::vector<v1::KeyEndorsement> chain = {rogue};
  EXPECT_THAT(trust.AdoptChain(chain, keys_[2].key_id()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not chain")));
  // A link that claims the root endorsed it, with another key's signature.
  rogue.set_endorsed_by(root().key_id());
  chain = {rogue};
  EXPECT_THAT(trust.AdoptChain(chain, keys_[2].key_id()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("link 0")));
  // A good chain whose end is not the key the aggregator says it signs with.
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::KeyEndorsement good,
                             EndorseKey(root(), keys_[1].public_key(), kNow));
  chain = {good};
  EXPECT_THAT(trust.AdoptChain(chain, keys_[2].key_id()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("this device pins key")));
  // A link whose key bytes were swapped after signing.
  v1::KeyEndorsement swapped = good;
  swapped.set_public_key(keys_[2].public_key().raw());
  chain = {swapped};
  EXPECT_THAT(trust.AdoptChain(chain, keys_[1].key_id()),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bad signature")));
  // Nothing was adopted: only the root is trusted.
  EXPECT_EQ(trust.trusted().size(), 1u);
  EXPECT_THAT(trust.Accept(Signed(1, keys_[2]), nullptr),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown key")));
}

TEST_F(ModelTrustTest, KeyChainFileGrowsOnlyFromItsLastKey) {
  testing_util::ScopedTempDir dir;
  const std::string path = dir.File("chain.pb");
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::KeyChain empty, LoadKeyChain(path));
  EXPECT_EQ(empty.endorsements_size(), 0);
  FEDGE_ASSERT_OK(AppendToKeyChain(path, root(), keys_[1].public_key(), kNow));
  EXPECT_THAT(AppendToKeyChain(path, root(), keys_[2].public_key(), kNow),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ends at key")));
  EXPECT_THAT(AppendToKeyChain(path, keys_[1], keys_[1].public_key(), kNow),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("itself")));
  FEDGE_ASSERT_OK(AppendToKeyChain(path, keys_[1], keys_[2].public_key(), kNow));
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::KeyChain chain, LoadKeyChain(path));
  ASSERT_EQ(chain.endorsements_size(), 2);
  EXPECT_EQ(chain.root_public_key(), root().public_key().raw());
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<VerifyingKey> keys,
                             FollowKeyChain(root().public_key(),
                                            std::vector<v1::KeyEndorsement>(
                                                chain.endorsements().begin(),
                                                chain.endorsements().end())));
  EXPECT_EQ(keys.back().key_id(), keys_[2].key_id());
  FEDGE_ASSERT_OK(proto::WriteFileAtomic(path, "\xff\xff garbage", 0644));
  EXPECT_THAT(LoadKeyChain(path), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chain.pb")));
}

}  // namespace
}  // namespace fedge::models
