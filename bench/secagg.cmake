# fedge_secagg_bench: AES-256-CTR mask expansion (the secure-aggregation PRG)
# against a memcpy of the same bytes in the same run (see secagg_bench.cc).
# Included from bench/CMakeLists.txt.
add_executable(fedge_secagg_bench ${CMAKE_CURRENT_LIST_DIR}/secagg_bench.cc)
target_link_libraries(fedge_secagg_bench PRIVATE fedge::privacy benchmark::benchmark)
