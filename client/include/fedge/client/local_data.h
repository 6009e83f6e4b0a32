// A device's local examples.
//
// An ExampleStore is an immutable table of examples (features + labels). A
// LocalDataset is a device's view of it: the store plus the indices this
// device owns. On a real device the store holds only that device's data; in a
// simulation every virtual client shares one store and holds only indices,
// so 10,000 clients cost their index lists, not copies of the data.
#ifndef FEDGE_CLIENT_LOCAL_DATA_H_
#define FEDGE_CLIENT_LOCAL_DATA_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"

namespace fedge::client {

// Immutable after construction; safe to share between threads.
class ExampleStore {
 public:
  // `features`: [N, example_shape...], uint8 (scaled as (x/255 - mean)/stddev
  // when batched) or float32 (used as is). `labels`: [N] int64 in
  // [0, num_classes). INVALID_ARGUMENT on mismatched sizes or dtypes.
  static absl::StatusOr<std::shared_ptr<const ExampleStore>> Create(torch::Tensor features,
                                                                   torch::Tensor labels,
                                                                   int64_t num_classes,
                                                                   float mean = 0.0f,
                                                                   float stddev = 1.0f);

  int64_t size() const { return labels_.size(0); }
  int64_t num_classes() const { return num_classes_; }
  const torch::Tensor& features() const { return features_; }
  const torch::Tensor& labels() const { return labels_; }

  // Gathers the examples at `indices` (int64 tensor) as a float batch.
  torch::Tensor GatherFeatures(const torch::Tensor& indices) const;
  torch::Tensor GatherLabels(const torch::Tensor& indices) const;

 private:
  ExampleStore(torch::Tensor features, torch::Tensor labels, int64_t num_classes, float mean,
               float stddev);

  torch::Tensor features_;
  torch::Tensor labels_;
  int64_t num_classes_;
  float scale_;   // applied to uint8 features: x * scale_ + shift_
  float shift_;
};

// Examples the app keeps itself (an embedded device, behind the C API's data
// callback): the trainer reads one batch at a time into buffers it owns and
// keeps nothing between batches, so the library never holds more than a
// batch of the app's data.
//
// Thread safety: ReadBatch is called by one thread at a time (the thread
// that trains), not necessarily the same one from task to task.
class ExampleSource {
 public:
  virtual ~ExampleSource() = default;

  virtual int64_t size() const = 0;
  // Float features per example (the product of the model's input shape).
  virtual int64_t example_numel() const = 0;
  virtual int64_t num_classes() const = 0;
  // Writes examples `indices` (each in [0, size())) into `features`
  // (indices.size() * example_numel() floats, example after example) and
  // `labels` (indices.size() entries). An error ends the local training that
  // asked for the batch.
  virtual absl::Status ReadBatch(std::span<const int64_t> indices, std::span<float> features,
                                 std::span<int64_t> labels) const = 0;
};

// A device's examples: indices into a shared store (simulations, tensors in
// memory), or an app's ExampleSource. Cheap to copy.
struct LocalDataset {
  std::shared_ptr<const ExampleStore> store;
  // With `store`: the examples of the store that are this device's. With
  // `source`: a subset of the source's examples; null means all of them.
  std::shared_ptr<const std::vector<int32_t>> indices;
  // Used when `store` is null.
  std::shared_ptr<const ExampleSource> source = nullptr;

  int64_t size() const {
    if (indices) return static_cast<int64_t>(indices->size());
    return store == nullptr && source != nullptr ? source->size() : 0;
  }
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_LOCAL_DATA_H_
