// "int8" update codec: symmetric per-tensor int8.
// Payload: f32 scale (finite, >= 0), then d int8 values in [-127, 127].
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "codec_util.h"
#include "fedge/models/update_codec.h"

namespace fedge::models {
namespace {

constexpr size_t kHeaderBytes = sizeof(float);

class Int8Codec final : public UpdateCodec {
 public:
  std::string_view name() const override { return "int8"; }

  absl::Status Encode(std::span<const float> delta, v1::EncodedUpdate* update) const override {
    if (absl::Status s = codec_internal::CheckFinite("int8", delta); !s.ok()) return s;
    float max_abs = 0.0f;
    for (float v : delta) max_abs = std::max(max_abs, std::fabs(v));
    // An all-zero delta has scale 0 and decodes to zeros.
    const float scale = max_abs / 127.0f;
    std::string payload;
    payload.reserve(kHeaderBytes + delta.size());
    codec_internal::AppendLittleEndian<float>(payload, scale);
    payload.resize(kHeaderBytes + delta.size());
    auto* q = reinterpret_cast<int8_t*>(payload.data() + kHeaderBytes);
    if (scale > 0.0f) {
      // Adding and subtracting 1.5 * 2^23 rounds to nearest even for
      // |v| < 2^22 (here |v| <= 127) and, unlike nearbyint, vectorizes.
      constexpr float kRound = 12582912.0f;
      for (size_t i = 0; i < delta.size(); ++i) {
        const float level = std::clamp((delta[i] / scale + kRound) - kRound, -127.0f, 127.0f);
        q[i] = static_cast<int8_t>(level);
      }
    }
    update->set_codec("int8");
    update->set_dimension(delta.size());
    update->set_payload(std::move(payload));
    return absl::OkStatus();
  }

  absl::Status Decode(const v1::EncodedUpdate& update, std::span<float> out) const override {
    if (absl::Status s = codec_internal::CheckHeader("int8", update, out.size()); !s.ok()) return s;
    const std::string& payload = update.payload();
    if (payload.size() != kHeaderBytes + out.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "int8 payload holds ", payload.size(), " bytes, expected ", kHeaderBytes + out.size()));
    }
    const auto scale = codec_internal::ReadLittleEndian<float>(payload, 0);
    if (!std::isfinite(scale) || scale < 0.0f) {
      return absl::InvalidArgumentError(
          absl::StrCat("int8 scale is ", scale, "; it must be finite and >= 0"));
    }
    const auto* q = reinterpret_cast<const int8_t*>(payload.data() + kHeaderBytes);
    bool has_minus_128 = false;
    for (size_t i = 0; i < out.size(); ++i) has_minus_128 |= (q[i] == -128);
    if (has_minus_128) {
      return absl::InvalidArgumentError("int8 payload holds -128; symmetric int8 uses [-127, 127]");
    }
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(q[i]) * scale;
    return absl::OkStatus();
  }
};

}  // namespace

const bool codec_internal::kInt8Registered =
    RegisterUpdateCodec("int8", [] { return std::make_unique<Int8Codec>(); });

}  // namespace fedge::models
