#include "fedge/models/distillation.h"

#include <torch/torch.h>

#include <cmath>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::models {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

TEST(DistillationLossTest, ZeroForIdenticalLogitsPositiveOtherwise) {
  torch::manual_seed(1);
  const torch::Tensor logits = torch::randn({8, 5});
  EXPECT_NEAR(DistillationLoss(logits, logits, 3.0).item<double>(), 0.0, 1e-6);
  // A shift per row leaves the softmax unchanged.
  EXPECT_NEAR(DistillationLoss(logits + 7.0, logits, 3.0).item<double>(), 0.0, 1e-5);
  EXPECT_GT(DistillationLoss(torch::randn({8, 5}), logits, 3.0).item<double>(), 0.0);
}

TEST(DistillationLossTest, GradientIsTheSoftenedDifferenceAndStaysFinite) {
  torch::manual_seed(2);
  for (double temperature : {0.5, 1.0, 4.0, 20.0}) {
    for (double size : {1.0, 100.0, 1e4}) {  // up to logits that overflow exp()
      const torch::Tensor student = (torch::randn({6, 10}) * size).requires_grad_(true);
      const torch::Tensor teacher = torch::randn({6, 10}) * size;
      const torch::Tensor loss = DistillationLoss(student, teacher, temperature);
      ASSERT_TRUE(std::isfinite(loss.item<double>())) << temperature << " " << size;
      loss.backward();
      ASSERT_TRUE(torch::isfinite(student.grad()).all().item<bool>()) << temperature << " " << size;
      // d/dz_s of T^2 KL(p_t || p_s) / B = T (p_s - p_t) / B (Hinton et al. 2015, eq. 2).
      const torch::Tensor expected = (torch::softmax(student.detach() / temperature, 1) -
                                      torch::softmax(teacher / temperature, 1)) *
                                     temperature / 6.0;
      EXPECT_TRUE(torch::allclose(student.grad(), expected, 1e-4, 1e-6))
          << temperature << " " << size;
    }
  }
}

// Two Gaussian blobs per class in 4-D: three classes the teacher has learned.
struct Blobs {
  torch::Tensor x;
  torch::Tensor y;
};

Blobs MakeBlobs(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  const torch::Tensor centers = torch::tensor(
      {{2.0f, 0.0f, 0.0f, 1.0f}, {-2.0f, 1.0f, 0.0f, 0.0f}, {0.0f, -2.0f, 1.5f, -1.0f}});
  const torch::Tensor y = torch::randint(0, 3, {n}, torch::kInt64);
  return {centers.index_select(0, y) + torch::randn({n, 4}) * 0.6, y};
}

double Accuracy(Network& net, const Blobs& data) {
  torch::NoGradGuard no_grad;
  net.eval();
  return net.forward(data.x).argmax(1).eq(data.y).to(torch::kFloat).mean().item<double>();
}

TEST(DistillTest, StudentLearnsTheTeachersTaskFromUnlabeledData) {
  const ModelSpec spec{"mlp", {4}, 3};
  auto teacher = ModelInstance::Create(spec, 1);
  ASSERT_THAT(teacher, IsOk());
  {
    const Blobs train = MakeBlobs(512, 3);
    torch::optim::SGD sgd((*teacher)->network().parameters(), torch::optim::SGDOptions(0.1));
    (*teacher)->network().train();
    for (int step = 0; step < 200; ++step) {
      sgd.zero_grad();
      torch::nn::functional::cross_entropy((*teacher)->network().forward(train.x), train.y)
          .backward();
      sgd.step();
    }
  }
  const Blobs test = MakeBlobs(1000, 4);
  ASSERT_GT(Accuracy((*teacher)->network(), test), 0.95);

  auto student = ModelInstance::Create(spec, 2);
  ASSERT_THAT(student, IsOk());
  const double before = Accuracy((*student)->network(), test);
  DistillationOptions options;
  options.epochs = 5;
  options.batch_size = 32;
  options.seed = 7;
  const torch::Tensor proxy = MakeBlobs(400, 5).x;  // labels dropped
  auto report = Distill((*teacher)->network(), **student, proxy, options);
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->steps, 5 * 13);  // ceil(400 / 32) per epoch
  EXPECT_LT(report->last_epoch_loss, report->first_epoch_loss / 2);
  const double after = Accuracy((*student)->network(), test);
  EXPECT_LT(before, 0.7);
  EXPECT_GT(after, 0.9) << "before " << before;
}

TEST(DistillTest, RefusesBadOptionsAndMismatchedModels) {
  auto teacher = ModelInstance::Create(ModelSpec{"mlp", {4}, 3}, 1);
  auto student = ModelInstance::Create(ModelSpec{"mlp", {4}, 3}, 2);
  auto other = ModelInstance::Create(ModelSpec{"mlp", {4}, 5}, 2);
  ASSERT_TRUE(teacher.ok() && student.ok() && other.ok());
  const torch::Tensor proxy = torch::randn({10, 4});
  const auto refused = [&](DistillationOptions o, const std::string& field) {
    EXPECT_THAT(Distill((*teacher)->network(), **student, proxy, o).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)));
  };
  DistillationOptions o;
  o.temperature = 0;
  refused(o, "temperature");
  o = {};
  o.epochs = 0;
  refused(o, "epochs");
  o = {};
  o.batch_size = 0;
  refused(o, "batch_size");
  o = {};
  o.learning_rate = -1;
  refused(o, "learning_rate");
  EXPECT_THAT(Distill((*teacher)->network(), **student, torch::zeros({0, 4}), {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-empty")));
  EXPECT_THAT(Distill((*teacher)->network(), **other, proxy, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("5 classes")));
}

}  // namespace
}  // namespace fedge::models
