// Built-in partitioners. Each is O(num_examples + num_clients * num_classes)
// per draw; client index lists come back sorted ascending.
#include "fedge/data/partition.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "sampling.h"

namespace fedge::data {
namespace {

using internal::LogGamma;
using internal::NormalizeLogWeights;
using internal::ProportionalCounts;
using internal::Shuffle;

// Draws (the first plus redraws) allowed for "dirichlet" and "quantity-skew"
// before giving up on min_examples_per_client.
constexpr int kMaxDraws = 100;

struct Input {
  std::span<const int32_t> labels;
  int64_t num_classes;
  const PartitionOptions& options;
};

using PartitionFn = absl::StatusOr<Partition> (*)(const Input&);

std::vector<int32_t> ShuffledIndices(int64_t n, std::mt19937_64& rng) {
  std::vector<int32_t> indices(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) indices[i] = static_cast<int32_t>(i);
  Shuffle(rng, std::span<int32_t>(indices));
  return indices;
}

// Cuts `order` into consecutive pieces of the given sizes (which sum to
// order.size()), one per client.
Partition CutIntoPieces(const std::vector<int32_t>& order, const std::vector<int64_t>& sizes) {
  Partition partition(sizes.size());
  size_t start = 0;
  for (size_t c = 0; c < sizes.size(); ++c) {
    const size_t end = start + static_cast<size_t>(sizes[c]);
    partition[c].assign(order.begin() + static_cast<ptrdiff_t>(start),
                        order.begin() + static_cast<ptrdiff_t>(end));
    std::sort(partition[c].begin(), partition[c].end());
    start = end;
  }
  return partition;
}

absl::Status ValidateAlphaAndMinimum(const Input& in) {
  const PartitionOptions& o = in.options;
  if (!(o.alpha > 0.0) || !std::isfinite(o.alpha)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("PartitionOptions.alpha = %g: must be a finite value > 0 for method \"%s\"",
                        o.alpha, o.method));
  }
  if (o.min_examples_per_client < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PartitionOptions.min_examples_per_client = %d: must be >= 0", o.min_examples_per_client));
  }
  const int64_t needed = int64_t{o.num_clients} * o.min_examples_per_client;
  if (needed > static_cast<int64_t>(in.labels.size())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PartitionOptions.min_examples_per_client = %d: %d clients would need %d examples, but "
        "there are only %d",
        o.min_examples_per_client, o.num_clients, needed, in.labels.size()));
  }
  return absl::OkStatus();
}

absl::Status TooFewAfterRedraws(const PartitionOptions& o, int64_t short_clients,
                                int64_t smallest) {
  return absl::FailedPreconditionError(absl::StrFormat(
      "partition method \"%s\": after %d draws, %d clients still hold fewer than "
      "PartitionOptions.min_examples_per_client = %d examples (smallest: %d) with "
      "PartitionOptions.alpha = %g and PartitionOptions.num_clients = %d; raise alpha, lower "
      "num_clients or lower min_examples_per_client",
      o.method, kMaxDraws, short_clients, o.min_examples_per_client, smallest, o.alpha,
      o.num_clients));
}

// Client shares of `group_sizes.size()` groups of examples (classes for
// "dirichlet", one group for "quantity-skew"): for each group g, the N
// clients' shares are Gamma(alpha) draws normalized over the clients, i.e.
// Dir(alpha), turned into counts[g * N + c] that add up to group_sizes[g].
//
// A client left with fewer than min_examples_per_client examples in total
// gets all its Gamma draws redrawn and the counts are recomputed, up to
// kMaxDraws times. Redrawing only the short clients (instead of everything)
// keeps this usable at 10,000 clients, where some client is short in nearly
// every full draw.
absl::StatusOr<std::vector<int64_t>> DirichletCounts(const std::vector<int64_t>& group_sizes,
                                                     const PartitionOptions& o,
                                                     std::mt19937_64& rng) {
  const size_t clients = static_cast<size_t>(o.num_clients);
  const size_t groups = group_sizes.size();
  std::vector<double> log_gamma(groups * clients);
  for (double& g : log_gamma) g = LogGamma(rng, o.alpha);
  std::vector<int64_t> counts(groups * clients);
  std::vector<double> shares(clients);
  std::vector<int64_t> totals(clients);
  std::vector<size_t> short_clients;
  for (int draw = 0;; ++draw) {
    std::fill(totals.begin(), totals.end(), 0);
    for (size_t g = 0; g < groups; ++g) {
      const std::span<int64_t> group_counts(counts.data() + g * clients, clients);
      NormalizeLogWeights(std::span<const double>(log_gamma.data() + g * clients, clients), shares);
      ProportionalCounts(shares, group_sizes[g], group_counts);
      for (size_t c = 0; c < clients; ++c) totals[c] += group_counts[c];
    }
    short_clients.clear();
    for (size_t c = 0; c < clients; ++c) {
      if (totals[c] < o.min_examples_per_client) short_clients.push_back(c);
    }
    if (short_clients.empty()) return counts;
    if (draw + 1 == kMaxDraws) {
      return TooFewAfterRedraws(o, static_cast<int64_t>(short_clients.size()),
                                *std::min_element(totals.begin(), totals.end()));
    }
    for (size_t c : short_clients) {
      for (size_t g = 0; g < groups; ++g) log_gamma[g * clients + c] = LogGamma(rng, o.alpha);
    }
  }
}

absl::StatusOr<Partition> PartitionIid(const Input& in) {
  const int64_t n = static_cast<int64_t>(in.labels.size());
  const int64_t clients = in.options.num_clients;
  std::mt19937_64 rng(in.options.seed);
  const std::vector<int32_t> order = ShuffledIndices(n, rng);
  std::vector<int64_t> sizes(static_cast<size_t>(clients), n / clients);
  for (int64_t c = 0; c < n % clients; ++c) ++sizes[c];
  return CutIntoPieces(order, sizes);
}

absl::StatusOr<Partition> PartitionDirichlet(const Input& in) {
  if (absl::Status status = ValidateAlphaAndMinimum(in); !status.ok()) return status;
  const PartitionOptions& o = in.options;
  const size_t clients = static_cast<size_t>(o.num_clients);
  const size_t num_classes = static_cast<size_t>(in.num_classes);
  std::mt19937_64 rng(o.seed);

  // Examples of each class, in a seeded random order; which examples of a
  // class a client gets is fixed here, how many is drawn below.
  std::vector<std::vector<int32_t>> by_class(num_classes);
  std::vector<int64_t> class_sizes(num_classes, 0);
  for (int32_t label : in.labels) ++class_sizes[label];
  for (size_t k = 0; k < num_classes; ++k) by_class[k].reserve(class_sizes[k]);
  for (const int32_t i : ShuffledIndices(static_cast<int64_t>(in.labels.size()), rng)) {
    by_class[in.labels[i]].push_back(i);
  }

  absl::StatusOr<std::vector<int64_t>> counts = DirichletCounts(class_sizes, o, rng);
  if (!counts.ok()) return counts.status();
  Partition partition(clients);
  for (size_t k = 0; k < num_classes; ++k) {
    size_t next = 0;
    for (size_t c = 0; c < clients; ++c) {
      const size_t count = static_cast<size_t>((*counts)[k * clients + c]);
      partition[c].insert(partition[c].end(), by_class[k].begin() + next,
                          by_class[k].begin() + next + count);
      next += count;
    }
  }
  for (std::vector<int32_t>& indices : partition) std::sort(indices.begin(), indices.end());
  return partition;
}

absl::StatusOr<Partition> PartitionShards(const Input& in) {
  const PartitionOptions& o = in.options;
  const int64_t n = static_cast<int64_t>(in.labels.size());
  if (o.shards_per_client < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PartitionOptions.shards_per_client = %d: must be >= 1", o.shards_per_client));
  }
  const int64_t num_shards = int64_t{o.num_clients} * o.shards_per_client;
  if (num_shards > n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PartitionOptions.shards_per_client = %d: num_clients * shards_per_client = %d * %d = %d "
        "shards, more than the %d examples",
        o.shards_per_client, o.num_clients, o.shards_per_client, num_shards, n));
  }
  std::mt19937_64 rng(o.seed);

  // Shuffle, then a stable counting sort by label: sorted by class, random
  // order within a class.
  const std::vector<int32_t> shuffled = ShuffledIndices(n, rng);
  std::vector<int64_t> class_start(static_cast<size_t>(in.num_classes) + 1, 0);
  for (int32_t label : in.labels) ++class_start[static_cast<size_t>(label) + 1];
  for (size_t k = 1; k < class_start.size(); ++k) class_start[k] += class_start[k - 1];
  std::vector<int32_t> sorted(static_cast<size_t>(n));
  for (const int32_t i : shuffled) sorted[class_start[in.labels[i]]++] = i;

  // num_shards consecutive shards of (nearly) equal size, dealt at random.
  std::vector<int64_t> shard_start(static_cast<size_t>(num_shards) + 1);
  for (int64_t s = 0; s <= num_shards; ++s) shard_start[s] = s * n / num_shards;
  std::vector<int32_t> shard_order(static_cast<size_t>(num_shards));
  for (int64_t s = 0; s < num_shards; ++s) shard_order[s] = static_cast<int32_t>(s);
  Shuffle(rng, std::span<int32_t>(shard_order));

  Partition partition(static_cast<size_t>(o.num_clients));
  for (int64_t c = 0; c < o.num_clients; ++c) {
    std::vector<int32_t>& indices = partition[c];
    for (int64_t j = 0; j < o.shards_per_client; ++j) {
      const int32_t shard = shard_order[c * o.shards_per_client + j];
      indices.insert(indices.end(), sorted.begin() + shard_start[shard],
                     sorted.begin() + shard_start[shard + 1]);
    }
    std::sort(indices.begin(), indices.end());
  }
  return partition;
}

absl::StatusOr<Partition> PartitionQuantitySkew(const Input& in) {
  if (absl::Status status = ValidateAlphaAndMinimum(in); !status.ok()) return status;
  const int64_t n = static_cast<int64_t>(in.labels.size());
  std::mt19937_64 rng(in.options.seed);
  const std::vector<int32_t> order = ShuffledIndices(n, rng);
  absl::StatusOr<std::vector<int64_t>> sizes = DirichletCounts({n}, in.options, rng);
  if (!sizes.ok()) return sizes.status();
  return CutIntoPieces(order, *sizes);
}

struct Method {
  std::string_view name;
  PartitionFn fn;
};

// Sorted by name.
constexpr Method kMethods[] = {
    {"dirichlet", &PartitionDirichlet},
    {"iid", &PartitionIid},
    {"quantity-skew", &PartitionQuantitySkew},
    {"shards", &PartitionShards},
};

}  // namespace

std::vector<std::string> PartitionMethods() {
  std::vector<std::string> names;
  for (const Method& method : kMethods) names.emplace_back(method.name);
  return names;
}

absl::StatusOr<Partition> PartitionExamples(std::span<const int32_t> labels, int64_t num_classes,
                                            const PartitionOptions& options) {
  const Method* method = nullptr;
  for (const Method& m : kMethods) {
    if (m.name == options.method) method = &m;
  }
  if (method == nullptr) {
    return absl::NotFoundError(
        absl::StrFormat("unknown partition method \"%s\" (PartitionOptions.method); known: %s",
                        options.method, absl::StrJoin(PartitionMethods(), ", ")));
  }
  const int64_t n = static_cast<int64_t>(labels.size());
  if (n > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d examples: at most 2^31 - 1 can be partitioned", n));
  }
  if (num_classes < 1 || num_classes > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("num_classes = %d: must be in [1, 2^31)", num_classes));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "labels[%d] = %d: must be in [0, num_classes = %d)", i, labels[i], num_classes));
    }
  }
  if (options.num_clients < 1 || options.num_clients > n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PartitionOptions.num_clients = %d: must be in [1, %d] (the number of examples)",
        options.num_clients, n));
  }
  return method->fn(Input{labels, num_classes, options});
}

// Clients without examples have no label distribution and are left out of
// the mean; indices outside `labels` and labels outside [0, num_classes) are
// ignored.
double MeanLabelSkew(const Partition& partition, std::span<const int32_t> labels,
                     int64_t num_classes) {
  if (num_classes < 1 || labels.empty()) return 0.0;
  const size_t k = static_cast<size_t>(num_classes);
  std::vector<double> global(k, 0.0);
  int64_t counted = 0;
  for (int32_t label : labels) {
    if (label < 0 || label >= num_classes) continue;
    global[label] += 1.0;
    ++counted;
  }
  if (counted == 0) return 0.0;
  for (double& g : global) g /= static_cast<double>(counted);

  std::vector<int64_t> local(k);
  double sum = 0.0;
  int64_t clients = 0;
  for (const std::vector<int32_t>& indices : partition) {
    std::fill(local.begin(), local.end(), 0);
    int64_t size = 0;
    for (int32_t i : indices) {
      if (i < 0 || static_cast<size_t>(i) >= labels.size()) continue;
      const int32_t label = labels[i];
      if (label < 0 || label >= num_classes) continue;
      ++local[label];
      ++size;
    }
    if (size == 0) continue;
    double distance = 0.0;
    for (size_t c = 0; c < k; ++c) {
      distance += std::abs(static_cast<double>(local[c]) / static_cast<double>(size) - global[c]);
    }
    sum += 0.5 * distance;
    ++clients;
  }
  return clients == 0 ? 0.0 : sum / static_cast<double>(clients);
}

}  // namespace fedge::data
