# fedge_codec_bench: encode/decode throughput and encoded size of every update
# codec against a memcpy baseline measured in the same run (see
# codec_bench.cc). Included from bench/CMakeLists.txt.
add_executable(fedge_codec_bench ${CMAKE_CURRENT_LIST_DIR}/codec_bench.cc)
target_link_libraries(fedge_codec_bench PRIVATE fedge::models_core benchmark::benchmark)
