// On-device inference from a model artifact, in fp32 or int8.
//
// InferenceModel runs a published version the way a device does to make
// predictions: it rebuilds the architecture's inference plan (the sequence of
// convolutions, linear layers and pools the zoo's networks declare), loads the
// weights from the artifact, and executes the plan either in fp32 or in int8
// through LibTorch's quantized kernels.
//
// int8 follows Jacob et al. 2018 ("Quantization and training of neural
// networks for efficient integer-arithmetic-only inference"): weights are
// symmetric int8, one scale per output channel (the artifact's own scales
// when it is int8); activations are affine uint8 over the range
// CalibrateActivations measured on a small sample, widened to contain 0 so
// that 0 (ReLU, padding) is exact; ReLU is fused into the convolution or
// linear layer before it; pools run on the quantized values. The input is
// quantized on entry and the logits dequantized on exit.
//
// What works with Debian's LibTorch 1.13 from C++ (checked when this was
// written): the quantized engines QNNPACK (the ARM-first engine phones use;
// on x86 it runs its SSE2 kernels) and ONEDNN (x86) are compiled in, FBGEMM
// is not. The kernels are reached through the dispatcher:
// quantized::conv2d_prepack / conv2d / conv2d_relu (dense and depthwise) and
// quantized::linear_prepack / linear / linear_relu; max_pool2d and
// adaptive_avg_pool2d accept quantized tensors. There is no torch::nn
// module for them in the C++ frontend, hence the plan.
//
// Dead channels: a structurally pruned model (pruning.h) has output channels
// whose weights and bias are all zero. With drop_dead_channels (the default)
// the engine removes them, and the input columns that read them, before
// packing the weights, so the layers are physically smaller; the outputs are
// unchanged (up to int8 rounding: rows that lose columns get finer scales).
//
// Thread safety: Forward is not thread-safe, and the quantized engine is a
// process-wide LibTorch setting that Create and Forward set: do not run
// models of different engines on several threads at once.
#ifndef FEDGE_MODELS_INFERENCE_H_
#define FEDGE_MODELS_INFERENCE_H_

#include <c10/core/QEngine.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/models/model_zoo.h"
#include "fedge/v1/model.pb.h"

namespace fedge::models {

struct InferenceOptions {
  // Default: false (fp32).
  bool int8 = false;
  // int8 only: "qnnpack" (default) or "onednn". REQUIRES: compiled into
  // LibTorch (QuantizedEngines() lists them).
  std::string engine = "qnnpack";
  // Remove all-zero output channels before packing (see above). Default: true.
  bool drop_dead_channels = true;
};

// The quantized engines this LibTorch supports, by fedge name.
std::vector<std::string> QuantizedEngines();

// Runs `network` in fp32 over `sample` ([N, input_shape...], in batches of
// `batch_size`) and returns, for the input and for the output of every
// convolution and linear layer of its inference plan (after the fused ReLU),
// the smallest and largest value seen. UNIMPLEMENTED for a network without an
// inference plan; INVALID_ARGUMENT for an empty sample or batch_size < 1.
absl::StatusOr<std::vector<v1::ActivationRange>> CalibrateActivations(Network& network,
                                                                      const torch::Tensor& sample,
                                                                      int64_t batch_size = 256);

class InferenceModel {
 public:
  // Builds the engine for `artifact` (verified and decoded as DecodeArtifact
  // does; any tensor encoding). int8 needs the artifact's activation ranges
  // (FAILED_PRECONDITION when they are missing or do not name every layer).
  // UNIMPLEMENTED when the architecture has no inference plan; NOT_FOUND for
  // an unknown engine, listing those available.
  static absl::StatusOr<std::unique_ptr<InferenceModel>> Create(const v1::ModelArtifact& artifact,
                                                                const InferenceOptions& options);
  ~InferenceModel();

  // Logits [B, num_classes] (fp32) for a batch [B, input_shape...] of fp32
  // inputs. INVALID_ARGUMENT for a wrongly shaped input.
  absl::StatusOr<torch::Tensor> Forward(const torch::Tensor& input);

  const ModelSpec& spec() const { return spec_; }
  bool int8() const { return options_.int8; }
  // Weights and biases actually packed (after dropping dead channels).
  int64_t num_parameters() const { return num_parameters_; }
  // Output channels removed as dead, over all layers.
  int64_t dropped_channels() const { return dropped_channels_; }

 private:
  struct Layer;
  InferenceModel();

  ModelSpec spec_;
  InferenceOptions options_;
  c10::QEngine engine_ = c10::QEngine::NoQEngine;  // int8 only
  std::vector<Layer> layers_;
  double input_scale_ = 1.0;
  int64_t input_zero_point_ = 0;
  int64_t num_parameters_ = 0;
  int64_t dropped_channels_ = 0;
};

}  // namespace fedge::models

#endif  // FEDGE_MODELS_INFERENCE_H_
