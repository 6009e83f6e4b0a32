# Secure-aggregation tests. Included from tests/privacy/CMakeLists.txt.
fedge_add_test(fedge_secagg_crypto_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/secagg_crypto_test.cc
  LIBS fedge::privacy OpenSSL::Crypto LABELS privacy)
fedge_add_test(fedge_secagg_shamir_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/secagg_shamir_test.cc
  LIBS fedge::privacy OpenSSL::Crypto LABELS privacy)
fedge_add_test(fedge_secagg_fixed_point_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/secagg_fixed_point_test.cc
  LIBS fedge::privacy OpenSSL::Crypto LABELS privacy)
fedge_add_test(fedge_secagg_masking_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/secagg_masking_test.cc
  LIBS fedge::privacy OpenSSL::Crypto LABELS privacy)
fedge_add_test(fedge_secagg_protocol_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/secagg_protocol_test.cc
  LIBS fedge::privacy OpenSSL::Crypto LABELS privacy)
