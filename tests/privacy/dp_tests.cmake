# Tests of the differential-privacy part of fedge::privacy. Included from
# tests/privacy/CMakeLists.txt.
fedge_add_test(fedge_privacy_accountant_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/accountant_test.cc
  LIBS fedge::privacy LABELS privacy)
fedge_add_test(fedge_privacy_mechanism_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/mechanism_test.cc
  LIBS fedge::privacy LABELS privacy)
fedge_add_test(fedge_privacy_adaptive_clipping_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/adaptive_clipping_test.cc
  LIBS fedge::privacy LABELS privacy)
fedge_add_test(fedge_privacy_cli_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/fedge_privacy_cli_test.cc
  LIBS fedge::privacy LABELS privacy)
target_compile_definitions(fedge_privacy_cli_test
  PRIVATE FEDGE_PRIVACY_BINARY="$<TARGET_FILE:fedge-privacy>")
add_dependencies(fedge_privacy_cli_test fedge-privacy)
fedge_add_test(fedge_privacy_clipper_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/clipper_test.cc ${CMAKE_CURRENT_LIST_DIR}/update_privacy_test.cc
  LIBS fedge::privacy LABELS privacy)
