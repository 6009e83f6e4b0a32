#include "fedge/aggregator/private_aggregation.h"

#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "fedge/aggregator/round_manager.h"
#include "fedge/models/update_codec.h"
#include "fedge/privacy/accountant.h"
#include "fedge/privacy/clipping.h"
#include "fedge/privacy/mechanism.h"
#include "fedge/privacy/random.h"
#include "fedge/privacy/update_privacy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "round_fixtures.h"
#include "status_matchers.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using privacy::PrivacyMode;
using ::testing::HasSubstr;

PrivateAggregationOptions Central(double z = 1.0) {
  PrivateAggregationOptions options;
  options.mode = PrivacyMode::kCentral;
  options.noise_multiplier = z;
  options.clipper_options.clip_norm = 1.0;
  options.sampling_rate = 0.1;
  options.expected_cohort = 10.0;
  options.seeded_random = true;
  options.seed = 17;
  return options;
}


std::vector<std::string> Ids(int n, int first = 0) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back("c" + std::to_string(first + i));
  return ids;
}

double Variance(const std::vector<float>& values) {
  const double mean =
      std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  double sum = 0.0;
  for (float v : values) sum += (v - mean) * (v - mean);
  return sum / static_cast<double>(values.size() - 1);
}

TEST(PrivateAggregationTest, CentralClipsEachUpdateToTheBound) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(Central(), 2));
  std::vector<float> big = {30.0f, 40.0f};
  EXPECT_FALSE(*dp->ClipUpdate(big, dp->clip_norm()));
  EXPECT_LE(privacy::L2Norm(big), 1.0);
  std::vector<float> small = {0.3f, 0.4f};
  EXPECT_TRUE(*dp->ClipUpdate(small, dp->clip_norm()));
  EXPECT_EQ(small, (std::vector<float>{0.3f, 0.4f}));
  // Central clients are not asked to noise, but are told the bound: under
  // secure aggregation they clip themselves (the aggregator sees only the
  // sum). A task with clip norm 0 made such a device abort.
  const v1::PrivacyConfig task = dp->TaskConfig(10);
  EXPECT_EQ(task.mode(), v1::PrivacyConfig::MODE_CENTRAL);
  EXPECT_EQ(task.clip_norm(), dp->clip_norm());
  EXPECT_EQ(task.clip_norm_type(), 2u);
  EXPECT_EQ(task.noise_multiplier(), 0.0);
  EXPECT_EQ(task.aggregate_noise_multiplier(), dp->options().noise_multiplier);
  EXPECT_TRUE(task.mechanism().empty());
  // A bound that is no bound is an error, not an abort.
  EXPECT_THAT(dp->ClipUpdate(big, 0.0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PrivateAggregationTest, CentralNoiseOnTheSumHasStdZCOverTheDenominator) {
  // Zero updates: the estimate is N(0, (zC)^2) / (qN) per coordinate.
  const size_t d = 100'000;
  PrivateAggregationOptions options = Central(2.0);
  options.clipper_options.clip_norm = 0.5;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, d));
  std::vector<float> mean(d, 0.0f);
  ASSERT_THAT(dp->Finalize(mean, 7), IsOk());
  const double expected_std = 2.0 * 0.5 / 10.0;
  EXPECT_NEAR(Variance(mean), expected_std * expected_std, 0.02 * expected_std * expected_std);
}

TEST(PrivateAggregationTest, CentralEstimateIsTheSumOverTheExpectedCohort) {
  // With negligible noise, Finalize turns the mean of k updates into
  // sum / (q N): the fixed-denominator estimator of McMahan et al. 2018.
  PrivateAggregationOptions options = Central(1e-9);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, 3));
  std::vector<float> mean = {0.5f, -0.25f, 0.0f};  // mean of 4 updates
  ASSERT_THAT(dp->Finalize(mean, 4), IsOk());
  EXPECT_NEAR(mean[0], 0.5 * 4 / 10.0, 1e-6);
  EXPECT_NEAR(mean[1], -0.25 * 4 / 10.0, 1e-6);
  EXPECT_NEAR(mean[2], 0.0, 1e-6);
}

TEST(PrivateAggregationTest, EpsilonAfterTRoundsIsTheAccountantsValue) {
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(Central(1.1), 4));
  for (int round = 1; round <= 12; ++round) {
    FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy spent, dp->EndRound(10, Ids(10)));
    FEDGE_ASSERT_OK_AND_ASSIGN(const double expected,
                               privacy::ComputeEpsilon(0.1, 1.1, round, 1e-5));
    EXPECT_DOUBLE_EQ(spent.epsilon, expected) << round;
    EXPECT_EQ(spent.noise_multiplier, 1.1);
    EXPECT_EQ(spent.clip_norm, 1.0);
  }
  EXPECT_EQ(dp->rounds(), 12);
}

TEST(PrivateAggregationTest, BudgetRefusesTheRoundThatWouldExceedIt) {
  PrivateAggregationOptions options = Central(1.0);
  FEDGE_ASSERT_OK_AND_ASSIGN(const double three_rounds, privacy::ComputeEpsilon(0.1, 1.0, 3, 1e-5));
  FEDGE_ASSERT_OK_AND_ASSIGN(const double four_rounds, privacy::ComputeEpsilon(0.1, 1.0, 4, 1e-5));
  options.epsilon_budget = 0.5 * (three_rounds + four_rounds);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, 4));
  for (int round = 0; round < 3; ++round) {
    ASSERT_THAT(dp->CheckBudget(Ids(10)), IsOk());
    ASSERT_THAT(dp->EndRound(10, Ids(10)).status(), IsOk());
  }
  EXPECT_THAT(dp->CheckBudget(Ids(10)),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("over the budget")));
  EXPECT_DOUBLE_EQ(dp->epsilon(), three_rounds);  // refusing spent nothing
}

TEST(PrivateAggregationTest, DistributedSharesAddUpToTheFullNoise) {
  // m clients each add N(0, (z_share C)^2) with z_share = z / sqrt(m); their
  // sum must carry N(0, (zC)^2).
  PrivateAggregationOptions options = Central(1.5);
  options.mode = PrivacyMode::kDistributed;
  options.clipper_options.clip_norm = 0.2;
  const size_t d = 20'000;
  const int m = 16;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, d));
  const v1::PrivacyConfig task = dp->TaskConfig(m);
  EXPECT_EQ(task.mode(), v1::PrivacyConfig::MODE_DISTRIBUTED);
  EXPECT_EQ(task.mechanism(), "gaussian");
  EXPECT_DOUBLE_EQ(task.clip_norm(), 0.2);
  EXPECT_DOUBLE_EQ(task.noise_multiplier(), 1.5 / 4.0);

  privacy::ClientPrivacy client;
  client.clip_norm = task.clip_norm();
  client.mechanism = task.mechanism();
  client.noise_multiplier = task.noise_multiplier();
  std::vector<float> sum(d, 0.0f);
  for (int i = 0; i < m; ++i) {
    std::vector<float> update(d, 0.0f);
    privacy::SeededRandom random(100 + i);
    ASSERT_THAT(privacy::PrivatizeUpdate(client, update, random).status(), IsOk());
    for (size_t j = 0; j < d; ++j) sum[j] += update[j];
  }
  const double expected = (1.5 * 0.2) * (1.5 * 0.2);
  EXPECT_NEAR(Variance(sum), expected, 0.04 * expected);
  // A full round is accounted with z; one that lost a quarter of its
  // clients carried less noise and is accounted with z sqrt(3/4).
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy full, dp->EndRound(m, Ids(m)));
  EXPECT_NEAR(full.noise_multiplier, 1.5, 1e-12);
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy partial, dp->EndRound(m, Ids(12)));
  EXPECT_NEAR(partial.noise_multiplier, 1.5 * std::sqrt(0.75), 1e-12);
}

TEST(PrivateAggregationTest, DistributedDiscreteGaussianSendsTheIntegerScale) {
  PrivateAggregationOptions options = Central(1.0);
  options.mode = PrivacyMode::kDistributed;
  options.mechanism = "discrete-gaussian";
  const size_t d = 10'000;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, d));
  const v1::PrivacyConfig task = dp->TaskConfig(25);
  // Auto scale: γ C = 20 sqrt(d), so rounding adds at most 5% sensitivity.
  EXPECT_DOUBLE_EQ(task.integer_scale(), 20.0 * 100.0 / 1.0);
  EXPECT_DOUBLE_EQ(task.noise_multiplier(), 1.0 / 5.0);
  // Accounted through zCDP (no amplification by sampling): at least the
  // full-batch epsilon of one Gaussian round, never the subsampled one.
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy round, dp->EndRound(25, Ids(25)));
  FEDGE_ASSERT_OK_AND_ASSIGN(const double full_batch, privacy::ComputeEpsilon(1.0, 1.0, 1, 1e-5));
  EXPECT_GE(round.epsilon, full_batch * (1 - 1e-9));
  EXPECT_LE(round.noise_multiplier, 1.0);  // the tau slack can only lower it
}

TEST(PrivateAggregationTest, LocalEpsilonIsPerDeviceAtItsParticipations) {
  PrivateAggregationOptions options = Central(4.0);
  options.mode = PrivacyMode::kLocal;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, 4));
  const v1::PrivacyConfig task = dp->TaskConfig(3);
  EXPECT_EQ(task.mode(), v1::PrivacyConfig::MODE_LOCAL);
  EXPECT_DOUBLE_EQ(task.noise_multiplier(), 4.0);  // each device adds it all
  // c0 joins three rounds, the others one: epsilon is c0's, three
  // full-batch releases against replacement (sensitivity 2C, so z / 2).
  ASSERT_THAT(dp->EndRound(3, {"c0", "c1", "c2"}).status(), IsOk());
  ASSERT_THAT(dp->EndRound(3, {"c0", "c3", "c4"}).status(), IsOk());
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy round, dp->EndRound(3, {"c0", "c5", "c6"}));
  FEDGE_ASSERT_OK_AND_ASSIGN(const double expected, privacy::ComputeEpsilon(1.0, 2.0, 3, 1e-5));
  EXPECT_DOUBLE_EQ(round.epsilon, expected);
  // The budget looks at the cohort: only a round with c0 would add to it.
  options.epsilon_budget = expected * 1.0001;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto budgeted, PrivateAggregation::Create(options, 4));
  for (int r = 0; r < 3; ++r)
    ASSERT_THAT(budgeted->EndRound(2, {"c0", Ids(1, 10 + r)[0]}).status(), IsOk());
  EXPECT_THAT(budgeted->CheckBudget({"c0", "c9"}), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(budgeted->CheckBudget({"c8", "c9"}), IsOk());
}

// A plug-in that adds half the noise it is configured with, and says so in
// both its guarantee and its accounting. Before the accountant took the
// mechanism's statement it was accounted at the configured noise multiplier
// (epsilon 4.43 where its true cost was 14.20, docs/privacy.md).
class WeakGaussian final : public privacy::Mechanism {
 public:
  explicit WeakGaussian(const privacy::MechanismOptions& options) : Mechanism(options) {}
  std::string_view name() const override { return "weak-gaussian"; }
  absl::Status AddNoise(std::span<float> values, privacy::RandomSource& random) const override {
    const double std_dev = 0.5 * options().noise_multiplier * options().l2_sensitivity;
    for (float& v : values) v += static_cast<float>(std_dev * privacy::SampleStandardGaussian(random));
    return absl::OkStatus();
  }
  absl::Status AddNoise(std::span<int64_t>, privacy::RandomSource&) const override {
    return absl::UnimplementedError("weak-gaussian noises floats");
  }
  privacy::Guarantee GetGuarantee() const override {
    return {.epsilon = *privacy::ComputeEpsilon(1.0, 0.5 * options().noise_multiplier, 1,
                                                options().delta),
            .delta = options().delta,
            .sensitivity = options().l2_sensitivity,
            .relation = options().relation,
            .description = "half the configured Gaussian noise"};
  }
  absl::StatusOr<privacy::MechanismAccounting> accounting() const override {
    return privacy::MechanismAccounting{"rdp", 0.5 * options().noise_multiplier};
  }
};

// A plug-in that states no bound an accountant can compose.
class Unaccounted final : public privacy::Mechanism {
 public:
  explicit Unaccounted(const privacy::MechanismOptions& options) : Mechanism(options) {}
  std::string_view name() const override { return "unaccounted"; }
  absl::Status AddNoise(std::span<float>, privacy::RandomSource&) const override {
    return absl::OkStatus();
  }
  absl::Status AddNoise(std::span<int64_t>, privacy::RandomSource&) const override {
    return absl::OkStatus();
  }
  privacy::Guarantee GetGuarantee() const override { return {}; }
  absl::StatusOr<privacy::MechanismAccounting> accounting() const override {
    return absl::UnimplementedError("this mechanism has no proof yet");
  }
};

[[maybe_unused]] const bool kTestMechanisms =
    privacy::RegisterMechanism("weak-gaussian",
                               [](const privacy::MechanismOptions& o)
                                   -> absl::StatusOr<std::unique_ptr<privacy::Mechanism>> {
                                 return std::make_unique<WeakGaussian>(o);
                               }) &&
    privacy::RegisterMechanism("unaccounted",
                               [](const privacy::MechanismOptions& o)
                                   -> absl::StatusOr<std::unique_ptr<privacy::Mechanism>> {
                                 return std::make_unique<Unaccounted>(o);
                               });

TEST(PrivateAggregationTest, EpsilonIsWhatTheMechanismStatesNotWhatTheConfigSays) {
  PrivateAggregationOptions options = Central(1.0);
  options.mechanism = "weak-gaussian";
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, 4));
  RoundPrivacy round;
  for (int r = 0; r < 50; ++r) {
    FEDGE_ASSERT_OK_AND_ASSIGN(round, dp->EndRound(10, Ids(10)));
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(const double stated, privacy::ComputeEpsilon(0.1, 0.5, 50, 1e-5));
  FEDGE_ASSERT_OK_AND_ASSIGN(const double configured, privacy::ComputeEpsilon(0.1, 1.0, 50, 1e-5));
  EXPECT_EQ(round.noise_multiplier, 0.5);
  EXPECT_DOUBLE_EQ(round.epsilon, stated);
  EXPECT_GT(stated, 2.0 * configured);  // what used to be reported, far below
  // Devices are told the noise the mechanism states it adds (their floors).
  EXPECT_EQ(dp->TaskConfig(10).aggregate_noise_multiplier(), 0.5);
  // The budget is checked against the stated cost too.
  options.epsilon_budget = 0.5 * (configured + stated);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto budgeted, PrivateAggregation::Create(options, 4));
  int rounds = 0;
  while (rounds < 50 && budgeted->CheckBudget(Ids(10)).ok()) {
    FEDGE_ASSERT_OK(budgeted->EndRound(10, Ids(10)).status());
    ++rounds;
  }
  EXPECT_LT(rounds, 50);
  EXPECT_LE(budgeted->epsilon(), options.epsilon_budget);

  // Adaptive clipping takes any mechanism stating an RDP bound (it used to
  // refuse every plug-in): the sum's stated noise and the count compose.
  options.epsilon_budget = 0.0;
  options.clipper = "adaptive";
  options.clipper_options.count_noise_stddev = 5.0;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto adaptive, PrivateAggregation::Create(options, 4));
  for (int i = 0; i < 10; ++i) adaptive->Record(true);
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy first, adaptive->EndRound(10, Ids(10)));
  // The sum carries half its share of the target (z_sum a little above 1),
  // the count its own: 1/z^2 = 4/z_sum^2 + (1 - 1/z_sum^2), just above 0.5.
  EXPECT_GT(first.noise_multiplier, 0.5);
  EXPECT_LT(first.noise_multiplier, 0.55);
  FEDGE_ASSERT_OK_AND_ASSIGN(const double one,
                             privacy::ComputeEpsilon(0.1, first.noise_multiplier, 1, 1e-5));
  EXPECT_DOUBLE_EQ(first.epsilon, one);
}

TEST(PrivateAggregationTest, AMechanismThatStatesNoBoundRunsOnlyWithoutABudget) {
  PrivateAggregationOptions options = Central(1.0);
  options.mechanism = "unaccounted";
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, 2));
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy round, dp->EndRound(10, Ids(10)));
  EXPECT_TRUE(std::isinf(round.epsilon));
  options.epsilon_budget = 10.0;
  EXPECT_THAT(PrivateAggregation::Create(options, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("mechanism 'unaccounted' states no guarantee")));
  options.epsilon_budget = 0.0;
  options.clipper = "adaptive";
  EXPECT_THAT(PrivateAggregation::Create(options, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("states no accountant")));
}

TEST(PrivateAggregationTest, NoneMechanismClipsButReportsInfiniteEpsilon) {
  PrivateAggregationOptions options = Central();
  options.mechanism = "none";
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, 2));
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy round, dp->EndRound(10, Ids(10)));
  EXPECT_TRUE(std::isinf(round.epsilon));
}

TEST(PrivateAggregationTest, AdaptiveClippingMovesTheBoundAndAddsTheCountTerm) {
  PrivateAggregationOptions options = Central(1.0);
  options.clipper = "adaptive";
  options.clipper_options.clip_norm = 1.0;
  options.clipper_options.count_noise_stddev = 5.0;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, 2));
  // All ten updates within the bound: the bound shrinks towards the median.
  for (int i = 0; i < 10; ++i) dp->Record(true);
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy round, dp->EndRound(10, Ids(10)));
  EXPECT_EQ(round.clip_norm, 1.0);         // the bound the round used
  EXPECT_LT(dp->clip_norm(), 1.0);         // the next one
  EXPECT_EQ(round.noise_multiplier, 1.0);  // the count is folded into z
}

TEST(PrivateAggregationTest, RefusesCombinationsThatAreNotPrivate) {
  struct Case {
    PrivateAggregationOptions options;
    std::string message;
  };
  std::vector<Case> cases;
  auto add = [&](auto edit, std::string message) {
    PrivateAggregationOptions options = Central();
    edit(options);
    cases.push_back({options, std::move(message)});
  };
  add([](auto& o) { o.mode = PrivacyMode::kNone; }, "mode 'none'");
  add([](auto& o) { o.noise_multiplier = 0; }, "noise_multiplier");
  add([](auto& o) { o.sampling_rate = 1.5; }, "sampling_rate");
  add([](auto& o) { o.expected_cohort = 0; }, "expected_cohort");
  add([](auto& o) { o.delta = 1.0; }, "delta");
  add([](auto& o) { o.epsilon_budget = -1; }, "epsilon_budget");
  add([](auto& o) { o.clipper_options.clip_norm = 0; }, "clip_norm");
  add([](auto& o) { o.mechanism = "cauchy"; }, "cauchy");
  add([](auto& o) { o.mechanism = "discrete-gaussian"; }, "noises integers");
  add(
      [](auto& o) {
        o.mode = PrivacyMode::kDistributed;
        o.mechanism = "laplace";
      },
      "shares");
  add(
      [](auto& o) {
        o.clipper = "adaptive";
        o.mechanism = "laplace";
      },
      "Gaussian");
  add(
      [](auto& o) {
        o.clipper = "adaptive";
        o.mode = PrivacyMode::kLocal;
      },
      "in the clear");
  add(
      [](auto& o) {
        o.clipper = "adaptive";
        o.clipper_options.count_noise_stddev = 0.1;
      },
      "count noise");
  for (const Case& c : cases) {
    const absl::Status status = PrivateAggregation::Create(c.options, 4).status();
    EXPECT_FALSE(status.ok()) << c.message;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message));
  }
}

TEST(PrivateAggregationTest, StateSurvivesARestartAndGarbageChangesNothing) {
  for (PrivacyMode mode : {PrivacyMode::kCentral, PrivacyMode::kLocal}) {
    PrivateAggregationOptions options = Central(1.0);
    options.mode = mode;
    if (mode == PrivacyMode::kCentral) options.clipper = "adaptive";
    FEDGE_ASSERT_OK_AND_ASSIGN(auto before, PrivateAggregation::Create(options, 4));
    for (int r = 0; r < 5; ++r) {
      for (int i = 0; i < 10; ++i) before->Record(i < 7);
      ASSERT_THAT(before->EndRound(10, Ids(10, r % 2)).status(), IsOk());
    }
    FEDGE_ASSERT_OK_AND_ASSIGN(auto after, PrivateAggregation::Create(options, 4));
    ASSERT_THAT(after->Restore(before->Serialize()), IsOk());
    EXPECT_DOUBLE_EQ(after->epsilon(), before->epsilon());
    EXPECT_EQ(after->rounds(), 5);
    EXPECT_EQ(after->clip_norm(), before->clip_norm());
    // The next round costs the same on both.
    FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy a, before->EndRound(10, Ids(10)));
    FEDGE_ASSERT_OK_AND_ASSIGN(RoundPrivacy b, after->EndRound(10, Ids(10)));
    EXPECT_DOUBLE_EQ(a.epsilon, b.epsilon);

    const std::string state = after->Serialize();
    EXPECT_THAT(after->Restore("not a state \xff\xff"),
                StatusIs(absl::StatusCode::kInvalidArgument));
    v1::PrivacyState bad;
    ASSERT_TRUE(bad.ParseFromString(state));
    (*bad.mutable_participations())["c0"] = 99;  // more rounds than happened
    EXPECT_THAT(after->Restore(bad.SerializeAsString()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("c0")));
    bad.ParseFromString(state);
    bad.set_clipper("fedge.adaptive_clipper.v1 -1 0 0");
    EXPECT_THAT(after->Restore(bad.SerializeAsString()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clipper")));
    EXPECT_EQ(after->Serialize(), state);
    EXPECT_DOUBLE_EQ(after->epsilon(), a.epsilon);
  }
}

// --- through the RoundManager ---------------------------------------------------

using round_testing::kLayout;
using round_testing::kSpec;
using round_testing::Train;

v1::EncodedUpdate Update(const std::string& client, const std::vector<float>& delta,
                         uint64_t examples, uint64_t round) {
  v1::EncodedUpdate update;
  update.set_round(round);
  update.set_model_version(round - 1);
  update.set_client_id(client);
  update.set_num_examples(examples);
  EXPECT_TRUE((*models::CreateUpdateCodec("fp32"))->Encode(delta, &update).ok());
  return update;
}

TEST(PrivateRoundManagerTest, UniformWeightsClippingAndFixedDenominator) {
  ModelRegistry registry(kSpec, kLayout);
  ASSERT_THAT(registry.Publish(std::vector<float>{0, 0, 0, 0}, 0).status(), IsOk());
  PrivateAggregationOptions options = Central(1e-9);  // noise too small to matter
  options.expected_cohort = 4.0;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, 4));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto strategy, CreateStrategy("fedavg", {}));
  FEDGE_ASSERT_OK_AND_ASSIGN(
      auto manager, RoundManager::Create(std::move(strategy), &registry, {}, std::move(dp)));
  ASSERT_THAT(manager->OpenRound(1, {"a", "b"}, Train()), IsOk());
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::Task task, manager->TaskFor("a"));
  EXPECT_EQ(task.privacy().mode(), v1::PrivacyConfig::MODE_CENTRAL);
  // a: norm 0.5, 1 example; b: norm 5 (clipped to 1), 1000 examples.
  ASSERT_THAT(manager->Submit(Update("a", {0.5f, 0, 0, 0}, 1, 1)), IsOk());
  ASSERT_THAT(manager->Submit(Update("b", {0, 3.0f, 4.0f, 0}, 1000, 1)), IsOk());
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundOutcome outcome, manager->CloseRound());
  ASSERT_TRUE(outcome.privacy.has_value());
  // (a + clip(b)) / 4, example counts ignored.
  FEDGE_ASSERT_OK_AND_ASSIGN(auto v1, registry.Get(1));
  EXPECT_NEAR(v1->parameters[0], 0.5 / 4, 1e-5);
  EXPECT_NEAR(v1->parameters[1], 0.6 / 4, 1e-5);
  EXPECT_NEAR(v1->parameters[2], 0.8 / 4, 1e-5);
  EXPECT_NEAR(v1->parameters[3], 0.0, 1e-5);
  // The clients' train loss is not private, so it is not published with DP.
  EXPECT_FALSE(v1->artifact->header().metrics().contains("train_loss"));
  EXPECT_TRUE(v1->artifact->header().metrics().contains("round"));
}

TEST(PrivateRoundManagerTest, StrategiesThatNeedEachUpdateAreRefused) {
  ModelRegistry registry(kSpec, kLayout);
  ASSERT_THAT(registry.Publish(std::vector<float>{0, 0, 0, 0}, 0).status(), IsOk());
  for (const char* name : {"median", "trimmed-mean", "krum"}) {
    FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(Central(), 4));
    FEDGE_ASSERT_OK_AND_ASSIGN(auto strategy, CreateStrategy(name, {}));
    EXPECT_THAT(RoundManager::Create(std::move(strategy), &registry, {}, std::move(dp)).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("noise to the sum")))
        << name;
  }
}

TEST(PrivateRoundManagerTest, OpenRoundRefusesOverBudgetAndStaysClosed) {
  ModelRegistry registry(kSpec, kLayout);
  ASSERT_THAT(registry.Publish(std::vector<float>{0, 0, 0, 0}, 0).status(), IsOk());
  PrivateAggregationOptions options = Central(1.0);
  FEDGE_ASSERT_OK_AND_ASSIGN(const double one_round, privacy::ComputeEpsilon(0.1, 1.0, 1, 1e-5));
  options.epsilon_budget = one_round * 1.01;
  FEDGE_ASSERT_OK_AND_ASSIGN(auto dp, PrivateAggregation::Create(options, 4));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto strategy, CreateStrategy("fedavg", {}));
  FEDGE_ASSERT_OK_AND_ASSIGN(
      auto manager, RoundManager::Create(std::move(strategy), &registry, {}, std::move(dp)));
  ASSERT_THAT(manager->OpenRound(1, {"a"}, Train()), IsOk());
  ASSERT_THAT(manager->Submit(Update("a", {0.1f, 0, 0, 0}, 1, 1)), IsOk());
  FEDGE_ASSERT_OK_AND_ASSIGN(RoundOutcome outcome, manager->CloseRound());
  EXPECT_DOUBLE_EQ(outcome.privacy->epsilon, one_round);
  EXPECT_THAT(manager->OpenRound(2, {"a"}, Train()),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("round 2 refused")));
  EXPECT_FALSE(manager->round_open());
  EXPECT_EQ(manager->privacy()->rounds(), 1);
}

TEST(PoissonCohortTest, RateAndReproducibility) {
  std::vector<std::string> candidates = Ids(2000);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto a, RoundManager::SelectPoissonCohort(candidates, 0.1, 5, 1));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto b, RoundManager::SelectPoissonCohort(candidates, 0.1, 5, 1));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto c, RoundManager::SelectPoissonCohort(candidates, 0.1, 5, 2));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // Binomial(2000, 0.1): mean 200, std 13.4.
  EXPECT_NEAR(static_cast<double>(a.size()), 200.0, 55.0);
  EXPECT_NEAR(static_cast<double>(c.size()), 200.0, 55.0);
  EXPECT_THAT(RoundManager::SelectPoissonCohort(candidates, 0.0, 5, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace fedge::aggregator
