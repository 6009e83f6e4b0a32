#include "fedge/client/dataset_store.h"

#include <torch/torch.h>

#include <cstdint>
#include <exception>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace fedge::client {
namespace {

// Moves `buffer` onto the heap and views it as a tensor of `shape`; the
// tensor's deleter frees it.
template <typename T>
torch::Tensor AdoptBuffer(std::vector<T> buffer, const std::vector<int64_t>& shape,
                          torch::ScalarType type) {
  auto* owned = new std::vector<T>(std::move(buffer));
  return torch::from_blob(
      owned->data(), shape, [owned](void*) { delete owned; }, type);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ExampleStore>> MakeExampleStore(data::Dataset dataset) {
  const bool has_pixels = !dataset.pixels.empty();
  const bool has_values = !dataset.values.empty();
  if (has_pixels == has_values && dataset.num_examples() > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset '", dataset.name, "' must hold exactly one of pixels and values"));
  }
  for (int64_t dim : dataset.example_shape) {
    if (dim < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset '", dataset.name, "' has an example dimension of ", dim));
    }
  }
  const size_t expected =
      static_cast<size_t>(dataset.num_examples()) * static_cast<size_t>(dataset.example_size());
  const size_t held = has_pixels ? dataset.pixels.size() : dataset.values.size();
  if (held != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset '", dataset.name, "' holds ", held, " feature values for ", dataset.num_examples(),
        " examples of ", dataset.example_size(), " (expected ", expected, ")"));
  }
  std::vector<int64_t> shape = {dataset.num_examples()};
  shape.insert(shape.end(), dataset.example_shape.begin(), dataset.example_shape.end());
  try {
    torch::Tensor features = has_pixels
                                 ? AdoptBuffer(std::move(dataset.pixels), shape, torch::kUInt8)
                                 : AdoptBuffer(std::move(dataset.values), shape, torch::kFloat32);
    torch::Tensor labels =
        torch::from_blob(dataset.labels.data(), {dataset.num_examples()}, torch::kInt32)
            .to(torch::kInt64);
    return ExampleStore::Create(std::move(features), std::move(labels), dataset.num_classes,
                                dataset.mean, dataset.stddev);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("wrapping dataset '", dataset.name, "' in tensors: ", e.what()));
  }
}

}  // namespace fedge::client
