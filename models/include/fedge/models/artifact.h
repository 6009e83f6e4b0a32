// Model artifacts (fedge.v1.ModelArtifact): one model version as a
// self-describing protobuf message, on disk and on the wire. LibTorch-free.
//
// The header records the version, its parent, the architecture, the tensor
// encoding, the creation time and a SHA-256 over the tensors; tensors carry
// name, shape and encoded bytes. BuildFp32Artifact writes fp32 tensors;
// QuantizeArtifact (quantization.h) derives the int8 artifact from it. The
// format has room for an Ed25519 signature.
//
// The SHA-256 covers, for each tensor in order: its name, a NUL byte, its
// shape as little-endian int64s, its encoding as a little-endian int32, its
// scales and zero points, its data bytes and its stored-values mask (sparse
// tensors). A receiver recomputes it and refuses a mismatch.
//
// Sparse tensors (SparsifyArtifact) store a bitmap of which values are kept
// and only those values: a pruned model at sparsity s costs about
// (1 - s) * bytes_per_value + 1/8 bytes per parameter instead of
// bytes_per_value, so sparse storage pays from about 3% zeros (fp32) and an
// 80%-sparse fp32 tensor is 4.3x smaller.
#ifndef FEDGE_MODELS_ARTIFACT_H_
#define FEDGE_MODELS_ARTIFACT_H_

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/models/model_spec.h"
#include "fedge/v1/model.pb.h"

namespace fedge::models {

struct ArtifactOptions {
  uint64_t version = 0;
  uint64_t parent_version = 0;
  // Milliseconds since the Unix epoch; 0 means "now".
  int64_t created_at_unix_ms = 0;
  std::map<std::string, double> metrics;
};

// Encodes `values` (laid out as `layout` says) as an fp32 artifact.
// INVALID_ARGUMENT if the layout does not cover `values` exactly.
absl::StatusOr<v1::ModelArtifact> BuildFp32Artifact(const ModelSpec& spec,
                                                    const std::vector<ParameterLayout>& layout,
                                                    std::span<const float> values,
                                                    const ArtifactOptions& options);

// The parameter layout the artifact's tensors describe (names, shapes, and
// offsets in order), e.g. to rebuild a registry from a stored version.
// INVALID_ARGUMENT for a tensor with a negative dimension or no name.
absl::StatusOr<std::vector<ParameterLayout>> LayoutOfArtifact(const v1::ModelArtifact& artifact);

// SHA-256 of the artifact's tensors, as defined above (32 bytes).
std::string ComputeTensorsSha256(const v1::ModelArtifact& artifact);

// Checks the header against the tensors: format version, recorded hash,
// parameter count. DATA_LOSS on a mismatch.
absl::Status VerifyArtifact(const v1::ModelArtifact& artifact);

// Decodes the artifact's tensors into `out`, checking that names, shapes and
// order match `layout` (the receiving model's). Verifies the hash first.
// Decodes FP32, FP16, INT8_PER_TENSOR and INT8_PER_CHANNEL tensors (int8:
// symmetric, one finite scale >= 0 per channel along channel_axis or per
// tensor, zero points absent or 0), dense or sparse; UNIMPLEMENTED for other
// encodings. INVALID_ARGUMENT / DATA_LOSS name the tensor at fault; `out` is
// written only when everything checks.
absl::Status DecodeArtifact(const v1::ModelArtifact& artifact,
                            const std::vector<ParameterLayout>& layout, std::span<float> out);
// As above; also sets `stored` (when not null) to out.size() flags: 1 where
// the artifact stores the value (every value of a dense tensor), 0 where a
// sparse tensor leaves it out. A device keeps the 0-flagged entries at zero
// while fine-tuning (they were pruned).
absl::Status DecodeArtifact(const v1::ModelArtifact& artifact,
                            const std::vector<ParameterLayout>& layout, std::span<float> out,
                            std::vector<uint8_t>* stored);

// True when some tensor of `artifact` is stored sparsely.
bool IsSparse(const v1::ModelArtifact& artifact);

// Stores every fp32 tensor of `artifact` that holds zeros sparsely (see
// above) when that makes it smaller, and recomputes the hash (dropping any
// signature). Exact zeros, +0 and -0, are the values left out. DATA_LOSS if
// `artifact` fails VerifyArtifact; INVALID_ARGUMENT if a tensor is not fp32
// or is already sparse, or its data does not match its shape. Quantize after
// sparsifying (QuantizeArtifact keeps the masks): the mask then marks the
// pruned weights only, not small weights that round to int8 zero.
absl::StatusOr<v1::ModelArtifact> SparsifyArtifact(const v1::ModelArtifact& artifact);

// How a model version is stored for devices.
struct ArtifactEncoding {
  enum class Precision {
    kFp32,
    kInt8PerChannel,  // QuantizeArtifact, per_channel = true
    kInt8PerTensor,   // QuantizeArtifact, per_channel = false
  };
  // Default: kFp32.
  Precision precision = Precision::kFp32;
  // Default: false. true: SparsifyArtifact before quantizing.
  bool sparse = false;
};

// "fp32", "int8" (per channel), "int8-per-tensor".
std::vector<std::string> ArtifactPrecisionNames();
// INVALID_ARGUMENT lists the valid names.
absl::StatusOr<ArtifactEncoding::Precision> ParseArtifactPrecision(std::string_view name);

// BuildFp32Artifact, then SparsifyArtifact and QuantizeArtifact as
// `encoding` asks. Errors are theirs.
absl::StatusOr<v1::ModelArtifact> BuildArtifact(const ModelSpec& spec,
                                                const std::vector<ParameterLayout>& layout,
                                                std::span<const float> values,
                                                const ArtifactOptions& options,
                                                const ArtifactEncoding& encoding);

}  // namespace fedge::models

#endif  // FEDGE_MODELS_ARTIFACT_H_
