// The secure-aggregation server (SecAggServer, protocol.h): collects each
// phase's messages, closes phases, and unmasks the survivors' sum. The
// client, the config and the neighbour graph are in protocol.cc.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/privacy/secagg/masking.h"
#include "fedge/privacy/secagg/protocol.h"
#include "protocol_internal.h"

namespace fedge::privacy::secagg {
namespace {

using internal::kPhases;
using internal::kShareCiphertextSize;
using internal::PhaseName;
using internal::PhaseNumber;
using internal::NextPhase;
using internal::GetLe32;
using internal::ToKey;
using internal::ToString;
using internal::Bytes;

}  // namespace

// --- SecAggServer ----------------------------------------------------------------

struct SecAggServer::State {
  v1::SecAggConfig config;
  uint64_t round = 0;
  NeighbourGraph graph;
  int n = 0;
  int t = 0;
  std::map<std::string, uint32_t, std::less<>> index_of;
  struct Client {
    bool alive = true;
    bool sent[kPhases + 1] = {};  // sent[p]: phase p's message accepted
    bool in[kPhases + 1] = {};    // in[p]: in U_p after phase p closed
    X25519PublicKey cipher_pk{}, mask_pk{};
    std::vector<v1::SecAggEncryptedShare> inbox;  // shares addressed to it
    // Revealed shares of this client's secrets: (holder, share).
    std::vector<std::pair<uint32_t, ShamirShare>> seed_shares, key_shares;
  };
  std::vector<Client> clients;  // by index - 1
  std::vector<uint32_t> sum;
  v1::SecAggPhase last_closed = v1::SECAGG_PHASE_UNSPECIFIED;
};

SecAggServer::SecAggServer(std::unique_ptr<State> state) : state_(std::move(state)) {}
SecAggServer::~SecAggServer() = default;

absl::StatusOr<std::unique_ptr<SecAggServer>> SecAggServer::Create(const v1::SecAggConfig& config,
                                                                   uint64_t round) {
  if (absl::Status s = ValidateSecAggConfig(config); !s.ok()) return s;
  auto state = std::make_unique<State>();
  state->config = config;
  state->round = round;
  absl::StatusOr<NeighbourGraph> graph = NeighbourGraph::Create(config);
  if (!graph.ok()) return graph.status();
  state->graph = *std::move(graph);
  state->n = config.cohort_size();
  state->t = static_cast<int>(config.threshold());
  for (int i = 0; i < state->n; ++i) {
    state->index_of.emplace(config.cohort(i), static_cast<uint32_t>(i + 1));
  }
  state->clients.resize(static_cast<size_t>(state->n));
  state->sum.assign(config.dimension(), 0u);
  auto server = std::unique_ptr<SecAggServer>(new SecAggServer(std::move(state)));
  server->stats_.cohort = server->state_->n;
  return server;
}

absl::Status SecAggServer::Refuse(int sender, absl::Status status) {
  ++stats_.refused_messages;
  std::string entry = absl::StrCat("round ", state_->round, ": refused a message");
  if (sender > 0) {
    State::Client& c = state_->clients[static_cast<size_t>(sender - 1)];
    absl::StrAppend(&entry, " from client ", sender, " ('", state_->config.cohort(sender - 1),
                    "')");
    if (c.alive) {
      c.alive = false;
      absl::StrAppend(&entry, ", now counted as dropped");
    }
  }
  absl::StrAppend(&entry, ": ", status.message());
  log_.push_back(std::move(entry));
  return status;
}

absl::Status SecAggServer::Abort(std::string reason) {
  abort_reason_ = reason;
  phase_ = v1::SECAGG_PHASE_UNSPECIFIED;
  state_->sum.clear();
  state_->sum.shrink_to_fit();
  log_.push_back(absl::StrCat("round ", state_->round, " aborted: ", reason));
  return absl::AbortedError(
      absl::StrCat("secure aggregation of round ", state_->round, " aborted: ", reason));
}

absl::Status SecAggServer::Receive(const v1::SecAggClientMessage& message) {
  State& s = *state_;
  auto it = s.index_of.find(message.client_id());
  if (it == s.index_of.end()) {
    return Refuse(
        0, absl::PermissionDeniedError(absl::StrCat("client '", message.client_id(),
                                                    "' is not in the cohort of round ", s.round)));
  }
  const uint32_t u = it->second;
  State::Client& c = s.clients[u - 1];
  if (!c.alive) {
    // Already dropped: refused, nothing else to count.
    ++stats_.refused_messages;
    log_.push_back(absl::StrCat("round ", s.round, ": ignored a message from dropped client ", u));
    return absl::FailedPreconditionError(
        absl::StrCat("client '", message.client_id(), "' has dropped out of round ", s.round));
  }
  if (message.round() != s.round) {
    return Refuse(static_cast<int>(u), absl::FailedPreconditionError(absl::StrCat(
                                           "message is for round ", message.round(),
                                           ", the secure-aggregation round is ", s.round)));
  }
  if (phase_ == v1::SECAGG_PHASE_UNSPECIFIED) {
    return Refuse(static_cast<int>(u),
                  absl::FailedPreconditionError(absl::StrCat("round ", s.round, " is over")));
  }
  const int expected_body = PhaseNumber(phase_) + 3;  // oneof field numbers 4..7
  if (message.phase() != phase_ || static_cast<int>(message.body_case()) != expected_body) {
    return Refuse(static_cast<int>(u), absl::FailedPreconditionError(absl::StrCat(
                                           "message is for phase ", PhaseName(message.phase()),
                                           " (body ", static_cast<int>(message.body_case()),
                                           "); the server is collecting ", PhaseName(phase_))));
  }
  const int p = PhaseNumber(phase_);
  if (c.sent[p]) {
    return Refuse(static_cast<int>(u),
                  absl::AlreadyExistsError(absl::StrCat("client ", u, " already sent its ",
                                                        PhaseName(phase_), " message")));
  }
  const std::vector<uint32_t>& neighbours = s.graph.Of(u);
  switch (phase_) {
    case v1::SECAGG_PHASE_ADVERTISE_KEYS: {
      absl::StatusOr<X25519PublicKey> ck =
          ToKey(message.advertise_keys().cipher_public_key(), "cipher_public_key");
      if (!ck.ok()) return Refuse(static_cast<int>(u), ck.status());
      absl::StatusOr<X25519PublicKey> mk =
          ToKey(message.advertise_keys().mask_public_key(), "mask_public_key");
      if (!mk.ok()) return Refuse(static_cast<int>(u), mk.status());
      c.cipher_pk = *ck;
      c.mask_pk = *mk;
      break;
    }
    case v1::SECAGG_PHASE_SHARE_KEYS: {
      std::set<uint32_t> expected;
      for (uint32_t v : neighbours) {
        if (s.clients[v - 1].in[1]) expected.insert(v);
      }
      std::set<uint32_t> seen;
      for (const v1::SecAggEncryptedShare& share : message.share_keys().shares()) {
        if (share.sender() != u) {
          return Refuse(
              static_cast<int>(u),
              absl::PermissionDeniedError(absl::StrCat(
                  "client ", u, " sent a share claiming to come from client ", share.sender())));
        }
        if (!expected.contains(share.recipient())) {
          return Refuse(static_cast<int>(u),
                        absl::InvalidArgumentError(absl::StrCat(
                            "share addressed to client ", share.recipient(),
                            ", not one of the sender's neighbours that advertised keys")));
        }
        if (!seen.insert(share.recipient()).second) {
          return Refuse(static_cast<int>(u), absl::InvalidArgumentError(absl::StrCat(
                                                 "two shares for client ", share.recipient())));
        }
        if (share.nonce().size() != kGcmNonceSize ||
            share.ciphertext().size() != kShareCiphertextSize) {
          return Refuse(
              static_cast<int>(u),
              absl::InvalidArgumentError(absl::StrCat(
                  "share for client ", share.recipient(), " has a ", share.nonce().size(),
                  "-byte nonce and a ", share.ciphertext().size(), "-byte ciphertext; expected ",
                  kGcmNonceSize, " and ", kShareCiphertextSize)));
        }
      }
      if (seen.size() != expected.size()) {
        return Refuse(static_cast<int>(u),
                      absl::InvalidArgumentError(absl::StrCat("client ", u, " sent ", seen.size(),
                                                              " shares, expected one for each of ",
                                                              expected.size(), " neighbours")));
      }
      for (const v1::SecAggEncryptedShare& share : message.share_keys().shares()) {
        s.clients[share.recipient() - 1].inbox.push_back(share);
      }
      break;
    }
    case v1::SECAGG_PHASE_MASKED_INPUT: {
      const std::string& bytes = message.masked_input().masked_vector();
      if (bytes.size() != 4 * s.config.dimension()) {
        return Refuse(static_cast<int>(u), absl::InvalidArgumentError(absl::StrCat(
                                               "masked vector has ", bytes.size(),
                                               " bytes, expected 4 * ", s.config.dimension())));
      }
      std::set<uint32_t> rejected;
      for (uint32_t v : message.masked_input().rejected_senders()) {
        if (s.graph.PositionOf(u, v) < 0 || !s.clients[v - 1].in[2]) {
          return Refuse(static_cast<int>(u),
                        absl::InvalidArgumentError(absl::StrCat("reports a bad share from client ",
                                                                v, ", which sent it none")));
        }
        rejected.insert(v);
      }
      const auto* words = reinterpret_cast<const uint8_t*>(bytes.data());
      uint32_t* sum = s.sum.data();
      for (size_t k = 0; k < s.sum.size(); ++k) sum[k] += GetLe32(words + 4 * k);
      for (uint32_t v : rejected) {
        State::Client& bad = s.clients[v - 1];
        log_.push_back(absl::StrCat("round ", s.round, ": client ", u, " reports that client ", v,
                                    "'s share failed authentication"));
        if (bad.alive && !bad.sent[3]) {
          bad.alive = false;
          log_.push_back(absl::StrCat("round ", s.round, ": client ", v, " counted as dropped"));
        }
      }
      break;
    }
    case v1::SECAGG_PHASE_UNMASKING: {
      std::set<uint32_t> owners;
      std::vector<std::tuple<uint32_t, bool, ShamirShare>> accepted;
      for (const v1::SecAggRevealedShare& r : message.unmasking().shares()) {
        const uint32_t v = r.owner();
        const int position = s.graph.PositionOf(v, u);
        if (position < 0 || !s.clients[v - 1].in[2]) {
          return Refuse(static_cast<int>(u),
                        absl::InvalidArgumentError(absl::StrCat("reveals a share of client ", v,
                                                                ", which never shared with it")));
        }
        if (!owners.insert(v).second) {
          return Refuse(static_cast<int>(u), absl::InvalidArgumentError(
                                                 absl::StrCat("reveals two shares of client ", v)));
        }
        const bool survivor = s.clients[v - 1].in[3];
        if (r.mask_key() == survivor) {
          return Refuse(static_cast<int>(u),
                        absl::InvalidArgumentError(absl::StrCat(
                            "reveals a share of client ", v, "'s ",
                            r.mask_key() ? "mask key" : "self-mask seed", ", but client ", v,
                            survivor ? " survived (only its self-mask seed may be revealed)"
                                     : " dropped (only its mask key may be revealed)")));
        }
        absl::StatusOr<ShamirShare> share = ParseShare(Bytes(r.share()));
        if (!share.ok()) return Refuse(static_cast<int>(u), share.status());
        if (share->index != static_cast<uint32_t>(position + 1)) {
          return Refuse(static_cast<int>(u),
                        absl::PermissionDeniedError(absl::StrCat(
                            "share of client ", v, " has x = ", share->index,
                            ", which belongs to another holder (expected ", position + 1, ")")));
        }
        accepted.emplace_back(v, r.mask_key(), *share);
      }
      for (auto& [v, mask_key, share] : accepted) {
        auto& list = mask_key ? s.clients[v - 1].key_shares : s.clients[v - 1].seed_shares;
        list.emplace_back(u, share);
      }
      break;
    }
    default:
      break;
  }
  c.sent[p] = true;
  return absl::OkStatus();
}

absl::Status SecAggServer::ClosePhase() {
  State& s = *state_;
  if (phase_ == v1::SECAGG_PHASE_UNSPECIFIED) {
    return absl::FailedPreconditionError(absl::StrCat("round ", s.round, " is over"));
  }
  const int p = PhaseNumber(phase_);
  int count = 0;
  for (State::Client& c : s.clients) {
    // A masked input, once folded, stays in the sum whatever happens later.
    const bool before = p == 1 || c.in[p - 1];
    c.in[p] = before && c.sent[p] && (c.alive || p == 3);
    if (!c.in[p]) c.alive = false;
  }
  if (p == 1 || p == 2) {
    // A client with fewer than t live neighbours could not have its secrets
    // rebuilt: drop it, until every remaining client has enough.
    bool changed = true;
    while (changed) {
      changed = false;
      for (int i = 1; i <= s.n; ++i) {
        State::Client& c = s.clients[static_cast<size_t>(i - 1)];
        if (!c.in[p]) continue;
        int live = 0;
        for (uint32_t v : s.graph.Of(static_cast<uint32_t>(i))) live += s.clients[v - 1].in[p];
        if (live < s.t) {
          c.in[p] = false;
          c.alive = false;
          changed = true;
          log_.push_back(absl::StrCat("round ", s.round, ": client ", i, " dropped after ",
                                      PhaseName(phase_), ": ", live, " live neighbours, threshold ",
                                      s.t));
        }
      }
    }
  }
  for (const State::Client& c : s.clients) count += c.in[p];
  int* counters[] = {nullptr, &stats_.advertised, &stats_.shared, &stats_.masked, &stats_.unmasked};
  *counters[p] = count;
  s.last_closed = phase_;
  phase_ = NextPhase(phase_);
  if (p <= 3 && count < s.t) {
    return Abort(absl::StrCat(count, " of ", s.n, " clients completed ",
                              PhaseName(static_cast<v1::SecAggPhase>(p)),
                              ", fewer than the threshold ", s.t));
  }
  // Before anything is unmasked: a sum of too few inputs would reveal them.
  const int min_survivors = static_cast<int>(s.config.min_survivors());
  if (p == 3 && count < min_survivors) {
    return Abort(absl::StrCat(count, " of ", s.n, " clients sent masked inputs, fewer than the ",
                              min_survivors, " the sum must hold before it is unmasked"));
  }
  if (p == 4) return Unmask();
  return absl::OkStatus();
}

std::vector<std::string> SecAggServer::MaskedInputs() const {
  std::vector<std::string> ids;
  if (state_ == nullptr || PhaseNumber(state_->last_closed) < 3) return ids;
  for (int i = 1; i <= state_->n; ++i) {
    if (state_->clients[static_cast<size_t>(i - 1)].in[3]) ids.push_back(state_->config.cohort(i - 1));
  }
  return ids;
}

absl::Status SecAggServer::Unmask() {
  State& s = *state_;
  const int k = s.graph.degree();
  // First check that every secret needed can be rebuilt: abort before
  // touching the sum otherwise.
  std::vector<std::string> missing;
  auto usable = [&](const std::vector<std::pair<uint32_t, ShamirShare>>& list) {
    std::vector<ShamirShare> out;
    for (const auto& [holder, share] : list) {
      if (s.clients[holder - 1].in[4]) out.push_back(share);
    }
    return out;
  };
  std::vector<std::vector<ShamirShare>> seed_shares(static_cast<size_t>(s.n));
  std::vector<std::vector<ShamirShare>> key_shares(static_cast<size_t>(s.n));
  for (int i = 1; i <= s.n; ++i) {
    const State::Client& c = s.clients[static_cast<size_t>(i - 1)];
    if (c.in[3]) {
      seed_shares[static_cast<size_t>(i - 1)] = usable(c.seed_shares);
      const size_t got = seed_shares[static_cast<size_t>(i - 1)].size();
      if (static_cast<int>(got) < s.t) {
        missing.push_back(
            absl::StrCat("client ", i, "'s self mask (", got, " of ", s.t, " shares)"));
      }
    } else if (c.in[2]) {
      bool masked_with_survivor = false;
      for (uint32_t v : s.graph.Of(static_cast<uint32_t>(i))) {
        masked_with_survivor |= s.clients[v - 1].in[3];
      }
      if (!masked_with_survivor) continue;
      key_shares[static_cast<size_t>(i - 1)] = usable(c.key_shares);
      const size_t got = key_shares[static_cast<size_t>(i - 1)].size();
      if (static_cast<int>(got) < s.t) {
        missing.push_back(
            absl::StrCat("dropped client ", i, "'s mask key (", got, " of ", s.t, " shares)"));
      }
    }
  }
  if (!missing.empty()) {
    const size_t shown = std::min<size_t>(missing.size(), 5);
    return Abort(absl::StrCat(
        stats_.unmasked, " clients answered the unmasking phase, too few to rebuild ",
        missing.size(), " secret(s): ",
        absl::StrJoin(missing.begin(), missing.begin() + static_cast<long>(shown), "; "),
        missing.size() > shown ? "; ..." : ""));
  }
  for (int i = 1; i <= s.n; ++i) {
    const State::Client& c = s.clients[static_cast<size_t>(i - 1)];
    if (c.in[3]) {
      absl::StatusOr<ShamirSecret> seed =
          ReconstructSecret(seed_shares[static_cast<size_t>(i - 1)], s.t, k);
      if (!seed.ok()) {
        return Abort(absl::StrCat("client ", i, "'s self-mask seed: ", seed.status().message()));
      }
      if (absl::Status st = RemoveSelfMask(*seed, s.sum); !st.ok()) return Abort(st.ToString());
      ++stats_.recovered_self_masks;
    } else if (!key_shares[static_cast<size_t>(i - 1)].empty()) {
      absl::StatusOr<ShamirSecret> key =
          ReconstructSecret(key_shares[static_cast<size_t>(i - 1)], s.t, k);
      if (!key.ok()) {
        return Abort(absl::StrCat("client ", i, "'s mask key: ", key.status().message()));
      }
      absl::StatusOr<X25519KeyPair> pair = X25519KeyPair::FromPrivateKey(*key);
      if (!pair.ok()) return Abort(pair.status().ToString());
      if (pair->public_key() != c.mask_pk) {
        return Abort(absl::StrCat("the shares of client ", i,
                                  "'s mask key do not rebuild the key it advertised"));
      }
      const uint32_t d = static_cast<uint32_t>(i);
      for (uint32_t v : s.graph.Of(d)) {
        if (!s.clients[v - 1].in[3]) continue;
        absl::StatusOr<SharedSecret> secret = pair->DeriveSharedSecret(s.clients[v - 1].mask_pk);
        if (!secret.ok()) return Abort(secret.status().ToString());
        absl::StatusOr<Seed> seed = DerivePairwiseMaskSeed(*secret, s.round, v, d);
        if (!seed.ok()) return Abort(seed.status().ToString());
        if (absl::Status st = RemovePairwiseMask(v, d, *seed, s.sum); !st.ok()) {
          return Abort(st.ToString());
        }
      }
      ++stats_.recovered_mask_keys;
    }
  }
  for (int i = 1; i <= s.n; ++i) {
    if (s.clients[static_cast<size_t>(i - 1)].in[3])
      contributors_.push_back(s.config.cohort(i - 1));
  }
  sum_ready_ = true;
  return absl::OkStatus();
}

absl::StatusOr<v1::SecAggServerMessage> SecAggServer::MessageFor(const std::string& client_id,
                                                                 v1::SecAggPhase closed) const {
  const State& s = *state_;
  auto it = s.index_of.find(client_id);
  if (it == s.index_of.end()) {
    return absl::NotFoundError(
        absl::StrCat("client '", client_id, "' is not in the cohort of round ", s.round));
  }
  const uint32_t u = it->second;
  const State::Client& c = s.clients[u - 1];
  const int p = PhaseNumber(closed);
  if (p < 1 || p > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("the server answers phases 1 to 3, not ", PhaseName(closed)));
  }
  if (!abort_reason_.empty()) {
    return absl::AbortedError(absl::StrCat("round ", s.round, " aborted: ", abort_reason_));
  }
  if (PhaseNumber(s.last_closed) < p) {
    return absl::UnavailableError(
        absl::StrCat("phase ", PhaseName(closed), " of round ", s.round, " has not closed yet"));
  }
  if (!c.alive || !c.in[p]) {
    return absl::NotFoundError(absl::StrCat("client '", client_id, "' dropped out of round ",
                                            s.round, " by phase ", PhaseName(closed)));
  }
  v1::SecAggServerMessage out;
  out.set_round(s.round);
  out.set_phase(closed);
  for (uint32_t v : s.graph.Of(u)) {
    const State::Client& peer = s.clients[v - 1];
    if (!peer.in[p]) continue;
    if (p == 1) {
      v1::SecAggPublicKeys* keys = out.add_keys();
      keys->set_index(v);
      keys->set_cipher_public_key(ToString(peer.cipher_pk));
      keys->set_mask_public_key(ToString(peer.mask_pk));
    } else if (p == 3) {
      out.add_survivors(v);
    }
  }
  if (p == 2) {
    for (const v1::SecAggEncryptedShare& share : c.inbox) {
      if (s.clients[share.sender() - 1].in[2]) *out.add_shares() = share;
    }
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> SecAggServer::TakeSum() {
  if (!sum_ready_) {
    return absl::FailedPreconditionError(
        abort_reason_.empty() ? absl::StrCat("round ", state_->round, " has not finished unmasking")
                              : absl::StrCat("round ", state_->round, " aborted: ", abort_reason_));
  }
  sum_ready_ = false;
  return std::move(state_->sum);
}

}  // namespace fedge::privacy::secagg
