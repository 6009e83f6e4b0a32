// FlatParameters: a model's parameters as ONE contiguous float vector.
//
// Bind() moves every parameter of a module into a single 1-D fp32 buffer and
// makes each parameter a view into it. From then on, "copy the model to a
// vector" and "load a vector into the model" are single memcpys, with no
// per-tensor work in the hot loops of training, aggregation and encoding.
// Optimizers keep working: they update the parameters in place, i.e. the
// buffer.
//
// Ownership: the buffer is shared by the FlatParameters object and the
// module's parameters; either may outlive the other. Only parameters are
// flattened (not buffers such as batch-norm statistics).
// Thread safety: none; one FlatParameters per module per thread.
#ifndef FEDGE_MODELS_FLAT_PARAMETERS_H_
#define FEDGE_MODELS_FLAT_PARAMETERS_H_

#include <cstdint>
#include <span>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/models/model_spec.h"

namespace fedge::models {

class FlatParameters {
 public:
  // Rebinds the parameters of `module` (recursively, in named_parameters()
  // order) to views of one new contiguous buffer holding their current values.
  // INVALID_ARGUMENT if a parameter is not a dense fp32 CPU tensor, or the
  // module has no parameters.
  static absl::StatusOr<FlatParameters> Bind(torch::nn::Module& module);

  int64_t size() const { return static_cast<int64_t>(values_.size()); }
  std::span<float> values() { return values_; }
  std::span<const float> values() const { return values_; }
  // The buffer as a 1-D tensor (shares storage; no copy).
  const torch::Tensor& tensor() const { return buffer_; }
  const std::vector<ParameterLayout>& layout() const { return layout_; }

  // Loads `source` into the parameters. INVALID_ARGUMENT on a size mismatch
  // (nothing is changed).
  absl::Status CopyFrom(std::span<const float> source);
  // Copies the parameters into `destination`, which must have size() entries.
  absl::Status CopyTo(std::span<float> destination) const;

 private:
  FlatParameters(torch::Tensor buffer, std::vector<ParameterLayout> layout);

  torch::Tensor buffer_;
  std::span<float> values_;
  std::vector<ParameterLayout> layout_;
};

}  // namespace fedge::models

#endif  // FEDGE_MODELS_FLAT_PARAMETERS_H_
