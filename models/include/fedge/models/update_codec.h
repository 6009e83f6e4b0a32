// Update codecs: how a client's update (a flat float delta) is encoded into
// fedge.v1.EncodedUpdate.payload, and decoded again by the aggregator.
// Clients encode, the aggregator decodes; both sides find the codec by name.
// LibTorch-free.
//
// Built-ins (payloads are little-endian; fedge targets little-endian hosts):
//   "fp32"  lossless, 4 bytes per parameter.
//   "fp16"  IEEE binary16, round to nearest even; 2 bytes per parameter.
//           Relative error <= 2^-11 for normal values; refuses values that
//           do not fit binary16 (|x| >= 65520, NaN).
//   "int8"  symmetric per-tensor int8: scale = max|x| / 127, then
//           round(x / scale); error <= scale / 2. Payload: f32 scale, d int8.
//   "qsgd"  stochastic k-bit quantization (Alistarh et al. 2017, QSGD):
//           s = 2^bits - 1 levels over |x_i| / ||x||_2, randomly rounded so
//           that E[decode(encode(x))] = x. Payload: u8 bits, f32 norm, then
//           d packed (1 sign + bits level) bit fields, LSB first.
//           E||Q(x) - x||^2 <= min(d / s^2, sqrt(d) / s) ||x||^2.
//   "topk"  the k = ceil(density * d) largest-magnitude entries (ties: lower
//           index first). Payload: u32 k, k ascending u32 indices, k f32
//           values. Pair it with ErrorFeedback (error_feedback.h).
// Everything the aggregator needs to decode (bits, k, scale, norm) travels in
// the payload, so decoding needs no client-side state or options.
//
// Lossy codecs refuse non-finite deltas. Decode refuses a malformed update
// (codec name, dimension, payload size, out-of-range index, non-finite scale
// or norm, ...) with INVALID_ARGUMENT naming the problem and leaves `out`
// untouched.
//
// Thread safety: codecs are immutable after creation and may be shared
// between threads.
#ifndef FEDGE_MODELS_UPDATE_CODEC_H_
#define FEDGE_MODELS_UPDATE_CODEC_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::models {

class UpdateCodec {
 public:
  virtual ~UpdateCodec() = default;
  virtual std::string_view name() const = 0;

  // Sets update->codec, ->dimension and ->payload from `delta`.
  virtual absl::Status Encode(std::span<const float> delta, v1::EncodedUpdate* update) const = 0;

  // Decodes update.payload into `out`. INVALID_ARGUMENT when the codec name,
  // the dimension (must equal out.size()) or the payload is wrong.
  virtual absl::Status Decode(const v1::EncodedUpdate& update, std::span<float> out) const = 0;
};

// Parameters of the parametrized codecs; the others ignore them. A codec's
// factory validates the fields it uses and names the offending one.
struct UpdateCodecOptions {
  // "qsgd": bits per level, s = 2^bits - 1 levels. Default: 8.
  // REQUIRES: 1 <= bits <= 16.
  int bits = 8;
  // "topk": fraction of entries kept, k = ceil(density * d). Default: 0.01.
  // REQUIRES: 0 < density <= 1.
  double density = 0.01;
  // "qsgd": seed of the random rounding. Encode draws from a stream keyed by
  // (seed, update->round(), update->client_id()) as set before Encode, so a
  // run is reproducible and rounds and clients get independent streams.
  // Default: 0.
  uint64_t seed = 0;
};

using UpdateCodecFactory = std::function<std::unique_ptr<UpdateCodec>()>;
using ConfigurableUpdateCodecFactory =
    std::function<absl::StatusOr<std::unique_ptr<UpdateCodec>>(const UpdateCodecOptions&)>;

// NOT_FOUND lists the known codecs; INVALID_ARGUMENT names a bad option.
// The one-argument form uses default options.
absl::StatusOr<std::unique_ptr<UpdateCodec>> CreateUpdateCodec(std::string_view name);
absl::StatusOr<std::unique_ptr<UpdateCodec>> CreateUpdateCodec(std::string_view name,
                                                               const UpdateCodecOptions& options);
// A codec without options, or one that validates and uses them.
bool RegisterUpdateCodec(std::string_view name, UpdateCodecFactory factory);
bool RegisterUpdateCodec(std::string_view name, ConfigurableUpdateCodecFactory factory);
std::vector<std::string> RegisteredUpdateCodecs();

}  // namespace fedge::models

#endif  // FEDGE_MODELS_UPDATE_CODEC_H_
