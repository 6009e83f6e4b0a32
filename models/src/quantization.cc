#include "fedge/models/quantization.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fedge/models/artifact.h"

namespace fedge::models {

namespace {

// Symmetric int8 of `values` with one scale per slice of `slice_size`
// consecutive values (all of `values` for per-tensor).
void QuantizeSlices(std::span<const float> values, size_t slice_size, v1::TensorProto* tensor) {
  std::string& data = *tensor->mutable_data();
  data.resize(values.size());
  for (size_t begin = 0; begin < values.size(); begin += slice_size) {
    const std::span<const float> slice = values.subspan(begin, slice_size);
    float max_abs = 0.0f;
    for (float v : slice) max_abs = std::max(max_abs, std::fabs(v));
    const float scale = max_abs / 127.0f;
    tensor->add_scales(scale);
    tensor->add_zero_points(0);
    for (size_t i = 0; i < slice.size(); ++i) {
      long q = scale > 0.0f ? std::lround(slice[i] / scale) : 0;
      q = std::clamp(q, -127L, 127L);
      data[begin + i] = static_cast<char>(static_cast<int8_t>(q));
    }
  }
}

}  // namespace

absl::StatusOr<v1::ModelArtifact> QuantizeArtifact(const v1::ModelArtifact& fp32,
                                                   const QuantizeOptions& options) {
  if (absl::Status s = VerifyArtifact(fp32); !s.ok()) return s;
  const v1::TensorEncoding int8_encoding = options.per_channel
                                               ? v1::TENSOR_ENCODING_INT8_PER_CHANNEL
                                               : v1::TENSOR_ENCODING_INT8_PER_TENSOR;
  v1::ModelArtifact result;
  *result.mutable_header() = fp32.header();
  result.mutable_header()->set_encoding(int8_encoding);
  std::vector<float> values;
  for (const v1::TensorProto& t : fp32.tensors()) {
    if (t.encoding() != v1::TENSOR_ENCODING_FP32) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name(), "' is ",
                                                     v1::TensorEncoding_Name(t.encoding()),
                                                     "; QuantizeArtifact needs fp32 tensors"));
    }
    int64_t numel = 1;
    for (int64_t d : t.shape()) {
      if (d < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name(), "' has a negative dimension"));
      }
      numel *= d;
    }
    // A sparse tensor is quantized as its dense form (the values left out
    // are 0, which changes no channel's range); the int8 data keeps the
    // stored positions only, under the same mask.
    const std::string& mask = t.stored_mask();
    size_t stored = static_cast<size_t>(numel);
    if (!mask.empty()) {
      if (mask.size() != static_cast<size_t>((numel + 7) / 8)) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name(), "' has a ",
                                                       mask.size(), "-byte stored mask for ", numel,
                                                       " values"));
      }
      stored = 0;
      for (unsigned char byte : mask) stored += static_cast<size_t>(std::popcount(byte));
    }
    if (t.data().size() != stored * sizeof(float)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name(), "' holds ",
                                                     t.data().size(), " bytes, its shape needs ",
                                                     stored * 4));
    }
    values.assign(static_cast<size_t>(numel), 0.0f);
    if (mask.empty()) {
      std::memcpy(values.data(), t.data().data(), t.data().size());
    } else {
      for (size_t i = 0, j = 0; i < values.size(); ++i) {
        if ((mask[i >> 3] >> (i & 7)) & 1) {
          std::memcpy(&values[i], t.data().data() + 4 * j++, sizeof(float));
        }
      }
    }
    for (float v : values) {
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name(), "' holds a non-finite value"));
      }
    }
    v1::TensorProto* out = result.add_tensors();
    out->set_name(t.name());
    *out->mutable_shape() = t.shape();
    if (t.shape_size() < 2 || numel == 0) {
      out->set_encoding(v1::TENSOR_ENCODING_FP32);
      out->set_data(t.data());
      out->set_stored_mask(mask);
      continue;
    }
    out->set_encoding(int8_encoding);
    size_t slice_size = values.size();
    if (options.per_channel) {
      out->set_channel_axis(0);
      slice_size = values.size() / static_cast<size_t>(t.shape(0));
    }
    QuantizeSlices(values, slice_size, out);
    if (!mask.empty()) {
      std::string& data = *out->mutable_data();
      size_t j = 0;
      for (size_t i = 0; i < values.size(); ++i) {
        if ((mask[i >> 3] >> (i & 7)) & 1) data[j++] = data[i];
      }
      data.resize(j);
      out->set_stored_mask(mask);
    }
  }
  result.mutable_header()->set_tensors_sha256(ComputeTensorsSha256(result));
  return result;
}

}  // namespace fedge::models
