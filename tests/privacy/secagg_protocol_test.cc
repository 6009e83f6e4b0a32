// The secure-aggregation protocol end to end in memory: exact sums with
// dropouts at every phase, aborts below the threshold, what the server sees
// of one masked vector, and every kind of bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>

#include "fedge/privacy/secagg/protocol.h"
#include "status_matchers.h"

namespace fedge::privacy::secagg {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::StatusIs;
using ::testing::HasSubstr;

RandomBytesSource Seeded(uint64_t seed) {
  auto rng = std::make_shared<std::mt19937_64>(seed);
  return [rng](std::span<uint8_t> out) {
    for (uint8_t& b : out) b = static_cast<uint8_t>((*rng)());
    return absl::OkStatus();
  };
}

std::vector<std::string> Cohort(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back("device-" + std::to_string(i));
  return ids;
}

v1::SecAggConfig Config(v1::SecAggConfig::Protocol protocol, int n, uint64_t dimension,
                        double threshold = 0.5, int neighbours = 0, int min_survivors = 3) {
  SecAggOptions options;
  options.protocol = protocol;
  options.threshold = threshold;
  options.neighbours = neighbours;
  options.min_survivors = min_survivors;
  absl::StatusOr<v1::SecAggConfig> config = MakeSecAggConfig(options, Cohort(n), dimension, 99);
  EXPECT_THAT(config.status(), IsOk());
  return *config;
}

// Runs clients and server in lockstep. drop_at[i] = p: client i sends no
// message from phase p on. `tamper` may edit a client's message before the
// server sees it; `tamper_server` may edit what the server tells a client.
struct Harness {
  v1::SecAggConfig config;
  uint64_t round = 7;
  std::unique_ptr<SecAggServer> server;
  std::vector<std::unique_ptr<SecAggClient>> clients;
  std::vector<std::vector<uint32_t>> inputs;
  std::map<int, int> drop_at;
  std::function<void(int, v1::SecAggClientMessage&)> tamper;
  std::function<void(int, v1::SecAggServerMessage&)> tamper_server;
  std::vector<bool> failed;  // the client refused a server message

  Harness(v1::SecAggConfig c, uint64_t seed) : config(std::move(c)) {
    server = *SecAggServer::Create(config, round);
    std::mt19937_64 rng(seed);
    for (int i = 0; i < config.cohort_size(); ++i) {
      clients.push_back(
          *SecAggClient::Create(config, round, config.cohort(i), Seeded(seed * 1000 + i)));
      std::vector<uint32_t> x(config.dimension());
      for (uint32_t& w : x) w = static_cast<uint32_t>(rng());
      inputs.push_back(std::move(x));
    }
    failed.assign(clients.size(), false);
  }

  bool Sends(int i, int phase) const {
    auto it = drop_at.find(i);
    return !failed[static_cast<size_t>(i)] && (it == drop_at.end() || phase < it->second);
  }

  // Runs phase p (1..4) and closes it; returns ClosePhase's status.
  absl::Status Phase(int p) {
    for (int i = 0; i < static_cast<int>(clients.size()); ++i) {
      if (!Sends(i, p)) continue;
      SecAggClient& c = *clients[static_cast<size_t>(i)];
      absl::StatusOr<v1::SecAggClientMessage> message;
      if (p == 1) {
        message = c.AdvertiseKeys();
      } else {
        absl::StatusOr<v1::SecAggServerMessage> answer =
            server->MessageFor(config.cohort(i), static_cast<v1::SecAggPhase>(p - 1));
        if (!answer.ok()) continue;  // dropped by the server
        if (tamper_server) tamper_server(i, *answer);
        if (p == 2) message = c.ShareKeys(*answer);
        if (p == 3) message = c.MaskedInput(*answer, inputs[static_cast<size_t>(i)]);
        if (p == 4) message = c.Unmask(*answer);
      }
      if (!message.ok()) {
        failed[static_cast<size_t>(i)] = true;
        continue;
      }
      if (tamper) tamper(i, *message);
      (void)server->Receive(*message);
    }
    return server->ClosePhase();
  }

  absl::Status RunAll() {
    for (int p = 1; p <= 4; ++p) {
      if (absl::Status s = Phase(p); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // The plain sum of the inputs of the clients the server aggregated.
  std::vector<uint32_t> PlainSum(const std::vector<std::string>& contributors) const {
    std::vector<uint32_t> sum(config.dimension(), 0);
    for (const std::string& id : contributors) {
      const auto i = static_cast<size_t>(
          std::find(config.cohort().begin(), config.cohort().end(), id) - config.cohort().begin());
      for (size_t k = 0; k < sum.size(); ++k) sum[k] += inputs[i][k];
    }
    return sum;
  }
};

struct SumCase {
  v1::SecAggConfig::Protocol protocol;
  int n;
};

class ExactSumTest : public ::testing::TestWithParam<SumCase> {};

TEST_P(ExactSumTest, EqualsPlainSumWithRandomDropoutsAtEveryPhase) {
  const SumCase c = GetParam();
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    Harness h(Config(c.protocol, c.n, 257, 0.5), seed);
    // Up to 20% of the cohort drops, each at a random phase 1..4.
    std::mt19937_64 rng(seed * 31);
    std::set<int> phases_seen;
    const int drops = static_cast<int>(rng() % static_cast<uint64_t>(c.n / 5 + 1));
    for (int d = 0; d < drops; ++d) {
      const int who = static_cast<int>(rng() % static_cast<uint64_t>(c.n));
      const int phase = 1 + static_cast<int>(rng() % 4);
      h.drop_at[who] = phase;
      phases_seen.insert(phase);
    }
    ASSERT_THAT(h.RunAll(), IsOk()) << "seed " << seed;
    std::set<std::string> expected;
    for (int i = 0; i < c.n; ++i) {
      auto it = h.drop_at.find(i);
      if (it == h.drop_at.end() || it->second == 4) expected.insert(h.config.cohort(i));
    }
    const std::vector<std::string> contributors = h.server->contributors();
    EXPECT_EQ(std::set<std::string>(contributors.begin(), contributors.end()), expected);
    FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> sum, h.server->TakeSum());
    EXPECT_EQ(sum, h.PlainSum(contributors)) << "seed " << seed;
  }
}

INSTANTIATE_TEST_SUITE_P(Protocols, ExactSumTest,
                         ::testing::Values(SumCase{v1::SecAggConfig::PROTOCOL_SECAGG, 9},
                                           SumCase{v1::SecAggConfig::PROTOCOL_SECAGG_PLUS, 40}));

TEST(SecAggProtocolTest, DropoutsAtEachPhaseSeparately) {
  for (int phase = 1; phase <= 4; ++phase) {
    Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG_PLUS, 30, 64, 0.5), 100 + phase);
    h.drop_at = {{3, phase}, {11, phase}, {20, phase}};
    ASSERT_THAT(h.RunAll(), IsOk()) << "phase " << phase;
    EXPECT_EQ(h.server->contributors().size(), phase == 4 ? 30u : 27u);
    FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> sum, h.server->TakeSum());
    EXPECT_EQ(sum, h.PlainSum(h.server->contributors()));
    if (phase == 3) EXPECT_GT(h.server->stats().recovered_mask_keys, 0);
  }
}

TEST(SecAggProtocolTest, AbortsBelowThresholdAndPublishesNothing) {
  // SecAgg, n = 6, t = 4: three clients vanish before unmasking, so only
  // three shares of each survivor's self-mask seed come back.
  Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 6, 16, 4), 5);
  h.drop_at = {{0, 4}, {1, 4}, {2, 4}};
  for (int p = 1; p <= 3; ++p) ASSERT_THAT(h.Phase(p), IsOk());
  const absl::Status closed = h.Phase(4);
  EXPECT_THAT(closed, StatusIs(absl::StatusCode::kAborted, HasSubstr("3 of 4 shares")));
  EXPECT_THAT(h.server->TakeSum().status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_FALSE(h.server->abort_reason().empty());
}

TEST(SecAggProtocolTest, AbortsWhenTooFewMaskedInputs) {
  Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 5, 8, 3), 6);
  h.drop_at = {{0, 3}, {1, 3}, {2, 3}};
  ASSERT_THAT(h.Phase(1), IsOk());
  ASSERT_THAT(h.Phase(2), IsOk());
  EXPECT_THAT(h.Phase(3),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("fewer than the threshold 3")));
  EXPECT_EQ(h.server->phase(), v1::SECAGG_PHASE_UNSPECIFIED);
  EXPECT_THAT(h.server->TakeSum().status(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

// Enough shares to unmask, too few inputs to hide them: SecAgg, n = 6, t = 2,
// four drop before sending a masked input. Unmasking the two left would
// reveal their sum to the server, so the round aborts below min_survivors
// (3) before anything is unmasked. (With the threshold alone it completed.)
TEST(SecAggProtocolTest, AbortsBeforeUnmaskingFewerThanTheMinimumOfSurvivors) {
  Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 6, 8, 2), 8);
  EXPECT_EQ(h.config.min_survivors(), 3u);
  h.drop_at = {{0, 3}, {1, 3}, {2, 3}, {3, 3}};
  ASSERT_THAT(h.Phase(1), IsOk());
  ASSERT_THAT(h.Phase(2), IsOk());
  EXPECT_THAT(h.Phase(3), StatusIs(absl::StatusCode::kAborted,
                                   HasSubstr("2 of 6 clients sent masked inputs, fewer than the 3")));
  EXPECT_THAT(h.server->TakeSum().status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  // The same dropouts with three survivors complete.
  Harness ok(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 6, 8, 2), 8);
  ok.drop_at = {{0, 3}, {1, 3}, {2, 3}};
  ASSERT_THAT(ok.RunAll(), IsOk());
  EXPECT_EQ(ok.server->contributors().size(), 3u);
}

// The aggregator's view of one masked vector: bytes of y_u look uniform
// (chi-square over 256 bins) even for an all-zero or constant input, and
// never equal the input.
TEST(SecAggProtocolTest, MaskedVectorLooksUniform) {
  Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG_PLUS, 20, 50000, 0.5), 11);
  for (auto& x : h.inputs) std::fill(x.begin(), x.end(), 0x01020304u);
  std::vector<std::string> masked(20);
  h.tamper = [&](int i, v1::SecAggClientMessage& m) {
    if (m.has_masked_input()) masked[static_cast<size_t>(i)] = m.masked_input().masked_vector();
  };
  ASSERT_THAT(h.RunAll(), IsOk());
  for (int i = 0; i < 20; ++i) {
    const std::string& y = masked[static_cast<size_t>(i)];
    ASSERT_EQ(y.size(), 4u * 50000);
    std::vector<double> bins(256, 0.0);
    for (char b : y) bins[static_cast<uint8_t>(b)] += 1.0;
    const double expected = static_cast<double>(y.size()) / 256.0;
    double chi2 = 0.0;
    for (double o : bins) chi2 += (o - expected) * (o - expected) / expected;
    // 255 degrees of freedom: P(chi2 > 340) < 3e-4 for uniform bytes.
    EXPECT_LT(chi2, 340.0) << "client " << i;
    size_t equal_words = 0;
    for (size_t k = 0; k < 50000; ++k) {
      uint32_t w;
      std::memcpy(&w, y.data() + 4 * k, 4);
      equal_words += w == h.inputs[static_cast<size_t>(i)][k];
    }
    EXPECT_LT(equal_words, 5u) << "client " << i;  // ~50000 / 2^32 expected
  }
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> sum, h.server->TakeSum());
  EXPECT_EQ(sum, h.PlainSum(h.server->contributors()));
}

TEST(SecAggProtocolTest, NeighbourGraphIsRegularAndSymmetric) {
  const v1::SecAggConfig config = Config(v1::SecAggConfig::PROTOCOL_SECAGG_PLUS, 1000, 4);
  EXPECT_EQ(config.neighbours(), static_cast<uint32_t>(DefaultNeighbours(1000)));
  EXPECT_EQ(DefaultNeighbours(1000), 30);
  FEDGE_ASSERT_OK_AND_ASSIGN(NeighbourGraph graph, NeighbourGraph::Create(config));
  for (uint32_t u = 1; u <= 1000; ++u) {
    ASSERT_EQ(graph.Of(u).size(), 30u);
    for (uint32_t v : graph.Of(u)) {
      EXPECT_NE(v, u);
      EXPECT_GE(graph.PositionOf(v, u), 0);
    }
  }
  EXPECT_EQ(DefaultNeighbours(10), 9);  // capped at n - 1
}

TEST(SecAggProtocolTest, ConfigValidationNamesTheField) {
  SecAggOptions options;
  options.threshold = 50;
  EXPECT_THAT(MakeSecAggConfig(options, Cohort(10), 4, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("threshold")));
  options.threshold = 2.5;
  EXPECT_THAT(MakeSecAggConfig(options, Cohort(10), 4, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("threshold")));
  // A threshold of one share lets a single neighbour rebuild a device's
  // masks: refused as a count, and a fraction never rounds down to it.
  options.threshold = 1;
  EXPECT_THAT(MakeSecAggConfig(options, Cohort(10), 4, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("whole count >= 2")));
  options.threshold = 0.01;
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::SecAggConfig low, MakeSecAggConfig(options, Cohort(10), 4, 1));
  EXPECT_EQ(low.threshold(), 2u);
  v1::SecAggConfig forged = low;
  forged.set_threshold(1);
  EXPECT_THAT(ValidateSecAggConfig(forged),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("threshold")));
  // Cohorts of two (k = 1) cannot have a threshold of 2; nor may the
  // minimum of survivors be below 2 or above the cohort.
  options.threshold = 0.5;
  EXPECT_THAT(MakeSecAggConfig(options, Cohort(2), 4, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least 3")));
  options.min_survivors = 1;
  EXPECT_THAT(MakeSecAggConfig(options, Cohort(10), 4, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min_survivors")));
  options.min_survivors = 11;
  EXPECT_THAT(MakeSecAggConfig(options, Cohort(10), 4, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min_survivors")));
  options.min_survivors = 3;
  EXPECT_THAT(MakeSecAggConfig(options, Cohort(1), 4, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least 2")));
  EXPECT_THAT(MakeSecAggConfig(options, Cohort(10), 0, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dimension")));
  options.neighbours = -1;
  EXPECT_THAT(MakeSecAggConfig(options, Cohort(10), 4, 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("neighbours")));
  EXPECT_THAT(ParseProtocol("secagg++").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("secagg+")));
  EXPECT_THAT(
      SecAggClient::Create(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 3, 4), 1, "stranger").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not in the")));
}

// --- bad input ---------------------------------------------------------------

TEST(SecAggBadInputTest, WrongSizeMaskedVectorIsRefusedAndDropsTheSender) {
  Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 6, 32, 3), 21);
  std::vector<absl::Status> verdicts;
  h.tamper = [&](int i, v1::SecAggClientMessage& m) {
    if (i == 2 && m.has_masked_input())
      m.mutable_masked_input()->mutable_masked_vector()->pop_back();
  };
  ASSERT_THAT(h.RunAll(), IsOk());
  EXPECT_EQ(h.server->stats().refused_messages, 1);
  EXPECT_THAT(h.server->log().front(), HasSubstr("masked vector has 127 bytes"));
  const auto& contributors = h.server->contributors();
  EXPECT_EQ(std::count(contributors.begin(), contributors.end(), "device-2"), 0);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> sum, h.server->TakeSum());
  EXPECT_EQ(sum, h.PlainSum(contributors));  // client 2 was stripped as a dropout
}

TEST(SecAggBadInputTest, ServerRefusesEachBadMessageWithoutChangingTheSum) {
  Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 6, 16, 3), 22);
  ASSERT_THAT(h.Phase(1), IsOk());
  // Wrong round, wrong phase, stranger: refused.
  v1::SecAggClientMessage stale;
  stale.set_round(h.round + 1);
  stale.set_client_id("device-0");
  stale.set_phase(v1::SECAGG_PHASE_SHARE_KEYS);
  stale.mutable_share_keys();
  EXPECT_THAT(h.server->Receive(stale),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("for round 8")));
  v1::SecAggClientMessage early;
  early.set_round(h.round);
  early.set_client_id("device-1");
  early.set_phase(v1::SECAGG_PHASE_MASKED_INPUT);
  early.mutable_masked_input()->set_masked_vector(std::string(64, '\0'));
  EXPECT_THAT(h.server->Receive(early),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("collecting share-keys")));
  v1::SecAggClientMessage stranger = early;
  stranger.set_client_id("mallory");
  EXPECT_THAT(h.server->Receive(stranger), StatusIs(absl::StatusCode::kPermissionDenied));
  // Both senders now count as dropped; their later messages are refused.
  v1::SecAggClientMessage again = stale;
  again.set_round(h.round);
  EXPECT_THAT(h.server->Receive(again),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("dropped out")));
  EXPECT_EQ(h.server->stats().refused_messages, 4);
  h.failed[0] = h.failed[1] = true;  // those devices would see NOT_FOUND next
  ASSERT_THAT(h.Phase(2), IsOk());
  EXPECT_EQ(h.server->stats().shared, 4);
  ASSERT_THAT(h.Phase(3), IsOk());
  ASSERT_THAT(h.Phase(4), IsOk());
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> sum, h.server->TakeSum());
  EXPECT_EQ(sum, h.PlainSum(h.server->contributors()));
  EXPECT_EQ(h.server->contributors().size(), 4u);
}

TEST(SecAggBadInputTest, ClientClaimingToBeAnotherIsRefused) {
  Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 5, 16, 3), 23);
  h.tamper = [&](int i, v1::SecAggClientMessage& m) {
    if (i == 4 && m.has_share_keys()) {
      for (auto& s : *m.mutable_share_keys()->mutable_shares()) s.set_sender(1);
    }
  };
  ASSERT_THAT(h.RunAll(), IsOk());
  EXPECT_THAT(h.server->log().front(), HasSubstr("claiming to come from client 1"));
  EXPECT_EQ(h.server->contributors().size(), 4u);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> sum, h.server->TakeSum());
  EXPECT_EQ(sum, h.PlainSum(h.server->contributors()));
}

TEST(SecAggBadInputTest, ShareFailingAuthenticationDropsItsSender) {
  Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 6, 16, 3), 24);
  // The server (or the network) flips a bit of client 3's share to client 0.
  // Client 0 receives its inbox before client 3 has sent its masked input
  // (lockstep order 0..5), so client 3 counts as dropped.
  h.tamper_server = [&](int i, v1::SecAggServerMessage& m) {
    if (i != 0) return;
    for (auto& s : *m.mutable_shares()) {
      if (s.sender() == 4) (*s.mutable_ciphertext())[5] ^= 1;
    }
  };
  ASSERT_THAT(h.RunAll(), IsOk());
  EXPECT_EQ(h.clients[0]->rejected_senders(), std::vector<uint32_t>{4});
  const auto& contributors = h.server->contributors();
  EXPECT_EQ(std::count(contributors.begin(), contributors.end(), "device-3"), 0);
  EXPECT_EQ(contributors.size(), 5u);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> sum, h.server->TakeSum());
  EXPECT_EQ(sum, h.PlainSum(contributors));
}

TEST(SecAggBadInputTest, ServerNeverTakesBothSecretsOfOneClient) {
  Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 5, 16, 3), 25);
  // Client 0 asks to reveal the mask key of survivor 2 (as a curious server
  // colluding with it would want): refused, client 0 dropped from unmasking.
  h.tamper = [&](int i, v1::SecAggClientMessage& m) {
    if (i != 0 || !m.has_unmasking()) return;
    for (auto& s : *m.mutable_unmasking()->mutable_shares()) {
      if (s.owner() == 2) s.set_mask_key(true);
    }
  };
  ASSERT_THAT(h.RunAll(), IsOk());
  EXPECT_THAT(h.server->log().front(), HasSubstr("only its self-mask seed may be revealed"));
  EXPECT_EQ(h.server->stats().unmasked, 4);
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> sum, h.server->TakeSum());
  EXPECT_EQ(sum, h.PlainSum(h.server->contributors()));
}

TEST(SecAggBadInputTest, ClientRefusesInconsistentServerMessages) {
  Harness h(Config(v1::SecAggConfig::PROTOCOL_SECAGG, 4, 8, 2), 26);
  ASSERT_THAT(h.Phase(1), IsOk());
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::SecAggServerMessage keys,
                             h.server->MessageFor("device-0", v1::SECAGG_PHASE_ADVERTISE_KEYS));
  v1::SecAggServerMessage wrong_round = keys;
  wrong_round.set_round(3);
  EXPECT_THAT(h.clients[0]->ShareKeys(wrong_round).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("round 3")));
  v1::SecAggServerMessage self = keys;
  self.mutable_keys(0)->set_index(1);  // its own index: not a neighbour
  EXPECT_THAT(h.clients[0]->ShareKeys(self).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a neighbour")));
  EXPECT_THAT(h.clients[0]->Unmask(keys).status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(h.clients[0]->ShareKeys(keys).status(), IsOk());
  EXPECT_THAT(h.server->MessageFor("device-0", v1::SECAGG_PHASE_SHARE_KEYS).status(),
              StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace fedge::privacy::secagg
