// ValidationSet: the aggregator's own held-out examples (the first N of an
// IDX data set's test split), on which fedge-aggregator evaluates every new
// model version for the gated rollout (AggregatorServerOptions::validate).
//
// Thread safety: Evaluate may be called from any thread, one call at a time.
#ifndef FEDGE_AGGREGATOR_TOOLS_VALIDATION_SET_H_
#define FEDGE_AGGREGATOR_TOOLS_VALIDATION_SET_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "fedge/v1/model.pb.h"

namespace fedge::aggregator {

class ValidationSet {
 public:
  // Reads `dir` (IDX files, see fedge/data/dataset.h) and keeps the
  // first `examples` of its test split. Errors name the file or the value.
  static absl::StatusOr<std::shared_ptr<const ValidationSet>> Load(const std::string& dir,
                                                                   int64_t examples);
  ~ValidationSet();

  // {"accuracy", "loss"} (mean cross-entropy) of the model in `master`.
  // INVALID_ARGUMENT when the model does not take these examples.
  absl::StatusOr<std::map<std::string, double>> Evaluate(const v1::ModelArtifact& master) const;

  int64_t size() const;

  struct Data;

 private:
  explicit ValidationSet(std::unique_ptr<Data> data);
  std::unique_ptr<Data> data_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_TOOLS_VALIDATION_SET_H_
