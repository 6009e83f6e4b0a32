# Differential-privacy sources of fedge::privacy (accountants, mechanisms,
# random sources). Included from privacy/CMakeLists.txt.
set(FEDGE_PRIVACY_DP_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/clipper.cc
  ${CMAKE_CURRENT_LIST_DIR}/mechanisms.cc
  ${CMAKE_CURRENT_LIST_DIR}/random.cc
  ${CMAKE_CURRENT_LIST_DIR}/rdp_accountant.cc
  ${CMAKE_CURRENT_LIST_DIR}/step_log.cc
  ${CMAKE_CURRENT_LIST_DIR}/update_privacy.cc)
