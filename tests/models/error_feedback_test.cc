#include "fedge/models/error_feedback.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "fedge/models/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::models {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::Each;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::shared_ptr<const UpdateCodec> TopK(double density) {
  UpdateCodecOptions options;
  options.density = density;
  auto codec = CreateUpdateCodec("topk", options);
  EXPECT_THAT(codec, IsOk());
  return std::shared_ptr<const UpdateCodec>(std::move(*codec));
}

std::vector<float> RandomDelta(size_t d, std::mt19937& rng, float stddev = 0.05f) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> delta(d);
  for (float& v : delta) v = normal(rng);
  return delta;
}

std::vector<float> Decode(const UpdateCodec& codec, const v1::EncodedUpdate& update) {
  std::vector<float> out(update.dimension());
  EXPECT_THAT(codec.Decode(update, out), IsOk());
  return out;
}

TEST(ErrorFeedbackTest, ResidualIsWhatTheCodecDropped) {
  auto codec = TopK(0.1);
  ErrorFeedback feedback(codec, 40);
  EXPECT_THAT(feedback.residual(), Each(0.0f));
  std::mt19937 rng(1);
  std::vector<float> previous(40, 0.0f);
  for (int round = 0; round < 5; ++round) {
    const std::vector<float> delta = RandomDelta(40, rng);
    v1::EncodedUpdate update;
    ASSERT_THAT(feedback.Encode(delta, &update), IsOk());
    EXPECT_EQ(update.codec(), "topk");
    const std::vector<float> decoded = Decode(*codec, update);
    std::vector<float> expected(40);
    for (size_t i = 0; i < 40; ++i) expected[i] = (delta[i] + previous[i]) - decoded[i];
    ASSERT_THAT(feedback.residual(), ElementsAreArray(expected)) << "round " << round;
    // topk sends entries of delta + residual exactly, so those leave nothing.
    for (size_t i = 0; i < 40; ++i) {
      if (decoded[i] != 0.0f) {
        EXPECT_EQ(feedback.residual()[i], 0.0f);
      }
    }
    previous = expected;
  }
}

TEST(ErrorFeedbackTest, KeepsTheUpdatesOtherFields) {
  ErrorFeedback feedback(TopK(0.5), 4);
  v1::EncodedUpdate update;
  update.set_round(9);
  update.set_client_id("device-1");
  const std::vector<float> delta = {1, 2, 3, 4};
  ASSERT_THAT(feedback.Encode(delta, &update), IsOk());
  EXPECT_EQ(update.round(), 9u);
  EXPECT_EQ(update.client_id(), "device-1");
}

// A persistent signal too small for top-k: without error feedback it never
// reaches the aggregator; with it, the decoded sum tracks the true sum up to
// the (bounded) residual.
TEST(ErrorFeedbackTest, DecodedSumTracksTheTrueSum) {
  constexpr size_t kDimension = 500;
  constexpr int kRounds = 300;
  auto codec = TopK(0.02);  // k = 10
  ErrorFeedback feedback(codec, kDimension);
  std::mt19937 rng(2);
  std::vector<float> drift(kDimension);
  for (size_t i = 0; i < kDimension; ++i) drift[i] = (i % 2 == 0 ? 1e-3f : -1e-3f);

  std::vector<double> true_sum(kDimension, 0.0), with_feedback(kDimension, 0.0),
      without_feedback(kDimension, 0.0);
  double max_gap_with = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<float> delta = RandomDelta(kDimension, rng, 0.01f);
    for (size_t i = 0; i < kDimension; ++i) delta[i] += drift[i];
    v1::EncodedUpdate with, without;
    ASSERT_THAT(feedback.Encode(delta, &with), IsOk());
    ASSERT_THAT(codec->Encode(delta, &without), IsOk());
    const std::vector<float> decoded_with = Decode(*codec, with);
    const std::vector<float> decoded_without = Decode(*codec, without);
    double gap_squared = 0;
    for (size_t i = 0; i < kDimension; ++i) {
      true_sum[i] += delta[i];
      with_feedback[i] += decoded_with[i];
      without_feedback[i] += decoded_without[i];
      gap_squared += std::pow(true_sum[i] - with_feedback[i], 2);
      // Exact bookkeeping: what was sent plus what is held is everything.
      ASSERT_NEAR(with_feedback[i] + feedback.residual()[i], true_sum[i], 1e-4);
    }
    max_gap_with = std::max(max_gap_with, std::sqrt(gap_squared));
  }
  double gap_without = 0, true_norm = 0;
  for (size_t i = 0; i < kDimension; ++i) {
    gap_without += std::pow(true_sum[i] - without_feedback[i], 2);
    true_norm += true_sum[i] * true_sum[i];
  }
  gap_without = std::sqrt(gap_without);
  true_norm = std::sqrt(true_norm);
  // The gap with feedback stays bounded (it is the residual, which top-k
  // keeps below about d/k rounds' worth of signal); without it, the drift
  // accumulates in full.
  EXPECT_LT(max_gap_with, 0.2 * true_norm);
  EXPECT_GT(gap_without, 0.8 * true_norm);
  EXPECT_LT(max_gap_with, 0.2 * gap_without);
}

TEST(ErrorFeedbackTest, SerializeRestoreContinuesIdentically) {
  auto codec = TopK(0.05);
  ErrorFeedback original(codec, 100);
  std::mt19937 rng(3);
  for (int round = 0; round < 3; ++round) {
    v1::EncodedUpdate update;
    ASSERT_THAT(original.Encode(RandomDelta(100, rng), &update), IsOk());
  }
  ErrorFeedback restored(codec, 100);
  ASSERT_THAT(restored.Restore(original.Serialize()), IsOk());
  EXPECT_THAT(restored.residual(), ElementsAreArray(original.residual()));
  const std::vector<float> delta = RandomDelta(100, rng);
  v1::EncodedUpdate a, b;
  ASSERT_THAT(original.Encode(delta, &a), IsOk());
  ASSERT_THAT(restored.Encode(delta, &b), IsOk());
  EXPECT_EQ(a.payload(), b.payload());
  EXPECT_THAT(restored.residual(), ElementsAreArray(original.residual()));
}

TEST(ErrorFeedbackTest, ResetZeroesTheResidual) {
  ErrorFeedback feedback(TopK(0.1), 20);
  std::mt19937 rng(4);
  v1::EncodedUpdate update;
  ASSERT_THAT(feedback.Encode(RandomDelta(20, rng), &update), IsOk());
  feedback.Reset();
  EXPECT_THAT(feedback.residual(), Each(0.0f));
}

class ErrorFeedbackRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(5);
    v1::EncodedUpdate update;
    ASSERT_THAT(feedback_.Encode(RandomDelta(10, rng), &update), IsOk());
    state_ = feedback_.Serialize();
    residual_.assign(feedback_.residual().begin(), feedback_.residual().end());
  }

  // Restore must fail naming `what`, leaving the residual as it was.
  void ExpectRefused(const std::string& bytes, const std::string& what) {
    EXPECT_THAT(feedback_.Restore(bytes),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(what)));
    EXPECT_THAT(feedback_.residual(), ElementsAreArray(residual_));
  }

  ErrorFeedback feedback_{TopK(0.2), 10};
  std::string state_;
  std::vector<float> residual_;
};

TEST_F(ErrorFeedbackRestoreTest, RefusesGarbage) {
  ExpectRefused("", "not a serialized residual");
  ExpectRefused("hello world, not a residual", "not a serialized residual");
}

TEST_F(ErrorFeedbackRestoreTest, RefusesAnotherFormatVersion) {
  std::string bytes = state_;
  bytes[4] = 2;
  ExpectRefused(bytes, "format version 2");
}

TEST_F(ErrorFeedbackRestoreTest, RefusesTruncatedAndPaddedState) {
  ExpectRefused(state_.substr(0, 14), "truncated");
  ExpectRefused(state_.substr(0, state_.size() - 1), "bytes, expected");
  ExpectRefused(state_ + "x", "bytes, expected");
}

TEST_F(ErrorFeedbackRestoreTest, RefusesAnotherCodecsState) {
  auto int8 = CreateUpdateCodec("int8");
  ASSERT_THAT(int8, IsOk());
  ErrorFeedback other(std::shared_ptr<const UpdateCodec>(std::move(*int8)), 10);
  ExpectRefused(other.Serialize(), "codec 'int8'");
}

TEST_F(ErrorFeedbackRestoreTest, RefusesAnotherDimension) {
  ErrorFeedback other(TopK(0.2), 11);
  ExpectRefused(other.Serialize(), "holds 11 values");
}

TEST_F(ErrorFeedbackRestoreTest, RefusesNonFiniteResiduals) {
  std::string bytes = state_;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bytes.data() + bytes.size() - 4 * 3, &nan, sizeof(nan));
  ExpectRefused(bytes, "entry 7 is not finite");
}

TEST(ErrorFeedbackTest, RefusesAWrongDimensionAndFailedEncodesChangeNothing) {
  ErrorFeedback feedback(TopK(0.5), 4);
  v1::EncodedUpdate update;
  ASSERT_THAT(feedback.Encode(std::vector<float>{1, 2, 3, 4}, &update), IsOk());
  const std::vector<float> residual(feedback.residual().begin(), feedback.residual().end());
  EXPECT_THAT(feedback.Encode(std::vector<float>{1, 2, 3}, &update),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("delta has 3")));
  const std::vector<float> bad = {1, std::numeric_limits<float>::infinity(), 3, 4};
  v1::EncodedUpdate untouched;
  EXPECT_THAT(feedback.Encode(bad, &untouched), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(untouched.codec().empty());
  EXPECT_THAT(feedback.residual(), ElementsAreArray(residual));
}

TEST(ErrorFeedbackTest, ReturnUndeliveredRestoresTheWholeCorrectedDelta) {
  auto codec = TopK(0.25);
  ErrorFeedback feedback(codec, 8);
  const std::vector<float> first = {0.5f, -0.1f, 0.2f, 0.0f, 0.3f, -0.7f, 0.05f, 0.1f};
  v1::EncodedUpdate delivered;
  ASSERT_THAT(feedback.Encode(first, &delivered), IsOk());
  const std::vector<float> kept(feedback.residual().begin(), feedback.residual().end());
  const std::vector<float> second = {0.1f, 0.1f, -0.2f, 0.4f, 0.0f, 0.2f, -0.3f, 0.6f};
  v1::EncodedUpdate lost;
  ASSERT_THAT(feedback.Encode(second, &lost), IsOk());
  ASSERT_THAT(feedback.ReturnUndelivered(lost), IsOk());
  // As if the second update had never been encoded and sent: the residual
  // is everything not delivered, kept + second.
  for (size_t i = 0; i < 8; ++i) EXPECT_NEAR(feedback.residual()[i], kept[i] + second[i], 1e-7);

  // An update from another codec or dimension is refused and changes nothing.
  const std::vector<float> before(feedback.residual().begin(), feedback.residual().end());
  v1::EncodedUpdate foreign = lost;
  foreign.set_codec("int8");
  EXPECT_THAT(feedback.ReturnUndelivered(foreign), StatusIs(absl::StatusCode::kInvalidArgument));
  foreign = lost;
  foreign.set_dimension(9);
  EXPECT_THAT(feedback.ReturnUndelivered(foreign), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(feedback.residual(), ElementsAreArray(before));
}

TEST(ErrorFeedbackTest, WorksWithQsgdToo) {
  UpdateCodecOptions options;
  options.bits = 2;
  auto qsgd = CreateUpdateCodec("qsgd", options);
  ASSERT_THAT(qsgd, IsOk());
  std::shared_ptr<const UpdateCodec> codec(std::move(*qsgd));
  ErrorFeedback feedback(codec, 64);
  std::mt19937 rng(6);
  std::vector<double> true_sum(64, 0.0), sent(64, 0.0);
  for (int round = 0; round < 50; ++round) {
    const std::vector<float> delta = RandomDelta(64, rng);
    v1::EncodedUpdate update;
    update.set_round(static_cast<uint64_t>(round));
    ASSERT_THAT(feedback.Encode(delta, &update), IsOk());
    const std::vector<float> decoded = Decode(*codec, update);
    for (size_t i = 0; i < 64; ++i) {
      true_sum[i] += delta[i];
      sent[i] += decoded[i];
    }
  }
  for (size_t i = 0; i < 64; ++i) EXPECT_NEAR(sent[i] + feedback.residual()[i], true_sum[i], 1e-4);
}

}  // namespace
}  // namespace fedge::models
