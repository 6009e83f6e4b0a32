// "qsgd" update codec: stochastic k-bit quantization (Alistarh et al. 2017).
//
// With s = 2^bits - 1 levels and r_i = |x_i| / ||x||_2 * s in [0, s], entry i
// is sent as sign(x_i) and level l_i = floor(r_i) + Bernoulli(r_i - floor(r_i)),
// and decodes to sign(x_i) * ||x||_2 * l_i / s. E[l_i] = r_i, so the decode is
// an unbiased estimate of x, with E||Q(x) - x||^2 <= min(d / s^2, sqrt(d) / s)
// * ||x||^2 (Lemma 3.1 of the paper).
//
// Payload: u8 bits, f32 norm (finite, >= 0), then d fields of (1 + bits)
// bits each, packed LSB first: bit 0 the sign (1 = negative), bits 1..bits
// the level. Every level a field can hold is in [0, s], so only the header
// and the size need checking.
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

constexpr int kMinBits = 1;
constexpr int kMaxBits = 16;
constexpr size_t kHeaderBytes = 1 + sizeof(float);

// SplitMix64 (Steele et al. 2014): a fast, well-mixed 64-bit stream.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double NextUnit() { return static_cast<double>(Next() >> 11) * 0x1p-53; }

 private:
  uint64_t state_;
};

// Seed of the rounding stream for one Encode: FNV-1a over the client id,
// mixed with the codec seed and the round.
uint64_t StreamSeed(uint64_t seed, const v1::EncodedUpdate& update) {
  uint64_t hash = 0xCBF29CE484222325ull;
  for (char c : update.client_id()) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001B3ull;
  }
  SplitMix64 mix(seed ^ SplitMix64(update.round()).Next() ^ (hash * 0x9E3779B97F4A7C15ull));
  return mix.Next();
}

size_t PackedBytes(size_t dimension, int bits) {
  return (dimension * static_cast<size_t>(bits + 1) + 7) / 8;
}

class QsgdCodec final : public UpdateCodec {
 public:
  QsgdCodec(int bits, uint64_t seed) : bits_(bits), seed_(seed) {}

  std::string_view name() const override { return "qsgd"; }

  absl::Status Encode(std::span<const float> delta, v1::EncodedUpdate* update) const override {
    if (absl::Status s = codec_internal::CheckFinite("qsgd", delta); !s.ok()) return s;
    double sum_squares = 0.0;
    for (float v : delta) sum_squares += static_cast<double>(v) * v;
    // Rounded to f32 once, and that value is used on both sides, so the
    // estimate is unbiased for the norm that is actually sent.
    const auto norm = static_cast<float>(std::sqrt(sum_squares));
    if (!std::isfinite(norm)) {
      return absl::InvalidArgumentError("qsgd cannot encode the delta: its L2 norm overflows f32");
    }
    const uint32_t levels = (1u << bits_) - 1;
    const double to_level = norm > 0.0f ? static_cast<double>(levels) / norm : 0.0;
    const int field_bits = bits_ + 1;

    std::string payload;
    payload.reserve(kHeaderBytes + PackedBytes(delta.size(), bits_));
    codec_internal::AppendLittleEndian<uint8_t>(payload, static_cast<uint8_t>(bits_));
    codec_internal::AppendLittleEndian<float>(payload, norm);
    SplitMix64 rng(StreamSeed(seed_, *update));
    uint64_t buffer = 0;
    int buffered = 0;
    for (float v : delta) {
      const double r =
          std::min(std::fabs(static_cast<double>(v)) * to_level, static_cast<double>(levels));
      auto level = static_cast<uint32_t>(r);
      if (rng.NextUnit() < r - level) ++level;
      level = std::min(level, levels);
      const uint64_t field = (static_cast<uint64_t>(level) << 1) | (std::signbit(v) ? 1u : 0u);
      buffer |= field << buffered;
      buffered += field_bits;
      while (buffered >= 8) {
        payload.push_back(static_cast<char>(buffer & 0xFF));
        buffer >>= 8;
        buffered -= 8;
      }
    }
    if (buffered > 0) payload.push_back(static_cast<char>(buffer & 0xFF));
    update->set_codec("qsgd");
    update->set_dimension(delta.size());
    update->set_payload(std::move(payload));
    return absl::OkStatus();
  }

  absl::Status Decode(const v1::EncodedUpdate& update, std::span<float> out) const override {
    if (absl::Status s = codec_internal::CheckHeader("qsgd", update, out.size()); !s.ok()) return s;
    const std::string& payload = update.payload();
    if (payload.size() < kHeaderBytes) {
      return absl::InvalidArgumentError(absl::StrCat("qsgd payload holds ", payload.size(),
                                                     " bytes, shorter than its ", kHeaderBytes,
                                                     "-byte header"));
    }
    const int bits = codec_internal::ReadLittleEndian<uint8_t>(payload, 0);
    if (bits < kMinBits || bits > kMaxBits) {
      return absl::InvalidArgumentError(absl::StrCat(
          "qsgd payload has bits ", bits, "; must be in [", kMinBits, ", ", kMaxBits, "]"));
    }
    const auto norm = codec_internal::ReadLittleEndian<float>(payload, 1);
    if (!std::isfinite(norm) || norm < 0.0f) {
      return absl::InvalidArgumentError(
          absl::StrCat("qsgd norm is ", norm, "; it must be finite and >= 0"));
    }
    const size_t expected = kHeaderBytes + PackedBytes(out.size(), bits);
    if (payload.size() != expected) {
      return absl::InvalidArgumentError(absl::StrCat("qsgd payload holds ", payload.size(),
                                                     " bytes, expected ", expected, " for ",
                                                     out.size(), " values at ", bits, " bits"));
    }
    const uint32_t levels = (1u << bits) - 1;
    const float step = norm / static_cast<float>(levels);
    const int field_bits = bits + 1;
    const uint64_t field_mask = (uint64_t{1} << field_bits) - 1;
    const auto* bytes = reinterpret_cast<const uint8_t*>(payload.data() + kHeaderBytes);
    uint64_t buffer = 0;
    int buffered = 0;
    for (float& value : out) {
      while (buffered < field_bits) {
        buffer |= static_cast<uint64_t>(*bytes++) << buffered;
        buffered += 8;
      }
      const uint64_t field = buffer & field_mask;
      buffer >>= field_bits;
      buffered -= field_bits;
      const float magnitude = static_cast<float>(field >> 1) * step;
      value = (field & 1u) != 0 ? -magnitude : magnitude;
    }
    return absl::OkStatus();
  }

 private:
  const int bits_;
  const uint64_t seed_;
};

absl::StatusOr<std::unique_ptr<UpdateCodec>> CreateQsgdCodec(const UpdateCodecOptions& options) {
  if (options.bits < kMinBits || options.bits > kMaxBits) {
    return absl::InvalidArgumentError(absl::StrCat("qsgd: UpdateCodecOptions.bits is ",
                                                   options.bits, "; must be in [", kMinBits, ", ",
                                                   kMaxBits, "]"));
  }
  return std::make_unique<QsgdCodec>(options.bits, options.seed);
}

}  // namespace

const bool codec_internal::kQsgdRegistered =
    RegisterUpdateCodec("qsgd", ConfigurableUpdateCodecFactory(CreateQsgdCodec));

}  // namespace fedge::models
