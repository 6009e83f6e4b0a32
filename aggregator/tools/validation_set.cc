#include "validation_set.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "fedge/data/dataset.h"
#include "fedge/models/artifact.h"
#include "fedge/models/model_instance.h"
#include "fedge/proto/status_macros.h"

namespace fedge::aggregator {

struct ValidationSet::Data {
  std::vector<int64_t> example_shape;
  int64_t num_classes = 0;
  torch::Tensor features;  // [N, example_shape...], float, normalized
  torch::Tensor labels;    // [N], int64
};

ValidationSet::ValidationSet(std::unique_ptr<Data> data) : data_(std::move(data)) {}
ValidationSet::~ValidationSet() = default;

int64_t ValidationSet::size() const { return data_->labels.size(0); }

absl::StatusOr<std::shared_ptr<const ValidationSet>> ValidationSet::Load(const std::string& dir,
                                                                         int64_t examples) {
  if (examples < 1) {
    return absl::InvalidArgumentError("validation.examples must be >= 1");
  }
  FEDGE_ASSIGN_OR_RETURN(data::TrainTest split, data::ReadIdxDataset(dir, "validation"));
  const data::Dataset& test = split.test;
  const int64_t n = std::min(examples, test.num_examples());
  if (n == 0) return absl::InvalidArgumentError(absl::StrCat(dir, ": the test split is empty"));
  auto data = std::make_unique<Data>();
  data->example_shape = test.example_shape;
  data->num_classes = test.num_classes;
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), test.example_shape.begin(), test.example_shape.end());
  const int64_t size = test.example_size();
  if (!test.pixels.empty()) {
    torch::Tensor pixels =
        torch::from_blob(const_cast<uint8_t*>(test.pixels.data()), {n * size}, torch::kUInt8);
    data->features = ((pixels.to(torch::kFloat32) / 255.0f - test.mean) / test.stddev).view(shape);
  } else {
    data->features =
        torch::from_blob(const_cast<float*>(test.values.data()), {n * size}, torch::kFloat32)
            .clone()
            .view(shape);
  }
  data->labels = torch::from_blob(const_cast<int32_t*>(test.labels.data()), {n}, torch::kInt32)
                     .to(torch::kInt64);
  return std::shared_ptr<const ValidationSet>(new ValidationSet(std::move(data)));
}

absl::StatusOr<std::map<std::string, double>> ValidationSet::Evaluate(
    const v1::ModelArtifact& master) const {
  FEDGE_ASSIGN_OR_RETURN(models::ModelSpec spec, models::FromProto(master.header().model()));
  if (spec.input_shape != data_->example_shape || spec.num_classes != data_->num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("the federation's model '", spec.architecture,
                                                   "' does not take the validation examples"));
  }
  FEDGE_ASSIGN_OR_RETURN(auto model, models::ModelInstance::Create(spec, /*seed=*/0));
  FEDGE_RETURN_IF_ERROR(
      models::DecodeArtifact(master, model->parameters().layout(), model->parameters().values()));
  try {
    torch::NoGradGuard no_grad;
    model->network().eval();
    double loss_sum = 0.0;
    int64_t correct = 0;
    const int64_t n = size();
    constexpr int64_t kBatch = 256;
    for (int64_t start = 0; start < n; start += kBatch) {
      const int64_t end = std::min(n, start + kBatch);
      const torch::Tensor logits = model->network().forward(data_->features.slice(0, start, end));
      const torch::Tensor y = data_->labels.slice(0, start, end);
      loss_sum +=
          torch::nn::functional::cross_entropy(
              logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
              .item<double>();
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    }
    return std::map<std::string, double>{
        {"accuracy", static_cast<double>(correct) / static_cast<double>(n)},
        {"loss", loss_sum / static_cast<double>(n)}};
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("evaluating on the validation set: ", e.what()));
  }
}

}  // namespace fedge::aggregator
