# Secure aggregation (crypto primitives, Shamir sharing, fixed-point encoding,
# masks) for fedge::privacy. Included from privacy/CMakeLists.txt.
set(FEDGE_PRIVACY_SECAGG_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/secagg/crypto.cc
  ${CMAKE_CURRENT_LIST_DIR}/secagg/fixed_point.cc
  ${CMAKE_CURRENT_LIST_DIR}/secagg/masking.cc
  ${CMAKE_CURRENT_LIST_DIR}/secagg/protocol.cc
  ${CMAKE_CURRENT_LIST_DIR}/secagg/server.cc
  ${CMAKE_CURRENT_LIST_DIR}/secagg/shamir.cc)
