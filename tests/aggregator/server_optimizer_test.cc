// Strategy::Apply (the server optimizer step): input validation, dimension
// stability, and SerializeState/RestoreState for every optimizer.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "status_matchers.h"
#include "fedge/aggregator/strategy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

StrategyOptions SmallStepOptions() {
  StrategyOptions options;
  options.server_learning_rate = 0.1;
  options.server_momentum = 0.7;
  options.beta1 = 0.6;
  options.beta2 = 0.8;
  options.tau = 0.05;
  return options;
}

std::unique_ptr<Strategy> MakeStrategy(const std::string& name) {
  absl::StatusOr<std::unique_ptr<Strategy>> strategy = CreateStrategy(name, SmallStepOptions());
  EXPECT_TRUE(strategy.ok()) << strategy.status();
  return strategy.ok() ? std::move(strategy).value() : nullptr;
}

// Three rounds of aggregated deltas over 3 parameters.
const std::vector<std::vector<float>> kRounds = {
    {0.5f, -1.0f, 0.25f}, {-0.25f, 2.0f, 0.0f}, {1.5f, 0.125f, -0.75f}};

class ServerStepTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    strategy_ = MakeStrategy(GetParam());
    ASSERT_NE(strategy_, nullptr);
  }

  std::unique_ptr<Strategy> strategy_;
};

INSTANTIATE_TEST_SUITE_P(EveryOptimizer, ServerStepTest,
                         ::testing::Values("fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad",
                                           "median"));

TEST_P(ServerStepTest, RestoredStateContinuesExactlyAsWithoutInterruption) {
  std::vector<float> global = {1.0f, 2.0f, 3.0f};
  FEDGE_ASSERT_OK(strategy_->Apply(kRounds[0], global));
  const std::string state = strategy_->SerializeState();
  std::vector<float> restarted_global = global;

  FEDGE_ASSERT_OK(strategy_->Apply(kRounds[1], global));
  FEDGE_ASSERT_OK(strategy_->Apply(kRounds[2], global));

  // A new process: same options, state restored from the bytes.
  std::unique_ptr<Strategy> restarted = MakeStrategy(GetParam());
  ASSERT_NE(restarted, nullptr);
  FEDGE_ASSERT_OK(restarted->RestoreState(state));
  FEDGE_ASSERT_OK(restarted->Apply(kRounds[1], restarted_global));
  FEDGE_ASSERT_OK(restarted->Apply(kRounds[2], restarted_global));
  EXPECT_EQ(restarted_global, global);
  EXPECT_EQ(restarted->SerializeState(), strategy_->SerializeState());
}

TEST_P(ServerStepTest, FreshStateRoundTrips) {
  const std::string state = strategy_->SerializeState();
  std::unique_ptr<Strategy> other = MakeStrategy(GetParam());
  FEDGE_ASSERT_OK(other->RestoreState(state));
  EXPECT_EQ(other->SerializeState(), state);
}

TEST_P(ServerStepTest, SizeMismatchIsRejectedAndChangesNothing) {
  std::vector<float> global = {1.0f, 2.0f, 3.0f};
  EXPECT_THAT(strategy_->Apply(std::vector<float>{1.0f, 1.0f}, global),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("aggregated delta has 2 values but the global model has 3")));
  EXPECT_THAT(global, ElementsAre(1.0f, 2.0f, 3.0f));
}

TEST_P(ServerStepTest, DimensionCannotChangeBetweenRounds) {
  std::vector<float> global = {1.0f, 2.0f, 3.0f};
  FEDGE_ASSERT_OK(strategy_->Apply(kRounds[0], global));
  const std::string state = strategy_->SerializeState();
  std::vector<float> bigger = {1.0f, 2.0f, 3.0f, 4.0f};
  EXPECT_THAT(strategy_->Apply(std::vector<float>(4, 0.5f), bigger),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("global model has 4 parameters but earlier rounds had 3")));
  EXPECT_THAT(bigger, ElementsAre(1.0f, 2.0f, 3.0f, 4.0f));
  EXPECT_EQ(strategy_->SerializeState(), state);

  // The dimension survives a restart too.
  std::unique_ptr<Strategy> restarted = MakeStrategy(GetParam());
  FEDGE_ASSERT_OK(restarted->RestoreState(state));
  EXPECT_THAT(restarted->Apply(std::vector<float>(4, 0.5f), bigger),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("earlier rounds had 3")));
}

TEST_P(ServerStepTest, NonFiniteAggregatedDeltaIsRejectedAndChangesNothing) {
  std::vector<float> global = {1.0f, 2.0f, 3.0f};
  FEDGE_ASSERT_OK(strategy_->Apply(kRounds[0], global));
  const std::vector<float> after_first = global;
  const std::string state = strategy_->SerializeState();
  for (const float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> delta = {0.0f, bad, 0.0f};
    EXPECT_THAT(strategy_->Apply(delta, global),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("aggregated delta value at index 1 is not finite")));
  }
  EXPECT_EQ(global, after_first);
  EXPECT_EQ(strategy_->SerializeState(), state);
}

TEST_P(ServerStepTest, RestoreStateRejectsGarbageAndKeepsTheCurrentState) {
  std::vector<float> global = {1.0f, 2.0f, 3.0f};
  FEDGE_ASSERT_OK(strategy_->Apply(kRounds[0], global));
  const std::string state = strategy_->SerializeState();

  EXPECT_THAT(strategy_->RestoreState(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("magic")));
  EXPECT_THAT(strategy_->RestoreState("\x01\x02garbage"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("magic")));
  for (std::size_t length = 0; length < state.size(); ++length) {
    EXPECT_THAT(strategy_->RestoreState(state.substr(0, length)),
                StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << "prefix of " << length << " bytes";
  }
  EXPECT_THAT(strategy_->RestoreState(state + "!"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trailing")));
  EXPECT_EQ(strategy_->SerializeState(), state);
}

TEST(ServerStateTest, StateOfAnotherOptimizerIsRejected) {
  std::vector<float> global = {0.0f, 0.0f, 0.0f};
  std::unique_ptr<Strategy> adam = MakeStrategy("fedadam");
  FEDGE_ASSERT_OK(adam->Apply(kRounds[0], global));
  std::unique_ptr<Strategy> momentum = MakeStrategy("fedavgm");
  FEDGE_ASSERT_OK(momentum->Apply(kRounds[0], global));

  EXPECT_THAT(MakeStrategy("fedyogi")->RestoreState(adam->SerializeState()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("FedAdam")));
  EXPECT_THAT(MakeStrategy("fedadagrad")->RestoreState(adam->SerializeState()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not FedAdagrad")));
  EXPECT_THAT(MakeStrategy("fedavg")->RestoreState(momentum->SerializeState()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kind")));
  EXPECT_THAT(MakeStrategy("fedavgm")->RestoreState(adam->SerializeState()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kind")));
  // An accumulator's state is not an optimizer's.
  EXPECT_THAT(MakeStrategy("fedadam")->RestoreState(adam->NewAccumulator(3)->Serialize()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kind")));
}

TEST(ServerStateTest, NegativeSecondMomentIsRejected) {
  std::vector<float> global = {0.0f};
  std::unique_ptr<Strategy> adam = MakeStrategy("fedadam");
  FEDGE_ASSERT_OK(adam->Apply(std::vector<float>{1.0f}, global));
  // Adaptive layout (server_optimizers.cc): header (8), u8 variant, u8
  // has_dimension, u64 dimension, f32 m, f32 v: v is the last 4 bytes.
  std::string state = adam->SerializeState();
  const float negative = -1.0f;
  std::memcpy(state.data() + state.size() - sizeof(float), &negative, sizeof(float));
  EXPECT_THAT(MakeStrategy("fedadam")->RestoreState(state),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'v'")));
}

TEST(ServerStateTest, MomentumIsPartOfTheState) {
  // Without the restored velocity the second step would be eta * delta only.
  // beta = 0.7, eta = 0.1: round 1, delta 1: v = 1; round 2, delta 0:
  // v = 0.7, global moves by 0.07.
  std::vector<float> global = {0.0f};
  std::unique_ptr<Strategy> first = MakeStrategy("fedavgm");
  FEDGE_ASSERT_OK(first->Apply(std::vector<float>{1.0f}, global));
  std::unique_ptr<Strategy> second = MakeStrategy("fedavgm");
  FEDGE_ASSERT_OK(second->RestoreState(first->SerializeState()));
  std::vector<float> moved = {0.0f};
  FEDGE_ASSERT_OK(second->Apply(std::vector<float>{0.0f}, moved));
  EXPECT_THAT(moved, ElementsAre(::testing::FloatNear(0.07f, 1e-7f)));
}

}  // namespace
}  // namespace fedge::aggregator
