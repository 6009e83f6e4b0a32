#include "fedge/models/artifact.h"

#include <openssl/evp.h>

#include <chrono>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedge::models {
namespace {

constexpr uint32_t kFormatVersion = 1;

template <typename T>
void AppendLittleEndian(std::string& out, T value) {
  static_assert(std::is_trivially_copyable_v<T>);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // fedge targets little-endian hosts only
  out.append(bytes, sizeof(T));
}

std::string ShapeString(const google::protobuf::RepeatedField<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::StatusOr<v1::ModelArtifact> BuildFp32Artifact(const ModelSpec& spec,
                                                    const std::vector<ParameterLayout>& layout,
                                                    std::span<const float> values,
                                                    const ArtifactOptions& options) {
  if (LayoutSize(layout) != static_cast<int64_t>(values.size())) {
    return absl::InvalidArgumentError(absl::StrCat("layout describes ", LayoutSize(layout),
                                                   " values but ", values.size(), " were given"));
  }
  v1::ModelArtifact artifact;
  v1::ArtifactHeader& header = *artifact.mutable_header();
  header.set_format_version(kFormatVersion);
  header.set_version(options.version);
  header.set_parent_version(options.parent_version);
  *header.mutable_model() = ToProto(spec);
  header.set_encoding(v1::TENSOR_ENCODING_FP32);
  int64_t now_ms = options.created_at_unix_ms;
  if (now_ms == 0) {
    now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  }
  header.set_created_at_unix_ms(now_ms);
  header.set_num_parameters(values.size());
  for (const auto& [key, value] : options.metrics) (*header.mutable_metrics())[key] = value;

  for (const ParameterLayout& p : layout) {
    if (p.offset < 0 || p.offset + p.numel > static_cast<int64_t>(values.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("layout entry '", p.name, "' lies outside the parameter vector"));
    }
    v1::TensorProto* tensor = artifact.add_tensors();
    tensor->set_name(p.name);
    for (int64_t d : p.shape) tensor->add_shape(d);
    tensor->set_encoding(v1::TENSOR_ENCODING_FP32);
    tensor->set_data(reinterpret_cast<const char*>(values.data() + p.offset),
                     static_cast<size_t>(p.numel) * sizeof(float));
  }
  header.set_tensors_sha256(ComputeTensorsSha256(artifact));
  return artifact;
}

std::string ComputeTensorsSha256(const v1::ModelArtifact& artifact) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::string meta;
  for (const v1::TensorProto& t : artifact.tensors()) {
    meta.clear();
    meta.append(t.name());
    meta.push_back('\0');
    AppendLittleEndian<int64_t>(meta, t.shape_size());
    for (int64_t d : t.shape()) AppendLittleEndian<int64_t>(meta, d);
    AppendLittleEndian<int32_t>(meta, t.encoding());
    AppendLittleEndian<int32_t>(meta, t.channel_axis());
    AppendLittleEndian<int64_t>(meta, t.scales_size());
    for (float s : t.scales()) AppendLittleEndian<float>(meta, s);
    AppendLittleEndian<int64_t>(meta, t.zero_points_size());
    for (int32_t z : t.zero_points()) AppendLittleEndian<int32_t>(meta, z);
    AppendLittleEndian<int64_t>(meta, static_cast<int64_t>(t.data().size()));
    EVP_DigestUpdate(ctx.get(), meta.data(), meta.size());
    EVP_DigestUpdate(ctx.get(), t.data().data(), t.data().size());
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

absl::Status VerifyArtifact(const v1::ModelArtifact& artifact) {
  const v1::ArtifactHeader& header = artifact.header();
  if (header.format_version() != kFormatVersion) {
    return absl::DataLossError(absl::StrCat("artifact format version ", header.format_version(),
                                            " is not supported (expected ", kFormatVersion, ")"));
  }
  if (header.tensors_sha256() != ComputeTensorsSha256(artifact)) {
    return absl::DataLossError(absl::StrCat("artifact of model version ", header.version(),
                                            " failed its SHA-256 check: tensors were altered"));
  }
  return absl::OkStatus();
}

absl::Status DecodeArtifact(const v1::ModelArtifact& artifact,
                            const std::vector<ParameterLayout>& layout, std::span<float> out) {
  if (absl::Status s = VerifyArtifact(artifact); !s.ok()) return s;
  if (LayoutSize(layout) != static_cast<int64_t>(out.size())) {
    return absl::InvalidArgumentError(absl::StrCat("output buffer has ", out.size(),
                                                   " values, layout needs ", LayoutSize(layout)));
  }
  if (artifact.tensors_size() != static_cast<int>(layout.size())) {
    return absl::InvalidArgumentError(absl::StrCat("artifact has ", artifact.tensors_size(),
                                                   " tensors, the model has ", layout.size()));
  }
  // Check everything before writing anything.
  for (size_t i = 0; i < layout.size(); ++i) {
    const v1::TensorProto& t = artifact.tensors(static_cast<int>(i));
    const ParameterLayout& p = layout[i];
    if (t.name() != p.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("artifact tensor ", i, " is '", t.name(), "', the model expects '", p.name, "'"));
    }
    if (!std::equal(t.shape().begin(), t.shape().end(), p.shape.begin(), p.shape.end())) {
      return absl::InvalidArgumentError(absl::StrCat("artifact tensor '", t.name(), "' has shape ",
                                                     ShapeString(t.shape()), ", the model expects [",
                                                     absl::StrJoin(p.shape, ", "), "]"));
    }
    if (t.encoding() != v1::TENSOR_ENCODING_FP32) {
      return absl::UnimplementedError(absl::StrCat("artifact tensor '", t.name(), "' uses encoding ",
                                                   v1::TensorEncoding_Name(t.encoding()),
                                                   "; this build decodes only TENSOR_ENCODING_FP32"));
    }
    if (t.data().size() != static_cast<size_t>(p.numel) * sizeof(float)) {
      return absl::DataLossError(absl::StrCat("artifact tensor '", t.name(), "' holds ",
                                              t.data().size(), " bytes, expected ",
                                              p.numel * sizeof(float)));
    }
  }
  for (size_t i = 0; i < layout.size(); ++i) {
    const std::string& data = artifact.tensors(static_cast<int>(i)).data();
    std::memcpy(out.data() + layout[i].offset, data.data(), data.size());
  }
  return absl::OkStatus();
}

}  // namespace fedge::models
