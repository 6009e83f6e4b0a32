#include "fedge/models/error_feedback.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "codec_util.h"

namespace fedge::models {
namespace {

// Serialized form: magic, u32 format version, u32 name length, codec name,
// u64 dimension, dimension f32 values.
constexpr uint32_t kMagic = 0x46454546;  // "FEEF" read as little-endian bytes
constexpr uint32_t kFormatVersion = 1;

}  // namespace

ErrorFeedback::ErrorFeedback(std::shared_ptr<const UpdateCodec> codec, size_t dimension)
    : codec_(std::move(codec)), residual_(dimension, 0.0f) {}

absl::Status ErrorFeedback::Encode(std::span<const float> delta, v1::EncodedUpdate* update) {
  if (delta.size() != residual_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("error feedback holds a residual of ",
                                                   residual_.size(), " values; the delta has ",
                                                   delta.size()));
  }
  // Work buffers shared by every ErrorFeedback on this thread.
  thread_local std::vector<float> corrected;
  thread_local std::vector<float> decoded;
  corrected.resize(delta.size());
  decoded.resize(delta.size());
  for (size_t i = 0; i < delta.size(); ++i) corrected[i] = delta[i] + residual_[i];
  v1::EncodedUpdate encoded = *update;
  if (absl::Status s = codec_->Encode(corrected, &encoded); !s.ok()) return s;
  if (absl::Status s = codec_->Decode(encoded, decoded); !s.ok()) return s;
  for (size_t i = 0; i < delta.size(); ++i) residual_[i] = corrected[i] - decoded[i];
  *update = std::move(encoded);
  return absl::OkStatus();
}

absl::Status ErrorFeedback::ReturnUndelivered(const v1::EncodedUpdate& update) {
  thread_local std::vector<float> decoded;
  decoded.resize(residual_.size());
  if (absl::Status s = codec_->Decode(update, decoded); !s.ok()) return s;
  for (size_t i = 0; i < residual_.size(); ++i) residual_[i] += decoded[i];
  return absl::OkStatus();
}

void ErrorFeedback::Reset() { std::fill(residual_.begin(), residual_.end(), 0.0f); }

std::string ErrorFeedback::Serialize() const {
  std::string out;
  const std::string_view name = codec_->name();
  codec_internal::AppendLittleEndian<uint32_t>(out, kMagic);
  codec_internal::AppendLittleEndian<uint32_t>(out, kFormatVersion);
  codec_internal::AppendLittleEndian<uint32_t>(out, static_cast<uint32_t>(name.size()));
  out.append(name);
  codec_internal::AppendLittleEndian<uint64_t>(out, residual_.size());
  out.append(reinterpret_cast<const char*>(residual_.data()), residual_.size() * sizeof(float));
  return out;
}

absl::Status ErrorFeedback::Restore(std::string_view bytes) {
  using codec_internal::ReadLittleEndian;
  constexpr size_t kFixedBytes = 3 * sizeof(uint32_t);
  if (bytes.size() < kFixedBytes || ReadLittleEndian<uint32_t>(bytes, 0) != kMagic) {
    return absl::InvalidArgumentError("error feedback state is not a serialized residual");
  }
  if (const auto version = ReadLittleEndian<uint32_t>(bytes, 4); version != kFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat("error feedback state has format version ",
                                                   version, ", expected ", kFormatVersion));
  }
  const auto name_size = ReadLittleEndian<uint32_t>(bytes, 8);
  if (bytes.size() < kFixedBytes + name_size + sizeof(uint64_t)) {
    return absl::InvalidArgumentError("error feedback state is truncated");
  }
  const std::string_view name = bytes.substr(kFixedBytes, name_size);
  if (name != codec_->name()) {
    return absl::InvalidArgumentError(absl::StrCat("error feedback state was written for codec '",
                                                   std::string(name), "', not '",
                                                   std::string(codec_->name()), "'"));
  }
  const size_t dimension_offset = kFixedBytes + name_size;
  const auto dimension = ReadLittleEndian<uint64_t>(bytes, dimension_offset);
  if (dimension != residual_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("error feedback state holds ", dimension,
                                                   " values, the model has ", residual_.size()));
  }
  const size_t values_offset = dimension_offset + sizeof(uint64_t);
  if (bytes.size() != values_offset + residual_.size() * sizeof(float)) {
    return absl::InvalidArgumentError(absl::StrCat("error feedback state holds ", bytes.size(),
                                                   " bytes, expected ",
                                                   values_offset + residual_.size() * 4));
  }
  for (size_t i = 0; i < residual_.size(); ++i) {
    if (!std::isfinite(ReadLittleEndian<float>(bytes, values_offset + 4 * i))) {
      return absl::InvalidArgumentError(
          absl::StrCat("error feedback state: residual entry ", i, " is not finite"));
    }
  }
  std::memcpy(residual_.data(), bytes.data() + values_offset, residual_.size() * sizeof(float));
  return absl::OkStatus();
}

}  // namespace fedge::models
