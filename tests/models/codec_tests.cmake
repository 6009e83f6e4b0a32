# LibTorch-free tests of the update codecs, error feedback and int8 artifacts.
fedge_add_test(fedge_codec_test
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/codec_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/error_feedback_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/quantization_test.cc
  LIBS fedge::models_core absl::strings
  LABELS models)
