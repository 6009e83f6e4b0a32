// Mask arithmetic of secure aggregation over Z_{2^32} (see crypto.h for the
// protocol overview, fixed_point.h for how floats get into Z_{2^32}).
//
// Client u with fixed-point update x_u, self-mask seed b_u and pairwise seeds
// s_{u,v} (from X25519 + HKDF, the same for u and v) sends
//
//     y_u = x_u + PRG(b_u) + sum_{v: u < v} PRG(s_{u,v}) - sum_{v: u > v} PRG(s_{u,v})
//
// (mod 2^32, coordinate-wise). Summed over all clients the pairwise terms
// cancel. For a client d that dropped before sending y_d, each survivor's
// term for the pair (u, d) is left over: the server rebuilds s_d^SK from
// Shamir shares, recomputes s_{u,d} and removes it (RemovePairwiseMask). For
// each survivor the server rebuilds b_u and removes PRG(b_u) (RemoveSelfMask).
// What is left is sum_u x_u, exactly. In SecAgg+ the sums over v run over
// u's neighbours in the communication graph instead of all clients; the
// arithmetic here is the same.
//
// Client indices are the protocol's client ids (any distinct uint32 values);
// they are unrelated to Shamir x coordinates.
//
// All functions are thread-safe (no shared state); each call expands its
// seeds from the start of their streams.
#ifndef FEDGE_PRIVACY_SECAGG_MASKING_H_
#define FEDGE_PRIVACY_SECAGG_MASKING_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/privacy/secagg/crypto.h"

namespace fedge::privacy::secagg {

// The pairwise mask seed s_{a,b} = HKDF-SHA256(ikm = X25519 shared secret,
// info = "fedge/secagg/v1/pairwise-mask" || round_id || min(a,b) || max(a,b),
// little-endian). Symmetric in (a, b), so both ends of a pair derive the same
// seed, and bound to the round, so no seed (hence no PRG stream) is reused
// across rounds even when keys are. INVALID_ARGUMENT when a == b.
absl::StatusOr<Seed> DerivePairwiseMaskSeed(const SharedSecret& shared_secret,
                                            std::uint64_t round_id, std::uint32_t index_a,
                                            std::uint32_t index_b);

// values += PRG(seed) when own_index < peer_index, values -= PRG(seed) when
// own_index > peer_index (mod 2^32). INVALID_ARGUMENT when the two are equal.
absl::Status AddPairwiseMask(std::uint32_t own_index, std::uint32_t peer_index, const Seed& seed,
                             std::span<std::uint32_t> values);

// values += PRG(self_seed) (mod 2^32).
absl::Status AddSelfMask(const Seed& self_seed, std::span<std::uint32_t> values);

// sum -= PRG(self_seed): undoes a survivor's self mask in the server's sum.
absl::Status RemoveSelfMask(const Seed& self_seed, std::span<std::uint32_t> sum);

// Undoes, in the server's sum, the pairwise mask that `survivor_index` added
// for its pair with `dropped_index` (who never sent input), given their seed.
// INVALID_ARGUMENT when the two indices are equal.
absl::Status RemovePairwiseMask(std::uint32_t survivor_index, std::uint32_t dropped_index,
                                const Seed& seed, std::span<std::uint32_t> sum);

struct PeerSeed {
  std::uint32_t peer_index = 0;
  Seed seed{};
};

// The client's whole masking step: values += PRG(self_seed) and the pairwise
// mask for every peer. INVALID_ARGUMENT (before touching `values`) when a
// peer index equals `own_index` or repeats.
absl::Status MaskUpdate(std::uint32_t own_index, const Seed& self_seed,
                        std::span<const PeerSeed> peers, std::span<std::uint32_t> values);

}  // namespace fedge::privacy::secagg

#endif  // FEDGE_PRIVACY_SECAGG_MASKING_H_
