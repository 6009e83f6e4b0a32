# Sources of fedge::sim's LibTorch-free side (run reports; the drift
# scenarios are fedge::data's);
# included by simulations/CMakeLists.txt. They need fedge::data (datasets),
# absl::status, absl::statusor, absl::strings and nlohmann_json, and
# proto/include for fedge/proto/atomic_file.h. The dataset readers and
# partitioners themselves are fedge::data's (models/src/data/).
set(FEDGE_SIM_DATA_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/report.cc)
