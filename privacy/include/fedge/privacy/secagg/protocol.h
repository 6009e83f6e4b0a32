// The secure-aggregation protocol: client and server state machines of the
// four phases of Bonawitz et al. (CCS 2017), over the complete graph
// (SecAgg) or a sparse random k-regular graph (SecAgg+, Bell et al., CCS
// 2020). Transport-independent: the machines consume and produce the
// fedge.v1 messages of fedge/v1/secagg.proto and do no I/O and no threading;
// whoever drives them (the aggregator's round, a device's task, a test)
// moves the messages.
//
// Notation: the cohort has n clients with protocol indices 1..n (the order
// of SecAggConfig.cohort); N(u) is u's neighbourhood, all other clients
// under SecAgg and k of them under SecAgg+; t is the threshold. U1 ⊇ U2 ⊇ U3
// ⊇ U5 are the clients still alive after each phase.
//
//  phase               client u sends                server, when the phase closes
//  1 ADVERTISE_KEYS    c_u^PK, s_u^PK (X25519)       U1; tells each u the keys of
//                                                    N(u) ∩ U1
//  2 SHARE_KEYS        for each v in N(u) ∩ U1:      U2; routes to each v the
//                      AES-GCM(c_{u,v}; Shamir       shares addressed to it
//                      shares of s_u^SK and b_u)
//  3 MASKED_INPUT      y_u = x_u + PRG(b_u)          U3; folds each y_u into the
//                        ± PRG(s_{u,v}), v in        running sum as it arrives,
//                        N(u) ∩ U2 (the senders of   tells each u which of its
//                        u's shares)                 neighbours are in U3
//  4 UNMASKING         per neighbour v: the share    U5; rebuilds b_u for u in
//                      of b_v if v in U3, else of    U3 and s_d^SK for d in
//                      s_v^SK; never both            U2 \ U3, strips the masks:
//                                                    Σ_{u in U3} x_u (mod 2^32)
//
// Shares: u splits each secret into k shares (share i goes to the i-th
// member of N(u) in ascending index order), any t of which rebuild it.
//
// Dropouts. A client that does not send a phase's message before the phase
// closes is dropped from then on; so is one whose message is refused (wrong
// round or phase, wrong sizes, indices that are not its own, a share the
// server did not ask for) and one left with fewer than t live neighbours
// after phases 1 and 2 (its secrets could not be recovered). The round
// ABORTS, and yields no sum, when fewer than t clients sent masked inputs or
// when some survivor's b_u, or some dropped client's s_d^SK that a survivor
// masked with, has fewer than t shares among the unmasking answers. The
// server never accepts a share of b_u for a client it declared dropped, nor
// a share of s_u^SK for a survivor, so it never holds both secrets of one
// client; the client enforces the same rule on its side, from the survivor
// list, and reveals exactly one share per neighbour.
//
// Shares that fail authentication at their recipient (AES-GCM) are
// discarded there; the recipient still masks with the sender (whose mask
// key it has) and names it in its masked input; the server then counts the
// sender as dropped if its own masked input has not arrived yet.
//
// Threat model: honest-but-curious server and clients (the paper's
// semi-honest setting); the consistency-check round and signatures of the
// paper's active-adversary variant are not implemented.
//
// Thread safety: neither class is thread-safe; drive each from one thread
// or lock around it.
#ifndef FEDGE_PRIVACY_SECAGG_PROTOCOL_H_
#define FEDGE_PRIVACY_SECAGG_PROTOCOL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/privacy/secagg/crypto.h"
#include "fedge/privacy/secagg/fixed_point.h"
#include "fedge/privacy/secagg/shamir.h"
#include "fedge/v1/secagg.pb.h"

namespace fedge::privacy::secagg {

// "none", "secagg", "secagg+"; INVALID_ARGUMENT lists them.
absl::StatusOr<v1::SecAggConfig::Protocol> ParseProtocol(const std::string& name);
std::string ProtocolName(v1::SecAggConfig::Protocol protocol);

// The default SecAgg+ neighbourhood for n clients: 3 * ceil(log2 n) rounded
// up to even (Bell et al. show k = O(log n) suffices), at most n - 1.
int DefaultNeighbours(int num_clients);

struct SecAggOptions {
  // PROTOCOL_SECAGG or PROTOCOL_SECAGG_PLUS.
  v1::SecAggConfig::Protocol protocol = v1::SecAggConfig::PROTOCOL_SECAGG_PLUS;
  // t: a fraction of the neighbourhood size k when in (0, 1) (t = ceil(f k),
  // at least 2), a count when >= 2 (must be an integer). Default: 0.5. A
  // threshold of 1 would let one colluding neighbour rebuild a device's
  // secrets, so it is refused.
  double threshold = 0.5;
  // Fewest clients whose masked inputs must reach the sum before the server
  // unmasks it; a round with fewer aborts without revealing anything.
  // Default: 3. REQUIRES: >= 2, <= the cohort size.
  int min_survivors = 3;
  // k for SecAgg+; 0 picks DefaultNeighbours(n). Rounded up to even, at most
  // n - 1. Ignored by SecAgg (k = n - 1).
  int neighbours = 0;
  // Fixed point (fixed_point.h): bound B, headroom bits, or a fixed scale.
  double clip_bound = 1.0;
  int headroom_bits = 1;
  double scale = 0.0;
  // Weighted sums: the last coordinate carries min(weight, max_weight).
  bool weighted = false;
  uint64_t max_weight = 0;
  // One more coordinate after those: each client's within-bound bit, scaled
  // to clip_bound (SecAggConfig.clip_count).
  bool clip_count = false;
};

// The config of one round for `cohort` (its order gives the indices) and
// vectors of `dimension` words. INVALID_ARGUMENT names the offending option.
absl::StatusOr<v1::SecAggConfig> MakeSecAggConfig(const SecAggOptions& options,
                                                  const std::vector<std::string>& cohort,
                                                  uint64_t dimension, uint64_t graph_seed);

// Checks a received config (field by field); INVALID_ARGUMENT names it.
absl::Status ValidateSecAggConfig(const v1::SecAggConfig& config);

// The fixed-point codec a config prescribes (n = cohort size; deterministic
// rounding when the scale is fixed, stochastic otherwise).
absl::StatusOr<FixedPointCodec> CodecFor(const v1::SecAggConfig& config);

// The public neighbour graph: complete for SecAgg; for SecAgg+ the cohort
// placed on a ring in a random order drawn from graph_seed, each client
// linked to the k/2 nearest on either side (a Harary graph with random
// labels, the construction of Bell et al.). Symmetric; no self loops.
class NeighbourGraph {
 public:
  static absl::StatusOr<NeighbourGraph> Create(const v1::SecAggConfig& config);
  int num_clients() const { return static_cast<int>(neighbours_.size()); }
  int degree() const { return degree_; }
  // Ascending indices of the neighbours of `index` (1-based). REQUIRES: valid.
  const std::vector<uint32_t>& Of(uint32_t index) const { return neighbours_[index - 1]; }
  // Position of `neighbour` in Of(index), or -1.
  int PositionOf(uint32_t index, uint32_t neighbour) const;

  NeighbourGraph() = default;  // empty; use Create

 private:
  int degree_ = 0;
  std::vector<std::vector<uint32_t>> neighbours_;
};

class SecAggClient {
 public:
  // `random` supplies every secret (keys, seeds, Shamir coefficients, nonces);
  // default OpenSSL. INVALID_ARGUMENT for a bad config or a client_id not in
  // the cohort.
  static absl::StatusOr<std::unique_ptr<SecAggClient>> Create(const v1::SecAggConfig& config,
                                                              uint64_t round, std::string client_id,
                                                              RandomBytesSource random = {});
  ~SecAggClient();

  uint32_t index() const { return index_; }
  // The phase whose message the client sends next (UNSPECIFIED when done).
  v1::SecAggPhase phase() const { return phase_; }

  // Phase 1.
  absl::StatusOr<v1::SecAggClientMessage> AdvertiseKeys();
  // Phase 2, from the server's answer to phase 1.
  absl::StatusOr<v1::SecAggClientMessage> ShareKeys(const v1::SecAggServerMessage& keys);
  // Phase 3, from the server's answer to phase 2 and the encoded input
  // (config.dimension words).
  absl::StatusOr<v1::SecAggClientMessage> MaskedInput(const v1::SecAggServerMessage& shares,
                                                      std::span<const uint32_t> input);
  // Phase 4, from the server's answer to phase 3.
  absl::StatusOr<v1::SecAggClientMessage> Unmask(const v1::SecAggServerMessage& survivors);

  // Senders whose share failed authentication (phase 3).
  const std::vector<uint32_t>& rejected_senders() const { return rejected_; }

 private:
  struct State;
  SecAggClient(std::unique_ptr<State> state, uint32_t index);
  absl::Status CheckServerMessage(const v1::SecAggServerMessage& message,
                                  v1::SecAggPhase closed) const;

  std::unique_ptr<State> state_;
  uint32_t index_;
  v1::SecAggPhase phase_ = v1::SECAGG_PHASE_ADVERTISE_KEYS;
  std::vector<uint32_t> rejected_;
};

// Counts of one round, for reports.
struct SecAggServerStats {
  int cohort = 0;
  // Clients alive after each phase: |U1|, |U2|, |U3|, |U5|.
  int advertised = 0, shared = 0, masked = 0, unmasked = 0;
  int refused_messages = 0;  // each also dropped its sender
  int recovered_self_masks = 0;
  int recovered_mask_keys = 0;  // dropped clients whose pairwise masks were removed
};

class SecAggServer {
 public:
  static absl::StatusOr<std::unique_ptr<SecAggServer>> Create(const v1::SecAggConfig& config,
                                                              uint64_t round);
  ~SecAggServer();

  // The phase being collected (UNSPECIFIED once the round is done or aborted).
  v1::SecAggPhase phase() const { return phase_; }

  // Validates one message and takes it in (phase 3: folds y_u into the sum).
  // A refused message changes nothing except that its sender, if a member
  // of the cohort still alive, is dropped; the refusal is also recorded in
  // log(). FAILED_PRECONDITION: wrong round or phase, round over, sender
  // already dropped; PERMISSION_DENIED: not in the cohort, or indices that
  // are not its own; ALREADY_EXISTS: second message of the phase;
  // INVALID_ARGUMENT: wrong sizes or contents.
  absl::Status Receive(const v1::SecAggClientMessage& message);

  // Closes the collecting phase: clients that sent nothing are dropped.
  // After phase 4 this unmasks the sum. ABORTED (and the round is over, with
  // no sum) when the survivors cannot be aggregated, saying why.
  absl::Status ClosePhase();

  // The server's answer to the last closed phase for `client_id`.
  // NOT_FOUND when the client is not alive or no phase has closed;
  // UNAVAILABLE while the phase after which it asks is still collecting.
  absl::StatusOr<v1::SecAggServerMessage> MessageFor(const std::string& client_id,
                                                     v1::SecAggPhase closed) const;

  // After phase 4: Σ x_u (mod 2^32) over the survivors U3 and their ids.
  // FAILED_PRECONDITION before, or after an abort.
  absl::StatusOr<std::vector<uint32_t>> TakeSum();
  const std::vector<std::string>& contributors() const { return contributors_; }
  // Once the masked-input phase closed: the clients whose masked inputs are
  // in the sum (what unmasking will reveal the sum of); empty before.
  std::vector<std::string> MaskedInputs() const;

  const SecAggServerStats& stats() const { return stats_; }
  const std::vector<std::string>& log() const { return log_; }
  // Why the round aborted ("" if it did not).
  const std::string& abort_reason() const { return abort_reason_; }

 private:
  struct State;
  SecAggServer(std::unique_ptr<State> state);
  absl::Status Refuse(int sender, absl::Status status);
  absl::Status Abort(std::string reason);
  absl::Status Unmask();

  std::unique_ptr<State> state_;
  v1::SecAggPhase phase_ = v1::SECAGG_PHASE_ADVERTISE_KEYS;
  SecAggServerStats stats_;
  std::vector<std::string> log_;
  std::vector<std::string> contributors_;
  std::string abort_reason_;
  bool sum_ready_ = false;
};

}  // namespace fedge::privacy::secagg

#endif  // FEDGE_PRIVACY_SECAGG_PROTOCOL_H_
