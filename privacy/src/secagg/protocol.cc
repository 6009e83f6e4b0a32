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

namespace fedge::privacy::secagg {
namespace {

constexpr int kPhases = 4;
// Plaintext of one encrypted share: sender, recipient, share of s^SK, of b.
constexpr size_t kSharePlaintextSize = 4 + 4 + 2 * kShamirShareSize;
constexpr size_t kShareCiphertextSize = kSharePlaintextSize + kGcmTagSize;

std::string PhaseName(v1::SecAggPhase phase) {
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

int PhaseNumber(v1::SecAggPhase phase) { return static_cast<int>(phase); }

v1::SecAggPhase NextPhase(v1::SecAggPhase phase) {
  return phase == v1::SECAGG_PHASE_UNMASKING ? v1::SECAGG_PHASE_UNSPECIFIED
                                             : static_cast<v1::SecAggPhase>(phase + 1);
}

void PutLe32(uint32_t v, std::vector<uint8_t>& out) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutLe64(uint64_t v, std::vector<uint8_t>& out) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint32_t GetLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

std::vector<uint8_t> Tagged(std::string_view tag, uint64_t round, uint32_t a, uint32_t b) {
  std::vector<uint8_t> out(tag.begin(), tag.end());
  PutLe64(round, out);
  PutLe32(a, out);
  PutLe32(b, out);
  return out;
}

// The AES-GCM key of the channel between a and b (symmetric in a, b).
absl::StatusOr<std::vector<uint8_t>> ChannelKey(const SharedSecret& secret, uint64_t round,
                                                uint32_t a, uint32_t b) {
  const std::vector<uint8_t> info =
      Tagged("fedge/secagg/v1/share-channel", round, std::min(a, b), std::max(a, b));
  return HkdfSha256(secret, {}, info, kAesKeySize);
}

std::vector<uint8_t> ShareAssociatedData(uint64_t round, uint32_t sender, uint32_t recipient) {
  return Tagged("fedge/secagg/v1/share", round, sender, recipient);
}

absl::StatusOr<X25519PublicKey> ToKey(const std::string& bytes, const std::string& what) {
  if (bytes.size() != kX25519KeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", bytes.size(), " bytes, expected ", kX25519KeySize));
  }
  X25519PublicKey key;
  std::memcpy(key.data(), bytes.data(), key.size());
  return key;
}

std::string ToString(std::span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

absl::Status Annotate(const absl::Status& s, const std::string& context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(context, ": ", std::string(s.message())));
}

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
