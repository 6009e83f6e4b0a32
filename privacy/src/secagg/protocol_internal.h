// Helpers the secure-aggregation client (protocol.cc) and server
// (server.cc) share: phase names and order, little-endian framing, the
// share channel's key derivation and associated data. Internal: not
// installed, not part of protocol.h's API.
#ifndef FEDGE_PRIVACY_SECAGG_PROTOCOL_INTERNAL_H_
#define FEDGE_PRIVACY_SECAGG_PROTOCOL_INTERNAL_H_

#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "fedge/privacy/secagg/crypto.h"
#include "fedge/privacy/secagg/shamir.h"
#include "fedge/v1/secagg.pb.h"

namespace fedge::privacy::secagg::internal {

constexpr int kPhases = 4;
// Plaintext of one encrypted share: sender, recipient, share of s^SK, of b.
constexpr size_t kSharePlaintextSize = 4 + 4 + 2 * kShamirShareSize;
constexpr size_t kShareCiphertextSize = kSharePlaintextSize + kGcmTagSize;

inline std::string PhaseName(v1::SecAggPhase phase) {
  switch (phase) {
    case v1::SECAGG_PHASE_ADVERTISE_KEYS:
      return "advertise-keys";
    case v1::SECAGG_PHASE_SHARE_KEYS:
      return "share-keys";
    case v1::SECAGG_PHASE_MASKED_INPUT:
      return "masked-input";
    case v1::SECAGG_PHASE_UNMASKING:
      return "unmasking";
    default:
      return "none";
  }
}

inline int PhaseNumber(v1::SecAggPhase phase) { return static_cast<int>(phase); }

inline v1::SecAggPhase NextPhase(v1::SecAggPhase phase) {
  return phase == v1::SECAGG_PHASE_UNMASKING ? v1::SECAGG_PHASE_UNSPECIFIED
                                             : static_cast<v1::SecAggPhase>(phase + 1);
}

inline void PutLe32(uint32_t v, std::vector<uint8_t>& out) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void PutLe64(uint64_t v, std::vector<uint8_t>& out) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline uint32_t GetLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

inline std::vector<uint8_t> Tagged(std::string_view tag, uint64_t round, uint32_t a, uint32_t b) {
  std::vector<uint8_t> out(tag.begin(), tag.end());
  PutLe64(round, out);
  PutLe32(a, out);
  PutLe32(b, out);
  return out;
}

// The AES-GCM key of the channel between a and b (symmetric in a, b).
inline absl::StatusOr<std::vector<uint8_t>> ChannelKey(const SharedSecret& secret, uint64_t round,
                                                uint32_t a, uint32_t b) {
  const std::vector<uint8_t> info =
      Tagged("fedge/secagg/v1/share-channel", round, std::min(a, b), std::max(a, b));
  return HkdfSha256(secret, {}, info, kAesKeySize);
}

inline std::vector<uint8_t> ShareAssociatedData(uint64_t round, uint32_t sender, uint32_t recipient) {
  return Tagged("fedge/secagg/v1/share", round, sender, recipient);
}

inline absl::StatusOr<X25519PublicKey> ToKey(const std::string& bytes, const std::string& what) {
  if (bytes.size() != kX25519KeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", bytes.size(), " bytes, expected ", kX25519KeySize));
  }
  X25519PublicKey key;
  std::memcpy(key.data(), bytes.data(), key.size());
  return key;
}

inline std::string ToString(std::span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

inline std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline absl::Status Annotate(const absl::Status& s, const std::string& context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(context, ": ", std::string(s.message())));
}

}  // namespace fedge::privacy::secagg::internal

#endif  // FEDGE_PRIVACY_SECAGG_PROTOCOL_INTERNAL_H_
