# Sources of fedge::aggregator's strategies (strategy.h), for inclusion from
# aggregator/CMakeLists.txt:
#
#   include(${CMAKE_CURRENT_SOURCE_DIR}/src/strategies.cmake)
#   target_sources(fedge_aggregator PRIVATE ${FEDGE_STRATEGY_SOURCES})
#
# The strategy files register themselves from static initializers, so the
# library must be shared or linked whole-archive (see BUILD_SHARED_LIBS).
# Private headers are included relative to their .cc files; no extra include
# directory is needed beyond aggregator/include and proto/include.

set(FEDGE_STRATEGY_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/adaptive_strategies.cc
  ${CMAKE_CURRENT_LIST_DIR}/byte_codec.cc
  ${CMAKE_CURRENT_LIST_DIR}/composed_strategy.cc
  ${CMAKE_CURRENT_LIST_DIR}/fold_kernels.cc
  ${CMAKE_CURRENT_LIST_DIR}/mean_strategies.cc
  ${CMAKE_CURRENT_LIST_DIR}/robust_strategies.cc
  ${CMAKE_CURRENT_LIST_DIR}/server_optimizers.cc
  ${CMAKE_CURRENT_LIST_DIR}/stored_updates_accumulator.cc
  ${CMAKE_CURRENT_LIST_DIR}/strategy_options.cc
  ${CMAKE_CURRENT_LIST_DIR}/strategy_registry.cc
  ${CMAKE_CURRENT_LIST_DIR}/update_accumulators.cc
  ${CMAKE_CURRENT_LIST_DIR}/weighted_mean_accumulator.cc
)

# The aggregation hot loops: -O3 in every build type so GCC auto-vectorizes
# them (Release already uses -O3; this matters for RelWithDebInfo and Debug),
# and no multiply-add contraction, so every CPU-specific clone of a kernel
# rounds the same way (see fold_kernels.cc).
# Source properties are directory-scoped: this applies to targets defined in
# the directory that includes this file.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/fold_kernels.cc
  PROPERTIES COMPILE_OPTIONS "-O3;-ffp-contract=off")
