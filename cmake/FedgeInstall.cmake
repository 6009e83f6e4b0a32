# `cmake --install`: the embeddable device library as a package.
#
#   <prefix>/include/fedge/client/c_api.h        the stable API (C99)
#   <prefix>/lib/libfedge_client_c.so.1          the C API, and the fedge
#   <prefix>/lib/libfedge_*.so                   libraries it needs (RUNPATH
#                                                $ORIGIN: they find each other)
#   <prefix>/lib/cmake/fedge/fedgeConfig.cmake   find_package(fedge):
#                                                fedge::client_c, fedge::client
#   <prefix>/lib/pkgconfig/fedge-client.pc       pkg-config --libs fedge-client
#
# Only the C header is installed. The C++ headers expose LibTorch, protobuf
# and Abseil types and carry no ABI promise; they stay internal until they
# have one. LibTorch, gRPC, protobuf, OpenSSL, yaml-cpp and Abseil are system
# libraries (Debian packages) and are not copied.
include(CMakePackageConfigHelpers)

set(FEDGE_CLIENT_PACKAGE_LIBS
  fedge_client_c fedge_client_runtime fedge_client fedge_client_grpc fedge_client_transport fedge_client_drift
  fedge_client_store fedge_config fedge_models fedge_models_core fedge_privacy fedge_proto
  fedge_service_proto fedge_service_messages)
set_target_properties(${FEDGE_CLIENT_PACKAGE_LIBS} PROPERTIES INSTALL_RPATH "$ORIGIN")
install(TARGETS ${FEDGE_CLIENT_PACKAGE_LIBS}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT client)
install(FILES ${PROJECT_SOURCE_DIR}/client/include/fedge/client/c_api.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/fedge/client COMPONENT client)

get_target_property(FEDGE_CLIENT_C_VERSION fedge_client_c VERSION)
get_target_property(FEDGE_CLIENT_C_VERSION_MAJOR fedge_client_c SOVERSION)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/fedgeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/fedgeConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/fedge
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/fedgeConfigVersion.cmake
  VERSION ${FEDGE_CLIENT_C_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/fedgeConfig.cmake ${PROJECT_BINARY_DIR}/fedgeConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/fedge COMPONENT client)

configure_file(${PROJECT_SOURCE_DIR}/cmake/fedge-client.pc.in
  ${PROJECT_BINARY_DIR}/fedge-client.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/fedge-client.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT client)
