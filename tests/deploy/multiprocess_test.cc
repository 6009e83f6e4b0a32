// fedge-sim --mode multiprocess: one fedge-aggregator and four fedge-client
// processes over TLS on loopback, with the config of an in-process run. The
// accuracy curves of the two modes must agree within noise.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>

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

TEST(MultiprocessTest, RefusesWhatDeploymentsDoNotRunYet) {
  int code = 0;
  const std::string output = RunSim(
      "--mode multiprocess --set partition.num_clients=4 --set round.clients_per_round=4 "
      "--set privacy.mode=central --out " +
          std::string(FEDGE_TEST_TMP_DIR) + "/refused",
      &code);
  EXPECT_EQ(code, 2) << output;
  EXPECT_NE(output.find("does not support privacy.mode"), std::string::npos) << output;
}

}  // namespace
