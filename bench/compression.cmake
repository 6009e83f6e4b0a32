# fedge_inference_bench: fp32 vs int8 (QNNPACK, ONEDNN) inference speed for
# cnn, channel-pruned cnn and mobilenet-tiny (see inference_bench.cc).
# bench/compression.sh is the accuracy side. Included from bench/CMakeLists.txt.
add_executable(fedge_inference_bench ${CMAKE_CURRENT_LIST_DIR}/inference_bench.cc)
target_link_libraries(fedge_inference_bench PRIVATE fedge::models benchmark::benchmark)
fedge_torch_pch(fedge_inference_bench)
