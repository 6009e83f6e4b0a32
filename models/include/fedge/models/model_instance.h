// ModelInstance: a network from the zoo together with its flat parameter
// view, the unit that trainers, evaluators and simulation workers hold.
//
// Thread safety: none; a simulation keeps one instance per worker thread.
#ifndef FEDGE_MODELS_MODEL_INSTANCE_H_
#define FEDGE_MODELS_MODEL_INSTANCE_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "fedge/models/flat_parameters.h"
#include "fedge/models/model_spec.h"
#include "fedge/models/model_zoo.h"

namespace fedge::models {

class ModelInstance {
 public:
  // Builds `spec` with parameters initialized from `seed` and binds them to a
  // flat buffer. Errors are those of CreateModel.
  static absl::StatusOr<std::unique_ptr<ModelInstance>> Create(const ModelSpec& spec,
                                                              uint64_t seed);

  const ModelSpec& spec() const { return spec_; }
  Network& network() { return *network_; }
  const NetworkPtr& network_ptr() const { return network_; }
  FlatParameters& parameters() { return parameters_; }
  const FlatParameters& parameters() const { return parameters_; }

 private:
  ModelInstance(ModelSpec spec, NetworkPtr network, FlatParameters parameters)
      : spec_(std::move(spec)), network_(std::move(network)), parameters_(std::move(parameters)) {}

  ModelSpec spec_;
  NetworkPtr network_;
  FlatParameters parameters_;
};

// Sets the process's compute threads explicitly: LibTorch intra-op threads
// for the calling thread (OpenMP's setting is per thread, so every worker
// thread calls this once) and OpenBLAS's thread count when OpenBLAS is the
// BLAS in use. REQUIRES: intra_op_threads >= 1.
void SetComputeThreads(int intra_op_threads);

}  // namespace fedge::models

#endif  // FEDGE_MODELS_MODEL_INSTANCE_H_
