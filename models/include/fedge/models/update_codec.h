// Update codecs: how a client's update (a flat float delta) is encoded into
// fedge.v1.EncodedUpdate.payload, and decoded again by the aggregator.
// Clients encode, the aggregator decodes; both sides find the codec by name.
// LibTorch-free.
//
// Built-ins: "fp32" (lossless, 4 bytes per parameter, little-endian).
//
// Thread safety: codecs are stateless and may be shared between threads.
#ifndef FEDGE_MODELS_UPDATE_CODEC_H_
#define FEDGE_MODELS_UPDATE_CODEC_H_

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
  // the dimension (must equal out.size()) or the payload size is wrong.
  virtual absl::Status Decode(const v1::EncodedUpdate& update, std::span<float> out) const = 0;
};

using UpdateCodecFactory = std::function<std::unique_ptr<UpdateCodec>()>;

// NOT_FOUND lists the known codecs.
absl::StatusOr<std::unique_ptr<UpdateCodec>> CreateUpdateCodec(std::string_view name);
bool RegisterUpdateCodec(std::string_view name, UpdateCodecFactory factory);
std::vector<std::string> RegisteredUpdateCodecs();

}  // namespace fedge::models

#endif  // FEDGE_MODELS_UPDATE_CODEC_H_
