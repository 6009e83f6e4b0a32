#include "fedge/models/model_spec.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedge::models {

absl::Status ValidateModelSpec(const ModelSpec& spec) {
  if (spec.architecture.empty()) {
    return absl::InvalidArgumentError("ModelSpec.architecture is empty");
  }
  if (spec.input_shape.empty()) {
    return absl::InvalidArgumentError("ModelSpec.input_shape is empty");
  }
  for (int64_t d : spec.input_shape) {
    if (d < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ModelSpec.input_shape must be positive, got [", absl::StrJoin(spec.input_shape, ", "),
          "]"));
    }
  }
  if (spec.num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("ModelSpec.num_classes must be >= 2, got ", spec.num_classes));
  }
  return absl::OkStatus();
}

v1::ModelSpecProto ToProto(const ModelSpec& spec) {
  v1::ModelSpecProto proto;
  proto.set_architecture(spec.architecture);
  for (int64_t d : spec.input_shape) proto.add_input_shape(d);
  proto.set_num_classes(spec.num_classes);
  return proto;
}

absl::StatusOr<ModelSpec> FromProto(const v1::ModelSpecProto& proto) {
  ModelSpec spec;
  spec.architecture = proto.architecture();
  spec.input_shape.assign(proto.input_shape().begin(), proto.input_shape().end());
  spec.num_classes = proto.num_classes();
  if (absl::Status s = ValidateModelSpec(spec); !s.ok()) return s;
  return spec;
}

int64_t LayoutSize(const std::vector<ParameterLayout>& layout) {
  int64_t total = 0;
  for (const ParameterLayout& p : layout) total += p.numel;
  return total;
}

}  // namespace fedge::models
