// The model zoo: network architectures registered by name.
//
//   FEDGE_ASSIGN_OR_RETURN(NetworkPtr net, CreateModel(spec, /*seed=*/7));
//
// Built-ins (input {C,H,W} for the convolutional ones):
//   mlp        flatten -> 200 -> 200 -> classes, ReLU (the "2NN" of McMahan et
//              al. 2017); any input shape.
//   cnn        LeNet-style: conv 5x5 x20 -> pool -> conv 5x5 x50 -> pool ->
//              fc 500 -> classes (431,080 parameters on 1x28x28, 10 classes).
//   cnn-large  conv 5x5 x32 -> pool -> conv 5x5 x64 -> pool -> fc 512 ->
//              classes, the CNN of McMahan et al. 2017 with unpadded
//              convolutions (582,026 parameters on 1x28x28, 10 classes).
//   mobilenet-tiny
//              a small MobileNet (Howard et al. 2017): conv 3x3 x16 stride 2,
//              then four depthwise-separable blocks (depthwise 3x3 + ReLU,
//              pointwise 1x1 + ReLU) to 32, 64, 64 and 128 channels, strides
//              1, 2, 1, 2, global average pooling, fc -> classes (18,346
//              parameters on 1x28x28, 10 classes: 23x fewer than cnn). No
//              batch norm: its running statistics are not parameters and
//              would not be federated. The distillation student of choice.
//
// Every built-in also declares its inference plan (InferencePlan), which
// the int8/fp32 inference engine (inference.h) executes.
//
// Thread safety: CreateModel and the registry functions may be called from
// any thread. A Network is not thread-safe; use one per thread.
#ifndef FEDGE_MODELS_MODEL_ZOO_H_
#define FEDGE_MODELS_MODEL_ZOO_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "absl/status/statusor.h"
#include "fedge/models/model_spec.h"

namespace fedge::models {

// One step of a network's forward pass as the inference engine runs it. The
// steps apply in order to the input; conv and linear steps read the
// parameters "<name>.weight" and "<name>.bias".
struct PlanStep {
  enum class Op {
    kConv2d,           // square kernel; `groups` == channels for depthwise
    kLinear,           // on [B, features]
    kMaxPool2d,        // kernel = stride = `kernel`
    kGlobalAvgPool2d,  // [B, C, H, W] -> [B, C, 1, 1]
    kFlatten,          // [B, ...] -> [B, features]
  };
  Op op = Op::kLinear;
  std::string name;  // conv and linear: the parameters' prefix, e.g. "conv1"
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t groups = 1;
  int64_t kernel = 2;  // max pooling only
  bool relu = false;   // conv and linear: followed by a ReLU
};

// A classifier: maps a batch [B, input_shape...] of floats to logits
// [B, num_classes].
class Network : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  // The steps that compute the same function as forward(), for the
  // inference engine; empty when the network has none (int8 inference is
  // then unavailable for it). Conv and linear steps must name parameters of
  // this module.
  virtual std::vector<PlanStep> InferencePlan() const { return {}; }
};

using NetworkPtr = std::shared_ptr<Network>;

// Builds an architecture for a validated spec. Parameters are initialized by
// the caller's seeding of LibTorch's default generator (see CreateModel).
using ArchitectureFactory = std::function<absl::StatusOr<NetworkPtr>(const ModelSpec&)>;

// Creates the network for `spec` with parameters initialized deterministically
// from `seed` (the same seed gives the same parameters on every call).
// NOT_FOUND for an unknown architecture, listing the known ones;
// INVALID_ARGUMENT when the input shape does not fit the architecture.
absl::StatusOr<NetworkPtr> CreateModel(const ModelSpec& spec, uint64_t seed);

// Registers an architecture; returns true so that it can initialize a static.
// Registering a name twice aborts (programmer error).
bool RegisterArchitecture(std::string_view name, ArchitectureFactory factory);

// Sorted names of the registered architectures.
std::vector<std::string> RegisteredArchitectures();

}  // namespace fedge::models

#endif  // FEDGE_MODELS_MODEL_ZOO_H_
