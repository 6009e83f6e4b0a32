// "fp16" update codec: IEEE binary16, 2 bytes per parameter, no header.
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "codec_util.h"
#include "fedge/models/quantization.h"
#include "fedge/models/update_codec.h"

namespace fedge::models {
namespace {

class Fp16Codec final : public UpdateCodec {
 public:
  std::string_view name() const override { return "fp16"; }

  absl::Status Encode(std::span<const float> delta, v1::EncodedUpdate* update) const override {
    std::string payload(delta.size() * sizeof(uint16_t), '\0');
    auto* halves = reinterpret_cast<uint16_t*>(payload.data());
    uint16_t all_exponents = 0;  // 0x7C00 in some entry: it became inf or NaN
    for (size_t i = 0; i < delta.size(); ++i) {
      halves[i] = FloatToHalf(delta[i]);
      all_exponents |= static_cast<uint16_t>(((halves[i] & 0x7C00u) == 0x7C00u) ? 1u : 0u);
    }
    if (all_exponents != 0) {
      for (size_t i = 0; i < delta.size(); ++i) {
        if ((halves[i] & 0x7C00u) == 0x7C00u) {
          return absl::InvalidArgumentError(
              absl::StrCat("fp16 cannot encode entry ", i, " of the delta (", delta[i],
                           "): binary16 holds finite values of magnitude < 65520 only"));
        }
      }
    }
    update->set_codec("fp16");
    update->set_dimension(delta.size());
    update->set_payload(std::move(payload));
    return absl::OkStatus();
  }

  absl::Status Decode(const v1::EncodedUpdate& update, std::span<float> out) const override {
    if (absl::Status s = codec_internal::CheckHeader("fp16", update, out.size()); !s.ok()) return s;
    const std::string& payload = update.payload();
    if (payload.size() != out.size() * sizeof(uint16_t)) {
      return absl::InvalidArgumentError(
          absl::StrCat("fp16 payload holds ", payload.size(), " bytes, expected ", out.size() * 2));
    }
    const auto* halves = reinterpret_cast<const uint16_t*>(payload.data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = HalfToFloat(halves[i]);
    return absl::OkStatus();
  }
};

}  // namespace

const bool codec_internal::kFp16Registered =
    RegisterUpdateCodec("fp16", [] { return std::make_unique<Fp16Codec>(); });

}  // namespace fedge::models
