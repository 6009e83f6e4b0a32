# Model compression tests, LibTorch-free.
fedge_add_test(fedge_compression_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/sparse_artifact_test.cc
  LIBS fedge::models_core absl::strings
  LABELS models)
