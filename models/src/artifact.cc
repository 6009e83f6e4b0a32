#include "fedge/models/artifact.h"

#include <openssl/evp.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/models/quantization.h"

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

size_t BytesPerValue(v1::TensorEncoding encoding) {
  switch (encoding) {
    case v1::TENSOR_ENCODING_FP32:
      return 4;
    case v1::TENSOR_ENCODING_FP16:
      return 2;
    default:
      return 1;
  }
}

bool IsStored(const std::string& mask, size_t i) { return (mask[i >> 3] >> (i & 7)) & 1; }

// The number of values a sparse tensor of `numel` values stores: its mask
// must have one bit per value, rounded up to whole bytes, with the bits past
// the end clear.
absl::StatusOr<int64_t> CountStored(const v1::TensorProto& t, int64_t numel) {
  const std::string& mask = t.stored_mask();
  const size_t expected = static_cast<size_t>((numel + 7) / 8);
  if (mask.size() != expected) {
    return absl::DataLossError(absl::StrCat("artifact tensor '", t.name(), "' has a ", mask.size(),
                                            "-byte stored mask, expected ", expected, " for ",
                                            numel, " values"));
  }
  int64_t stored = 0;
  for (unsigned char byte : mask) stored += std::popcount(byte);
  if (numel % 8 != 0 && (static_cast<unsigned char>(mask.back()) >> (numel % 8)) != 0) {
    return absl::DataLossError(absl::StrCat("artifact tensor '", t.name(),
                                            "' has stored-mask bits set past its last value"));
  }
  return stored;
}

// Checks that `t` (whose name and shape already match the model, `numel`
// values) can be decoded: a known encoding, the right data size (for the
// values its mask stores, when sparse), and for int8 one finite non-negative
// scale per channel (or per tensor) with zero points absent or all 0.
absl::Status CheckTensorEncoding(const v1::TensorProto& t, int64_t numel) {
  const v1::TensorEncoding encoding = t.encoding();
  if (encoding != v1::TENSOR_ENCODING_FP32 && encoding != v1::TENSOR_ENCODING_FP16 &&
      encoding != v1::TENSOR_ENCODING_INT8_PER_CHANNEL &&
      encoding != v1::TENSOR_ENCODING_INT8_PER_TENSOR) {
    return absl::UnimplementedError(absl::StrCat("artifact tensor '", t.name(), "' uses encoding ",
                                                 v1::TensorEncoding_Name(encoding),
                                                 ", which this build does not decode"));
  }
  int64_t stored = numel;
  if (!t.stored_mask().empty()) {
    absl::StatusOr<int64_t> count = CountStored(t, numel);
    if (!count.ok()) return count.status();
    stored = *count;
  }
  const size_t expected_bytes = static_cast<size_t>(stored) * BytesPerValue(encoding);
  if (t.data().size() != expected_bytes) {
    return absl::DataLossError(absl::StrCat(
        "artifact tensor '", t.name(), "' holds ", t.data().size(), " bytes, expected ",
        expected_bytes, " for ", stored, t.stored_mask().empty() ? " " : " stored ",
        v1::TensorEncoding_Name(encoding), " values"));
  }
  if (encoding != v1::TENSOR_ENCODING_INT8_PER_CHANNEL &&
      encoding != v1::TENSOR_ENCODING_INT8_PER_TENSOR) {
    return absl::OkStatus();
  }
  int64_t expected_scales = 1;
  if (encoding == v1::TENSOR_ENCODING_INT8_PER_CHANNEL) {
    if (t.channel_axis() < 0 || t.channel_axis() >= t.shape_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("artifact tensor '", t.name(), "' has channel axis ", t.channel_axis(),
                       " outside its shape ", ShapeString(t.shape())));
    }
    expected_scales = t.shape(t.channel_axis());
  }
  if (t.scales_size() != expected_scales) {
    return absl::InvalidArgumentError(absl::StrCat("artifact tensor '", t.name(), "' has ",
                                                   t.scales_size(), " scales, expected ",
                                                   expected_scales));
  }
  for (float scale : t.scales()) {
    if (!std::isfinite(scale) || scale < 0.0f) {
      return absl::InvalidArgumentError(absl::StrCat("artifact tensor '", t.name(), "' has scale ",
                                                     scale, "; scales must be finite and >= 0"));
    }
  }
  if (t.zero_points_size() != 0 && t.zero_points_size() != t.scales_size()) {
    return absl::InvalidArgumentError(absl::StrCat("artifact tensor '", t.name(), "' has ",
                                                   t.zero_points_size(), " zero points for ",
                                                   t.scales_size(), " scales"));
  }
  for (int32_t zero_point : t.zero_points()) {
    if (zero_point != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("artifact tensor '", t.name(), "' has zero point ", zero_point,
                       "; only symmetric int8 (zero points 0) is supported"));
    }
  }
  return absl::OkStatus();
}

// Writes value_at(j, i), the j-th stored value at position i, to out[i]
// for every stored position, and 0 elsewhere.
template <typename ValueAt>
void Scatter(const std::string& mask, std::span<float> out, ValueAt value_at) {
  if (mask.empty()) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = value_at(i, i);
    return;
  }
  size_t j = 0;
  for (size_t i = 0; i < out.size(); ++i) out[i] = IsStored(mask, i) ? value_at(j++, i) : 0.0f;
}

// REQUIRES: CheckTensorEncoding(t, out.size()) is OK.
void DecodeTensor(const v1::TensorProto& t, std::span<float> out) {
  const std::string& data = t.data();
  const std::string& mask = t.stored_mask();
  switch (t.encoding()) {
    case v1::TENSOR_ENCODING_FP16:
      Scatter(mask, out, [&](size_t j, size_t) {
        uint16_t half;
        std::memcpy(&half, data.data() + 2 * j, sizeof(half));
        return HalfToFloat(half);
      });
      return;
    case v1::TENSOR_ENCODING_INT8_PER_CHANNEL:
    case v1::TENSOR_ENCODING_INT8_PER_TENSOR: {
      // Value i belongs to channel (i / inner) % channels, where inner is the
      // product of the dimensions after the channel axis.
      size_t channels = 1;
      size_t inner = out.size();
      if (t.encoding() == v1::TENSOR_ENCODING_INT8_PER_CHANNEL) {
        channels = static_cast<size_t>(t.shape(t.channel_axis()));
        inner = 1;
        for (int d = t.channel_axis() + 1; d < t.shape_size(); ++d) {
          inner *= static_cast<size_t>(t.shape(d));
        }
      }
      const auto* q = reinterpret_cast<const int8_t*>(data.data());
      if (mask.empty()) {
        for (size_t begin = 0, block = 0; begin < out.size(); begin += inner, ++block) {
          const float scale = t.scales(static_cast<int>(block % channels));
          for (size_t i = begin; i < begin + inner; ++i) out[i] = static_cast<float>(q[i]) * scale;
        }
        return;
      }
      Scatter(mask, out, [&](size_t j, size_t i) {
        return static_cast<float>(q[j]) * t.scales(static_cast<int>((i / inner) % channels));
      });
      return;
    }
    default:
      if (mask.empty()) {
        std::memcpy(out.data(), data.data(), data.size());
        return;
      }
      Scatter(mask, out, [&](size_t j, size_t) {
        float value;
        std::memcpy(&value, data.data() + 4 * j, sizeof(value));
        return value;
      });
      return;
  }
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
    AppendLittleEndian<int64_t>(meta, static_cast<int64_t>(t.stored_mask().size()));
    EVP_DigestUpdate(ctx.get(), meta.data(), meta.size());
    EVP_DigestUpdate(ctx.get(), t.data().data(), t.data().size());
    EVP_DigestUpdate(ctx.get(), t.stored_mask().data(), t.stored_mask().size());
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

absl::StatusOr<std::vector<ParameterLayout>> LayoutOfArtifact(const v1::ModelArtifact& artifact) {
  std::vector<ParameterLayout> layout;
  int64_t offset = 0;
  for (const v1::TensorProto& tensor : artifact.tensors()) {
    if (tensor.name().empty()) return absl::InvalidArgumentError("an artifact tensor has no name");
    ParameterLayout entry;
    entry.name = tensor.name();
    entry.offset = offset;
    entry.numel = 1;
    for (int64_t dim : tensor.shape()) {
      if (dim < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", tensor.name(), "' has a negative dimension"));
      }
      entry.shape.push_back(dim);
      entry.numel *= dim;
    }
    offset += entry.numel;
    layout.push_back(std::move(entry));
  }
  return layout;
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
  return DecodeArtifact(artifact, layout, out, nullptr);
}

absl::Status DecodeArtifact(const v1::ModelArtifact& artifact,
                            const std::vector<ParameterLayout>& layout, std::span<float> out,
                            std::vector<uint8_t>* stored) {
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
      return absl::InvalidArgumentError(absl::StrCat("artifact tensor ", i, " is '", t.name(),
                                                     "', the model expects '", p.name, "'"));
    }
    if (!std::equal(t.shape().begin(), t.shape().end(), p.shape.begin(), p.shape.end())) {
      return absl::InvalidArgumentError(
          absl::StrCat("artifact tensor '", t.name(), "' has shape ", ShapeString(t.shape()),
                       ", the model expects [", absl::StrJoin(p.shape, ", "), "]"));
    }
    if (absl::Status s = CheckTensorEncoding(t, p.numel); !s.ok()) return s;
  }
  for (size_t i = 0; i < layout.size(); ++i) {
    DecodeTensor(
        artifact.tensors(static_cast<int>(i)),
        out.subspan(static_cast<size_t>(layout[i].offset), static_cast<size_t>(layout[i].numel)));
  }
  if (stored != nullptr) {
    stored->assign(out.size(), 1);
    for (size_t i = 0; i < layout.size(); ++i) {
      const std::string& mask = artifact.tensors(static_cast<int>(i)).stored_mask();
      if (mask.empty()) continue;
      uint8_t* flags = stored->data() + layout[i].offset;
      for (size_t j = 0; j < static_cast<size_t>(layout[i].numel); ++j) {
        flags[j] = IsStored(mask, j) ? 1 : 0;
      }
    }
  }
  return absl::OkStatus();
}

bool IsSparse(const v1::ModelArtifact& artifact) {
  for (const v1::TensorProto& t : artifact.tensors()) {
    if (!t.stored_mask().empty()) return true;
  }
  return false;
}

absl::StatusOr<v1::ModelArtifact> SparsifyArtifact(const v1::ModelArtifact& artifact) {
  if (absl::Status s = VerifyArtifact(artifact); !s.ok()) return s;
  v1::ModelArtifact result = artifact;
  result.clear_signature();
  result.clear_signing_key_id();
  for (v1::TensorProto& t : *result.mutable_tensors()) {
    if (t.encoding() != v1::TENSOR_ENCODING_FP32 || !t.stored_mask().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", t.name(), "' is ", v1::TensorEncoding_Name(t.encoding()),
                       t.stored_mask().empty() ? "" : " and already sparse",
                       "; SparsifyArtifact needs dense fp32 tensors"));
    }
    size_t numel = 1;
    for (int64_t d : t.shape()) {
      if (d < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name(), "' has a negative dimension"));
      }
      numel *= static_cast<size_t>(d);
    }
    if (t.data().size() != numel * sizeof(float)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name(), "' holds ",
                                                     t.data().size(), " bytes, its shape needs ",
                                                     numel * sizeof(float)));
    }
    std::string mask((numel + 7) / 8, '\0');
    std::string values;
    for (size_t i = 0; i < numel; ++i) {
      float v;
      std::memcpy(&v, t.data().data() + 4 * i, sizeof(v));
      if (v == 0.0f) continue;
      mask[i >> 3] = static_cast<char>(mask[i >> 3] | (1 << (i & 7)));
      values.append(t.data().data() + 4 * i, sizeof(float));
    }
    if (values.size() + mask.size() >= t.data().size()) continue;  // dense is no larger
    t.set_data(std::move(values));
    t.set_stored_mask(std::move(mask));
  }
  result.mutable_header()->set_tensors_sha256(ComputeTensorsSha256(result));
  return result;
}

std::vector<std::string> ArtifactPrecisionNames() { return {"fp32", "int8", "int8-per-tensor"}; }

absl::StatusOr<ArtifactEncoding::Precision> ParseArtifactPrecision(std::string_view name) {
  if (name == "fp32") return ArtifactEncoding::Precision::kFp32;
  if (name == "int8") return ArtifactEncoding::Precision::kInt8PerChannel;
  if (name == "int8-per-tensor") return ArtifactEncoding::Precision::kInt8PerTensor;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown artifact precision '", std::string(name),
                   "'; known: ", absl::StrJoin(ArtifactPrecisionNames(), ", ")));
}

absl::StatusOr<v1::ModelArtifact> BuildArtifact(const ModelSpec& spec,
                                                const std::vector<ParameterLayout>& layout,
                                                std::span<const float> values,
                                                const ArtifactOptions& options,
                                                const ArtifactEncoding& encoding) {
  absl::StatusOr<v1::ModelArtifact> artifact = BuildFp32Artifact(spec, layout, values, options);
  if (!artifact.ok()) return artifact.status();
  if (encoding.sparse) {
    artifact = SparsifyArtifact(*artifact);
    if (!artifact.ok()) return artifact.status();
  }
  if (encoding.precision == ArtifactEncoding::Precision::kFp32) return artifact;
  QuantizeOptions quantize;
  quantize.per_channel = encoding.precision == ArtifactEncoding::Precision::kInt8PerChannel;
  return QuantizeArtifact(*artifact, quantize);
}

}  // namespace fedge::models
