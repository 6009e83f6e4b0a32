# fedge_ops_bench: the status API of an aggregator with 10,000 registered
# devices (latency p50/p99 per endpoint, requests/s); see ops_bench.cc.
# LibTorch-free. Included from bench/CMakeLists.txt.
find_package(Boost 1.74 REQUIRED)
add_executable(fedge_ops_bench ${CMAKE_CURRENT_LIST_DIR}/ops_bench.cc)
target_link_libraries(fedge_ops_bench PRIVATE fedge::aggregator_server fedge::models_core
  Boost::headers OpenSSL::SSL absl::str_format Threads::Threads)
target_compile_definitions(fedge_ops_bench PRIVATE
  FEDGE_MAKE_DEV_CERTS="${PROJECT_SOURCE_DIR}/scripts/make-dev-certs.sh")
