// Partitioners: split a dataset's examples among N clients (the virtual
// clients of a simulation, or the device processes of a deployment test,
// each of which reads its own shard). Part of fedge::data.
//
// Every partitioner assigns each example to exactly one client, is
// deterministic for a given seed, and returns indices (never copies).
//
//  * iid            uniform random split into N (nearly) equal parts.
//  * dirichlet      label skew: for each class, the shares of the N clients
//                   are drawn from Dir(alpha) (Hsu et al. 2019, "Measuring
//                   the Effects of Non-Identical Data Distribution").
//                   Small alpha -> each client sees few classes.
//  * shards         sort by label, cut into N * k shards, give each client k
//                   shards (McMahan et al. 2017's pathological non-IID).
//  * quantity-skew  client sizes ~ Dir(alpha) over the shuffled data; labels
//                   stay IID, sizes vary.
#ifndef FEDGE_DATA_PARTITION_H_
#define FEDGE_DATA_PARTITION_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace fedge::data {

struct PartitionOptions {
  // One of "iid", "dirichlet", "shards", "quantity-skew". Default: "dirichlet".
  std::string method = "dirichlet";
  // Number of clients. REQUIRES: 1 <= value <= number of examples.
  int num_clients = 100;
  // Dirichlet concentration for "dirichlet" and "quantity-skew".
  // Default: 0.5. REQUIRES: > 0.
  double alpha = 0.5;
  // Shards per client for "shards". Default: 2. REQUIRES: >= 1 and
  // num_clients * shards_per_client <= number of examples.
  int shards_per_client = 2;
  // Every client gets at least this many examples ("dirichlet",
  // "quantity-skew" redraw until it holds, up to a bounded number of tries,
  // then FAILED_PRECONDITION). Default: 1. REQUIRES: >= 0.
  int min_examples_per_client = 1;
  uint64_t seed = 0;
};

// A partition: client i owns the example indices clients[i].
using Partition = std::vector<std::vector<int32_t>>;

// Splits examples with the given labels (one entry per example, values in
// [0, num_classes)). INVALID_ARGUMENT names the offending options field;
// NOT_FOUND for an unknown method lists the known ones.
absl::StatusOr<Partition> PartitionExamples(std::span<const int32_t> labels, int64_t num_classes,
                                            const PartitionOptions& options);

// Names of the built-in partitioners, sorted.
std::vector<std::string> PartitionMethods();

// Label-skew measure used by tests and reports: the mean over clients of the
// total-variation distance between the client's label distribution and the
// global one (0 = perfectly IID, -> 1 = each client one class).
double MeanLabelSkew(const Partition& partition, std::span<const int32_t> labels,
                     int64_t num_classes);

}  // namespace fedge::data

#endif  // FEDGE_DATA_PARTITION_H_
