# fedge_secagg_bench: AES-256-CTR mask expansion (the secure-aggregation PRG)
# against a memcpy of the same bytes in the same run (see secagg_bench.cc).
# Included from bench/CMakeLists.txt.
add_executable(fedge_secagg_bench ${CMAKE_CURRENT_LIST_DIR}/secagg_bench.cc)
target_link_libraries(fedge_secagg_bench PRIVATE fedge::privacy benchmark::benchmark)

# fedge_secagg_round_bench: whole secure-aggregation rounds (SecAgg, SecAgg+)
# against plain aggregation of the same vectors (see secagg_round_bench.cc,
# bench/secagg_round.sh and docs/secure-aggregation.md).
add_executable(fedge_secagg_round_bench ${CMAKE_CURRENT_LIST_DIR}/secagg_round_bench.cc)
target_link_libraries(fedge_secagg_round_bench PRIVATE fedge::privacy)
