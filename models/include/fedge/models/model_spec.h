// ModelSpec: which network, for which input and how many classes. Enough to
// rebuild a model from the zoo on any device. LibTorch-free.
#ifndef FEDGE_MODELS_MODEL_SPEC_H_
#define FEDGE_MODELS_MODEL_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/v1/model.pb.h"

namespace fedge::models {

struct ModelSpec {
  // Model zoo name, e.g. "mlp", "cnn", "cnn-large". REQUIRES: registered.
  std::string architecture = "cnn";
  // Shape of one example: {C, H, W} for the convolutional models, any shape
  // for "mlp" (flattened). REQUIRES: every entry >= 1.
  std::vector<int64_t> input_shape = {1, 28, 28};
  // REQUIRES: >= 2.
  int64_t num_classes = 10;

  bool operator==(const ModelSpec&) const = default;
};

// Checks the fields that do not depend on the architecture.
absl::Status ValidateModelSpec(const ModelSpec& spec);

v1::ModelSpecProto ToProto(const ModelSpec& spec);
absl::StatusOr<ModelSpec> FromProto(const v1::ModelSpecProto& proto);

// Where one named parameter lives inside a flat parameter vector.
struct ParameterLayout {
  std::string name;            // e.g. "conv1.weight"
  std::vector<int64_t> shape;
  int64_t offset = 0;          // index of its first value in the flat vector
  int64_t numel = 0;

  bool operator==(const ParameterLayout&) const = default;
};

// Total number of values described by `layout`.
int64_t LayoutSize(const std::vector<ParameterLayout>& layout);

}  // namespace fedge::models

#endif  // FEDGE_MODELS_MODEL_SPEC_H_
