# Model compression beyond the codecs: pruning (LibTorch-free, into
# fedge_models_core) and, once they exist, the LibTorch parts (inference
# engine, distillation) for fedge_models. Included from models/CMakeLists.txt
# before the libraries are defined.
set(FEDGE_MODELS_COMPRESSION_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/pruning.cc)
set(FEDGE_MODELS_COMPRESSION_TORCH_SOURCES)
