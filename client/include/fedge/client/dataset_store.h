// A Dataset (fedge/data/dataset.h, read from IDX files or generated) as the
// ExampleStore a device trains on.
//
// Used by fedge-client (its shard of an IDX dataset), by the simulator (one
// store shared by every virtual client) and by tests and benchmarks. The
// embeddable device library (fedge::client, the C API) does not need it: apps
// hand their data over as an ExampleStore or an ExampleSource directly.
#ifndef FEDGE_CLIENT_DATASET_STORE_H_
#define FEDGE_CLIENT_DATASET_STORE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "fedge/client/local_data.h"
#include "fedge/data/dataset.h"

namespace fedge::client {

// Wraps `dataset`'s buffers in an ExampleStore without copying the features:
// the store takes ownership of the moved-in pixel or value buffer (the labels
// are widened to int64, one copy). INVALID_ARGUMENT when the dataset is not
// consistent (neither or both of pixels/values set, a buffer whose size is
// not num_examples * example_size, or whatever ExampleStore::Create refuses:
// labels out of range, fewer than two classes, stddev <= 0).
absl::StatusOr<std::shared_ptr<const ExampleStore>> MakeExampleStore(data::Dataset dataset);

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_DATASET_STORE_H_
