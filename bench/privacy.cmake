# fedge_accountant_bench: RDP accounting of 10,000 rounds (see
# accountant_bench.cc). Included from bench/CMakeLists.txt.
add_executable(fedge_accountant_bench ${CMAKE_CURRENT_LIST_DIR}/accountant_bench.cc)
target_link_libraries(fedge_accountant_bench PRIVATE fedge::privacy benchmark::benchmark)
