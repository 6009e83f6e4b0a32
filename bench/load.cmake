# fedge_load_bench: N token devices on loopback against one fedge-aggregator
# process serving cnn-large (see load_bench.cc; bench/load.sh runs it for
# N = 100, 500, 1000). LibTorch-free itself; it spawns the aggregator binary.
# Included from bench/CMakeLists.txt.
add_executable(fedge_load_bench ${CMAKE_CURRENT_LIST_DIR}/load_bench.cc)
target_link_libraries(fedge_load_bench PRIVATE fedge::client_grpc fedge::aggregator_server
  fedge::models_core absl::strings absl::str_format Threads::Threads)
add_dependencies(fedge_load_bench fedge-aggregator)
target_compile_definitions(fedge_load_bench PRIVATE
  FEDGE_AGGREGATOR_BIN="$<TARGET_FILE:fedge-aggregator>"
  FEDGE_MAKE_DEV_CERTS="${PROJECT_SOURCE_DIR}/scripts/make-dev-certs.sh")
