// ErrorFeedback: makes a lossy update codec (topk above all, also int8, qsgd,
// fp16) lose nothing over time (Stich et al. 2018, "Sparsified SGD with
// memory"; Karimireddy et al. 2019, "Error feedback fixes SignSGD").
//
// A device keeps one ErrorFeedback across rounds. Each round it encodes
// c = delta + residual instead of delta, and keeps residual = c - decode(c),
// the part the codec dropped, for the next round. Hence, after any number of
// rounds, sum(decoded) = sum(delta) - residual exactly (up to f32 rounding):
// the aggregator receives everything but the last round's residual.
//
// Serialize/Restore keep the residual across a device restart.
//
// Memory: the residual, d floats, is the only per-instance state; the two
// d-float work buffers Encode needs are per thread and reused, so a
// simulation holding one ErrorFeedback per virtual client pays 4 bytes per
// parameter per client, not 12.
//
// Thread safety: not thread-safe; one instance per device. The codec is
// shared and must itself be thread-safe (every built-in is).
#ifndef FEDGE_MODELS_ERROR_FEEDBACK_H_
#define FEDGE_MODELS_ERROR_FEEDBACK_H_

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "fedge/models/update_codec.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::models {

class ErrorFeedback {
 public:
  // REQUIRES: codec != nullptr. Starts with a zero residual of `dimension`.
  ErrorFeedback(std::shared_ptr<const UpdateCodec> codec, size_t dimension);

  // Encodes delta + residual into `update` (as codec->Encode does) and
  // updates the residual. INVALID_ARGUMENT if delta.size() != dimension();
  // on any error the residual is unchanged.
  absl::Status Encode(std::span<const float> delta, v1::EncodedUpdate* update);

  // For an update Encode produced that never reached the aggregator (the
  // transport failed, or the aggregator refused it): adds what it carried
  // back into the residual, so that the invariant above counts delivered
  // updates only. INVALID_ARGUMENT (residual unchanged) if `update` does not
  // decode with this codec and dimension.
  absl::Status ReturnUndelivered(const v1::EncodedUpdate& update);

  std::span<const float> residual() const { return residual_; }
  size_t dimension() const { return residual_.size(); }
  const UpdateCodec& codec() const { return *codec_; }

  // Zeroes the residual, e.g. when the model is replaced wholesale.
  void Reset();

  // The residual with the codec name and dimension, for the device's state
  // directory. Little-endian; format version 1.
  std::string Serialize() const;
  // Replaces the residual with one from Serialize. INVALID_ARGUMENT (and no
  // change) if the bytes are malformed, non-finite, or were written for
  // another codec or dimension.
  absl::Status Restore(std::string_view bytes);

 private:
  std::shared_ptr<const UpdateCodec> codec_;
  std::vector<float> residual_;
};

}  // namespace fedge::models

#endif  // FEDGE_MODELS_ERROR_FEEDBACK_H_
