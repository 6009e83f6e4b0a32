// Labelled datasets in memory: an immutable table of examples. A simulation's
// virtual clients share one (each holds indices into it, never copies); a
// device process (fedge-client) or the aggregator's validation set reads its
// own. Part of fedge::data, below client and aggregator.
//
// Readers:
//  * ReadIdxDataset: IDX files (MNIST / Fashion-MNIST / EMNIST layout),
//    gzipped or not, from any directory.
//  * MakeSyntheticDataset: Synthetic(alpha, beta) of Li et al. 2020
//    ("Federated Optimization in Heterogeneous Networks", FedProx), a
//    non-IID dataset whose examples come already grouped by device.
//
// Nothing here depends on LibTorch; client::MakeExampleStore
// (fedge/client/dataset_store.h) wraps the buffers in tensors.
#ifndef FEDGE_DATA_DATASET_H_
#define FEDGE_DATA_DATASET_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedge::data {

// One split (train or test) of a labelled dataset. Exactly one of `pixels`
// (uint8 features, e.g. images) and `values` (float features) is non-empty.
struct Dataset {
  std::string name;
  // Shape of one example, e.g. {1, 28, 28} for an image or {60} for a vector.
  std::vector<int64_t> example_shape;
  int64_t num_classes = 0;
  std::vector<uint8_t> pixels;  // num_examples * prod(example_shape), row-major
  std::vector<float> values;    // num_examples * prod(example_shape), row-major
  std::vector<int32_t> labels;  // num_examples entries, each in [0, num_classes)

  // For uint8 features: the model sees (pixel / 255 - mean) / stddev.
  float mean = 0.0f;
  float stddev = 1.0f;

  int64_t num_examples() const { return static_cast<int64_t>(labels.size()); }
  int64_t example_size() const;  // prod(example_shape)
};

struct TrainTest {
  Dataset train;
  Dataset test;
  // For datasets whose examples come grouped by device (Synthetic), the train
  // indices of each natural device; empty otherwise.
  std::vector<std::vector<int32_t>> natural_partition;
};

// Default location of Debian's dataset-fashion-mnist package.
inline constexpr char kDefaultFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// Reads one IDX images file + its labels file (e.g. train-images-idx3-ubyte[.gz]
// and train-labels-idx1-ubyte[.gz]). Both gzipped and raw files are accepted
// (detected by the gzip magic, not the name). Errors name the file and what is
// wrong: NOT_FOUND for a missing file (with the apt command that installs
// Fashion-MNIST when the path is the Debian default), DATA_LOSS for a
// truncated/corrupt file, bad magic, count mismatch or a label out of range.
absl::StatusOr<Dataset> ReadIdxPair(const std::string& images_path, const std::string& labels_path,
                                    int64_t num_classes = 10);

// Reads train + test splits from `dir`, which holds the four standard files
// ({train,t10k}-{images-idx3,labels-idx1}-ubyte, each optionally with .gz).
// `name` is recorded in the result; normalization defaults to the dataset's
// known mean/std for "fashion-mnist" and "mnist", else computed from train.
absl::StatusOr<TrainTest> ReadIdxDataset(const std::string& dir, const std::string& name);

// What a device reads of `dir` (MNIST or Fashion-MNIST layout): the training
// labels (to partition by), then only its own examples. ReadIdxTrainExamples
// streams the images file (gzipped or not) once and keeps the examples
// `indices`, in that order, with ReadIdxDataset's normalization; the rest of
// the split never sits in memory. Errors as ReadIdxPair's; INVALID_ARGUMENT
// for an index out of range or a dataset other than mnist / fashion-mnist.
absl::StatusOr<std::vector<int32_t>> ReadIdxTrainLabels(const std::string& dir,
                                                        int64_t num_classes = 10);
absl::StatusOr<Dataset> ReadIdxTrainExamples(const std::string& dir, const std::string& name,
                                             std::span<const int32_t> indices);

struct SyntheticOptions {
  // Heterogeneity of models across devices (alpha) and of inputs (beta).
  // REQUIRES: >= 0. Synthetic(0,0), (0.5,0.5), (1,1) in the FedProx paper.
  double alpha = 1.0;
  double beta = 1.0;
  // Number of devices; each gets a power-law distributed number of examples.
  // REQUIRES: >= 1.
  int num_devices = 30;
  int dimension = 60;    // features per example. REQUIRES: >= 1.
  int num_classes = 10;  // REQUIRES: >= 2.
  // Fraction of each device's examples held out into the shared test split.
  // REQUIRES: 0 < value < 1.
  double test_fraction = 0.2;
  uint64_t seed = 0;
};

// Synthetic(alpha, beta): device k draws W_k, b_k ~ N(u_k, 1) with
// u_k ~ N(0, alpha); inputs x ~ N(v_k, Sigma) with v_k ~ N(B_k, 1),
// B_k ~ N(0, beta), Sigma diagonal with Sigma_jj = j^-1.2; labels
// y = argmax(softmax(W_k x + b_k)). The result's natural_partition gives each
// device's train indices. Deterministic for a given seed.
absl::StatusOr<TrainTest> MakeSyntheticDataset(const SyntheticOptions& options);

}  // namespace fedge::data

#endif  // FEDGE_DATA_DATASET_H_
