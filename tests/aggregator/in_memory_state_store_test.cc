// The in-memory state store keeps the StateStore contract: journal and
// checkpoint bookkeeping, round states, version statuses, validation.
#include "fedge/aggregator/in_memory_state_store.h"

#include "fedge/models/update_codec.h"
#include "fedge/proto/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::EncodedUpdate Update(const std::string& client) {
  v1::EncodedUpdate update;
  update.set_round(1);
  update.set_client_id(client);
  return update;
}

RoundRecord Round(uint64_t id) {
  RoundRecord record;
  record.round = id;
  record.cohort = {"a", "b", "c"};
  return record;
}

TEST(InMemoryStateStoreTest, ACheckpointDropsTheJournalEntriesItCovers) {
  InMemoryStateStore store;
  FEDGE_ASSERT_OK(store.BeginRound(Round(1)));
  EXPECT_THAT(store.BeginRound(Round(1)), StatusIs(absl::StatusCode::kAlreadyExists));
  FEDGE_ASSERT_OK(store.JournalUpdate(1, 1, Update("a")));
  FEDGE_ASSERT_OK(store.JournalUpdate(1, 2, Update("b")));
  EXPECT_THAT(store.JournalUpdate(1, 5, Update("c")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of order")));
  FEDGE_ASSERT_OK(store.JournalUpdate(1, 3, Update("c")));
  v1::RoundCheckpoint checkpoint;
  checkpoint.set_round(1);
  checkpoint.set_accepted(2);
  FEDGE_ASSERT_OK(store.WriteCheckpoint(checkpoint));
  checkpoint.set_accepted(4);
  EXPECT_THAT(store.WriteCheckpoint(checkpoint), StatusIs(absl::StatusCode::kInvalidArgument));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::optional<OpenRoundState> open, store.LoadOpenRound());
  ASSERT_TRUE(open.has_value());
  EXPECT_EQ(open->record.round, 1u);
  ASSERT_TRUE(open->checkpoint.has_value());
  EXPECT_EQ(open->checkpoint->accepted(), 2u);
  ASSERT_EQ(open->journal.size(), 1u);
  EXPECT_EQ(open->journal[0].client_id(), "c");
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> accepted, store.AcceptedClients(1));
  EXPECT_THAT(accepted, ElementsAre("a", "b", "c"));
}

TEST(InMemoryStateStoreTest, FailingARoundDropsItsJournalAndEndsIt) {
  InMemoryStateStore store;
  FEDGE_ASSERT_OK(store.BeginRound(Round(3)));
  FEDGE_ASSERT_OK(store.JournalUpdate(3, 1, Update("a")));
  FEDGE_ASSERT_OK(store.FailRound(3, "too few"));
  EXPECT_THAT(store.FailRound(3, "again"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store.JournalUpdate(3, 2, Update("b")),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::optional<OpenRoundState> open, store.LoadOpenRound());
  EXPECT_FALSE(open.has_value());
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<RoundRecord> rounds, store.Rounds());
  ASSERT_EQ(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].state, RoundState::kFailed);
  EXPECT_EQ(rounds[0].reason, "too few");
  FEDGE_ASSERT_OK_AND_ASSIGN(uint64_t last, store.LastRoundId());
  EXPECT_EQ(last, 3u);
}

TEST(InMemoryStateStoreTest, VersionsKeepTheirStatusAndTheLatestLiveSkipsHeldOnes) {
  InMemoryStateStore store;
  EXPECT_THAT(store.LatestVersion().status(), StatusIs(absl::StatusCode::kNotFound));
  v1::ModelArtifact artifact;
  artifact.mutable_header()->set_version(0);
  VersionRecord record;
  FEDGE_ASSERT_OK(store.AddVersion(record, artifact, artifact));
  EXPECT_THAT(store.AddVersion(record, artifact, artifact),
              StatusIs(absl::StatusCode::kAlreadyExists));
  FEDGE_ASSERT_OK(store.BeginRound(Round(1)));
  record.version = 1;
  record.status = "canary";
  artifact.mutable_header()->set_version(1);
  FEDGE_ASSERT_OK(store.CloseRound(1, 3, record, artifact, artifact, "optimizer"));
  EXPECT_THAT(store.CloseRound(1, 3, record, artifact, artifact, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  FEDGE_ASSERT_OK_AND_ASSIGN(VersionRecord latest, store.LatestVersion());
  EXPECT_EQ(latest.version, 1u);
  FEDGE_ASSERT_OK_AND_ASSIGN(VersionRecord live, store.LatestLiveVersion());
  EXPECT_EQ(live.version, 0u);
  EXPECT_THAT(store.SetVersionStatus(1, "shiny", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shiny")));
  EXPECT_THAT(store.SetVersionStatus(9, "live", ""), StatusIs(absl::StatusCode::kNotFound));
  FEDGE_ASSERT_OK(store.SetVersionStatus(1, "live", "canary passed"));
  FEDGE_ASSERT_OK_AND_ASSIGN(live, store.LatestLiveVersion());
  EXPECT_EQ(live.version, 1u);
  EXPECT_EQ(live.status_reason, "canary passed");
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::ModelArtifact master, store.ReadMaster(1));
  EXPECT_EQ(master.header().version(), 1u);
  EXPECT_THAT(store.ReadArtifact(5).status(), StatusIs(absl::StatusCode::kNotFound));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string state, store.GetSetting("strategy_state"));
  EXPECT_EQ(state, "optimizer");
}

// keep_models 2: the newest two versions and the newest live one keep their
// artifacts; older ones keep only their records.
TEST(InMemoryStateStoreTest, KeepModelsDropsOldArtifactsButNotTheLiveOne) {
  InMemoryStateStore store(2);
  v1::ModelArtifact artifact;
  VersionRecord record;
  FEDGE_ASSERT_OK(store.AddVersion(record, artifact, artifact));  // version 0, live
  for (uint64_t v = 1; v <= 4; ++v) {
    FEDGE_ASSERT_OK(store.BeginRound(Round(v)));
    record.version = v;
    record.status = v == 1 ? "live" : "canary";
    artifact.mutable_header()->set_version(v);
    FEDGE_ASSERT_OK(store.CloseRound(v, 3, record, artifact, artifact, ""));
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<VersionRecord> versions, store.Versions());
  EXPECT_EQ(versions.size(), 5u);
  EXPECT_THAT(store.ReadMaster(0).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no longer kept")));
  EXPECT_THAT(store.ReadArtifact(2).status(), StatusIs(absl::StatusCode::kNotFound));
  for (uint64_t v : {1u, 3u, 4u}) {  // the live one, and the newest two
    FEDGE_ASSERT_OK_AND_ASSIGN(v1::ModelArtifact master, store.ReadMaster(v));
    EXPECT_EQ(master.header().version(), v);
  }
}

// Without a journal the store remembers who was accepted, and refuses to
// hand back an open round it could not resume.
TEST(InMemoryStateStoreTest, WithoutAJournalAnOpenRoundIsDataLossNotAnEmptyResume) {
  InMemoryStateStore store(0, /*keep_journal=*/false);
  FEDGE_ASSERT_OK(store.BeginRound(Round(1)));
  FEDGE_ASSERT_OK(store.JournalUpdate(1, 1, Update("a")));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> accepted, store.AcceptedClients(1));
  EXPECT_THAT(accepted, ElementsAre("a"));
  EXPECT_THAT(store.LoadOpenRound().status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("cannot be resumed")));
  FEDGE_ASSERT_OK(store.FailRound(1, "stopped"));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::optional<OpenRoundState> open, store.LoadOpenRound());
  EXPECT_FALSE(open.has_value());
}

TEST(InMemoryStateStoreTest, ClientsAreValidatedRevokedAndReenrolled) {
  InMemoryStateStore store;
  EXPECT_THAT(store.EnrollClient("bad id!", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad id!")));
  EXPECT_THAT(store.RevokeClient("ghost"), StatusIs(absl::StatusCode::kNotFound));
  FEDGE_ASSERT_OK(store.EnrollClient("dev-1", "secret"));
  FEDGE_ASSERT_OK_AND_ASSIGN(ClientRecord client, store.GetClient("dev-1"));
  EXPECT_EQ(client.token_sha256.size(), 32u);
  FEDGE_ASSERT_OK(store.RevokeClient("dev-1"));
  FEDGE_ASSERT_OK_AND_ASSIGN(client, store.GetClient("dev-1"));
  EXPECT_TRUE(client.revoked);
  FEDGE_ASSERT_OK(store.EnrollClient("dev-1", ""));
  FEDGE_ASSERT_OK_AND_ASSIGN(client, store.GetClient("dev-1"));
  EXPECT_FALSE(client.revoked);
  EXPECT_TRUE(client.token_sha256.empty());
}

}  // namespace
}  // namespace fedge::aggregator
