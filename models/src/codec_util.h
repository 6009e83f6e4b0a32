// Private helpers shared by the update codecs (not API).
#ifndef FEDGE_MODELS_SRC_CODEC_UTIL_H_
#define FEDGE_MODELS_SRC_CODEC_UTIL_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::models::codec_internal {

// The registration line of each built-in codec beyond fp32 (at the end of its
// file). update_codec.cc refers to them so that a static link, which drops
// object files nothing refers to, keeps every built-in registered.
extern const bool kFp16Registered;
extern const bool kInt8Registered;
extern const bool kQsgdRegistered;
extern const bool kTopKRegistered;
extern const bool* const kBuiltInUpdateCodecs[4];

// The codec name and dimension recorded in `update` must be `codec` and `dim`.
inline absl::Status CheckHeader(std::string_view codec, const v1::EncodedUpdate& update,
                                size_t dim) {
  if (update.codec() != codec) {
    return absl::InvalidArgumentError(absl::StrCat("update is encoded with codec '", update.codec(),
                                                   "', not '", std::string(codec), "'"));
  }
  if (update.dimension() != dim) {
    return absl::InvalidArgumentError(absl::StrCat("update has dimension ", update.dimension(),
                                                   ", the model has ", dim, " parameters"));
  }
  return absl::OkStatus();
}

// INVALID_ARGUMENT naming the first non-finite entry of `delta`.
inline absl::Status CheckFinite(std::string_view codec, std::span<const float> delta) {
  for (size_t i = 0; i < delta.size(); ++i) {
    if (!std::isfinite(delta[i])) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(codec), " cannot encode entry ", i,
                                                     " of the delta: it is not finite"));
    }
  }
  return absl::OkStatus();
}

template <typename T>
void AppendLittleEndian(std::string& out, T value) {
  static_assert(std::is_trivially_copyable_v<T>);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // fedge targets little-endian hosts only
  out.append(bytes, sizeof(T));
}

// REQUIRES: offset + sizeof(T) <= bytes.size().
template <typename T>
T ReadLittleEndian(std::string_view bytes, size_t offset) {
  static_assert(std::is_trivially_copyable_v<T>);
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

}  // namespace fedge::models::codec_internal

#endif  // FEDGE_MODELS_SRC_CODEC_UTIL_H_
