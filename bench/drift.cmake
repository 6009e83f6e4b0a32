# fedge_drift_bench: per-observation cost of every drift detector against the
# model inference of a batch, measured in the same run (see drift_bench.cc).
# Included from bench/CMakeLists.txt.
add_executable(fedge_drift_bench ${CMAKE_CURRENT_LIST_DIR}/drift_bench.cc)
target_link_libraries(fedge_drift_bench PRIVATE fedge::client_drift fedge::models benchmark::benchmark)
fedge_torch_pch(fedge_drift_bench)
