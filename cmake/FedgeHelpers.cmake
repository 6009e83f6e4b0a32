# Shared CMake helpers for fedge targets.

# fedge_torch_pch(<target>): precompile <torch/torch.h> for a target that
# includes it. All LibTorch translation units reuse one PCH (REUSE_FROM) so the
# 15-second header parse happens once per build configuration.
function(fedge_torch_pch target)
  if(NOT FEDGE_USE_PCH)
    return()
  endif()
  if(NOT TARGET fedge_torch_pch_host)
    add_library(fedge_torch_pch_host OBJECT ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cc)
    target_link_libraries(fedge_torch_pch_host PRIVATE ${TORCH_LIBRARIES})
    target_precompile_headers(fedge_torch_pch_host PRIVATE <torch/torch.h>)
  endif()
  target_precompile_headers(${target} REUSE_FROM fedge_torch_pch_host)
endfunction()

# fedge_add_test(<name> SOURCES ... LIBS ... [LABELS ...])
# One GoogleTest executable, registered with CTest test by test.
function(fedge_add_test name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gmock GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  if(ARG_TORCH)
    fedge_torch_pch(${name})
  endif()
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT 300
    DISCOVERY_TIMEOUT 60)
endfunction()
