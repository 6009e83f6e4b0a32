// Runs the fedge-sim binary as a user would and checks what it writes.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;

struct ProcessResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

ProcessResult FedgeSim(const std::string& args) {
  const std::string command = std::string(FEDGE_SIM_BINARY) + " " + args + " 2>&1";
  ProcessResult run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) run.output.append(buffer, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class FedgeSimCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = std::filesystem::temp_directory_path() /
           ("fedge_sim_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(out_);
  }
  void TearDown() override { std::filesystem::remove_all(out_); }

  std::filesystem::path out_;
};

constexpr char kSmall[] =
    "--set data.dataset=synthetic --set partition.method=natural --set partition.num_clients=30 "
    "--set data.synthetic.devices=30 --set model.architecture=mlp --set round.rounds=4 "
    "--set round.clients_per_round=5 --set run.threads=2 --set run.name=cli-test";

TEST_F(FedgeSimCliTest, DriftRunsWriteDriftJsonAndPrintTheDetectorTable) {
  ProcessResult run = FedgeSim(
      std::string(kSmall) +
      " --set drift.type=label-swap --set drift.round=3 --set drift.fraction=0.2"
      " --set monitor.enabled=on --set monitor.detectors=adwin,ks --set policy.reaction=alert"
      " --out " +
      out_.string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("drift: label-swap at round 3 in 6 of 30 clients"));
  EXPECT_THAT(run.output, HasSubstr("ks:features"));
  nlohmann::json drift = nlohmann::json::parse(ReadFile(out_ / "drift.json"));
  EXPECT_EQ(drift["type"], "label-swap");
  EXPECT_EQ(drift["drifted_clients"], 6);
  EXPECT_EQ(drift["reaction"], "alert");
  ASSERT_EQ(drift["detectors"].size(), 2u);
  EXPECT_EQ(drift["detectors"][0]["detector"], "adwin:error");
  EXPECT_EQ(drift["detectors"][0]["drifted_clients"].get<int>() +
                drift["detectors"][0]["clean_clients"].get<int>(),
            30);
  EXPECT_EQ(drift["rounds"].size(), 4u);
  EXPECT_TRUE(drift.contains("reports_by_version"));
}

TEST_F(FedgeSimCliTest, BadDriftKeysAreRefusedAndWriteNothing) {
  ProcessResult run =
      FedgeSim(std::string(kSmall) + " --set policy.reaction=extra-round --out " + out_.string());
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.output, HasSubstr("needs monitor.enabled on"));
  EXPECT_FALSE(std::filesystem::exists(out_ / "drift.json"));
  run = FedgeSim(std::string(kSmall) +
                 " --set drift.type=label-swap --set drift.round=2 --set drift.swap_b=12" +
                 " --out " + out_.string());
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.output, HasSubstr("class 12"));
  EXPECT_FALSE(std::filesystem::exists(out_ / "drift.json"));
}

TEST_F(FedgeSimCliTest, WritesCsvSummaryAndReport) {
  ProcessResult run = FedgeSim(std::string(kSmall) + " --out " + out_.string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("final accuracy"));

  nlohmann::json summary = nlohmann::json::parse(ReadFile(out_ / "summary.json"));
  for (const char* key : {"final_accuracy", "rounds", "wall_seconds", "bytes_up", "bytes_down"}) {
    EXPECT_TRUE(summary.contains(key)) << key;
  }
  EXPECT_EQ(summary["rounds"], 4);
  EXPECT_GT(summary["final_accuracy"].get<double>(), 0.1);
  EXPECT_GT(summary["bytes_up"].get<double>(), 0);

  const std::string csv = ReadFile(out_ / "rounds.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5);  // header + 4 rounds
  const std::string html = ReadFile(out_ / "report.html");
  EXPECT_THAT(html, HasSubstr("<svg"));
  EXPECT_THAT(html, HasSubstr("cli-test"));
}

TEST_F(FedgeSimCliTest, YamlConfigFileWithOverrides) {
  std::filesystem::create_directories(out_);
  std::ofstream(out_ / "exp.yaml") << "data:\n  dataset: synthetic\n  synthetic:\n    devices: 10\n"
                                      "partition:\n  method: natural\n  num_clients: 10\n"
                                      "model:\n  architecture: mlp\nround:\n  rounds: 50\n"
                                      "  clients_per_round: 3\n";
  ProcessResult run =
      FedgeSim("--config " + (out_ / "exp.yaml").string() +
               " --set round.rounds=2 --set run.threads=1 --out " + (out_ / "run").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  nlohmann::json summary = nlohmann::json::parse(ReadFile(out_ / "run" / "summary.json"));
  EXPECT_EQ(summary["rounds"], 2);  // the override wins over the file
}

TEST_F(FedgeSimCliTest, HelpDocumentsEveryKey) {
  ProcessResult run = FedgeSim("--help");
  EXPECT_EQ(run.exit_code, 0);
  for (const char* key : {"train.learning_rate", "partition.alpha", "strategy.name",
                          "round.clients_per_round", "model.architecture", "data.dir"}) {
    EXPECT_THAT(run.output, HasSubstr(key));
  }
}

TEST_F(FedgeSimCliTest, BadInputGetsAClearErrorAndWritesNothing) {
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"--set train.lr=0.1", "did you mean 'train.learning_rate'"},
      {"--set train.learning_rate=-1", "train.learning_rate"},
      {"--set partition.alpha=0", "partition.alpha"},
      {"--set round.clients_per_round=500", "exceeds partition.num_clients"},
      {"--set strategy.name=fedmagic", "known: fedadagrad"},
      {"--set model.architecture=vgg", "cnn-large"},
      {"--set data.dir=/nonexistent/fmnist --set round.rounds=1", "/nonexistent/fmnist"},
      {"--config /nonexistent.yaml", "cannot read config file"},
      {"--frobnicate", "unknown argument"},
      {"--set novalue", "key=value"},
  };
  for (const Case& c : cases) {
    ProcessResult run = FedgeSim(c.args + " --out " + out_.string());
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr("error")) << c.args;
    EXPECT_THAT(run.output, HasSubstr(c.expect)) << c.args;
    EXPECT_FALSE(std::filesystem::exists(out_ / "summary.json")) << c.args;
  }
}

}  // namespace
