#include "fedge/models/model_zoo.h"

#include <mutex>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/proto/registry.h"
#include "fedge/proto/status_macros.h"

namespace fedge::models {
namespace {

Registry<ArchitectureFactory>& Architectures() {
  static auto* const registry = new Registry<ArchitectureFactory>("model architecture");
  return *registry;
}

// LibTorch initializes parameters from its process-wide default generator;
// serialize seeding + construction so concurrent CreateModel calls stay
// deterministic.
std::mutex& InitMutex() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// --- inference plan steps -------------------------------------------------------

PlanStep Conv(std::string name, int64_t stride, int64_t padding, int64_t groups) {
  PlanStep step;
  step.op = PlanStep::Op::kConv2d;
  step.name = std::move(name);
  step.stride = stride;
  step.padding = padding;
  step.groups = groups;
  step.relu = true;
  return step;
}

PlanStep Linear(std::string name, bool relu) {
  PlanStep step;
  step.op = PlanStep::Op::kLinear;
  step.name = std::move(name);
  step.relu = relu;
  return step;
}

PlanStep MaxPool(int64_t kernel) {
  PlanStep step;
  step.op = PlanStep::Op::kMaxPool2d;
  step.kernel = kernel;
  return step;
}

PlanStep Flatten() {
  PlanStep step;
  step.op = PlanStep::Op::kFlatten;
  return step;
}

PlanStep GlobalAvgPool() {
  PlanStep step;
  step.op = PlanStep::Op::kGlobalAvgPool2d;
  return step;
}

// --- mlp ---------------------------------------------------------------------

class Mlp final : public Network {
 public:
  Mlp(int64_t inputs, int64_t classes)
      : fc1_(register_module("fc1", torch::nn::Linear(inputs, 200))),
        fc2_(register_module("fc2", torch::nn::Linear(200, 200))),
        fc3_(register_module("fc3", torch::nn::Linear(200, classes))) {}

  torch::Tensor forward(torch::Tensor x) override {
    x = x.flatten(1);
    x = torch::relu(fc1_->forward(x));
    x = torch::relu(fc2_->forward(x));
    return fc3_->forward(x);
  }

  std::vector<PlanStep> InferencePlan() const override {
    return {Flatten(), Linear("fc1", true), Linear("fc2", true), Linear("fc3", false)};
  }

 private:
  torch::nn::Linear fc1_, fc2_, fc3_;
};

// --- cnn, cnn-large: two unpadded 5x5 convolutions, 2x2 max pooling, one
// hidden fully connected layer. -----------------------------------------------

class TwoConvNet final : public Network {
 public:
  TwoConvNet(int64_t channels, int64_t flat_features, int64_t c1, int64_t c2, int64_t hidden,
             int64_t classes)
      : conv1_(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, c1, 5)))),
        conv2_(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, 5)))),
        fc1_(register_module("fc1", torch::nn::Linear(flat_features, hidden))),
        fc2_(register_module("fc2", torch::nn::Linear(hidden, classes))) {}

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::max_pool2d(torch::relu(conv1_->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2_->forward(x)), 2);
    x = torch::relu(fc1_->forward(x.flatten(1)));
    return fc2_->forward(x);
  }

  std::vector<PlanStep> InferencePlan() const override {
    return {
        Conv("conv1", 1, 0, 1), MaxPool(2),          Conv("conv2", 1, 0, 1), MaxPool(2), Flatten(),
        Linear("fc1", true),    Linear("fc2", false)};
  }

 private:
  torch::nn::Conv2d conv1_, conv2_;
  torch::nn::Linear fc1_, fc2_;
};

// Spatial size after conv5 -> pool2 -> conv5 -> pool2 (floor division, as
// LibTorch does), or 0 when the input is too small.
int64_t TwoConvOutputSide(int64_t side) {
  side = side - 4;
  if (side < 2) return 0;
  side = side / 2 - 4;
  if (side < 2) return 0;
  return side / 2;
}

ArchitectureFactory TwoConvFactory(std::string name, int64_t c1, int64_t c2, int64_t hidden) {
  return [=](const ModelSpec& spec) -> absl::StatusOr<NetworkPtr> {
    if (spec.input_shape.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", name, "' needs ModelSpec.input_shape = [channels, height, width], got [",
          absl::StrJoin(spec.input_shape, ", "), "]"));
    }
    const int64_t h = TwoConvOutputSide(spec.input_shape[1]);
    const int64_t w = TwoConvOutputSide(spec.input_shape[2]);
    if (h < 1 || w < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", name, "' needs images of at least 16x16, got ", spec.input_shape[1], "x",
          spec.input_shape[2]));
    }
    return std::make_shared<TwoConvNet>(spec.input_shape[0], c2 * h * w, c1, c2, hidden,
                                        spec.num_classes);
  };
}

// --- mobilenet-tiny: depthwise-separable convolutions (Howard et al. 2017) ----

class MobileNetTiny final : public Network {
 public:
  // {output channels, stride} of the depthwise-separable blocks.
  static constexpr int64_t kBlocks[4][2] = {{32, 1}, {64, 2}, {64, 1}, {128, 2}};
  static constexpr int64_t kStemChannels = 16;

  MobileNetTiny(int64_t channels, int64_t classes) {
    stem_ = register_module(
        "stem", torch::nn::Conv2d(
                    torch::nn::Conv2dOptions(channels, kStemChannels, 3).stride(2).padding(1)));
    int64_t in = kStemChannels;
    for (int b = 0; b < 4; ++b) {
      const int64_t out = kBlocks[b][0];
      const int64_t stride = kBlocks[b][1];
      depthwise_.push_back(register_module(
          absl::StrCat("dw", b + 1),
          torch::nn::Conv2d(
              torch::nn::Conv2dOptions(in, in, 3).stride(stride).padding(1).groups(in))));
      pointwise_.push_back(register_module(
          absl::StrCat("pw", b + 1), torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1))));
      in = out;
    }
    fc_ = register_module("fc", torch::nn::Linear(in, classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(stem_->forward(x));
    for (size_t b = 0; b < depthwise_.size(); ++b) {
      x = torch::relu(depthwise_[b]->forward(x));
      x = torch::relu(pointwise_[b]->forward(x));
    }
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc_->forward(x);
  }

  std::vector<PlanStep> InferencePlan() const override {
    std::vector<PlanStep> plan = {Conv("stem", 2, 1, 1)};
    int64_t in = kStemChannels;
    for (int b = 0; b < 4; ++b) {
      plan.push_back(Conv(absl::StrCat("dw", b + 1), kBlocks[b][1], 1, in));
      plan.push_back(Conv(absl::StrCat("pw", b + 1), 1, 0, 1));
      in = kBlocks[b][0];
    }
    plan.push_back(GlobalAvgPool());
    plan.push_back(Flatten());
    plan.push_back(Linear("fc", false));
    return plan;
  }

 private:
  torch::nn::Conv2d stem_{nullptr};
  std::vector<torch::nn::Conv2d> depthwise_;
  std::vector<torch::nn::Conv2d> pointwise_;
  torch::nn::Linear fc_{nullptr};
};

absl::StatusOr<NetworkPtr> MakeMobileNetTiny(const ModelSpec& spec) {
  if (spec.input_shape.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model 'mobilenet-tiny' needs ModelSpec.input_shape = [channels, height, width], got [",
        absl::StrJoin(spec.input_shape, ", "), "]"));
  }
  if (spec.input_shape[1] < 8 || spec.input_shape[2] < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("model 'mobilenet-tiny' needs images of at least 8x8, got ",
                     spec.input_shape[1], "x", spec.input_shape[2]));
  }
  return std::make_shared<MobileNetTiny>(spec.input_shape[0], spec.num_classes);
}

absl::StatusOr<NetworkPtr> MakeMlp(const ModelSpec& spec) {
  return std::make_shared<Mlp>(Product(spec.input_shape), spec.num_classes);
}

// The built-ins register here rather than from static initializers in
// separate files: the registry and its built-ins form one translation unit,
// so no linker can drop them.
bool RegisterBuiltins() {
  RegisterArchitecture("mlp", MakeMlp);
  RegisterArchitecture("cnn", TwoConvFactory("cnn", 20, 50, 500));
  RegisterArchitecture("cnn-large", TwoConvFactory("cnn-large", 32, 64, 512));
  RegisterArchitecture("mobilenet-tiny", MakeMobileNetTiny);
  return true;
}

void EnsureBuiltins() {
  static const bool registered = RegisterBuiltins();
  (void)registered;
}

}  // namespace

bool RegisterArchitecture(std::string_view name, ArchitectureFactory factory) {
  return Architectures().Add(name, std::move(factory));
}

std::vector<std::string> RegisteredArchitectures() {
  EnsureBuiltins();
  return Architectures().Names();
}

absl::StatusOr<NetworkPtr> CreateModel(const ModelSpec& spec, uint64_t seed) {
  EnsureBuiltins();
  FEDGE_RETURN_IF_ERROR(ValidateModelSpec(spec));
  FEDGE_ASSIGN_OR_RETURN(ArchitectureFactory factory, Architectures().Find(spec.architecture));
  std::lock_guard<std::mutex> lock(InitMutex());
  torch::manual_seed(seed);
  try {
    return factory(spec);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("building model '", spec.architecture, "' failed: ", e.what()));
  }
}

}  // namespace fedge::models
