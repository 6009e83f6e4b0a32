// The round coordinator driven directly as N fake devices, on a manual clock
// and the in-memory store: goals, over-selection, deadlines, secure
// aggregation with a device dropping at each phase, a restart mid-round, the
// rollout gate, and option validation.
#include "fedge/aggregator/round_coordinator.h"

#include <map>
#include <string>
#include <vector>

#include "fedge/aggregator/in_memory_state_store.h"
#include "fedge/models/update_codec.h"
#include "fedge/privacy/secagg/protocol.h"
#include "fedge/proto/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "round_fixtures.h"
#include "status_matchers.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using round_testing::kLayout;
using round_testing::kSpec;
using round_testing::Train;
using ::testing::HasSubstr;
namespace secagg = privacy::secagg;

const std::vector<float> kBase = {1, 2, 3, 4};

// What the listener heard.
class RecordingListener : public CoordinatorListener {
 public:
  void OnTasksChanged() override { ++tasks_changed; }
  void OnSecAggPhaseClosed(uint64_t round, v1::SecAggPhase phase) override {
    phases.emplace_back(round, phase);
  }
  void OnRoundOpened(const RoundOpened& round) override { opened.push_back(round); }
  void OnRoundEnded(const RoundEnded& round) override {
    ended.push_back(round.outcome);
    endings.push_back(round);
  }
  void OnVersionStored(uint64_t version) override { stored.push_back(version); }
  void OnFatal(const absl::Status& status) override { fatal = status; }

  int tasks_changed = 0;
  std::vector<std::pair<uint64_t, v1::SecAggPhase>> phases;
  std::vector<RoundOpened> opened;
  std::vector<RoundOutcome> ended;
  std::vector<RoundEnded> endings;
  std::vector<uint64_t> stored;
  absl::Status fatal;
};

// Device i's update: a delta that differs per device and round, with
// i + 1 examples.
std::vector<float> DeltaOf(int device, uint64_t round) {
  std::vector<float> delta(4);
  for (int k = 0; k < 4; ++k) {
    delta[k] = 0.1f * static_cast<float>(device + 1) - 0.03f * static_cast<float>(k * round) +
               0.01f * static_cast<float>(k);
  }
  return delta;
}

std::string Id(int device) { return "d" + std::to_string(device); }
int Index(const std::string& id) { return std::stoi(id.substr(1)); }

v1::EncodedUpdate UpdateFor(const v1::Task& task) {
  const int device = Index(task.client_id());
  v1::EncodedUpdate update;
  update.set_round(task.round());
  update.set_model_version(task.model_version());
  update.set_client_id(task.client_id());
  update.set_num_examples(static_cast<uint64_t>(device + 1));
  EXPECT_THAT((*models::CreateUpdateCodec("fp32"))->Encode(DeltaOf(device, task.round()), &update),
              IsOk());
  (*update.mutable_metrics())["train_loss"] = 1.0;
  return update;
}

// Central DP with seeded noise: z = 1, clip 0.5, rate 0.5, cohorts of 3.
PrivateAggregationOptions SeededCentralDp() {
  PrivateAggregationOptions dp;
  dp.mode = privacy::PrivacyMode::kCentral;
  dp.noise_multiplier = 1.0;
  dp.clipper_options.clip_norm = 0.5;
  dp.sampling_rate = 0.5;
  dp.expected_cohort = 3.0;
  dp.seeded_random = true;
  dp.seed = 11;
  return dp;
}

class RoundCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FEDGE_ASSERT_OK_AND_ASSIGN(key_, models::SigningKey::Generate());
    models::ArtifactOptions artifact_options;
    artifact_options.created_at_unix_ms = clock_.WallMs();
    FEDGE_ASSERT_OK_AND_ASSIGN(initial_,
                               models::BuildFp32Artifact(kSpec, kLayout, kBase, artifact_options));
  }

  RoundCoordinatorOptions Options() {
    RoundCoordinatorOptions options;
    options.goal = 3;
    options.deadline = std::chrono::milliseconds(1000);
    options.train = Train();
    options.signing_key = &*key_;
    options.initial_model = initial_;
    options.seed = 7;
    return options;
  }

  absl::StatusOr<std::unique_ptr<RoundCoordinator>> Start(RoundCoordinatorOptions options,
                                                          StateStore* store = nullptr) {
    return RoundCoordinator::Start(std::move(options), store != nullptr ? store : &store_, &clock_,
                                   &listener_, &metrics_);
  }

  static void MarkAll(RoundCoordinator& c, int devices) {
    for (int i = 0; i < devices; ++i) c.MarkAvailable(Id(i));
  }

  // The cohort of the open round: the devices with a training task.
  static std::vector<v1::Task> Tasks(const RoundCoordinator& c, int devices) {
    std::vector<v1::Task> tasks;
    for (int i = 0; i < devices; ++i) {
      absl::StatusOr<v1::Task> task = c.TaskFor(Id(i));
      if (task.ok()) tasks.push_back(*task);
    }
    return tasks;
  }

  // base + the example-weighted mean of the given devices' deltas (FedAvg).
  static std::vector<double> WeightedMean(const std::vector<float>& base,
                                          const std::vector<int>& devices, uint64_t round) {
    std::vector<double> expected(base.begin(), base.end());
    double weight = 0.0;
    std::vector<double> sum(4, 0.0);
    for (int d : devices) {
      const std::vector<float> delta = DeltaOf(d, round);
      for (int k = 0; k < 4; ++k) sum[k] += (d + 1) * static_cast<double>(delta[k]);
      weight += d + 1;
    }
    for (int k = 0; k < 4; ++k) expected[k] += sum[k] / weight;
    return expected;
  }

  static std::vector<float> Latest(const RoundCoordinator& c) {
    absl::StatusOr<std::shared_ptr<const ModelVersion>> latest = c.registry().Latest();
    EXPECT_THAT(latest.status(), IsOk());
    return latest.ok() ? (*latest)->parameters : std::vector<float>();
  }

  std::optional<models::SigningKey> key_;
  v1::ModelArtifact initial_;
  ManualClock clock_;
  InMemoryStateStore store_;
  RecordingListener listener_;
  AggregatorMetrics metrics_;
};

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

// --- operator actions and reports ------------------------------------------------------

TEST_F(RoundCoordinatorTest, PausedRoundsDoNotOpenAndThePauseSurvivesARestart) {
  {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(Options()));
    FEDGE_ASSERT_OK(c->PauseRounds("maintenance"));
    EXPECT_THAT(c->PauseRounds(""), StatusIs(absl::StatusCode::kFailedPrecondition));
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(Options()));
  MarkAll(*c, 3);
  c->Tick();
  EXPECT_FALSE(c->round_status().open);
  EXPECT_TRUE(c->round_status().paused);
  FEDGE_ASSERT_OK(c->ResumeRounds(""));
  c->Tick();
  EXPECT_TRUE(c->round_status().open);
}

TEST_F(RoundCoordinatorTest, RollBackIsRefusedWhileARoundIsOpenAndRepublishesAfter) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(Options()));
  MarkAll(*c, 3);
  c->Tick();
  EXPECT_THAT(c->RollBackTo(0, "").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is open")));
  for (const v1::Task& task : Tasks(*c, 3)) FEDGE_ASSERT_OK(c->Submit(UpdateFor(task)));
  EXPECT_THAT(c->RollBackTo(7, "").status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(c->RollBackTo(1, "").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("newest")));
  FEDGE_ASSERT_OK_AND_ASSIGN(uint64_t published, c->RollBackTo(0, "bad model"));
  EXPECT_EQ(published, 2u);
  EXPECT_EQ(c->live_version(), 2u);
  EXPECT_EQ(Latest(*c), kBase);
  EXPECT_THAT(listener_.stored, ::testing::ElementsAre(1u, 2u));
}

TEST_F(RoundCoordinatorTest, DriftReportsAreStoredAndAnEmptyOneIsRefused) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(Options()));
  v1::DriftReport empty;
  EXPECT_THAT(c->RecordDrift("d0", empty),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least one event")));
  v1::DriftReport report;
  report.set_client_id("someone-else");
  v1::DriftEvent* event = report.add_events();
  event->set_detector("page-hinkley");
  event->set_stream("loss");
  FEDGE_ASSERT_OK(c->RecordDrift("d0", report));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<v1::DriftReport> stored, store_.DriftReports());
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].client_id(), "d0") << "the authenticated id, not the claimed one";
  EXPECT_EQ(metrics_.drift_reports.load(), 1u);
}

// The extra-round reaction over a one-round window.
DriftPolicyOptions ExtraRoundPolicy(double threshold, int cooldown_rounds) {
  DriftPolicyOptions drift;
  drift.reaction = "extra-round";
  drift.threshold = threshold;
  drift.window_rounds = 1;
  drift.cooldown_rounds = cooldown_rounds;
  return drift;
}

// A drift report asking to join the next round.
v1::DriftReport JoinRequest() {
  v1::DriftReport report;
  report.set_model_version(0);
  report.set_request_join(true);
  v1::DriftEvent* event = report.add_events();
  event->set_detector("ks");
  event->set_stream("features");
  event->set_statistic(0.4);
  event->set_threshold(0.2);
  return report;
}

// The "extra-round" reaction: when enough of the population reports drift,
// the next round's cohort is the devices that asked to join, even below
// min_clients.
TEST_F(RoundCoordinatorTest, TheExtraRoundReactionOpensARoundForTheDriftingDevices) {
  RoundCoordinatorOptions options = Options();
  options.goal = 4;
  options.min_clients = 4;
  options.drift = ExtraRoundPolicy(/*threshold=*/0.5, /*cooldown_rounds=*/0);
  options.drift_population = 4;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 4);
  c->Tick();
  const std::vector<v1::Task> tasks = Tasks(*c, 4);
  ASSERT_EQ(tasks.size(), 4u);
  for (int i : {1, 3}) FEDGE_ASSERT_OK(c->RecordDrift(Id(i), JoinRequest()));
  for (const v1::Task& task : tasks) FEDGE_ASSERT_OK(c->Submit(UpdateFor(task)));
  ASSERT_EQ(listener_.opened.size(), 1u);
  // Only d1 and d3 are still available: below min_clients, yet they get
  // their extra round.
  clock_.Advance(options.availability_window + std::chrono::milliseconds(1));
  c->MarkAvailable(Id(1));
  c->MarkAvailable(Id(3));
  c->Tick();
  ASSERT_EQ(listener_.opened.size(), 2u);
  EXPECT_THAT(listener_.opened[1].cohort, ::testing::ElementsAre("d1", "d3"));
  EXPECT_EQ(listener_.opened[1].goal, 2u);
  // Without new drift no third round opens below min_clients.
  for (const v1::Task& task : Tasks(*c, 4)) FEDGE_ASSERT_OK(c->Submit(UpdateFor(task)));
  c->Tick();
  EXPECT_EQ(listener_.opened.size(), 2u);
}

// Reports that arrive after a round closed (devices report while running
// the version it published) count for that round; the policy is applied
// once, before the next round opens or when the runner asks; a reaction of
// two extra rounds, each filled up to three devices, precedes each of the
// next two regular rounds by one.
TEST_F(RoundCoordinatorTest, ReportsAfterTheCloseCountAndAReactionRunsItsExtraRounds) {
  RoundCoordinatorOptions options = Options();
  options.goal = 2;
  options.drift = ExtraRoundPolicy(/*threshold=*/0.25, /*cooldown_rounds=*/5);
  options.drift_population = 6;
  options.drift_extra_rounds = 2;
  options.drift_extra_round_devices = 3;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 6);
  c->Tick();
  for (const v1::Task& task : Tasks(*c, 6)) FEDGE_ASSERT_OK(c->Submit(UpdateFor(task)));
  ASSERT_FALSE(c->round_status().open);
  FEDGE_ASSERT_OK(c->RecordDrift(Id(4), JoinRequest()));
  FEDGE_ASSERT_OK(c->RecordDrift(Id(5), JoinRequest()));
  const std::optional<DriftPolicyDecision> decision = c->EvaluateDrift();
  ASSERT_TRUE(decision.has_value());
  EXPECT_EQ(decision->round, 1u);
  EXPECT_EQ(decision->reporting_clients, 2);
  EXPECT_TRUE(decision->extra_round);
  EXPECT_FALSE(c->EvaluateDrift().has_value()) << "applied once per round";
  for (int k = 0; k < 5; ++k) {
    c->Tick();
    ASSERT_EQ(listener_.opened.size(), 2u + k);
    const RoundOpened& opened = listener_.opened.back();
    const bool extra = k == 0 || k == 2;  // extra, regular, extra, regular, regular
    EXPECT_EQ(opened.drift_extra, extra) << "round " << opened.round;
    if (extra) {
      ASSERT_EQ(opened.cohort.size(), 3u);
      EXPECT_THAT(opened.cohort, ::testing::IsSupersetOf({"d4", "d5"}));
    } else {
      EXPECT_EQ(opened.cohort.size(), 2u);
    }
    for (const v1::Task& task : Tasks(*c, 6)) FEDGE_ASSERT_OK(c->Submit(UpdateFor(task)));
    ASSERT_FALSE(listener_.endings.empty());
    EXPECT_EQ(listener_.endings.back().drift_extra, extra);
  }
}

// Secure aggregation below its threshold: the round fails and says why.
TEST_F(RoundCoordinatorTest, AnAbortedSecureRoundFailsWithTheProtocolsReason) {
  RoundCoordinatorOptions options = Options();
  options.goal = 3;
  SecureAggregationOptions secure;
  secure.protocol.protocol = v1::SecAggConfig::PROTOCOL_SECAGG;
  secure.protocol.threshold = 2;  // of each device's two neighbours
  secure.protocol.clip_bound = 1.0;
  options.secure_aggregation = secure;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 3);
  c->Tick();
  ASSERT_TRUE(c->round_status().open);
  // Nobody advertises keys: the first phase closes at the deadline with
  // fewer devices than the threshold.
  clock_.Advance(options.deadline + std::chrono::milliseconds(1));
  c->Tick();
  ASSERT_EQ(listener_.endings.size(), 1u);
  EXPECT_TRUE(listener_.endings[0].failed);
  EXPECT_THAT(listener_.endings[0].reason, HasSubstr("secure aggregation"));
}

// A privacy budget that refuses the next round stops the rounds and says
// which round and why.
TEST_F(RoundCoordinatorTest, TheBudgetStopsRoundsAndTheStopReasonSaysWhy) {
  RoundCoordinatorOptions options = Options();
  options.goal = 3;
  options.privacy = SeededCentralDp();
  options.privacy->epsilon_budget = 1e-3;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 3);
  c->Tick();
  EXPECT_FALSE(c->round_status().open);
  EXPECT_TRUE(c->finished());
  EXPECT_THAT(c->stop_reason(), HasSubstr("round 1 refused: privacy budget"));
  EXPECT_THAT(c->fatal(), IsOk());
}

TEST_F(RoundCoordinatorTest, AForgottenDeviceLeavesTheCohortAndTheGoalShrinks) {
  RoundCoordinatorOptions options = Options();
  options.goal = 3;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 3);
  c->Tick();
  const std::vector<v1::Task> tasks = Tasks(*c, 3);
  ASSERT_EQ(tasks.size(), 3u);
  FEDGE_ASSERT_OK(c->Submit(UpdateFor(tasks[0])));
  FEDGE_ASSERT_OK(c->Submit(UpdateFor(tasks[1])));
  c->Forget(tasks[2].client_id());
  EXPECT_FALSE(c->round_status().open) << "the two left delivered";
  ASSERT_EQ(listener_.ended.size(), 1u);
  EXPECT_EQ(listener_.ended[0].participants, 2);
}

// The cohort hook (e.g. an OpenSSL-drawn or Poisson cohort): what it draws
// is the cohort; an empty draw opens nothing and the next Tick draws for the
// next round id.
TEST_F(RoundCoordinatorTest, TheCohortSamplerDecidesTheCohort) {
  RoundCoordinatorOptions options = Options();
  options.goal = 3;
  std::vector<uint64_t> asked;
  options.cohort_sampler = [&](const std::vector<std::string>& available, int count,
                               uint64_t round) -> absl::StatusOr<std::vector<std::string>> {
    asked.push_back(round);
    EXPECT_EQ(count, 3);
    EXPECT_EQ(available.size(), 4u);
    if (round == 1) return std::vector<std::string>();
    return std::vector<std::string>{"d0", "d3"};
  };
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(options));
  MarkAll(*c, 4);
  c->Tick();
  EXPECT_FALSE(c->round_status().open);
  c->Tick();
  ASSERT_TRUE(c->round_status().open);
  EXPECT_EQ(c->round_status().round, 2u);
  EXPECT_EQ(c->round_status().goal, 2u) << "the goal cannot exceed the cohort";
  EXPECT_THAT(asked, ::testing::ElementsAre(1u, 2u));
  const std::vector<v1::Task> tasks = Tasks(*c, 4);
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].client_id(), "d0");
  EXPECT_EQ(tasks[1].client_id(), "d3");
}

TEST_F(RoundCoordinatorTest, BadOptionsAreRefusedNamingTheField) {
  RoundCoordinatorOptions options = Options();
  options.signing_key = nullptr;
  EXPECT_THAT(Start(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signing_key")));
  options = Options();
  options.goal = 0;
  options.fraction = 0.0;
  EXPECT_THAT(Start(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fraction")));
  options = Options();
  options.min_updates = 0;
  EXPECT_THAT(Start(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min_updates")));
  options = Options();
  options.rollout.enabled = true;
  EXPECT_THAT(Start(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("validation")));
  options = Options();
  options.initial_model.reset();
  EXPECT_THAT(Start(options).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no initial model")));
  options = Options();
  options.strategy = "no-such-strategy";
  EXPECT_THAT(Start(options).status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RoundCoordinatorTest, AStoredVersionSignedWithAnotherKeyIsDataLoss) {
  { FEDGE_ASSERT_OK_AND_ASSIGN(auto c, Start(Options())); }
  FEDGE_ASSERT_OK_AND_ASSIGN(models::SigningKey other, models::SigningKey::Generate());
  RoundCoordinatorOptions options = Options();
  options.signing_key = &other;
  EXPECT_THAT(Start(options).status(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("does not verify")));
}

}  // namespace
}  // namespace fedge::aggregator
