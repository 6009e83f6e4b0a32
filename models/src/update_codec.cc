#include "fedge/models/update_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "codec_util.h"
#include "fedge/proto/registry.h"

namespace fedge::models {
namespace {

Registry<ConfigurableUpdateCodecFactory>& Codecs() {
  static auto* const registry = new Registry<ConfigurableUpdateCodecFactory>("update codec");
  return *registry;
}

using codec_internal::CheckHeader;

// fp32: the delta's bytes as they are (fedge targets little-endian hosts).
class Fp32Codec final : public UpdateCodec {
 public:
  std::string_view name() const override { return "fp32"; }

  absl::Status Encode(std::span<const float> delta, v1::EncodedUpdate* update) const override {
    update->set_codec("fp32");
    update->set_dimension(delta.size());
    update->set_payload(reinterpret_cast<const char*>(delta.data()), delta.size_bytes());
    return absl::OkStatus();
  }

  absl::Status Decode(const v1::EncodedUpdate& update, std::span<float> out) const override {
    if (absl::Status s = CheckHeader("fp32", update, out.size()); !s.ok()) return s;
    if (update.payload().size() != out.size_bytes()) {
      return absl::InvalidArgumentError(absl::StrCat("fp32 payload holds ", update.payload().size(),
                                                     " bytes, expected ", out.size_bytes()));
    }
    std::memcpy(out.data(), update.payload().data(), out.size_bytes());
    return absl::OkStatus();
  }
};

[[maybe_unused]] const bool kFp32Registered =
    RegisterUpdateCodec("fp32", [] { return std::make_unique<Fp32Codec>(); });

}  // namespace

// External linkage, so it is kept, and with it the codecs' object files.
const bool* const codec_internal::kBuiltInUpdateCodecs[4] = {
    &codec_internal::kFp16Registered, &codec_internal::kInt8Registered,
    &codec_internal::kQsgdRegistered, &codec_internal::kTopKRegistered};

bool RegisterUpdateCodec(std::string_view name, UpdateCodecFactory factory) {
  if (!factory) return Codecs().Add(name, nullptr);  // aborts, naming the codec
  return Codecs().Add(name,
                      [factory = std::move(factory)](const UpdateCodecOptions&)
                          -> absl::StatusOr<std::unique_ptr<UpdateCodec>> { return factory(); });
}

bool RegisterUpdateCodec(std::string_view name, ConfigurableUpdateCodecFactory factory) {
  return Codecs().Add(name, std::move(factory));
}

std::vector<std::string> RegisteredUpdateCodecs() { return Codecs().Names(); }

absl::StatusOr<std::unique_ptr<UpdateCodec>> CreateUpdateCodec(std::string_view name) {
  return CreateUpdateCodec(name, UpdateCodecOptions());
}

absl::StatusOr<std::unique_ptr<UpdateCodec>> CreateUpdateCodec(std::string_view name,
                                                               const UpdateCodecOptions& options) {
  absl::StatusOr<ConfigurableUpdateCodecFactory> factory = Codecs().Find(name);
  if (!factory.ok()) return factory.status();
  return (*factory)(options);
}

}  // namespace fedge::models
