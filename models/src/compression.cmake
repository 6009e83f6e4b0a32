# Model compression beyond the codecs: sets FEDGE_MODELS_COMPRESSION_SOURCES
# (LibTorch-free, into fedge_models_core: pruning) and
# FEDGE_MODELS_COMPRESSION_TORCH_SOURCES (into fedge_models: the fp32/int8
# inference engine and distillation). Included from models/CMakeLists.txt
# before the libraries are defined.
set(FEDGE_MODELS_COMPRESSION_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/pruning.cc)
set(FEDGE_MODELS_COMPRESSION_TORCH_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/inference.cc
  ${CMAKE_CURRENT_LIST_DIR}/distillation.cc)
