#include "fedge/privacy/secagg/masking.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fedge/proto/status_macros.h"

namespace fedge::privacy::secagg {
namespace {

void AppendLittleEndian(std::uint64_t value, int bytes, std::vector<std::uint8_t>& out) {
  for (int b = 0; b < bytes; ++b) out.push_back(static_cast<std::uint8_t>(value >> (8 * b)));
}

absl::Status ApplyStream(const Seed& seed, bool add, std::span<std::uint32_t> values) {
  FEDGE_ASSIGN_OR_RETURN(AesCtrPrg prg, AesCtrPrg::Create(seed));
  return add ? prg.AddTo(values) : prg.SubtractFrom(values);
}

}  // namespace

absl::StatusOr<Seed> DerivePairwiseMaskSeed(const SharedSecret& shared_secret,
                                            std::uint64_t round_id, std::uint32_t index_a,
                                            std::uint32_t index_b) {
  if (index_a == index_b) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DerivePairwiseMaskSeed: a client cannot pair with itself (index ", index_a, ")"));
  }
  constexpr std::string_view kLabel = "fedge/secagg/v1/pairwise-mask";
  std::vector<std::uint8_t> info(kLabel.begin(), kLabel.end());
  AppendLittleEndian(round_id, 8, info);
  AppendLittleEndian(std::min(index_a, index_b), 4, info);
  AppendLittleEndian(std::max(index_a, index_b), 4, info);
  FEDGE_ASSIGN_OR_RETURN(std::vector<std::uint8_t> okm,
                         HkdfSha256(shared_secret, /*salt=*/{}, info, kSeedSize));
  Seed seed;
  std::memcpy(seed.data(), okm.data(), seed.size());
  OPENSSL_cleanse(okm.data(), okm.size());
  return seed;
}

absl::Status AddPairwiseMask(std::uint32_t own_index, std::uint32_t peer_index, const Seed& seed,
                             std::span<std::uint32_t> values) {
  if (own_index == peer_index) {
    return absl::InvalidArgumentError(
        absl::StrCat("AddPairwiseMask: own and peer index are both ", own_index));
  }
  return ApplyStream(seed, /*add=*/own_index < peer_index, values);
}

absl::Status AddSelfMask(const Seed& self_seed, std::span<std::uint32_t> values) {
  return ApplyStream(self_seed, /*add=*/true, values);
}

absl::Status RemoveSelfMask(const Seed& self_seed, std::span<std::uint32_t> sum) {
  return ApplyStream(self_seed, /*add=*/false, sum);
}

absl::Status RemovePairwiseMask(std::uint32_t survivor_index, std::uint32_t dropped_index,
                                const Seed& seed, std::span<std::uint32_t> sum) {
  if (survivor_index == dropped_index) {
    return absl::InvalidArgumentError(
        absl::StrCat("RemovePairwiseMask: survivor and dropped index are both ", survivor_index));
  }
  // The survivor added +PRG iff survivor < dropped; the dropped client's
  // (missing) term is exactly its negation.
  return ApplyStream(seed, /*add=*/dropped_index < survivor_index, sum);
}

absl::Status MaskUpdate(std::uint32_t own_index, const Seed& self_seed,
                        std::span<const PeerSeed> peers, std::span<std::uint32_t> values) {
  std::vector<std::uint32_t> indices;
  indices.reserve(peers.size());
  for (const PeerSeed& peer : peers) {
    if (peer.peer_index == own_index) {
      return absl::InvalidArgumentError(
          absl::StrCat("MaskUpdate: peer list contains the client's own index ", own_index));
    }
    indices.push_back(peer.peer_index);
  }
  std::sort(indices.begin(), indices.end());
  if (const auto repeated = std::adjacent_find(indices.begin(), indices.end());
      repeated != indices.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("MaskUpdate: peer index ", *repeated, " appears twice"));
  }
  FEDGE_RETURN_IF_ERROR(AddSelfMask(self_seed, values));
  for (const PeerSeed& peer : peers) {
    FEDGE_RETURN_IF_ERROR(AddPairwiseMask(own_index, peer.peer_index, peer.seed, values));
  }
  return absl::OkStatus();
}

}  // namespace fedge::privacy::secagg
