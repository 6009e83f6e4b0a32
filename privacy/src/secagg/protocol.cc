#include "fedge/privacy/secagg/protocol.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/privacy/secagg/masking.h"
#include "protocol_internal.h"

namespace fedge::privacy::secagg {
namespace {

using internal::kSharePlaintextSize;
using internal::PhaseName;
using internal::NextPhase;
using internal::PutLe32;
using internal::GetLe32;
using internal::ChannelKey;
using internal::ShareAssociatedData;
using internal::ToKey;
using internal::ToString;
using internal::Bytes;
using internal::Annotate;

int ThresholdFor(double threshold, int k) {
  if (threshold < 1.0) return std::max(2, static_cast<int>(std::ceil(threshold * k)));
  return static_cast<int>(threshold);
}

}  // namespace

absl::StatusOr<v1::SecAggConfig::Protocol> ParseProtocol(const std::string& name) {
  if (name == "none") return v1::SecAggConfig::PROTOCOL_NONE;
  if (name == "secagg") return v1::SecAggConfig::PROTOCOL_SECAGG;
  if (name == "secagg+") return v1::SecAggConfig::PROTOCOL_SECAGG_PLUS;
  return absl::InvalidArgumentError(absl::StrCat("unknown secure aggregation protocol '", name,
                                                 "'; known: none, secagg, secagg+"));
}

std::string ProtocolName(v1::SecAggConfig::Protocol protocol) {
  switch (protocol) {
    case v1::SecAggConfig::PROTOCOL_SECAGG:
      return "secagg";
    case v1::SecAggConfig::PROTOCOL_SECAGG_PLUS:
      return "secagg+";
    default:
      return "none";
  }
}

int DefaultNeighbours(int num_clients) {
  if (num_clients <= 1) return 0;
  const int log2n = static_cast<int>(std::ceil(std::log2(static_cast<double>(num_clients))));
  int k = 3 * std::max(1, log2n);
  k += k % 2;
  return std::min(k, num_clients - 1);
}

absl::StatusOr<v1::SecAggConfig> MakeSecAggConfig(const SecAggOptions& options,
                                                  const std::vector<std::string>& cohort,
                                                  uint64_t dimension, uint64_t graph_seed) {
  if (options.protocol != v1::SecAggConfig::PROTOCOL_SECAGG &&
      options.protocol != v1::SecAggConfig::PROTOCOL_SECAGG_PLUS) {
    return absl::InvalidArgumentError("SecAggOptions.protocol must be secagg or secagg+");
  }
  const int n = static_cast<int>(cohort.size());
  if (n < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("secure aggregation needs a cohort of at least 2 clients, got ", n));
  }
  int k = n - 1;
  if (options.protocol == v1::SecAggConfig::PROTOCOL_SECAGG_PLUS) {
    if (options.neighbours < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("SecAggOptions.neighbours must be >= 0, got ", options.neighbours));
    }
    k = options.neighbours == 0 ? DefaultNeighbours(n) : options.neighbours;
    k += k % 2;
    k = std::min(k, n - 1);
  }
  if (!(options.threshold > 0) || (options.threshold >= 1.0 && options.threshold < 2.0) ||
      (options.threshold >= 1.0 && options.threshold != std::floor(options.threshold))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SecAggOptions.threshold must be a fraction in (0, 1) or a whole count >= 2 (a threshold "
        "of 1 lets a single neighbour rebuild a device's masks), got ",
        options.threshold));
  }
  const int t = ThresholdFor(options.threshold, k);
  if (t > k) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SecAggOptions.threshold ", t, " exceeds the neighbourhood size ", k, " (cohort of ", n,
        "; secure aggregation needs a threshold of at least 2, so a cohort of at least 3)"));
  }
  if (options.min_survivors < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SecAggOptions.min_survivors must be >= 2, got ", options.min_survivors));
  }
  if (options.min_survivors > n) {
    return absl::InvalidArgumentError(
        absl::StrCat("a cohort of ", n, " is below secure aggregation's minimum of ",
                     options.min_survivors, " survivors (min_survivors): the round could never be "
                     "unmasked"));
  }
  v1::SecAggConfig config;
  config.set_protocol(options.protocol);
  config.set_threshold(static_cast<uint32_t>(t));
  config.set_neighbours(static_cast<uint32_t>(k));
  for (const std::string& id : cohort) config.add_cohort(id);
  config.set_graph_seed(graph_seed);
  config.set_clip_bound(options.clip_bound);
  config.set_headroom_bits(static_cast<uint32_t>(options.headroom_bits));
  config.set_scale(options.scale);
  config.set_dimension(dimension);
  config.set_weighted(options.weighted);
  config.set_max_weight(options.max_weight);
  config.set_clip_count(options.clip_count);
  config.set_min_survivors(static_cast<uint32_t>(std::max(options.min_survivors, t)));
  if (absl::Status s = ValidateSecAggConfig(config); !s.ok()) return s;
  return config;
}

absl::Status ValidateSecAggConfig(const v1::SecAggConfig& config) {
  if (config.protocol() != v1::SecAggConfig::PROTOCOL_SECAGG &&
      config.protocol() != v1::SecAggConfig::PROTOCOL_SECAGG_PLUS) {
    return absl::InvalidArgumentError("SecAggConfig.protocol must be SECAGG or SECAGG_PLUS");
  }
  const int n = config.cohort_size();
  if (n < 2) return absl::InvalidArgumentError("SecAggConfig.cohort needs at least 2 clients");
  std::set<std::string> ids(config.cohort().begin(), config.cohort().end());
  if (static_cast<int>(ids.size()) != n) {
    return absl::InvalidArgumentError("SecAggConfig.cohort lists a client more than once");
  }
  const int k = static_cast<int>(config.neighbours());
  if (config.protocol() == v1::SecAggConfig::PROTOCOL_SECAGG && k != n - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("SecAggConfig.neighbours must be n - 1 = ", n - 1, " for SECAGG, got ", k));
  }
  if (k < 1 || k > n - 1 || (k % 2 == 1 && k != n - 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SecAggConfig.neighbours must be even and in [2, n - 1] (or n - 1), got ", k));
  }
  if (k > kMaxShamirShares) {
    return absl::InvalidArgumentError("SecAggConfig.neighbours exceeds the Shamir share limit");
  }
  if (config.threshold() < 2 || static_cast<int>(config.threshold()) > k) {
    return absl::InvalidArgumentError(
        absl::StrCat("SecAggConfig.threshold must be in [2, ", k, "], got ", config.threshold()));
  }
  if (config.min_survivors() < config.threshold() ||
      static_cast<int>(config.min_survivors()) > n) {
    return absl::InvalidArgumentError(absl::StrCat("SecAggConfig.min_survivors must be in [",
                                                   config.threshold(), ", ", n, "], got ",
                                                   config.min_survivors()));
  }
  if (config.dimension() < 1 || config.dimension() > (uint64_t{1} << 31)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SecAggConfig.dimension must be in [1, 2^31], got ", config.dimension()));
  }
  if (config.weighted() && config.max_weight() < 1) {
    return absl::InvalidArgumentError("SecAggConfig.max_weight must be >= 1 when weighted");
  }
  if (absl::Status s = CodecFor(config).status(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("SecAggConfig fixed point: ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<FixedPointCodec> CodecFor(const v1::SecAggConfig& config) {
  FixedPointOptions options;
  options.num_clients = config.cohort_size();
  options.headroom_bits = static_cast<int>(config.headroom_bits());
  options.scale = config.scale();
  options.clip_bound = config.clip_bound();
  if (config.weighted()) {
    // Coordinates carry weight * update (|.| <= B W) and the weight (<= W).
    const double w = static_cast<double>(config.max_weight());
    options.clip_bound = std::max(config.clip_bound() * w, w);
  }
  options.rounding =
      config.scale() > 0 ? FixedPointRounding::kDeterministic : FixedPointRounding::kStochastic;
  return FixedPointCodec::Create(options);
}

// --- NeighbourGraph ------------------------------------------------------------

absl::StatusOr<NeighbourGraph> NeighbourGraph::Create(const v1::SecAggConfig& config) {
  const int n = config.cohort_size();
  const int k = static_cast<int>(config.neighbours());
  if (n < 2 || k < 1 || k > n - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("no neighbour graph with n = ", n, " and k = ", k));
  }
  NeighbourGraph graph;
  graph.degree_ = k;
  graph.neighbours_.resize(static_cast<size_t>(n));
  if (k == n - 1) {
    for (int i = 1; i <= n; ++i) {
      auto& list = graph.neighbours_[static_cast<size_t>(i - 1)];
      for (int j = 1; j <= n; ++j) {
        if (j != i) list.push_back(static_cast<uint32_t>(j));
      }
    }
    return graph;
  }
  // Random ring order (public: every party derives it from the seed).
  std::vector<uint32_t> ring(static_cast<size_t>(n));
  std::iota(ring.begin(), ring.end(), 1u);
  std::mt19937_64 rng(config.graph_seed() ^ 0x5345434147ULL);
  for (size_t i = ring.size() - 1; i > 0; --i) {
    std::uniform_int_distribution<size_t> pick(0, i);
    std::swap(ring[i], ring[pick(rng)]);
  }
  const int half = k / 2;
  for (int p = 0; p < n; ++p) {
    auto& list = graph.neighbours_[ring[static_cast<size_t>(p)] - 1];
    for (int j = 1; j <= half; ++j) {
      list.push_back(ring[static_cast<size_t>((p + j) % n)]);
      list.push_back(ring[static_cast<size_t>((p - j + n) % n)]);
    }
    std::sort(list.begin(), list.end());
  }
  return graph;
}

int NeighbourGraph::PositionOf(uint32_t index, uint32_t neighbour) const {
  if (index < 1 || index > neighbours_.size()) return -1;
  const auto& list = neighbours_[index - 1];
  auto it = std::lower_bound(list.begin(), list.end(), neighbour);
  if (it == list.end() || *it != neighbour) return -1;
  return static_cast<int>(it - list.begin());
}

// --- SecAggClient ----------------------------------------------------------------

struct SecAggClient::State {
  v1::SecAggConfig config;
  uint64_t round = 0;
  std::string client_id;
  NeighbourGraph graph;
  RandomBytesSource random;
  std::optional<X25519KeyPair> cipher_keys;
  std::optional<X25519KeyPair> mask_keys;
  Seed self_seed{};
  // Neighbours that advertised (phase 1 answer): index -> (c^PK, s^PK).
  std::map<uint32_t, std::pair<X25519PublicKey, X25519PublicKey>> directory;
  // Senders of this client's shares (phase 2 answer) and the shares that
  // authenticated: sender -> (share of s^SK, share of b).
  std::set<uint32_t> senders;
  std::map<uint32_t, std::pair<ShamirShare, ShamirShare>> held;
};

SecAggClient::SecAggClient(std::unique_ptr<State> state, uint32_t index)
    : state_(std::move(state)), index_(index) {}
SecAggClient::~SecAggClient() = default;

absl::StatusOr<std::unique_ptr<SecAggClient>> SecAggClient::Create(const v1::SecAggConfig& config,
                                                                   uint64_t round,
                                                                   std::string client_id,
                                                                   RandomBytesSource random) {
  if (absl::Status s = ValidateSecAggConfig(config); !s.ok()) return s;
  auto it = std::find(config.cohort().begin(), config.cohort().end(), client_id);
  if (it == config.cohort().end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("client '", client_id, "' is not in the secure-aggregation cohort"));
  }
  auto state = std::make_unique<State>();
  state->config = config;
  state->round = round;
  state->client_id = std::move(client_id);
  absl::StatusOr<NeighbourGraph> graph = NeighbourGraph::Create(config);
  if (!graph.ok()) return graph.status();
  state->graph = *std::move(graph);
  state->random = random ? std::move(random) : RandomBytesSource(RandomBytes);
  const auto index = static_cast<uint32_t>(it - config.cohort().begin()) + 1;
  return std::unique_ptr<SecAggClient>(new SecAggClient(std::move(state), index));
}

absl::Status SecAggClient::CheckServerMessage(const v1::SecAggServerMessage& message,
                                              v1::SecAggPhase closed) const {
  if (phase_ != NextPhase(closed)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "client ", index_, " is at phase ", PhaseName(phase_), ", not after ", PhaseName(closed)));
  }
  if (message.round() != state_->round) {
    return absl::InvalidArgumentError(absl::StrCat("server message is for round ", message.round(),
                                                   ", this is round ", state_->round));
  }
  if (message.phase() != closed) {
    return absl::InvalidArgumentError(absl::StrCat("server message answers phase ",
                                                   PhaseName(message.phase()), ", expected ",
                                                   PhaseName(closed)));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SecAggClientMessage> SecAggClient::AdvertiseKeys() {
  if (phase_ != v1::SECAGG_PHASE_ADVERTISE_KEYS) {
    return absl::FailedPreconditionError("keys were already advertised");
  }
  X25519PrivateKey c{}, s{};
  if (absl::Status st = state_->random(c); !st.ok()) return st;
  if (absl::Status st = state_->random(s); !st.ok()) return st;
  if (absl::Status st = state_->random(state_->self_seed); !st.ok()) return st;
  absl::StatusOr<X25519KeyPair> cipher = X25519KeyPair::FromPrivateKey(c);
  if (!cipher.ok()) return cipher.status();
  absl::StatusOr<X25519KeyPair> mask = X25519KeyPair::FromPrivateKey(s);
  if (!mask.ok()) return mask.status();
  state_->cipher_keys.emplace(*std::move(cipher));
  state_->mask_keys.emplace(*std::move(mask));
  v1::SecAggClientMessage message;
  message.set_round(state_->round);
  message.set_client_id(state_->client_id);
  message.set_phase(v1::SECAGG_PHASE_ADVERTISE_KEYS);
  message.mutable_advertise_keys()->set_cipher_public_key(
      ToString(state_->cipher_keys->public_key()));
  message.mutable_advertise_keys()->set_mask_public_key(ToString(state_->mask_keys->public_key()));
  phase_ = v1::SECAGG_PHASE_SHARE_KEYS;
  return message;
}

absl::StatusOr<v1::SecAggClientMessage> SecAggClient::ShareKeys(
    const v1::SecAggServerMessage& keys) {
  if (absl::Status s = CheckServerMessage(keys, v1::SECAGG_PHASE_ADVERTISE_KEYS); !s.ok()) return s;
  std::map<uint32_t, std::pair<X25519PublicKey, X25519PublicKey>> directory;
  for (const v1::SecAggPublicKeys& entry : keys.keys()) {
    if (state_->graph.PositionOf(index_, entry.index()) < 0) {
      return absl::InvalidArgumentError(absl::StrCat("key directory lists client ", entry.index(),
                                                     ", not a neighbour of ", index_));
    }
    absl::StatusOr<X25519PublicKey> c = ToKey(entry.cipher_public_key(), "cipher_public_key");
    if (!c.ok()) return c.status();
    absl::StatusOr<X25519PublicKey> s = ToKey(entry.mask_public_key(), "mask_public_key");
    if (!s.ok()) return s.status();
    if (!directory.emplace(entry.index(), std::make_pair(*c, *s)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("key directory lists client ", entry.index(), " twice"));
    }
  }
  const int t = static_cast<int>(state_->config.threshold());
  const int k = state_->graph.degree();
  if (static_cast<int>(directory.size()) < t) {
    return absl::FailedPreconditionError(absl::StrCat(
        "only ", directory.size(), " neighbours advertised keys, fewer than the threshold ", t));
  }
  absl::StatusOr<X25519PrivateKey> mask_secret = state_->mask_keys->ExportPrivateKey();
  if (!mask_secret.ok()) return mask_secret.status();
  absl::StatusOr<std::vector<ShamirShare>> key_shares =
      ShareSecret(*mask_secret, t, k, state_->random);
  if (!key_shares.ok()) return key_shares.status();
  absl::StatusOr<std::vector<ShamirShare>> seed_shares =
      ShareSecret(state_->self_seed, t, k, state_->random);
  if (!seed_shares.ok()) return seed_shares.status();

  v1::SecAggClientMessage message;
  message.set_round(state_->round);
  message.set_client_id(state_->client_id);
  message.set_phase(v1::SECAGG_PHASE_SHARE_KEYS);
  for (const auto& [v, peer_keys] : directory) {
    const int position = state_->graph.PositionOf(index_, v);
    absl::StatusOr<SharedSecret> secret = state_->cipher_keys->DeriveSharedSecret(peer_keys.first);
    if (!secret.ok()) return Annotate(secret.status(), absl::StrCat("channel with client ", v));
    absl::StatusOr<std::vector<uint8_t>> key = ChannelKey(*secret, state_->round, index_, v);
    if (!key.ok()) return key.status();
    std::vector<uint8_t> plaintext;
    plaintext.reserve(kSharePlaintextSize);
    PutLe32(index_, plaintext);
    PutLe32(v, plaintext);
    const auto a = SerializeShare((*key_shares)[static_cast<size_t>(position)]);
    const auto b = SerializeShare((*seed_shares)[static_cast<size_t>(position)]);
    plaintext.insert(plaintext.end(), a.begin(), a.end());
    plaintext.insert(plaintext.end(), b.begin(), b.end());
    std::array<uint8_t, kGcmNonceSize> nonce{};
    if (absl::Status s = state_->random(nonce); !s.ok()) return s;
    absl::StatusOr<std::vector<uint8_t>> sealed =
        AesGcmSeal(*key, nonce, plaintext, ShareAssociatedData(state_->round, index_, v));
    if (!sealed.ok()) return sealed.status();
    v1::SecAggEncryptedShare* share = message.mutable_share_keys()->add_shares();
    share->set_sender(index_);
    share->set_recipient(v);
    share->set_nonce(ToString(nonce));
    share->set_ciphertext(ToString(*sealed));
  }
  state_->directory = std::move(directory);
  phase_ = v1::SECAGG_PHASE_MASKED_INPUT;
  return message;
}

absl::StatusOr<v1::SecAggClientMessage> SecAggClient::MaskedInput(
    const v1::SecAggServerMessage& shares, std::span<const uint32_t> input) {
  if (absl::Status s = CheckServerMessage(shares, v1::SECAGG_PHASE_SHARE_KEYS); !s.ok()) return s;
  if (input.size() != state_->config.dimension()) {
    return absl::InvalidArgumentError(absl::StrCat("input has ", input.size(),
                                                   " words, the round's dimension is ",
                                                   state_->config.dimension()));
  }
  std::set<uint32_t> senders;
  for (const v1::SecAggEncryptedShare& share : shares.shares()) {
    if (share.recipient() != index_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a share addressed to client ", share.recipient(), " reached client ", index_));
    }
    if (!state_->directory.contains(share.sender())) {
      return absl::InvalidArgumentError(absl::StrCat("a share from client ", share.sender(),
                                                     ", which is not in the key directory"));
    }
    if (!senders.insert(share.sender()).second) {
      return absl::InvalidArgumentError(absl::StrCat("two shares from client ", share.sender()));
    }
  }
  // Decrypt; a share that fails is discarded (its sender is reported).
  std::map<uint32_t, std::pair<ShamirShare, ShamirShare>> held;
  std::vector<uint32_t> rejected;
  for (const v1::SecAggEncryptedShare& share : shares.shares()) {
    const uint32_t u = share.sender();
    auto open = [&]() -> absl::Status {
      absl::StatusOr<SharedSecret> secret =
          state_->cipher_keys->DeriveSharedSecret(state_->directory.at(u).first);
      if (!secret.ok()) return secret.status();
      absl::StatusOr<std::vector<uint8_t>> key = ChannelKey(*secret, state_->round, u, index_);
      if (!key.ok()) return key.status();
      absl::StatusOr<std::vector<uint8_t>> plain =
          AesGcmOpen(*key, Bytes(share.nonce()), Bytes(share.ciphertext()),
                     ShareAssociatedData(state_->round, u, index_));
      if (!plain.ok()) return plain.status();
      if (plain->size() != kSharePlaintextSize || GetLe32(plain->data()) != u ||
          GetLe32(plain->data() + 4) != index_) {
        return absl::DataLossError("share plaintext names the wrong parties");
      }
      std::span<const uint8_t> body(*plain);
      absl::StatusOr<ShamirShare> a = ParseShare(body.subspan(8, kShamirShareSize));
      if (!a.ok()) return a.status();
      absl::StatusOr<ShamirShare> b = ParseShare(body.subspan(8 + kShamirShareSize));
      if (!b.ok()) return b.status();
      const auto expected = static_cast<uint32_t>(state_->graph.PositionOf(u, index_) + 1);
      if (a->index != expected || b->index != expected) {
        return absl::DataLossError("share has the wrong x coordinate");
      }
      held.emplace(u, std::make_pair(*a, *b));
      return absl::OkStatus();
    };
    if (!open().ok()) rejected.push_back(u);
  }
  // Mask with every sender: each of them masks with this client.
  std::vector<PeerSeed> peers;
  peers.reserve(senders.size());
  for (uint32_t v : senders) {
    absl::StatusOr<SharedSecret> secret =
        state_->mask_keys->DeriveSharedSecret(state_->directory.at(v).second);
    if (!secret.ok()) return Annotate(secret.status(), absl::StrCat("mask key of client ", v));
    absl::StatusOr<Seed> seed = DerivePairwiseMaskSeed(*secret, state_->round, index_, v);
    if (!seed.ok()) return seed.status();
    peers.push_back({v, *seed});
  }
  std::string bytes(input.size() * 4, '\0');
  std::vector<uint32_t> masked(input.begin(), input.end());
  if (absl::Status s = MaskUpdate(index_, state_->self_seed, peers, masked); !s.ok()) return s;
  for (size_t i = 0; i < masked.size(); ++i) {
    const uint32_t w = masked[i];
    bytes[4 * i] = static_cast<char>(w);
    bytes[4 * i + 1] = static_cast<char>(w >> 8);
    bytes[4 * i + 2] = static_cast<char>(w >> 16);
    bytes[4 * i + 3] = static_cast<char>(w >> 24);
  }
  v1::SecAggClientMessage message;
  message.set_round(state_->round);
  message.set_client_id(state_->client_id);
  message.set_phase(v1::SECAGG_PHASE_MASKED_INPUT);
  message.mutable_masked_input()->set_masked_vector(std::move(bytes));
  for (uint32_t u : rejected) message.mutable_masked_input()->add_rejected_senders(u);
  state_->senders = std::move(senders);
  state_->held = std::move(held);
  rejected_ = std::move(rejected);
  phase_ = v1::SECAGG_PHASE_UNMASKING;
  return message;
}

absl::StatusOr<v1::SecAggClientMessage> SecAggClient::Unmask(
    const v1::SecAggServerMessage& survivors) {
  if (absl::Status s = CheckServerMessage(survivors, v1::SECAGG_PHASE_MASKED_INPUT); !s.ok()) {
    return s;
  }
  std::set<uint32_t> alive;
  for (uint32_t v : survivors.survivors()) {
    if (!state_->senders.contains(v)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "survivor list names client ", v, ", which never shared keys with client ", index_));
    }
    if (!alive.insert(v).second) {
      return absl::InvalidArgumentError(absl::StrCat("survivor list names client ", v, " twice"));
    }
  }
  v1::SecAggClientMessage message;
  message.set_round(state_->round);
  message.set_client_id(state_->client_id);
  message.set_phase(v1::SECAGG_PHASE_UNMASKING);
  // Exactly one share per neighbour: b_v for a survivor, s_v^SK otherwise.
  for (const auto& [v, pair] : state_->held) {
    v1::SecAggRevealedShare* out = message.mutable_unmasking()->add_shares();
    out->set_owner(v);
    const bool dropped = !alive.contains(v);
    out->set_mask_key(dropped);
    out->set_share(ToString(SerializeShare(dropped ? pair.first : pair.second)));
  }
  state_->held.clear();
  phase_ = v1::SECAGG_PHASE_UNSPECIFIED;
  return message;
}

}  // namespace fedge::privacy::secagg
