// kill -9 of the fedge-aggregator process in the middle of a round, then a
// restart on the same state directory: the round continues with no accepted
// update lost and none counted twice. The final model must equal, bit for
// bit, the one of an uninterrupted run on the same updates.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "deploy_fixture.h"
#include "fedge/models/signing.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/status_macros.h"

namespace fedge {
namespace {

using ::fedge::testing_util::CertDevice;
using ::fedge::testing_util::CertDir;
using ::fedge::testing_util::ScratchDir;
using ::fedge::testing_util::StatusIs;
using ::fedge::testing_util::WaitForTask;

const std::vector<std::string> kDevices = {"dev-1", "dev-2", "dev-3", "dev-4"};

// A fedge-aggregator process.
class AggregatorProcess {
 public:
  AggregatorProcess(const std::filesystem::path& state, int port) : state_(state) {
    const std::filesystem::path port_file = state.string() + ".port";
    std::filesystem::remove(port_file);
    const std::vector<std::string> args = {FEDGE_AGGREGATOR_BIN,
                                           "--state",
                                           state.string(),
                                           "--set",
                                           "signing_key=" + (CertDir() / "signing.key").string(),
                                           "--set",
                                           "tls.cert=" + (CertDir() / "server.pem").string(),
                                           "--set",
                                           "tls.key=" + (CertDir() / "server.key").string(),
                                           "--set",
                                           "tls.client_ca=" + (CertDir() / "ca.pem").string(),
                                           "--set",
                                           "listen=127.0.0.1:" + std::to_string(port),
                                           "--set",
                                           "port_file=" + port_file.string(),
                                           "--set",
                                           "model.architecture=mlp",
                                           "--set",
                                           "rounds.count=1",
                                           "--set",
                                           "rounds.goal=4",
                                           "--set",
                                           "rounds.min_clients=4",
                                           "--set",
                                           "checkpoint_every=2"};
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string log = state.string() + ".log";
      FILE* out = std::freopen(log.c_str(), "a", stderr);
      (void)out;
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::_Exit(127);
    }
    // Wait for the port file (the server is listening once it exists).
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      absl::StatusOr<std::string> text = proto::ReadFile(port_file);
      if (text.ok())
        port_ = std::stoi(*text);
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~AggregatorProcess() {
    if (pid_ > 0) Kill();
  }
  int port() const { return port_; }
  void Kill() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // SIGTERM, then the exit code (-1 when it did not exit by itself).
  int Terminate() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  // Waits for a normal exit (after its rounds); returns the exit code.
  int WaitExit() {
    int status = 0;
    for (int i = 0; i < 600; ++i) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -2;
  }

 private:
  std::filesystem::path state_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// Runs round 1 with four devices submitting `seeded` updates in order;
// stops the aggregator after `kill_after` accepted updates (never if < 0):
// SIGKILL, or with `graceful` SIGTERM (it must then log its shutdown and
// exit 0). Returns the fp32 master of version 1.
absl::StatusOr<std::vector<float>> RunRound(const std::filesystem::path& state, int kill_after,
                                            bool graceful = false) {
  {
    FEDGE_ASSIGN_OR_RETURN(auto store, aggregator::StateStore::Open(state));
    for (const std::string& id : kDevices) FEDGE_RETURN_IF_ERROR(store->EnrollClient(id, ""));
  }
  auto process = std::make_unique<AggregatorProcess>(state, 0);
  const int port = process->port();
  if (port == 0)
    return absl::InternalError("the aggregator did not start; see " + state.string() + ".log");
  std::vector<std::unique_ptr<client::GrpcTransport>> devices;
  for (const std::string& id : kDevices) {
    client::GrpcTransportOptions options = CertDevice(id, port);
    options.call_timeout = std::chrono::seconds(20);
    FEDGE_ASSIGN_OR_RETURN(auto device, client::GrpcTransport::Create(options));
    devices.push_back(std::move(device));
  }
  std::vector<absl::StatusOr<v1::Task>> tasks(kDevices.size(), absl::UnknownError(""));
  std::vector<std::thread> polls;
  for (size_t i = 0; i < devices.size(); ++i) {
    polls.emplace_back([&, i] { tasks[i] = WaitForTask(*devices[i]); });
  }
  for (std::thread& t : polls) t.join();
  for (auto& task : tasks) FEDGE_RETURN_IF_ERROR(task.status());
  FEDGE_ASSIGN_OR_RETURN(auto model, devices[0]->FetchModel(tasks[0]->model_version()));
  FEDGE_ASSIGN_OR_RETURN(auto layout, models::LayoutOfArtifact(*model));
  const size_t d = static_cast<size_t>(models::LayoutSize(layout));

  auto update = [&](size_t i) {
    std::mt19937 rng(100 + i);
    std::normal_distribution<float> normal(0.0f, 0.05f);
    std::vector<float> delta(d);
    for (float& v : delta) v = normal(rng);
    v1::EncodedUpdate u = testing_util::MakeUpdate(*tasks[i], 0, 0.0f, 7 + 3 * i);
    auto codec = models::CreateUpdateCodec("fp32");
    EXPECT_TRUE((*codec)->Encode(delta, &u).ok());
    return u;
  };
  for (size_t i = 0; i < devices.size(); ++i) {
    if (static_cast<int>(i) == kill_after) {
      if (graceful) {
        const int code = process->Terminate();
        if (code != 0) return absl::InternalError(absl::StrCat("SIGTERM: exit code ", code));
        absl::StatusOr<std::string> log = proto::ReadFile(state.string() + ".log");
        if (!log.ok() || log->find("\"shutdown_requested\"") == std::string::npos ||
            log->find("\"stopped\"") == std::string::npos) {
          return absl::InternalError("SIGTERM: no shutdown_requested / stopped in the log");
        }
      } else {
        process->Kill();  // SIGKILL: no shutdown code runs
      }
      process = std::make_unique<AggregatorProcess>(state, port);
      if (process->port() != port) return absl::InternalError("the restart did not listen");
      // The same device objects reconnect on their own. An update accepted
      // before the stop is refused as a duplicate, not counted twice.
      absl::Status again = absl::UnavailableError("");
      for (int attempt = 0; attempt < 50 && absl::IsUnavailable(again); ++attempt) {
        again = devices[i - 1]->SubmitUpdate(update(i - 1));
        if (absl::IsUnavailable(again)) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      EXPECT_THAT(again, StatusIs(absl::StatusCode::kAlreadyExists));
    }
    FEDGE_RETURN_IF_ERROR(devices[i]->SubmitUpdate(update(i)));
  }
  if (int code = process->WaitExit(); code != 0) {
    return absl::InternalError(absl::StrCat("the aggregator exited with ", code));
  }
  FEDGE_ASSIGN_OR_RETURN(auto store, aggregator::StateStore::Open(state));
  FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store->ReadMaster(1));
  FEDGE_ASSIGN_OR_RETURN(auto rounds, store->Rounds());
  if (rounds.size() != 1 || rounds[0].participants != 4) {
    return absl::InternalError("round 1 should have closed with 4 participants");
  }
  std::vector<float> values(d);
  FEDGE_RETURN_IF_ERROR(models::DecodeArtifact(master, layout, values));
  return values;
}

TEST(KillRestartTest, KilledAggregatorContinuesTheRoundExactly) {
  const std::filesystem::path dir = ScratchDir() / "kill9";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  CertDir();
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<float> uninterrupted, RunRound(dir / "a", -1));
  // Killed after 3 accepted updates: one checkpoint (at 2) and one journaled.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<float> killed, RunRound(dir / "b", 3));
  ASSERT_EQ(uninterrupted.size(), killed.size());
  EXPECT_EQ(uninterrupted, killed);  // bit for bit
  // Killed after 1: no checkpoint yet, the journal alone restores the round.
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<float> early, RunRound(dir / "c", 1));
  EXPECT_EQ(uninterrupted, early);
}

// SIGTERM mid-round: the aggregator logs that it stops, exits 0, and the
// restarted one continues the round with nothing lost or counted twice.
TEST(KillRestartTest, SigtermMidRoundStopsCleanlyAndTheRoundContinues) {
  const std::filesystem::path dir = ScratchDir() / "sigterm";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  CertDir();
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<float> uninterrupted, RunRound(dir / "a", -1));
  FEDGE_ASSERT_OK_AND_ASSIGN(std::vector<float> stopped,
                             RunRound(dir / "b", 2, /*graceful=*/true));
  EXPECT_EQ(uninterrupted, stopped);  // bit for bit
}

TEST(AggregatorConfigTest, ShippedConfigLoadsAndBadKeysAreNamed) {
  const std::string bin = FEDGE_AGGREGATOR_BIN;
  EXPECT_EQ(
      std::system((bin + " --config configs/deploy/aggregator.yaml --check > /dev/null").c_str()),
      0);
  const std::filesystem::path bad = ScratchDir() / "bad.yaml";
  std::ofstream(bad) << "rounds:\n  goal: many\n";
  const std::string out = (ScratchDir() / "bad.out").string();
  EXPECT_NE(std::system((bin + " --config " + bad.string() + " --check 2> " + out).c_str()), 0);
  EXPECT_NE(proto::ReadFile(out)->find("rounds.goal"), std::string::npos);
  EXPECT_NE(std::system((bin + " --set no.such.key=1 --check 2> " + out).c_str()), 0);
  EXPECT_NE(proto::ReadFile(out)->find("unknown config key 'no.such.key'"), std::string::npos);
  // strategy.* is fedge-sim's group (fedge/aggregator/shared_keys.h): the
  // same names and checks; the old names stay aliases.
  EXPECT_NE(std::system((bin + " --set strategy=fedmagic --check 2> " + out).c_str()), 0);
  EXPECT_NE(proto::ReadFile(out)->find("config key 'strategy': unknown value 'fedmagic'; known: "),
            std::string::npos);
  EXPECT_NE(std::system((bin + " --set strategy.trim_fraction=0.6 --check 2> " + out).c_str()), 0);
  EXPECT_NE(proto::ReadFile(out)->find("'strategy.trim_fraction': expected a number in [0, 0.5)"),
            std::string::npos);
  EXPECT_EQ(
      std::system((bin + " --set strategy.name=krum --set strategy.krum_select=2 --set codec=int8"
                         " --set artifact=fp32 --set rounds.deadline_s=2m --check > /dev/null")
                      .c_str()),
      0);
  // --help is generated from the key table.
  EXPECT_EQ(std::system((bin + " --help > " + out).c_str()), 0);
  const std::string help = *proto::ReadFile(out);
  for (const char* key :
       {"strategy.name", "strategy.krum_select", "train.lr_decay", "rounds.deadline_s",
        "secure_aggregation.phase_timeout_s", "(also: strategy)", "(also: codec)"}) {
    EXPECT_NE(help.find(key), std::string::npos) << key;
  }
}

TEST(KillRestartTest, RollbackPublishesAnEarlierModelAsTheNewestVersion) {
  const std::filesystem::path dir = ScratchDir() / "rollback";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  FEDGE_ASSERT_OK(RunRound(dir / "state", -1).status());
  const std::string command = std::string(FEDGE_AGGREGATOR_BIN) + " rollback --state " +
                              (dir / "state").string() + " --signing-key " +
                              (CertDir() / "signing.key").string() + " 0 > /dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0);
  // A version that does not exist is refused, and changes nothing.
  const std::string missing = std::string(FEDGE_AGGREGATOR_BIN) + " rollback --state " +
                              (dir / "state").string() + " --signing-key " +
                              (CertDir() / "signing.key").string() + " 9 2> /dev/null";
  EXPECT_NE(std::system(missing.c_str()), 0);
  FEDGE_ASSERT_OK_AND_ASSIGN(auto store, aggregator::StateStore::Open(dir / "state"));
  FEDGE_ASSERT_OK_AND_ASSIGN(auto versions, store->Versions());
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[2].parent, 0u);
  EXPECT_EQ(versions[2].note, "rollback to 0");
  FEDGE_ASSERT_OK_AND_ASSIGN(auto pinned, models::VerifyingKey::LoadPem(CertDir() / "signing.pub"));
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::ModelArtifact v0, store->ReadMaster(0));
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::ModelArtifact v2, store->ReadMaster(2));
  FEDGE_ASSERT_OK_AND_ASSIGN(v1::ModelArtifact v2_int8, store->ReadArtifact(2));
  FEDGE_EXPECT_OK(models::VerifySignedArtifact(v2, pinned));
  FEDGE_EXPECT_OK(models::VerifySignedArtifact(v2_int8, pinned));
  EXPECT_EQ(v2.header().version(), 2u);
  ASSERT_EQ(v0.tensors_size(), v2.tensors_size());
  for (int i = 0; i < v0.tensors_size(); ++i) EXPECT_EQ(v0.tensors(i).data(), v2.tensors(i).data());
}

}  // namespace
}  // namespace fedge
