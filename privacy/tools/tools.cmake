# fedge-privacy: command-line privacy calculator over fedge::privacy.
# Included from privacy/CMakeLists.txt.
add_executable(fedge-privacy ${CMAKE_CURRENT_LIST_DIR}/fedge_privacy_main.cc)
target_link_libraries(fedge-privacy PRIVATE fedge::privacy fedge::config)
