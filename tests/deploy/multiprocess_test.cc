// fedge-sim --mode multiprocess: one fedge-aggregator and four fedge-client
// processes over TLS on loopback, with the config of an in-process run.
// Both modes run the same RoundCoordinator and the same device code, so the
// same seeded configuration must publish the same final model.
//
// Secure aggregation matches bit for bit: its sum is exact (integers modulo
// 2^32 in fixed point), so the order updates arrive in cannot change it.
//
// Everything else, "within float rounding": every task, cohort, seed,
// batch order and codec is the same in both modes, but a deployment folds
// updates in the order they arrive over the network, and float addition is
// not associative, so the aggregate differs in its last bits from the
// in-process fold (run.threads=1: cohort order). Those differences then pass
// through the next rounds' training. A tolerance of 1e-4 absolute per weight
// after a few rounds is orders of magnitude above what reordering a sum of
// four float vectors gives (~1e-7 relative), and orders below what any real
// difference (another batch, another seed, another cohort) gives (~1e-2).
// A quantizing update codec is discontinuous: a last-bit difference in a
// device's delta can move one of its entries to the neighbouring int8 level,
// so there the bound is a few quantization steps (scale / 127 of a delta of
// ~1e-2, so ~1e-4 each): 1e-3. How many weights come out bit for bit equal
// depends on the arrival order (the test prints it); it is not asserted.
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "fedge/aggregator/state_store.h"
#include "fedge/data/drift_scenario.h"
#include "fedge/models/artifact.h"
#include "fedge/v1/model.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace {

std::string RunSim(const std::string& args, int* exit_code) {
  const std::string command = std::string(FEDGE_SIM_BIN) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string output;
  char buffer[4096];
  while (pipe != nullptr && std::fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  const int status = pipe == nullptr ? -1 : ::pclose(pipe);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

std::vector<double> Accuracies(const std::string& out) {
  std::ifstream in(out + "/rounds.csv");
  std::string line;
  std::getline(in, line);  // header: round,test_accuracy,...
  std::vector<double> accuracies;
  while (std::getline(in, line)) {
    std::stringstream fields(line);
    std::string round, accuracy;
    std::getline(fields, round, ',');
    std::getline(fields, accuracy, ',');
    accuracies.push_back(std::stod(accuracy));
  }
  return accuracies;
}

// The small experiment both tests run: 4 clients, all in every round, mlp.
std::string Experiment(int rounds) {
  return "--set partition.num_clients=4 --set round.clients_per_round=4 --set round.rounds=" +
         std::to_string(rounds) +
         " --set model.architecture=mlp --set train.max_steps=20 --set run.seed=5 "
         "--set run.progress=off";
}

// Runs fedge-sim with `args` into `out`; its test-accuracy curve, or empty
// (with a test failure holding its output) when it did not exit 0.
std::vector<double> RunCurve(const std::string& args, const std::string& out) {
  int code = 0;
  const std::string output = RunSim(args + " --out " + out, &code);
  if (code != 0) {
    ADD_FAILURE() << "fedge-sim " << args << " exited " << code << ":\n" << output;
    return {};
  }
  return Accuracies(out);
}

// The final model fedge-sim wrote into `out` (model_final.pb), decoded.
std::vector<float> FinalModel(const std::string& out) {
  std::ifstream in(out + "/model_final.pb", std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  fedge::v1::ModelArtifact artifact;
  if (!artifact.ParseFromString(bytes.str())) {
    ADD_FAILURE() << "cannot parse " << out << "/model_final.pb";
    return {};
  }
  auto layout = fedge::models::LayoutOfArtifact(artifact);
  if (!layout.ok()) {
    ADD_FAILURE() << layout.status();
    return {};
  }
  std::vector<float> values(static_cast<size_t>(fedge::models::LayoutSize(*layout)));
  if (absl::Status s = fedge::models::DecodeArtifact(artifact, *layout, values); !s.ok()) {
    ADD_FAILURE() << s;
    return {};
  }
  return values;
}

// Runs `args` in-process and with --mode multiprocess and compares the final
// models weight by weight (see the top of the file for the tolerance).
void ExpectSameFinalModel(const std::string& name, const std::string& args,
                          double tolerance = 1e-4, bool bit_for_bit = false,
                          bool expect_learning = true) {
  const std::string dir = std::string(FEDGE_TEST_TMP_DIR) + "/equivalence-" + name;
  const std::string common = args + " --set model.artifact=fp32 --set run.threads=1";
  const std::vector<double> in = RunCurve(common, dir + "/inprocess");
  const std::vector<double> multi = RunCurve(common + " --mode multiprocess", dir + "/multi");
  const std::vector<float> a = FinalModel(dir + "/inprocess");
  const std::vector<float> b = FinalModel(dir + "/multi");
  ASSERT_FALSE(a.empty());
  ASSERT_EQ(a.size(), b.size());
  double max_diff = 0.0;
  size_t identical = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(a[i] - b[i])));
    identical += a[i] == b[i] ? 1 : 0;
  }
  std::cout << name << ": " << identical << " of " << a.size()
            << " weights bit for bit identical, largest difference " << max_diff << "\n";
  if (bit_for_bit) EXPECT_EQ(identical, a.size()) << name << ": not bit for bit";
  EXPECT_LE(max_diff, tolerance) << name << ": " << identical << " of " << a.size()
                                 << " weights identical";
  ASSERT_EQ(in.size(), multi.size());
  for (size_t r = 0; r < in.size(); ++r) {
    EXPECT_NEAR(in[r], multi[r], 2e-3) << name << ", round " << r + 1;
  }
  // The model trained: not the initial one in both runs. (DP noise on four
  // devices can undo a round's progress; those runs check equality only.)
  if (expect_learning) EXPECT_GT(in.back(), in.front() - 1e-9);
}

TEST(MultiprocessTest, FedAvgPublishesTheSameModelInBothModes) {
  // 3 of 4 devices per round: the cohort draw is the coordinator's in both.
  ExpectSameFinalModel("fedavg",
                       "--set partition.num_clients=4 --set round.clients_per_round=3 "
                       "--set round.rounds=3 --set model.architecture=mlp --set train.max_steps=20 "
                       "--set run.seed=5 --set run.progress=off");
}

TEST(MultiprocessTest, TheInt8CodecPublishesTheSameModelInBothModes) {
  ExpectSameFinalModel("int8-codec", Experiment(3) + " --set update.codec=int8", 1e-3);
}

TEST(MultiprocessTest, SecAggPlusPublishesTheSameModelInBothModes) {
  ExpectSameFinalModel("secagg-plus", Experiment(2) + " --set secure_aggregation=secagg+", 0.0,
                       /*bit_for_bit=*/true);
}

// A quarter of each round's cohort drops out of the protocol at a seeded
// phase: in-process the simulation stops stepping it, in the deployment the
// fedge-client is told to (fault.secagg_drops) and the aggregator closes the
// unanswered phase at its deadline.
TEST(MultiprocessTest, SecAggPlusWithDropoutsPublishesTheSameModelInBothModes) {
  ExpectSameFinalModel("secagg-plus-dropouts",
                       Experiment(2) +
                           " --set secure_aggregation=secagg+ --set secure_aggregation.dropout=0.25",
                       0.0, /*bit_for_bit=*/true);
  const std::string dir = std::string(FEDGE_TEST_TMP_DIR) + "/equivalence-secagg-plus-dropouts";
  // The scenario did drop devices (one per round, at a random phase: one that
  // drops at unmasking is still in the sum), and no round aborted.
  std::ifstream csv(dir + "/inprocess/rounds.csv");
  std::string line;
  std::getline(csv, line);  // header: ...,secagg_dropped,secagg_aborted
  int rows = 0;
  int dropped = 0;
  while (std::getline(csv, line)) {
    ++rows;
    std::vector<std::string> cells;
    std::stringstream fields(line);
    for (std::string cell; std::getline(fields, cell, ',');) cells.push_back(cell);
    ASSERT_GE(cells.size(), 2u);
    dropped += std::stoi(cells[cells.size() - 2]);
    EXPECT_EQ(cells.back(), "0") << line;
  }
  EXPECT_EQ(rows, 2);
  EXPECT_GE(dropped, 1);
}

// The ε fedge-sim wrote into `out` (summary.json), or -1.
double Epsilon(const std::string& out) {
  std::ifstream summary(out + "/summary.json");
  nlohmann::json json = nlohmann::json::parse(summary, nullptr, /*allow_exceptions=*/false);
  return json.is_object() && json.contains("epsilon") ? json["epsilon"].get<double>() : -1.0;
}

// Runs a DP experiment in both modes: the same final model (as
// ExpectSameFinalModel) and the same ε.
void ExpectSameModelAndEpsilon(const std::string& name, const std::string& args,
                               double tolerance = 1e-4, bool bit_for_bit = false) {
  ExpectSameFinalModel(name, args, tolerance, bit_for_bit, /*expect_learning=*/false);
  const std::string dir = std::string(FEDGE_TEST_TMP_DIR) + "/equivalence-" + name;
  const double in = Epsilon(dir + "/inprocess");
  EXPECT_GT(in, 0.0) << name;
  EXPECT_NEAR(Epsilon(dir + "/multi"), in, 1e-9 * in) << name;
}

TEST(MultiprocessTest, CentralDpWithSeededNoisePublishesTheSameModelAndEpsilon) {
  ExpectSameModelAndEpsilon(
      "central-dp",
      Experiment(3) +
          " --set privacy.mode=central --set privacy.random=seeded --set privacy.clip_norm=1 "
          "--set privacy.noise_multiplier=0.5");
}

// Local DP: each fedge-client clips and noises its own update, its noise
// seeded from its task (privacy.seeded_noise, passed by fedge-sim) exactly as
// the in-process device's. The aggregator folds the noisy updates in arrival
// order (see the top of the file), so two rounds, not bit for bit.
TEST(MultiprocessTest, LocalDpWithSeededNoisePublishesTheSameModelAndEpsilon) {
  ExpectSameModelAndEpsilon(
      "local-dp",
      Experiment(2) +
          " --set privacy.mode=local --set privacy.random=seeded --set privacy.clip_norm=0.1 "
          "--set privacy.noise_multiplier=0.5");
}

// Distributed DP: each device adds its share of the noise inside SecAgg+;
// the sum is exact, so the two modes agree bit for bit.
TEST(MultiprocessTest, DistributedDpUnderSecAggPlusPublishesTheSameModelAndEpsilon) {
  ExpectSameModelAndEpsilon(
      "distributed-dp",
      Experiment(2) +
          " --set privacy.mode=distributed --set privacy.random=seeded --set privacy.clip_norm=1 "
          "--set privacy.noise_multiplier=0.5 --set secure_aggregation=secagg+",
      0.0, /*bit_for_bit=*/true);
}

// Central DP with adaptive clipping under SecAgg+: the devices' bits travel
// masked, the aggregator's count noise is seeded: the same bounds, model
// and ε in both modes.
TEST(MultiprocessTest, AdaptiveClippingUnderSecAggPlusPublishesTheSameModelAndEpsilon) {
  ExpectSameModelAndEpsilon(
      "adaptive-secagg",
      Experiment(2) +
          " --set privacy.mode=central --set privacy.random=seeded --set privacy.clip_norm=0.05 "
          "--set privacy.noise_multiplier=0.5 --set privacy.clipping=adaptive "
          "--set privacy.count_noise_stddev=1 --set secure_aggregation=secagg+",
      0.0, /*bit_for_bit=*/true);
}

TEST(MultiprocessTest, SameConfigSameCurveWithinNoise) {
  const std::string dir = std::string(FEDGE_TEST_TMP_DIR) + "/multiprocess";
  const std::vector<double> in = RunCurve(Experiment(3), dir + "/inprocess");
  const std::vector<double> multi =
      RunCurve(Experiment(3) + " --mode multiprocess", dir + "/multi");
  ASSERT_EQ(in.size(), 3u);
  ASSERT_EQ(multi.size(), 3u);
  for (size_t r = 0; r < in.size(); ++r) {
    EXPECT_NEAR(in[r], multi[r], 0.08) << "round " << r + 1;
  }
  EXPECT_GT(multi.back(), multi.front());
  EXPECT_GT(multi.back(), 0.6);
  // The same report files as the in-process mode.
  std::ifstream summary(dir + "/multi/summary.json");
  nlohmann::json json = nlohmann::json::parse(summary);
  EXPECT_EQ(json["rounds"].get<int>(), 3);
  EXPECT_NEAR(json["final_accuracy"].get<double>(), multi.back(), 1e-9);
  // Each device joined once: fedge-client's own join (for the model spec)
  // is the runner's, not followed by a second one.
  std::ifstream log(dir + "/multi/multiprocess/aggregator.log");
  std::map<std::string, int> joins;
  for (std::string line; std::getline(log, line);) {
    nlohmann::json e = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (e.is_object() && e.value("event", "") == "client_joined") ++joins[e.value("client", "")];
  }
  EXPECT_EQ(joins.size(), 4u);
  for (const auto& [client, count] : joins) EXPECT_EQ(count, 1) << client;
}

TEST(MultiprocessTest, SecureAggregationOverGrpcMatchesThePlainRun) {
  const std::string dir = std::string(FEDGE_TEST_TMP_DIR) + "/multiprocess-secagg";
  const std::string common = Experiment(2) + " --mode multiprocess";
  const std::vector<double> plain = RunCurve(common, dir + "/plain");
  const std::vector<double> secure =
      RunCurve(common + " --set secure_aggregation=secagg+", dir + "/secure");
  ASSERT_EQ(plain.size(), 2u);
  ASSERT_EQ(secure.size(), 2u);
  for (size_t r = 0; r < plain.size(); ++r) {
    EXPECT_NEAR(plain[r], secure[r], 0.03) << "round " << r + 1;
  }
  // The aggregator ran the protocol, and never took an update in the clear.
  std::ifstream log(dir + "/secure/multiprocess/aggregator.log");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_NE(text.str().find("SECAGG_PHASE_UNMASKING"), std::string::npos);
  EXPECT_EQ(text.str().find("update_accepted"), std::string::npos);
}

// Drift where devices really run: one of four fedge-client processes gets
// its shard rotated from round 3 on (fault.drift, chosen as in-process), its
// own DriftMonitor (monitor.enabled) sees it after its round-2 task and
// reports, and fedge-aggregator's extra-round policy gives it an extra round
// alone. The reports are kept in the aggregator's SQLite store. The monitors
// watch the input summaries (ks, psi): a device whose data did not move
// sees the same summaries every time and never reports. (The error-stream
// detectors also notice the model improving, which is not what is tested.)
TEST(MultiprocessTest, ADriftedDeviceReportsAndGetsTheExtraRound) {
  const std::string dir = std::string(FEDGE_TEST_TMP_DIR) + "/multiprocess-drift";
  const std::vector<double> curve = RunCurve(
      Experiment(5) +
          " --mode multiprocess --set drift.type=rotation --set drift.round=3 "
          "--set drift.fraction=0.25 --set monitor.enabled=on --set monitor.detectors=ks,psi "
          "--set policy.reaction=extra-round",
      dir);
  ASSERT_EQ(curve.size(), 5u);
  const std::vector<bool> drifted = fedge::data::ChooseDriftedClients(4, 0.25, 5);
  const size_t which = std::find(drifted.begin(), drifted.end(), true) - drifted.begin();
  ASSERT_LT(which, 4u);
  char id[32];
  std::snprintf(id, sizeof(id), "client-%05zu", which);

  std::ifstream log(dir + "/multiprocess/aggregator.log");
  std::vector<nlohmann::json> events;
  for (std::string line; std::getline(log, line);) {
    nlohmann::json e = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (e.is_object() && e.contains("event")) events.push_back(std::move(e));
  }
  size_t reported = events.size();
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i]["event"] != "drift_reported") continue;
    EXPECT_EQ(events[i]["client"], id) << "only the drifted device reports";
    if (reported == events.size()) reported = i;
  }
  ASSERT_LT(reported, events.size()) << "no device reported drift";
  // Reported after its round-2 task (drift starts in round 3), not before.
  EXPECT_EQ(events[reported]["model_version"], 1);
  // The reaction follows, then a round of the drifted device alone (the
  // next round to open after the reaction: which round id that is depends
  // on whether round 3 opened before the report arrived).
  bool reaction = false;
  int extra_round = 0;
  for (size_t i = reported; i < events.size(); ++i) {
    if (events[i]["event"] == "drift_reaction") reaction = true;
    if (reaction && extra_round == 0 && events[i]["event"] == "round_opened") {
      EXPECT_EQ(events[i]["drift_extra"], "true") << events[i].dump();
      EXPECT_EQ(events[i]["selected"], 1) << events[i].dump();
      extra_round = events[i]["round"].get<int>();
    }
  }
  EXPECT_TRUE(reaction);
  ASSERT_GT(extra_round, 2) << "no extra round";
  // The drifted device trained in it: the round closed with its one update.
  bool closed = false;
  for (const nlohmann::json& e : events) {
    if (e["event"] == "round_closed" && e["round"] == extra_round) closed = e["participants"] == 1;
  }
  EXPECT_TRUE(closed);

  auto store = fedge::aggregator::StateStore::Open(dir + "/multiprocess/aggregator-state");
  ASSERT_TRUE(store.ok()) << store.status();
  auto reports = (*store)->DriftReports();
  ASSERT_TRUE(reports.ok()) << reports.status();
  ASSERT_FALSE(reports->empty());
  for (const fedge::v1::DriftReport& r : *reports) EXPECT_EQ(r.client_id(), id);
}

TEST(MultiprocessTest, RefusesWhatDeploymentsDoNotRunYet) {
  int code = 0;
  const std::string output = RunSim(
      "--mode multiprocess --set partition.num_clients=4 --set round.clients_per_round=4 "
      "--set prune.sparsity=0.5 --out " +
          std::string(FEDGE_TEST_TMP_DIR) + "/refused",
      &code);
  EXPECT_EQ(code, 2) << output;
  EXPECT_NE(output.find("does not support prune.sparsity"), std::string::npos) << output;
}

}  // namespace
