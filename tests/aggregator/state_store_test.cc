#include "fedge/aggregator/state_store.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <fstream>

#include "fedge/models/artifact.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "round_fixtures.h"
#include "status_matchers.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("fedge-state-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static v1::ModelArtifact Artifact(uint64_t version, float value) {
    models::ArtifactOptions options;
    options.version = version;
    auto artifact = models::BuildFp32Artifact(round_testing::kSpec, round_testing::kLayout,
                                              std::vector<float>(4, value), options);
    EXPECT_TRUE(artifact.ok());
    return *artifact;
  }
  static v1::EncodedUpdate Update(const std::string& client, uint64_t round) {
    v1::EncodedUpdate update;
    update.set_client_id(client);
    update.set_round(round);
    update.set_payload(std::string(16, 'p'));
    return update;
  }
  static RoundRecord Round(uint64_t id) {
    RoundRecord record;
    record.round = id;
    record.cohort = {"a", "b", "c"};
    record.train = round_testing::Train();
    record.opened_at_ms = 1000;
    record.deadline_at_ms = 2000;
    return record;
  }

  std::filesystem::path dir_;
};

TEST_F(StateStoreTest, DevicesEnrollRevokeAndReenroll) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
  FEDGE_ASSERT_OK(store->EnrollClient("dev-1", ""));
  FEDGE_ASSERT_OK(store->EnrollClient("dev-2", "token"));
  FEDGE_ASSERT_OK_AND_ASSIGN(ClientRecord two, store->GetClient("dev-2"));
  EXPECT_EQ(two.token_sha256.size(), 32u);
  EXPECT_EQ(two.token_sha256.find("token"), std::string::npos);  // only the hash is kept
  FEDGE_ASSERT_OK(store->RevokeClient("dev-1"));
  EXPECT_TRUE(store->GetClient("dev-1")->revoked);
  FEDGE_ASSERT_OK(store->EnrollClient("dev-1", ""));
  EXPECT_FALSE(store->GetClient("dev-1")->revoked);
  EXPECT_THAT(store->RevokeClient("nobody"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store->GetClient("nobody"), StatusIs(absl::StatusCode::kNotFound));
  for (const std::string& bad :
       std::vector<std::string>{"", "has space", "semi;colon", std::string(129, 'x')}) {
    EXPECT_THAT(store->EnrollClient(bad, ""),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid")));
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(auto clients, store->Clients());
  EXPECT_EQ(clients.size(), 2u);
}

TEST_F(StateStoreTest, OneProcessAtATime) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
  EXPECT_THAT(StateStore::Open(dir_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("in use")));
  store.reset();
  FEDGE_EXPECT_OK(StateStore::Open(dir_).status());
}

TEST_F(StateStoreTest, JournalAndCheckpointsRestoreTheOpenRound) {
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
    FEDGE_ASSERT_OK(store->AddVersion(VersionRecord{}, Artifact(0, 1), Artifact(0, 1)));
    FEDGE_ASSERT_OK(store->BeginRound(Round(1)));
    EXPECT_THAT(store->BeginRound(Round(1)), StatusIs(absl::StatusCode::kAlreadyExists));
    FEDGE_ASSERT_OK(store->JournalUpdate(1, 1, Update("a", 1)));
    FEDGE_ASSERT_OK(store->JournalUpdate(1, 2, Update("b", 1)));
    v1::RoundCheckpoint checkpoint;
    checkpoint.set_round(1);
    checkpoint.set_accepted(2);
    checkpoint.set_accumulator("state");
    FEDGE_ASSERT_OK(store->WriteCheckpoint(checkpoint));
    FEDGE_ASSERT_OK(store->JournalUpdate(1, 3, Update("c", 1)));
    // The same device twice in a round cannot be journaled.
    EXPECT_FALSE(store->JournalUpdate(1, 4, Update("c", 1)).ok());
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::optional<OpenRoundState> open, store->LoadOpenRound());
  ASSERT_TRUE(open.has_value());
  EXPECT_EQ(open->record.round, 1u);
  EXPECT_THAT(open->record.cohort, ElementsAre("a", "b", "c"));
  EXPECT_EQ(open->record.train.batch_size(), round_testing::Train().batch_size());
  ASSERT_TRUE(open->checkpoint.has_value());
  EXPECT_EQ(open->checkpoint->accumulator(), "state");
  ASSERT_EQ(open->journal.size(), 1u);  // only what the checkpoint does not cover
  EXPECT_EQ(open->journal[0].client_id(), "c");
  EXPECT_THAT(*store->AcceptedClients(1), ElementsAre("a", "b", "c"));

  // Closing publishes the version and drops the round's journal.
  VersionRecord version;
  version.version = 1;
  version.round = 1;
  version.metrics = {{"train_loss", 0.25}};
  FEDGE_ASSERT_OK(store->CloseRound(1, 3, version, Artifact(1, 2), Artifact(1, 2), "optimizer"));
  FEDGE_ASSERT_OK_AND_ASSIGN(open, store->LoadOpenRound());
  EXPECT_FALSE(open.has_value());
  EXPECT_THAT(store->CloseRound(1, 3, version, Artifact(1, 2), Artifact(1, 2), ""),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(*store->GetSetting("strategy_state"), "optimizer");
  FEDGE_ASSERT_OK_AND_ASSIGN(VersionRecord latest, store->LatestVersion());
  EXPECT_EQ(latest.version, 1u);
  EXPECT_DOUBLE_EQ(latest.metrics.at("train_loss"), 0.25);
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::ModelArtifact master, store->ReadMaster(1));
  FEDGE_EXPECT_OK(models::VerifyArtifact(master));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "rounds" / "r1.ckpt"));
  EXPECT_EQ(*store->LastRoundId(), 1u);
}

TEST_F(StateStoreTest, ACorruptCheckpointOrArtifactIsDataLossNamingTheFile) {
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
    FEDGE_ASSERT_OK(store->AddVersion(VersionRecord{}, Artifact(0, 1), Artifact(0, 1)));
    FEDGE_ASSERT_OK(store->BeginRound(Round(1)));
    v1::RoundCheckpoint checkpoint;
    checkpoint.set_round(1);
    checkpoint.set_accepted(0);
    FEDGE_ASSERT_OK(store->WriteCheckpoint(checkpoint));
  }
  std::ofstream(dir_ / "rounds" / "r1.ckpt") << "garbage that is not the checkpoint";
  std::ofstream(dir_ / "versions" / "v0.int8") << "\xff\xff\xff";
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
  EXPECT_THAT(store->LoadOpenRound(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("r1.ckpt")));
  EXPECT_THAT(store->ReadArtifact(0), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("v0.int8")));
}

TEST_F(StateStoreTest, VersionStatusesPersistAndTheLatestLiveVersionSkipsHeldOnes) {
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
    for (uint64_t v : {0, 1, 2}) {
      VersionRecord record;
      record.version = v;
      FEDGE_ASSERT_OK(store->AddVersion(record, Artifact(v, 1), Artifact(v, 1)));
    }
    FEDGE_ASSERT_OK(store->SetVersionStatus(2, "canary", "awaiting 3 canary reports"));
    FEDGE_ASSERT_OK(store->SetVersionStatus(1, "rejected", "validation accuracy 0.41 < 0.52"));
    EXPECT_THAT(store->SetVersionStatus(1, "maybe", ""),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'maybe'")));
    EXPECT_THAT(store->SetVersionStatus(9, "live", ""),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("9")));
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
  FEDGE_ASSERT_OK_AND_ASSIGN(VersionRecord live, store->LatestLiveVersion());
  EXPECT_EQ(live.version, 0u);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<VersionRecord> versions, store->Versions());
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[1].status, "rejected");
  EXPECT_EQ(versions[1].status_reason, "validation accuracy 0.41 < 0.52");
  EXPECT_EQ(versions[2].status, "canary");
  FEDGE_ASSERT_OK(store->SetVersionStatus(2, "live", "canary held"));
  FEDGE_ASSERT_OK_AND_ASSIGN(live, store->LatestLiveVersion());
  EXPECT_EQ(live.version, 2u);
}

TEST_F(StateStoreTest, FailedRoundsKeepNoJournal) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
  FEDGE_ASSERT_OK(store->BeginRound(Round(4)));
  FEDGE_ASSERT_OK(store->JournalUpdate(4, 1, Update("a", 4)));
  FEDGE_ASSERT_OK(store->FailRound(4, "1 of 3 updates"));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto open, store->LoadOpenRound());
  EXPECT_FALSE(open.has_value());
  FEDGE_ASSERT_OK_AND_ASSIGN(auto rounds, store->Rounds());
  ASSERT_EQ(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].state, RoundState::kFailed);
  EXPECT_EQ(rounds[0].reason, "1 of 3 updates");
  EXPECT_THAT(store->FailRound(4, "again"), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(StateStoreTest, DriftEventsSurviveARestart) {
  v1::DriftReport report;
  report.set_client_id("dev-7");
  report.set_model_version(3);
  report.add_events()->set_detector("adwin");
  report.add_events()->set_detector("ks");
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
    FEDGE_ASSERT_OK(store->RecordDrift(report));
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(dir_));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto reports, store->DriftReports());
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].client_id(), "dev-7");
  EXPECT_EQ(reports[0].model_version(), 3u);
  EXPECT_EQ(reports[0].events(0).detector(), "adwin");
  EXPECT_EQ(reports[1].events(0).detector(), "ks");
}

// Enrollment tokens come from OpenSSL's generator; when it fails the token
// is an error, not 48 hex digits of whatever the buffer held (the result of
// RAND_bytes used to be ignored). The failing generator is installed through
// OpenSSL's (deprecated, still supported) RAND_METHOD hook.
int FailingBytes(unsigned char*, int) { return 0; }
int FailingStatus() { return 0; }

TEST(EnrollmentTokenTest, AFailingRandomGeneratorIsAnErrorNotAToken) {
  FEDGE_ASSERT_OK_AND_ASSIGN(const std::string token, GenerateEnrollmentToken());
  EXPECT_EQ(token.size(), 48u);
  FEDGE_ASSERT_OK_AND_ASSIGN(const std::string other, GenerateEnrollmentToken());
  EXPECT_NE(token, other);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  static const RAND_METHOD failing = {nullptr, FailingBytes, nullptr, nullptr, FailingBytes,
                                      FailingStatus};
  const RAND_METHOD* before = RAND_get_rand_method();
  ASSERT_EQ(RAND_set_rand_method(&failing), 1);
  const absl::StatusOr<std::string> refused = GenerateEnrollmentToken();
  RAND_set_rand_method(before);
#pragma GCC diagnostic pop
  EXPECT_THAT(refused.status(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("RAND_bytes")));
  FEDGE_EXPECT_OK(GenerateEnrollmentToken().status());  // the generator is back
}

}  // namespace
}  // namespace fedge::aggregator
