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
// scales and zero points, and its data bytes. A receiver recomputes it and
// refuses a mismatch.
#ifndef FEDGE_MODELS_ARTIFACT_H_
#define FEDGE_MODELS_ARTIFACT_H_

#include <cstdint>
#include <map>
#include <span>
#include <string>
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

// SHA-256 of the artifact's tensors, as defined above (32 bytes).
std::string ComputeTensorsSha256(const v1::ModelArtifact& artifact);

// Checks the header against the tensors: format version, recorded hash,
// parameter count. DATA_LOSS on a mismatch.
absl::Status VerifyArtifact(const v1::ModelArtifact& artifact);

// Decodes the artifact's tensors into `out`, checking that names, shapes and
// order match `layout` (the receiving model's). Verifies the hash first.
// Decodes FP32, FP16, INT8_PER_TENSOR and INT8_PER_CHANNEL tensors (int8:
// symmetric, one finite scale >= 0 per channel along channel_axis or per
// tensor, zero points absent or 0); UNIMPLEMENTED for other encodings.
// INVALID_ARGUMENT / DATA_LOSS name the tensor at fault; `out` is written only
// when everything checks.
absl::Status DecodeArtifact(const v1::ModelArtifact& artifact,
                            const std::vector<ParameterLayout>& layout, std::span<float> out);

}  // namespace fedge::models

#endif  // FEDGE_MODELS_ARTIFACT_H_
