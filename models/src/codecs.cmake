# Update codecs beyond fp32, error feedback and int8 artifact quantization:
# compiled into fedge_models_core (LibTorch-free). Included from
# models/CMakeLists.txt before the library is defined.
set(FEDGE_MODELS_CODEC_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/fp16_codec.cc
  ${CMAKE_CURRENT_LIST_DIR}/int8_codec.cc
  ${CMAKE_CURRENT_LIST_DIR}/qsgd_codec.cc
  ${CMAKE_CURRENT_LIST_DIR}/topk_codec.cc
  ${CMAKE_CURRENT_LIST_DIR}/error_feedback.cc
  ${CMAKE_CURRENT_LIST_DIR}/quantization.cc)
