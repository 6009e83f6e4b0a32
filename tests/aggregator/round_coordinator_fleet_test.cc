// The round coordinator facing its fleet and operators: pause and rollback,
// drift reports and the extra-round reaction, the privacy budget's stop, a
// forgotten device, the cohort sampler, option validation and stored keys.
#include <algorithm>
#include <map>
#include <set>

#include "coordinator_fixture.h"

// The tests live in the fixture's namespace: its names need no using.
namespace fedge::aggregator::coordinator_testing {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;


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

// The Poisson samplers: OpenSSL's draws each device independently at the
// rate (2000 devices at 0.5: outside [850, 1150] has probability < 1e-11);
// the seeded one is RoundManager::SelectPoissonCohort.
TEST(PoissonCohortSamplerTest, DrawsEachDeviceAtTheRateAndTheSeededOneReproduces) {
  std::vector<std::string> devices;
  for (int i = 0; i < 2000; ++i) devices.push_back(Id(i));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> half, PoissonCohortSampler(0.5)(devices, 0, 1));
  EXPECT_GT(half.size(), 850u);
  EXPECT_LT(half.size(), 1150u);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> all, PoissonCohortSampler(1.0)(devices, 0, 1));
  EXPECT_EQ(all, devices);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> seeded,
                             SeededPoissonCohortSampler(0.3, 9)(devices, 0, 4));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> direct,
                             RoundManager::SelectPoissonCohort(devices, 0.3, 9, 4));
  EXPECT_EQ(seeded, direct);
}

// Cohorts in deployments are secret: two draws for the same round (the same
// devices, count and round id, so the same inputs a seeded sampler would
// repeat) differ. 40 choose 5 agree with probability 1/658008; two Poisson
// draws of 64 devices at 0.5 with probability 2^-64. Every device is drawn
// about equally often (2000 draws of 5 of 40: each expects 250, outside
// [175, 325] has probability < 1e-5 per device).
TEST(UniformCohortSamplerTest, DrawsAreUnpredictableAndUniform) {
  std::vector<std::string> devices;
  for (int i = 0; i < 40; ++i) devices.push_back(Id(i));
  const CohortSampler sampler = UniformCohortSampler();
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> a, sampler(devices, 5, 3));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> b, sampler(devices, 5, 3));
  EXPECT_EQ(a.size(), 5u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::set<std::string>(a.begin(), a.end()).size(), 5u);
  EXPECT_NE(a, b);
  std::map<std::string, int> drawn;
  for (int t = 0; t < 2000; ++t) {
    FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> cohort, sampler(devices, 5, 3));
    for (const std::string& id : cohort) ++drawn[id];
  }
  ASSERT_EQ(drawn.size(), devices.size());
  for (const auto& [id, count] : drawn) {
    EXPECT_GT(count, 175) << id;
    EXPECT_LT(count, 325) << id;
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> all, sampler(devices, 99, 3));
  std::sort(devices.begin(), devices.end());
  EXPECT_EQ(all, devices);

  std::vector<std::string> many;
  for (int i = 0; i < 64; ++i) many.push_back(Id(i));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> p, PoissonCohortSampler(0.5)(many, 0, 3));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<std::string> q, PoissonCohortSampler(0.5)(many, 0, 3));
  EXPECT_NE(p, q);
}

// Distributed DP without secure aggregation used to run and report the
// sum's ε, though every update reached the aggregator with only a share of
// the noise. Refused, saying why.
TEST_F(RoundCoordinatorTest, DistributedDpWithoutSecureAggregationIsRefused) {
  RoundCoordinatorOptions options = Options();
  PrivateAggregationOptions dp;
  dp.mode = privacy::PrivacyMode::kDistributed;
  dp.clipper_options.clip_norm = 1.0;
  options.privacy = dp;
  EXPECT_THAT(Start(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without secure aggregation")));
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
}  // namespace fedge::aggregator::coordinator_testing
