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

TEST(MultiprocessTest, SameConfigSameCurveWithinNoise) {
  const std::string dir = std::string(FEDGE_TEST_TMP_DIR) + "/multiprocess";
  const std::string common =
      "--set partition.num_clients=4 --set round.clients_per_round=4 --set round.rounds=3 "
      "--set model.architecture=mlp --set train.max_steps=20 --set run.seed=5 "
      "--set run.progress=off";
  int code = 0;
  std::string output = RunSim(common + " --out " + dir + "/inprocess", &code);
  ASSERT_EQ(code, 0) << output;
  output = RunSim(common + " --mode multiprocess --out " + dir + "/multi", &code);
  ASSERT_EQ(code, 0) << output;
  const std::vector<double> in = Accuracies(dir + "/inprocess");
  const std::vector<double> multi = Accuracies(dir + "/multi");
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
  const std::string common =
      "--set partition.num_clients=4 --set round.clients_per_round=4 --set round.rounds=2 "
      "--set model.architecture=mlp --set train.max_steps=20 --set run.seed=5 "
      "--set run.progress=off --mode multiprocess";
  int code = 0;
  std::string output = RunSim(common + " --out " + dir + "/plain", &code);
  ASSERT_EQ(code, 0) << output;
  output = RunSim(common + " --set secure_aggregation=secagg+ --out " + dir + "/secure", &code);
  ASSERT_EQ(code, 0) << output;
  const std::vector<double> plain = Accuracies(dir + "/plain");
  const std::vector<double> secure = Accuracies(dir + "/secure");
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
