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
# Component "sdk", for plug-in authors (docs/privacy.md, "Out of tree"):
#
#   <prefix>/include/fedge/privacy/, fedge/proto/, fedge/v1/*.pb.h
#   <prefix>/lib/cmake/fedge/fedgeSdkTargets.cmake  fedge::privacy, fedge::proto,
#                                                   fedge::config (plug-in keys)
#
# The client component installs only the C header: the C++ headers expose
# protobuf and Abseil types and carry no ABI promise, so a plug-in must be
# built against the same fedge and the same Debian libraries it is loaded
# into. LibTorch, gRPC, protobuf, OpenSSL, yaml-cpp and Abseil are system
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
# The installed package's config, and one for the build tree (find_package
# with fedge_DIR=<build>): the same targets, at their build-tree paths.
set(FEDGE_CONFIG_FOR_BUILD_TREE OFF)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/fedgeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake-install/fedgeConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/fedge
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR)
set(FEDGE_CONFIG_FOR_BUILD_TREE ON)
set(FEDGE_BUILD_INCLUDE_DIR ${PROJECT_SOURCE_DIR}/client/include)
set(FEDGE_BUILD_LIBRARY_DIR ${PROJECT_BINARY_DIR}/client)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/fedgeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/fedgeConfig.cmake
  INSTALL_DESTINATION ${PROJECT_BINARY_DIR}
  PATH_VARS FEDGE_BUILD_INCLUDE_DIR FEDGE_BUILD_LIBRARY_DIR
  INSTALL_PREFIX ${PROJECT_BINARY_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/fedgeConfigVersion.cmake
  VERSION ${FEDGE_CLIENT_C_VERSION} COMPATIBILITY SameMajorVersion)
foreach(component client sdk)
  install(FILES ${PROJECT_BINARY_DIR}/cmake-install/fedgeConfig.cmake
    ${PROJECT_BINARY_DIR}/fedgeConfigVersion.cmake
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/fedge COMPONENT ${component})
endforeach()

# The plug-in SDK.
set_target_properties(fedge_privacy PROPERTIES EXPORT_NAME privacy)
set_target_properties(fedge_proto PROPERTIES EXPORT_NAME proto)
set_target_properties(fedge_config PROPERTIES EXPORT_NAME config)
install(TARGETS fedge_privacy fedge_proto fedge_config EXPORT fedgeSdkTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT sdk)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/privacy/include/fedge/privacy
  ${PROJECT_SOURCE_DIR}/proto/include/fedge/proto
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/fedge COMPONENT sdk)
install(DIRECTORY ${PROJECT_BINARY_DIR}/proto/fedge/v1 ${PROJECT_BINARY_DIR}/proto/fedge/proto
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/fedge COMPONENT sdk FILES_MATCHING PATTERN "*.h")
install(EXPORT fedgeSdkTargets NAMESPACE fedge::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/fedge COMPONENT sdk)
export(EXPORT fedgeSdkTargets NAMESPACE fedge:: FILE ${PROJECT_BINARY_DIR}/fedgeSdkTargets.cmake)

configure_file(${PROJECT_SOURCE_DIR}/cmake/fedge-client.pc.in
  ${PROJECT_BINARY_DIR}/fedge-client.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/fedge-client.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT client)
