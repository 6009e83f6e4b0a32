// Differential privacy where devices really run: one fedge-aggregator and
// five fedge-client processes over mutual TLS on loopback, central DP with
// SecAgg+ and adaptive clipping, and an ε budget. The aggregator is killed
// (SIGKILL) mid-run and restarted on the same state directory; ε continues
// from where it was, the federation stops at the budget, and no published
// version ever carries an ε above it.
//
// Five devices, rounds.goal 5: Poisson sampling at rate 1, so every round
// is accounted at q = 1 with the configured noise multiplier, and the ε
// after r rounds is exactly privacy::ComputeEpsilon(1, z, r, δ).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "deploy_fixture.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fedge/privacy/accountant.h"
#include "fedge/proto/atomic_file.h"

namespace fedge {
namespace {

using ::fedge::testing_util::CertDir;
using ::fedge::testing_util::ScratchDir;

constexpr int kDevices = 5;
constexpr double kNoise = 2.0;
constexpr double kDelta = 1e-5;
constexpr int kRoundsInBudget = 6;

// A child process, its stderr in `log`; killed with SIGKILL when destroyed.
class Process {
 public:
  Process(const std::vector<std::string>& args, const std::filesystem::path& log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      if (std::freopen(log.c_str(), "a", stderr) == nullptr) std::_Exit(126);
      if (std::freopen("/dev/null", "w", stdout) == nullptr) std::_Exit(126);
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::_Exit(127);
    }
  }
  ~Process() { Kill(); }
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // The exit code once it exited within `timeout`, else nullopt.
  std::optional<int> WaitExit(std::chrono::seconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0 && std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return std::nullopt;
  }

 private:
  pid_t pid_ = -1;
};

std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// How many "round_closed" events the aggregator has logged.
int ClosedRounds(const std::filesystem::path& log) {
  const std::string text = ReadText(log);
  int count = 0;
  for (size_t at = text.find("\"round_closed\""); at != std::string::npos;
       at = text.find("\"round_closed\"", at + 1)) {
    ++count;
  }
  return count;
}

// fedge-aggregator on `dir`/state with the federation's common settings and
// `settings` ("key=value"), after `flags`.
std::unique_ptr<Process> StartAggregatorWith(const std::filesystem::path& dir, int port,
                                             const std::vector<std::string>& flags,
                                             const std::vector<std::string>& settings) {
  const std::filesystem::path port_file = dir / "aggregator.port";
  std::filesystem::remove(port_file);
  std::vector<std::string> args = {FEDGE_AGGREGATOR_BIN, "--state", (dir / "state").string()};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<std::string> all = {
      "signing_key=" + (CertDir() / "signing.key").string(),
      "tls.cert=" + (CertDir() / "server.pem").string(),
      "tls.key=" + (CertDir() / "server.key").string(),
      "tls.client_ca=" + (CertDir() / "ca.pem").string(),
      "listen=127.0.0.1:" + std::to_string(port), "port_file=" + port_file.string(),
      "model.architecture=mlp", absl::StrCat("rounds.goal=", kDevices),
      absl::StrCat("rounds.min_clients=", kDevices), "rounds.sampling=poisson",
      "rounds.deadline_s=30", "train.max_steps=5", "train.batch_size=32",
      "privacy.mode=central", absl::StrCat("privacy.noise_multiplier=", kNoise),
      absl::StrCat("privacy.delta=", kDelta)};
  all.insert(all.end(), settings.begin(), settings.end());
  for (const std::string& kv : all) {
    args.push_back("--set");
    args.push_back(kv);
  }
  return std::make_unique<Process>(args, dir / "aggregator.log");
}

std::unique_ptr<Process> StartAggregator(const std::filesystem::path& dir, int port,
                                         double budget) {
  return StartAggregatorWith(
      dir, port, {},
      {"rounds.count=30", "secure_aggregation=secagg+", "secure_aggregation.phase_timeout_s=10",
       "privacy.clipping=adaptive", "privacy.clip_norm=0.02", "privacy.count_noise_stddev=5",
       absl::StrFormat("privacy.epsilon_budget=%.17g", budget)});
}

int WaitForPort(const std::filesystem::path& dir) {
  for (int i = 0; i < 600; ++i) {
    if (absl::StatusOr<std::string> text = proto::ReadFile(dir / "aggregator.port"); text.ok()) {
      return std::atoi(text->c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return 0;
}

bool HaveData() {
  const std::filesystem::path data(FEDGE_FASHION_MNIST_DIR);
  return std::filesystem::exists(data / "train-images-idx3-ubyte.gz") ||
         std::filesystem::exists(data / "train-images-idx3-ubyte");
}

// A fresh scratch folder whose state directory enrolls dev-1 .. dev-N.
std::filesystem::path Federation(const std::string& name) {
  const std::filesystem::path dir = ScratchDir() / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  absl::StatusOr<std::unique_ptr<aggregator::StateStore>> store =
      aggregator::StateStore::Open(dir / "state");
  EXPECT_TRUE(store.ok()) << store.status();
  for (int i = 1; i <= kDevices && store.ok(); ++i) {
    EXPECT_TRUE((*store)->EnrollClient(absl::StrCat("dev-", i), "").ok());  // certificates
  }
  return dir;
}

// The ε of every version a round published, oldest first.
std::vector<double> PublishedEpsilons(const std::filesystem::path& dir) {
  absl::StatusOr<std::unique_ptr<aggregator::StateStore>> store =
      aggregator::StateStore::Open(dir / "state");
  EXPECT_TRUE(store.ok()) << store.status();
  std::vector<double> epsilons;
  if (!store.ok()) return epsilons;
  absl::StatusOr<std::vector<aggregator::VersionRecord>> versions = (*store)->Versions();
  EXPECT_TRUE(versions.ok()) << versions.status();
  if (!versions.ok()) return epsilons;
  for (const aggregator::VersionRecord& v : *versions) {
    if (v.round == 0) continue;
    auto it = v.metrics.find("epsilon_spent");
    EXPECT_NE(it, v.metrics.end()) << "version " << v.version;
    epsilons.push_back(it == v.metrics.end() ? -1.0 : it->second);
  }
  return epsilons;
}

std::vector<std::unique_ptr<Process>> StartDevices(const std::filesystem::path& dir, int port) {
  std::vector<std::unique_ptr<Process>> devices;
  for (int i = 1; i <= kDevices; ++i) {
    const std::string id = absl::StrCat("dev-", i);
    devices.push_back(std::make_unique<Process>(
        std::vector<std::string>{FEDGE_CLIENT_BIN,
                                 "--aggregator", absl::StrCat("localhost:", port),
                                 "--id", id,
                                 "--cert", (CertDir() / ("client-" + id + ".pem")).string(),
                                 "--key", (CertDir() / ("client-" + id + ".key")).string(),
                                 "--ca", (CertDir() / "ca.pem").string(),
                                 "--pinned-key", (CertDir() / "signing.pub").string(),
                                 "--data", FEDGE_FASHION_MNIST_DIR,
                                 "--shard", std::to_string(i - 1),
                                 "--num-shards", std::to_string(kDevices),
                                 "--state", (dir / id).string(),
                                 "--threads", "1",
                                 "--poll-wait-ms", "1000"},
        dir / (id + ".log")));
  }
  return devices;
}

TEST(PrivateDeploymentTest, CentralDpWithSecAggPlusAndAdaptiveClippingStopsAtTheBudget) {
  if (!HaveData()) GTEST_SKIP() << "no Fashion-MNIST at " << FEDGE_FASHION_MNIST_DIR;
  const std::filesystem::path dir = Federation("private-deployment");
  FEDGE_ASSERT_OK_AND_ASSIGN(const double budget,
                             privacy::ComputeEpsilon(1.0, kNoise, kRoundsInBudget, kDelta));
  const double over = budget * (1 + 1e-9);  // room for exactly kRoundsInBudget rounds

  std::unique_ptr<Process> aggregator = StartAggregator(dir, 0, over);
  const int port = WaitForPort(dir);
  ASSERT_GT(port, 0) << ReadText(dir / "aggregator.log");
  std::vector<std::unique_ptr<Process>> devices = StartDevices(dir, port);

  // Mid-run, once three rounds closed: SIGKILL, then a restart on the same
  // state directory and port. The devices reconnect on their own.
  const auto start = std::chrono::steady_clock::now();
  while (ClosedRounds(dir / "aggregator.log") < 3 &&
         std::chrono::steady_clock::now() - start < std::chrono::minutes(3)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GE(ClosedRounds(dir / "aggregator.log"), 3) << ReadText(dir / "aggregator.log");
  aggregator->Kill();
  aggregator = StartAggregator(dir, port, over);
  ASSERT_EQ(WaitForPort(dir), port) << ReadText(dir / "aggregator.log");

  // The federation stops at the budget: the aggregator exits by itself.
  const std::optional<int> code = aggregator->WaitExit(std::chrono::minutes(4));
  devices.clear();
  const std::string log = ReadText(dir / "aggregator.log");
  ASSERT_TRUE(code.has_value()) << "the aggregator did not stop at the budget:\n" << log;
  EXPECT_EQ(*code, 0) << log;
  EXPECT_NE(log.find("privacy_budget_exhausted"), std::string::npos) << log;

  // Every published version: ε rising round by round exactly as accounted,
  // never above the budget, across the restart; the clip norm moved.
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(dir / "state"));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<aggregator::VersionRecord> versions, store->Versions());
  std::vector<double> epsilons, clips;
  for (const aggregator::VersionRecord& v : versions) {
    if (v.round == 0) continue;
    ASSERT_TRUE(v.metrics.contains("epsilon_spent")) << "version " << v.version;
    epsilons.push_back(v.metrics.at("epsilon_spent"));
    clips.push_back(v.metrics.at("clip_norm"));
  }
  ASSERT_EQ(epsilons.size(), static_cast<size_t>(kRoundsInBudget)) << log;
  for (size_t r = 0; r < epsilons.size(); ++r) {
    FEDGE_ASSERT_OK_AND_ASSIGN(const double expected,
                               privacy::ComputeEpsilon(1.0, kNoise, r + 1, kDelta));
    EXPECT_NEAR(epsilons[r], expected, 1e-9 * expected) << "round " << r + 1;
    EXPECT_LE(epsilons[r], over) << "round " << r + 1;
  }
  // The bound adapts round by round from the securely summed count. With
  // five devices the count noise (std 5) dominates the direction, so only
  // the movement is asserted here (the direction with a larger cohort:
  // PrivacySimulationTest.AdaptiveClippingUnderSecureAggregationMovesTheBound).
  EXPECT_DOUBLE_EQ(clips.front(), 0.02);
  for (size_t r = 1; r < clips.size(); ++r) {
    EXPECT_GT(clips[r], 0.0);
    EXPECT_NE(clips[r], clips[r - 1]) << "round " << r + 1 << ": the bound did not move";
  }
  // The budget survives the restart in the store, with ε.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::string privacy_state, store->GetSetting("privacy_state"));
  EXPECT_FALSE(privacy_state.empty());
  // Under secure aggregation no device sent its training loss in the clear.
  EXPECT_EQ(log.find("update_accepted"), std::string::npos);
}

// fedge-aggregator --plugin: a mechanism from a plug-in library (the
// example's polar-gaussian) noises a deployment's rounds, accounted as the
// mechanism states its cost.
TEST(PrivateDeploymentTest, FedgeAggregatorServesAPlugInMechanism) {
  if (!HaveData()) GTEST_SKIP() << "no Fashion-MNIST at " << FEDGE_FASHION_MNIST_DIR;
  if (std::string(FEDGE_POLAR_GAUSSIAN_LIB).empty()) GTEST_SKIP() << "examples are not built";
  const std::filesystem::path dir = Federation("plugin-deployment");
  std::unique_ptr<Process> aggregator = StartAggregatorWith(
      dir, 0, {"--plugin", FEDGE_POLAR_GAUSSIAN_LIB},
      {"rounds.count=2", "privacy.mechanism=polar-gaussian", "privacy.clip_norm=0.05"});
  const int port = WaitForPort(dir);
  ASSERT_GT(port, 0) << ReadText(dir / "aggregator.log");
  std::vector<std::unique_ptr<Process>> devices = StartDevices(dir, port);
  const std::optional<int> code = aggregator->WaitExit(std::chrono::minutes(3));
  devices.clear();
  const std::string log = ReadText(dir / "aggregator.log");
  ASSERT_TRUE(code.has_value()) << log;
  EXPECT_EQ(*code, 0) << log;
  const std::vector<double> epsilons = PublishedEpsilons(dir);
  ASSERT_EQ(epsilons.size(), 2u) << log;
  for (size_t r = 0; r < epsilons.size(); ++r) {
    FEDGE_ASSERT_OK_AND_ASSIGN(const double expected,
                               privacy::ComputeEpsilon(1.0, kNoise, r + 1, kDelta));
    EXPECT_NEAR(epsilons[r], expected, 1e-9 * expected) << "round " << r + 1;
  }
  // Without the plug-in the name is unknown, and the error says how to load it.
  Process refused({FEDGE_AGGREGATOR_BIN, "--set", "privacy.mechanism=polar-gaussian", "--check"},
                  dir / "refused.log");
  EXPECT_EQ(refused.WaitExit(std::chrono::seconds(30)), 2);
  EXPECT_NE(ReadText(dir / "refused.log").find("--plugin LIB"), std::string::npos)
      << ReadText(dir / "refused.log");
}

}  // namespace
}  // namespace fedge
