// The round coordinator driven directly as N fake devices, on a manual clock
// and the in-memory store: goals, over-selection, deadlines, secure
// aggregation with a device dropping at each phase, a restart mid-round,
// central privacy and the rollout gate (round_coordinator_fleet_test.cc has
// the operator and fleet side).
#include "coordinator_fixture.h"
#include "fedge/privacy/secagg/protocol.h"

// The tests live in the fixture's namespace: its names need no using.
namespace fedge::aggregator::coordinator_testing {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;
namespace secagg = privacy::secagg;


TEST_F(RoundCoordinatorTest, ARoundClosesAtItsGoalAndPublishesTheWeightedMean) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(Options()));
  c->Tick();
  EXPECT_FALSE(c->round_status().open) << "no device is available yet";
  MarkAll(*c, 3);
  c->Tick();
  ASSERT_TRUE(c->round_status().open);
  EXPECT_GE(listener_.tasks_changed, 1);
  ASSERT_EQ(listener_.opened.size(), 1u);
  EXPECT_EQ(listener_.opened[0].round, 1u);
  EXPECT_EQ(listener_.opened[0].cohort.size(), 3u);
  EXPECT_EQ(listener_.opened[0].available, 3u);
  c->RecordDownload(100);
  const std::vector<v1::Task> tasks = Tasks(*c, 3);
  ASSERT_EQ(tasks.size(), 3u);
  for (const v1::Task& task : tasks) {
    EXPECT_EQ(task.round(), 1u);
    EXPECT_EQ(task.model_version(), 0u);
    FEDGE_ASSERT_OK(c->Submit(UpdateFor(task)));
  }
  EXPECT_FALSE(c->round_status().open);
  ASSERT_EQ(listener_.ended.size(), 1u);
  EXPECT_EQ(listener_.ended[0].participants, 3);
  EXPECT_EQ(listener_.ended[0].new_version, 1u);
  EXPECT_EQ(c->live_version(), 1u);
  EXPECT_EQ(c->closed_rounds(), 1u);
  const std::vector<double> expected = WeightedMean(kBase, {0, 1, 2}, 1);
  const std::vector<float> got = Latest(*c);
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(got[k], expected[k], 1e-6) << k;
  // Stored, signed, and the round recorded as closed.
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::ModelArtifact master, store_.ReadMaster(1));
  FEDGE_EXPECT_OK(models::VerifySignedArtifact(master, key_->public_key()));
  FEDGE_ASSERT_OK_AND_ASSIGN(VersionRecord v1_record, store_.LatestVersion());
  EXPECT_EQ(v1_record.metrics["bytes_down"], 100.0);
  EXPECT_EQ(v1_record.metrics["participants"], 3.0);
  EXPECT_EQ(listener_.endings[0].bytes_down, 100u);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<RoundRecord> rounds, store_.Rounds());
  ASSERT_EQ(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].state, RoundState::kClosed);
  EXPECT_EQ(rounds[0].new_version, 1u);
  EXPECT_EQ(metrics_.rounds_closed.load(), 1u);
}

TEST_F(RoundCoordinatorTest, OverSelectionClosesAtTheGoalAndRefusesTheStraggler) {
  RoundCoordinatorOptions options = Options();
  options.goal = 2;
  options.over_selection = 0.5;  // 3 selected for a goal of 2
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 5);
  c->Tick();
  ASSERT_TRUE(c->round_status().open);
  EXPECT_EQ(c->round_status().cohort, 3u);
  EXPECT_EQ(c->round_status().goal, 2u);
  const std::vector<v1::Task> tasks = Tasks(*c, 5);
  ASSERT_EQ(tasks.size(), 3u);
  FEDGE_ASSERT_OK(c->Submit(UpdateFor(tasks[0])));
  FEDGE_ASSERT_OK(c->Submit(UpdateFor(tasks[1])));
  EXPECT_FALSE(c->round_status().open);
  EXPECT_THAT(c->Submit(UpdateFor(tasks[2])), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(c->CheckSubmission(tasks[2].client_id(), 1, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not open")));
  ASSERT_EQ(listener_.ended.size(), 1u);
  EXPECT_EQ(listener_.ended[0].participants, 2);
  EXPECT_EQ(listener_.ended[0].cohort_size, 3);
  const std::vector<double> expected =
      WeightedMean(kBase, {Index(tasks[0].client_id()), Index(tasks[1].client_id())}, 1);
  const std::vector<float> got = Latest(*c);
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(got[k], expected[k], 1e-6) << k;
}

TEST_F(RoundCoordinatorTest, TheDeadlineClosesWithWhatArrived) {
  RoundCoordinatorOptions options = Options();
  options.goal = 4;
  options.min_updates = 2;
  options.rounds = 1;  // so no round follows at the same Tick
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 4);
  c->Tick();
  const std::vector<v1::Task> tasks = Tasks(*c, 4);
  ASSERT_EQ(tasks.size(), 4u);
  FEDGE_ASSERT_OK(c->Submit(UpdateFor(tasks[0])));
  FEDGE_ASSERT_OK(c->Submit(UpdateFor(tasks[1])));
  clock_.Advance(std::chrono::milliseconds(999));
  c->Tick();
  EXPECT_TRUE(c->round_status().open) << "1 ms before the deadline";
  clock_.Advance(std::chrono::milliseconds(1));
  c->Tick();
  EXPECT_FALSE(c->round_status().open);
  EXPECT_TRUE(c->finished());
  ASSERT_EQ(listener_.ended.size(), 1u);
  EXPECT_EQ(listener_.ended[0].participants, 2);
  EXPECT_EQ(listener_.ended[0].new_version, 1u);
  EXPECT_EQ(listener_.endings[0].why, "deadline");
  EXPECT_FALSE(listener_.endings[0].failed);
  EXPECT_THAT(listener_.endings[0].missing,
              ::testing::UnorderedElementsAre(tasks[2].client_id(), tasks[3].client_id()));
  EXPECT_EQ(listener_.endings[0].closed_at_ms - listener_.endings[0].opened_at_ms, 1000);
  EXPECT_THAT(c->Submit(UpdateFor(tasks[2])), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(RoundCoordinatorTest, TheDeadlineFailsARoundBelowMinUpdatesAndTheNextOneOpens) {
  RoundCoordinatorOptions options = Options();
  options.goal = 4;
  options.min_updates = 3;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 4);
  c->Tick();
  const std::vector<v1::Task> tasks = Tasks(*c, 4);
  ASSERT_EQ(tasks.size(), 4u);
  FEDGE_ASSERT_OK(c->Submit(UpdateFor(tasks[0])));
  FEDGE_ASSERT_OK(c->Submit(UpdateFor(tasks[1])));
  clock_.Advance(std::chrono::milliseconds(1000));
  MarkAll(*c, 4);
  c->Tick();
  ASSERT_EQ(listener_.ended.size(), 1u);
  EXPECT_EQ(listener_.ended[0].round, 1u);
  EXPECT_EQ(listener_.ended[0].new_version, 0u);
  EXPECT_EQ(listener_.ended[0].participants, 0);
  EXPECT_TRUE(listener_.endings[0].failed);
  EXPECT_THAT(listener_.endings[0].reason, HasSubstr("2"));
  EXPECT_EQ(listener_.endings[0].missing.size(), 2u);
  EXPECT_EQ(Latest(*c), kBase) << "a failed round publishes nothing";
  EXPECT_EQ(c->closed_rounds(), 0u);
  EXPECT_EQ(metrics_.rounds_failed.load(), 1u);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<RoundRecord> rounds, store_.Rounds());
  ASSERT_GE(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].state, RoundState::kFailed);
  EXPECT_THAT(rounds[0].reason, HasSubstr("2"));
  // The same Tick opened round 2 on the unchanged version.
  EXPECT_TRUE(c->round_status().open);
  EXPECT_EQ(c->round_status().round, 2u);
  EXPECT_EQ(c->round_status().model_version, 0u);
}

// --- secure aggregation ---------------------------------------------------------

// A device that stops at `drop_phase` (1..4) sends nothing from that phase
// on; the phase then closes at its deadline. The published model must be
// the plain weighted FedAvg of the devices whose masked input was counted.
class SecureRoundTest : public RoundCoordinatorTest, public ::testing::WithParamInterface<int> {};

TEST_P(SecureRoundTest, ADeviceDroppingAtThisPhaseStillYieldsTheSurvivorsSum) {
  const int drop_phase = GetParam();
  RoundCoordinatorOptions options = Options();
  options.goal = 5;
  options.min_updates = 2;
  SecureAggregationOptions secure;
  secure.protocol.protocol = v1::SecAggConfig::PROTOCOL_SECAGG_PLUS;
  secure.protocol.threshold = 2;
  secure.protocol.clip_bound = 8.0;
  secure.max_weight = 100;
  secure.graph_seed = 3;
  options.secure_aggregation = secure;
  options.secagg_phase_timeout = std::chrono::milliseconds(500);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 5);
  c->Tick();
  const std::vector<v1::Task> tasks = Tasks(*c, 5);
  ASSERT_EQ(tasks.size(), 5u);
  EXPECT_THAT(c->Submit(UpdateFor(tasks[0])), StatusIs(absl::StatusCode::kFailedPrecondition));
  const std::string dropper = tasks[2].client_id();
  std::map<std::string, std::unique_ptr<secagg::SecAggClient>> clients;
  std::map<std::string, std::vector<uint32_t>> inputs;
  for (const v1::Task& task : tasks) {
    ASSERT_TRUE(task.has_secagg());
    FEDGE_ASSERT_OK_AND_ASSIGN(secagg::FixedPointCodec codec, secagg::CodecFor(task.secagg()));
    FEDGE_ASSERT_OK_AND_ASSIGN(clients[task.client_id()],
                               secagg::SecAggClient::Create(task.secagg(), 1, task.client_id()));
    const int device = Index(task.client_id());
    std::vector<float> values = DeltaOf(device, 1);
    const auto w = static_cast<float>(device + 1);
    for (float& v : values) v *= w;
    values.push_back(w);
    inputs[task.client_id()].resize(values.size());
    FEDGE_ASSERT_OK(codec.Encode(values, inputs[task.client_id()], 17));
  }
  for (int p = 1; p <= 4; ++p) {
    for (const v1::Task& task : tasks) {
      const std::string& id = task.client_id();
      if (id == dropper && p >= drop_phase) continue;
      absl::StatusOr<v1::SecAggClientMessage> m;
      if (p == 1) {
        m = clients[id]->AdvertiseKeys();
      } else {
        FEDGE_ASSERT_OK_AND_ASSIGN(v1::SecAggServerMessage answer,
                                   c->SecAggPoll(id, 1, static_cast<v1::SecAggPhase>(p - 1)));
        if (p == 2) m = clients[id]->ShareKeys(answer);
        if (p == 3) m = clients[id]->MaskedInput(answer, inputs[id]);
        if (p == 4) m = clients[id]->Unmask(answer);
      }
      FEDGE_ASSERT_OK(m.status());
      FEDGE_ASSERT_OK(c->SecAggReceive(*m));
    }
    if (p == drop_phase) {
      // The dropper holds this phase open until its deadline.
      EXPECT_EQ(c->round_status().secagg_phase, static_cast<v1::SecAggPhase>(p)) << p;
      clock_.Advance(p == 1 ? options.deadline : options.secagg_phase_timeout);
      c->Tick();
    }
    EXPECT_GE(listener_.phases.size(), static_cast<size_t>(p));
  }
  ASSERT_EQ(listener_.ended.size(), 1u);
  ASSERT_EQ(listener_.ended[0].new_version, 1u) << "the round must publish";
  // Its masked input is in the sum only if it dropped at unmasking.
  std::vector<int> counted;
  for (const v1::Task& task : tasks) {
    if (task.client_id() != dropper || drop_phase == 4) counted.push_back(Index(task.client_id()));
  }
  EXPECT_EQ(listener_.ended[0].participants, static_cast<int>(counted.size()));
  const std::vector<double> expected = WeightedMean(kBase, counted, 1);
  const std::vector<float> got = Latest(*c);
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(got[k], expected[k], 1e-4) << k;
}

std::string PhaseName(const ::testing::TestParamInfo<int>& info) {
  static const char* const kNames[] = {"", "AdvertiseKeys", "ShareKeys", "MaskedInput",
                                       "Unmasking"};
  return kNames[info.param];
}

INSTANTIATE_TEST_SUITE_P(EachPhase, SecureRoundTest, ::testing::Values(1, 2, 3, 4), PhaseName);

// --- restart -----------------------------------------------------------------------

// Two rounds of 4 updates with a server optimizer (its state must survive
// too). The interrupted run stops after 3 updates of round 2, of which the
// first 2 are in a checkpoint and the third only in the journal.
TEST_F(RoundCoordinatorTest, ARestartMidRoundResumesAndEndsWithTheUninterruptedModel) {
  RoundCoordinatorOptions options = Options();
  options.goal = 4;
  options.strategy = "fedavgm";
  options.checkpoint_every = 2;
  auto run_round = [&](RoundCoordinator& c, size_t submit) -> std::vector<v1::Task> {
    MarkAll(c, 4);
    c.Tick();
    std::vector<v1::Task> tasks = Tasks(c, 4);
    EXPECT_EQ(tasks.size(), 4u);
    for (size_t i = 0; i < submit && i < tasks.size(); ++i) {
      EXPECT_THAT(c.Submit(UpdateFor(tasks[i])), IsOk());
    }
    return tasks;
  };

  InMemoryStateStore uninterrupted_store;
  std::vector<float> uninterrupted;
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options, &uninterrupted_store));
    run_round(*c, 4);
    run_round(*c, 4);
    EXPECT_EQ(c->closed_rounds(), 2u);
    uninterrupted = Latest(*c);
  }

  std::vector<v1::Task> tasks;
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
    run_round(*c, 4);
    tasks = run_round(*c, 3);
    EXPECT_TRUE(c->round_status().open);
  }  // the "crash": nothing closes the round
  FEDGE_ASSERT_OK_AND_ASSIGN(std::optional<OpenRoundState> open, store_.LoadOpenRound());
  ASSERT_TRUE(open.has_value());
  ASSERT_TRUE(open->checkpoint.has_value());
  EXPECT_EQ(open->checkpoint->accepted(), 2u);
  EXPECT_EQ(open->journal.size(), 1u);

  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  const CoordinatorRoundStatus status = c->round_status();
  ASSERT_TRUE(status.open);
  EXPECT_EQ(status.round, 2u);
  EXPECT_EQ(status.accepted, 3u);
  // An update accepted before the crash is not counted twice.
  EXPECT_THAT(c->Submit(UpdateFor(tasks[0])), StatusIs(absl::StatusCode::kAlreadyExists));
  FEDGE_ASSERT_OK(c->Submit(UpdateFor(tasks[3])));
  EXPECT_EQ(c->closed_rounds(), 2u);
  // Bit for bit: the same floats folded in the same order, the same
  // optimizer state.
  EXPECT_EQ(Latest(*c), uninterrupted);
}

TEST_F(RoundCoordinatorTest, ASecureRoundDoesNotSurviveARestart) {
  RoundCoordinatorOptions options = Options();
  options.secure_aggregation = SecureAggregationOptions{};
  options.secure_aggregation->protocol.threshold = 2;
  options.secure_aggregation->protocol.clip_bound = 8.0;
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
    MarkAll(*c, 3);
    c->Tick();
    ASSERT_TRUE(c->round_status().open);
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  EXPECT_FALSE(c->round_status().open);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<RoundRecord> rounds, store_.Rounds());
  ASSERT_EQ(rounds.size(), 1u);
  EXPECT_EQ(rounds[0].state, RoundState::kFailed);
  MarkAll(*c, 3);
  c->Tick();
  EXPECT_EQ(c->round_status().round, 2u);
}

// --- privacy ------------------------------------------------------------------------

// Central DP goes through RoundManager's PrivateAggregation: tasks carry
// the clip bound, the sum is noised from the seeded source (so two runs
// agree bit for bit), ε is spent, and the accountant's state comes back
// after a restart.
TEST_F(RoundCoordinatorTest, CentralPrivacyIsSeededAccountedAndSurvivesARestart) {
  RoundCoordinatorOptions options = Options();
  options.privacy = SeededCentralDp();
  auto run = [&](InMemoryStateStore& store) -> std::pair<std::vector<float>, double> {
    auto c = Start(options, &store);
    EXPECT_THAT(c.status(), IsOk());
    if (!c.ok()) return {};
    MarkAll(**c, 3);
    (*c)->Tick();
    for (const v1::Task& task : Tasks(**c, 3)) {
      EXPECT_TRUE(task.has_privacy());
      EXPECT_THAT((*c)->Submit(UpdateFor(task)), IsOk());
    }
    return {Latest(**c), (*c)->epsilon_spent()};
  };
  InMemoryStateStore first_store;
  InMemoryStateStore second_store;
  const auto [first, first_epsilon] = run(first_store);
  const auto [second, second_epsilon] = run(second_store);
  EXPECT_EQ(first, second);
  EXPECT_GT(first_epsilon, 0.0);
  EXPECT_EQ(first_epsilon, second_epsilon);
  EXPECT_NE(first, kBase);
  FEDGE_ASSERT_OK_AND_ASSIGN(VersionRecord version, first_store.LatestVersion());
  EXPECT_EQ(version.metrics["epsilon_spent"], first_epsilon);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto restarted, Start(options, &first_store));
  EXPECT_EQ(restarted->epsilon_spent(), first_epsilon);
}

// --- rollout ------------------------------------------------------------------------

TEST_F(RoundCoordinatorTest, AVersionThatFailsValidationIsRejectedAndTheLiveOneRepublished) {
  RoundCoordinatorOptions options = Options();
  options.rollout.enabled = true;
  options.rollout.canary_fraction = 0.0;
  int evaluations = 0;
  // Version 0 scores 0.9; every later version 0.5.
  options.validate =
      [&](const v1::ModelArtifact& master) -> absl::StatusOr<std::map<std::string, double>> {
    ++evaluations;
    return std::map<std::string, double>{{"accuracy", master.header().version() == 0 ? 0.9 : 0.5},
                                         {"loss", 1.0}};
  };
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  EXPECT_EQ(evaluations, 1) << "the live version is evaluated at start";
  MarkAll(*c, 3);
  c->Tick();
  for (const v1::Task& task : Tasks(*c, 3)) FEDGE_ASSERT_OK(c->Submit(UpdateFor(task)));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<VersionRecord> versions, store_.Versions());
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[1].status, "rejected");
  EXPECT_EQ(versions[2].parent, 0u);
  EXPECT_EQ(versions[2].note, "rollback to 0");
  EXPECT_EQ(c->live_version(), 2u);
  EXPECT_EQ(Latest(*c), kBase);
  EXPECT_EQ(metrics_.rollouts_rejected.load(), 1u);
}

TEST_F(RoundCoordinatorTest, ACanaryStartsGivesEvaluationTasksAndPromotesOnGoodReports) {
  RoundCoordinatorOptions options = Options();
  options.rollout.enabled = true;
  options.rollout.canary_fraction = 0.5;
  options.rollout.min_canary_reports = 1;
  options.validate = [](const v1::ModelArtifact&) -> absl::StatusOr<std::map<std::string, double>> {
    return std::map<std::string, double>{{"accuracy", 0.8}, {"loss", 1.0}};
  };
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 4);
  c->Tick();
  for (const v1::Task& task : Tasks(*c, 4)) FEDGE_ASSERT_OK(c->Submit(UpdateFor(task)));
  EXPECT_EQ(c->live_version(), 0u) << "version 1 waits for its canary";
  c->Tick();  // starts the canary; no training round opens meanwhile
  EXPECT_FALSE(c->round_status().open);
  std::vector<std::string> canaries;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<v1::Task> task = c->TaskFor(Id(i));
    if (!task.ok()) continue;
    EXPECT_EQ(task->kind(), v1::Task::KIND_EVALUATE);
    EXPECT_EQ(task->model_version(), 1u);
    EXPECT_EQ(task->baseline_version(), 0u);
    canaries.push_back(Id(i));
  }
  ASSERT_EQ(canaries.size(), 2u);
  for (const std::string& id : canaries) {
    c->RecordMetrics(id, 1, 1,
                     {{"eval_accuracy", 0.81},
                      {"eval_loss", 0.9},
                      {"baseline_accuracy", 0.8},
                      {"baseline_loss", 1.0},
                      {"eval_examples", 10}});
  }
  c->Tick();
  EXPECT_EQ(c->live_version(), 1u);
  FEDGE_ASSERT_OK_AND_ASSIGN(VersionRecord live, store_.LatestLiveVersion());
  EXPECT_EQ(live.version, 1u);
  EXPECT_EQ(metrics_.rollouts_promoted.load(), 1u);
  EXPECT_TRUE(c->round_status().open) << "the next round opened on the promoted version";
  EXPECT_EQ(c->round_status().model_version, 1u);
}

}  // namespace
}  // namespace fedge::aggregator::coordinator_testing
