# Shared CMake helpers for fedge targets.

# fedge_torch_pch(<target>): precompile <torch/torch.h> for a target that
# includes it. All LibTorch translation units reuse one PCH (REUSE_FROM) so the
# 15-second header parse happens once per build configuration.
function(fedge_torch_pch target)
  if(NOT FEDGE_USE_PCH)
    return()
  endif()
  # A PCH must be built with the same -fPIC/-fPIE as its users: one host for
  # libraries (PIC objects), one for executables (PIE objects).
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    set(host fedge_torch_pch_exe_host)
    if(NOT TARGET ${host})
      add_executable(${host} ${PROJECT_SOURCE_DIR}/cmake/torch_pch_main.cc)
    endif()
  else()
    set(host fedge_torch_pch_lib_host)
    if(NOT TARGET ${host})
      add_library(${host} OBJECT ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cc)
    endif()
  endif()
  get_target_property(has_pch ${host} PRECOMPILE_HEADERS)
  if(NOT has_pch)
    target_link_libraries(${host} PRIVATE ${TORCH_LIBRARIES})
    target_precompile_headers(${host} PRIVATE <torch/torch.h>)
  endif()
  target_precompile_headers(${target} REUSE_FROM ${host})
endfunction()

# fedge_add_test(<name> [TORCH] SOURCES ... LIBS ... [LABELS ...])
# TORCH: the sources include <torch/torch.h>; reuse the precompiled header.
# One GoogleTest executable, registered with CTest test by test.
function(fedge_add_test name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gmock GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  if(ARG_TORCH)
    fedge_torch_pch(${name})
  endif()
  # Labels are set after discovery, from the discovered test list: passed
  # through gtest_discover_tests' PROPERTIES, a list of labels is split on
  # its way and only the first one would stick.
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    TEST_LIST ${name}_TESTS
    PROPERTIES TIMEOUT 300
    DISCOVERY_TIMEOUT 60)
  if(ARG_LABELS)
    set(labels_file "${CMAKE_CURRENT_BINARY_DIR}/${name}_labels.cmake")
    file(WRITE "${labels_file}"
         "if(${name}_TESTS)\n"
         "  set_tests_properties(\${${name}_TESTS} PROPERTIES LABELS \"${ARG_LABELS}\")\n"
         "endif()\n")
    set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${labels_file}")
  endif()
endfunction()
