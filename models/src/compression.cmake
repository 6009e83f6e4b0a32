# Model compression beyond the codecs: sets FEDGE_MODELS_COMPRESSION_SOURCES
# (LibTorch-free, into fedge_models_core) and
# FEDGE_MODELS_COMPRESSION_TORCH_SOURCES (into fedge_models). Included from
# models/CMakeLists.txt before the libraries are defined.
set(FEDGE_MODELS_COMPRESSION_SOURCES)
set(FEDGE_MODELS_COMPRESSION_TORCH_SOURCES)
