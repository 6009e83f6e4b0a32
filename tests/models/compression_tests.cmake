# Model compression tests. LibTorch-free: sparse artifacts and pruning.
fedge_add_test(fedge_compression_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/sparse_artifact_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/pruning_test.cc
  LIBS fedge::models_core absl::strings
  LABELS models)

# The LibTorch side: mobilenet-tiny's plan, the fp32/int8 inference engine,
# calibration, dead-channel removal and distillation.
fedge_add_test(fedge_compression_torch_test TORCH
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/inference_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/distillation_test.cc
  LIBS fedge::models absl::strings
  LABELS models)
