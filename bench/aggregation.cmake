# fedge_aggregation_bench: streaming weighted-mean Accumulate against a memcpy
# baseline measured in the same run (see aggregation_bench.cc). Included from
# bench/CMakeLists.txt.
add_executable(fedge_aggregation_bench ${CMAKE_CURRENT_LIST_DIR}/aggregation_bench.cc)
target_link_libraries(fedge_aggregation_bench PRIVATE fedge::aggregator benchmark::benchmark)
