// "topk" update codec: the k = ceil(density * d) largest-magnitude entries.
//
// Payload: u32 k (<= d), k strictly ascending u32 indices (< d), k finite
// f32 values; every other entry decodes to 0. Ties in magnitude go to the
// lower index, so an encoding is deterministic. Sparsification is biased:
// keep the dropped mass on the device with ErrorFeedback (error_feedback.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec_util.h"
#include "fedge/models/update_codec.h"

namespace fedge::models {
namespace {

constexpr size_t kHeaderBytes = sizeof(uint32_t);
constexpr size_t kEntryBytes = sizeof(uint32_t) + sizeof(float);

// REQUIRES: 1 <= k <= values.size(). For small k (the usual densities), a
// min-heap of the k largest seen so far: one predictable compare per value,
// a heap update only for the few that beat the current k-th. Otherwise a
// selection over a copy.
float KthLargestMagnitude(std::span<const float> values, size_t k) {
  if (k <= values.size() / 16) {
    std::vector<float> heap(k);
    for (size_t i = 0; i < k; ++i) heap[i] = std::fabs(values[i]);
    std::make_heap(heap.begin(), heap.end(), std::greater<float>());
    for (size_t i = k; i < values.size(); ++i) {
      const float magnitude = std::fabs(values[i]);
      if (magnitude > heap.front()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<float>());
        heap.back() = magnitude;
        std::push_heap(heap.begin(), heap.end(), std::greater<float>());
      }
    }
    return heap.front();
  }
  std::vector<float> magnitudes(values.size());
  for (size_t i = 0; i < values.size(); ++i) magnitudes[i] = std::fabs(values[i]);
  std::nth_element(magnitudes.begin(), magnitudes.begin() + static_cast<std::ptrdiff_t>(k - 1),
                   magnitudes.end(), std::greater<float>());
  return magnitudes[k - 1];
}

class TopKCodec final : public UpdateCodec {
 public:
  explicit TopKCodec(double density) : density_(density) {}

  std::string_view name() const override { return "topk"; }

  absl::Status Encode(std::span<const float> delta, v1::EncodedUpdate* update) const override {
    if (delta.size() > std::numeric_limits<uint32_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat("topk indexes entries with u32; the delta has ", delta.size(), " entries"));
    }
    if (absl::Status s = codec_internal::CheckFinite("topk", delta); !s.ok()) return s;
    const auto d = static_cast<uint32_t>(delta.size());
    const auto k = static_cast<uint32_t>(
        std::min<double>(std::ceil(density_ * static_cast<double>(d)), static_cast<double>(d)));
    // The k-th largest magnitude is the threshold: keep every entry above
    // it, then entries equal to it in index order until there are k. The
    // scan yields ascending indices, so nothing needs sorting.
    std::vector<uint32_t> indices;
    indices.reserve(k);
    if (k > 0) {
      const float threshold = KthLargestMagnitude(delta, k);
      uint32_t above = 0;
      for (uint32_t i = 0; i < d; ++i) above += std::fabs(delta[i]) > threshold ? 1 : 0;
      uint32_t ties_left = k - above;
      for (uint32_t i = 0; i < d; ++i) {
        const float magnitude = std::fabs(delta[i]);
        if (magnitude > threshold) {
          indices.push_back(i);
        } else if (magnitude == threshold && ties_left > 0) {
          indices.push_back(i);
          --ties_left;
        }
      }
    }
    std::string payload(kHeaderBytes + kEntryBytes * k, '\0');
    std::memcpy(payload.data(), &k, sizeof(k));
    char* index_bytes = payload.data() + kHeaderBytes;
    char* value_bytes = index_bytes + sizeof(uint32_t) * k;
    for (uint32_t j = 0; j < k; ++j) {
      std::memcpy(index_bytes + sizeof(uint32_t) * j, &indices[j], sizeof(uint32_t));
      std::memcpy(value_bytes + sizeof(float) * j, &delta[indices[j]], sizeof(float));
    }
    update->set_codec("topk");
    update->set_dimension(delta.size());
    update->set_payload(std::move(payload));
    return absl::OkStatus();
  }

  absl::Status Decode(const v1::EncodedUpdate& update, std::span<float> out) const override {
    if (absl::Status s = codec_internal::CheckHeader("topk", update, out.size()); !s.ok()) return s;
    const std::string& payload = update.payload();
    if (payload.size() < kHeaderBytes) {
      return absl::InvalidArgumentError(absl::StrCat("topk payload holds ", payload.size(),
                                                     " bytes, shorter than its ", kHeaderBytes,
                                                     "-byte header"));
    }
    const auto k = codec_internal::ReadLittleEndian<uint32_t>(payload, 0);
    if (k > out.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("topk payload keeps k = ", k, " entries of only ", out.size()));
    }
    const size_t expected = kHeaderBytes + kEntryBytes * k;
    if (payload.size() != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "topk payload holds ", payload.size(), " bytes, expected ", expected, " for k = ", k));
    }
    const std::string_view entries = std::string_view(payload).substr(kHeaderBytes);
    const size_t values_offset = sizeof(uint32_t) * k;
    for (uint32_t j = 0; j < k; ++j) {
      const auto index = codec_internal::ReadLittleEndian<uint32_t>(entries, 4 * j);
      if (index >= out.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "topk index ", index, " (entry ", j, ") is out of range for dimension ", out.size()));
      }
      if (j > 0 && index <= codec_internal::ReadLittleEndian<uint32_t>(entries, 4 * (j - 1))) {
        return absl::InvalidArgumentError(
            absl::StrCat("topk indices must be strictly ascending; entry ", j, " is ", index));
      }
      const auto value = codec_internal::ReadLittleEndian<float>(entries, values_offset + 4 * j);
      if (!std::isfinite(value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("topk value of entry ", j, " (index ", index, ") is not finite"));
      }
    }
    std::fill(out.begin(), out.end(), 0.0f);
    for (uint32_t j = 0; j < k; ++j) {
      const auto index = codec_internal::ReadLittleEndian<uint32_t>(entries, 4 * j);
      out[index] = codec_internal::ReadLittleEndian<float>(entries, values_offset + 4 * j);
    }
    return absl::OkStatus();
  }

 private:
  const double density_;
};

absl::StatusOr<std::unique_ptr<UpdateCodec>> CreateTopKCodec(const UpdateCodecOptions& options) {
  if (!(options.density > 0.0 && options.density <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("topk: UpdateCodecOptions.density is ",
                                                   options.density, "; must be in (0, 1]"));
  }
  return std::make_unique<TopKCodec>(options.density);
}

}  // namespace

const bool codec_internal::kTopKRegistered =
    RegisterUpdateCodec("topk", ConfigurableUpdateCodecFactory(CreateTopKCodec));

}  // namespace fedge::models
