# Sources of fedge::sim's data side (datasets, partitioners, reports); included
# by simulations/CMakeLists.txt. They need absl::status, absl::statusor,
# absl::strings, ZLIB::ZLIB and nlohmann_json::nlohmann_json, and
# proto/include for fedge/proto/status_macros.h.
set(FEDGE_SIM_DATA_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/drift_scenario.cc
  ${CMAKE_CURRENT_LIST_DIR}/idx_reader.cc
  ${CMAKE_CURRENT_LIST_DIR}/partition.cc
  ${CMAKE_CURRENT_LIST_DIR}/report.cc
  ${CMAKE_CURRENT_LIST_DIR}/synthetic.cc)
