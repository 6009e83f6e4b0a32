#include "fedge/models/model_instance.h"

#include <dlfcn.h>

#include <torch/torch.h>

#include "fedge/proto/status_macros.h"

namespace fedge::models {

absl::StatusOr<std::unique_ptr<ModelInstance>> ModelInstance::Create(const ModelSpec& spec,
                                                                     uint64_t seed) {
  FEDGE_ASSIGN_OR_RETURN(NetworkPtr network, CreateModel(spec, seed));
  FEDGE_ASSIGN_OR_RETURN(FlatParameters parameters, FlatParameters::Bind(*network));
  return std::unique_ptr<ModelInstance>(
      new ModelInstance(spec, std::move(network), std::move(parameters)));
}

void SetComputeThreads(int intra_op_threads) {
  torch::set_num_threads(intra_op_threads);
  // OpenBLAS (Debian's libopenblas0-pthread) keeps its own thread pool; left
  // alone it starts one thread per core inside every worker's GEMM.
  using SetThreadsFn = void (*)(int);
  static const auto set_openblas_threads =
      reinterpret_cast<SetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_openblas_threads != nullptr) set_openblas_threads(intra_op_threads);
}

}  // namespace fedge::models
