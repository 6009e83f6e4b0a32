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

// A classifier: maps a batch [B, input_shape...] of floats to logits
// [B, num_classes].
class Network : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
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
