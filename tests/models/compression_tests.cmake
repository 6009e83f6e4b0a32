# Model compression tests. LibTorch-free: sparse artifacts and pruning.
fedge_add_test(fedge_compression_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/sparse_artifact_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/pruning_test.cc
  LIBS fedge::models_core absl::strings
  LABELS models)
