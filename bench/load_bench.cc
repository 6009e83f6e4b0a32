// Load benchmark of the deployed aggregator: N simulated devices on loopback
// against one `fedge-aggregator` process serving `cnn-large`.
//
//   fedge_load_bench --clients N [--rounds R] [--work DIR] [--certs DIR]
//                    [--deadline-s S] [--seed S] [--set key=value ...]
//
// What it does:
//  * makes development certificates with scripts/make-dev-certs.sh (or uses
//    --certs DIR, which must hold ca.pem, server.pem/.key, signing.key/.pub);
//  * creates a fresh state directory and enrolls N devices with enrollment
//    tokens (server-side TLS; devices send id + token as call metadata;
//    1,000 distinct client certificates would take minutes of openssl);
//  * starts the real fedge-aggregator binary (fork/exec) with
//    model.architecture=cnn-large, rounds.goal=N, rounds.min_clients=N,
//    rounds.count=R and a deadline of --deadline-s (default 600 s);
//  * runs N devices, one thread each, every one with its own GrpcTransport
//    (its own channel, TLS session and TCP connection), each round: long-poll
//    PollTask, FetchModel (the int8 artifact; SHA-256 and Ed25519 signature
//    checked), and SubmitUpdate of a random fp32 update of the model's
//    dimension (seeded per device and round). One thread per device keeps
//    the device code path the real one (blocking GrpcTransport calls); the
//    price is the load generator's own memory and CPU, which share the
//    machine with the aggregator (its peak RSS is printed too).
//
// Measures:
//  * rounds closed with all N updates (from the state directory afterwards);
//  * errors: every non-OK status at any step of any device (a PollTask that
//    returns no task at the end of its long poll is not an error);
//  * p50 / p99 latency of SubmitUpdate calls (call to return, including the
//    wait for an upload slot at the aggregator);
//  * the aggregator process's peak RSS: ru_maxrss of wait4() on it (exact,
//    kernel-kept; the fork happens before this process grows), with the last
//    VmHWM sampled from /proc/<pid>/status every 10 ms as a cross-check;
//  * the aggregator's CPU seconds (user + system, wait4) after it was ready
//    to serve, divided by the updates it accepted.
//
// Prints a report and, last, one markdown table row:
//   | N | rounds ok | errors | p50 s | p99 s | peak RSS MB | CPU s/update | round s |
// Exit code 0 when every round closed with N updates and there was no error,
// 1 otherwise, 2 on bad arguments or set-up failures.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/client/grpc_transport.h"
#include "fedge/models/artifact.h"
#include "fedge/models/update_codec.h"
#include "fedge/proto/atomic_file.h"

namespace {

namespace fs = std::filesystem;
namespace aggregator = fedge::aggregator;
namespace client = fedge::client;
namespace models = fedge::models;
namespace proto = fedge::proto;
namespace v1 = fedge::v1;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  int clients = 0;  // REQUIRES: >= 1
  int rounds = 3;   // REQUIRES: >= 1
  double deadline_s = 600.0;
  uint64_t seed = 1;
  fs::path work;   // default: a fresh directory under $TMPDIR
  fs::path certs;  // default: made in `work`
  bool keep = false;
  std::vector<std::string> extra_sets;  // passed to the aggregator as --set
};

void Usage() {
  std::fprintf(stderr,
               "usage: fedge_load_bench --clients N [--rounds R] [--work DIR] [--certs DIR]\n"
               "                        [--deadline-s S] [--seed S] [--keep] [--set key=value]\n");
}

// Parses argv; prints the problem and returns nullopt on bad input.
std::optional<BenchOptions> ParseArgs(int argc, char** argv) {
  BenchOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fedge_load_bench: %s needs a value\n", arg.c_str());
        return std::nullopt;
      }
      return std::string(argv[++i]);
    };
    auto bad = [&](const std::string& v, const char* want) {
      std::fprintf(stderr, "fedge_load_bench: %s '%s' is not %s\n", arg.c_str(), v.c_str(), want);
      return std::nullopt;
    };
    if (arg == "--help" || arg == "-h") {
      Usage();
      return std::nullopt;
    } else if (arg == "--keep") {
      options.keep = true;
      continue;
    }
    std::optional<std::string> v = value();
    if (!v.has_value()) return std::nullopt;
    if (arg == "--clients") {
      if (!absl::SimpleAtoi(*v, &options.clients) || options.clients < 1 ||
          options.clients > 10000) {
        return bad(*v, "an integer in [1, 10000]");
      }
    } else if (arg == "--rounds") {
      if (!absl::SimpleAtoi(*v, &options.rounds) || options.rounds < 1 || options.rounds > 1000) {
        return bad(*v, "an integer in [1, 1000]");
      }
    } else if (arg == "--deadline-s") {
      if (!absl::SimpleAtod(*v, &options.deadline_s) ||
          !(options.deadline_s >= 1 && options.deadline_s <= 86400)) {
        return bad(*v, "a number of seconds in [1, 86400]");
      }
    } else if (arg == "--seed") {
      if (!absl::SimpleAtoi(*v, &options.seed)) return bad(*v, "an unsigned integer");
    } else if (arg == "--work") {
      options.work = *v;
    } else if (arg == "--certs") {
      options.certs = *v;
    } else if (arg == "--set") {
      if (v->find('=') == std::string::npos) return bad(*v, "key=value");
      options.extra_sets.push_back(*v);
    } else {
      std::fprintf(stderr, "fedge_load_bench: unknown argument %s\n", arg.c_str());
      Usage();
      return std::nullopt;
    }
  }
  if (options.clients == 0) {
    std::fprintf(stderr, "fedge_load_bench: --clients N is required\n");
    Usage();
    return std::nullopt;
  }
  return options;
}

// SplitMix64: a fast seeded generator for the synthetic updates (the
// aggregator's cost does not depend on the values, only that they are finite).
uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::string DeviceId(int i) { return absl::StrFormat("load-%05d", i); }

std::string DeviceToken(uint64_t seed, int i) {
  uint64_t state = seed * 1000003 + static_cast<uint64_t>(i);
  return absl::StrFormat("%016x%016x", SplitMix(state), SplitMix(state));
}

// What every device thread reports; guarded by `mu`.
struct Results {
  std::mutex mu;
  std::vector<double> submit_seconds;
  int64_t errors = 0;
  std::map<std::string, int64_t> errors_by_step;  // "submit: UNAVAILABLE" -> count
  std::vector<std::string> first_errors;          // the first few, with when
  int64_t submitted = 0;
  Clock::time_point start = Clock::now();  // when the devices started

  void Error(const std::string& step, const absl::Status& status) {
    std::lock_guard<std::mutex> lock(mu);
    ++errors;
    ++errors_by_step[absl::StrCat(step, ": ", absl::StatusCodeToString(status.code()))];
    if (first_errors.size() < 5) {
      first_errors.push_back(absl::StrFormat(
          "at %.1f s, %s: %s", std::chrono::duration<double>(Clock::now() - start).count(), step,
          status.ToString()));
    }
  }
};

struct DeviceContext {
  const BenchOptions* options;
  client::GrpcTransportOptions transport;  // without client_id and token
  Results* results;
  const std::atomic<bool>* stop;
};

// One simulated device: join, then R times poll, download, submit. Retries
// a failed step after a second (each failure counted) until `stop`.
void RunDevice(const DeviceContext& context, int index) {
  Results& results = *context.results;
  auto pause = [] { std::this_thread::sleep_for(std::chrono::seconds(1)); };
  client::GrpcTransportOptions options = context.transport;
  options.client_id = DeviceId(index);
  options.token = DeviceToken(context.options->seed, index);
  absl::StatusOr<std::unique_ptr<client::GrpcTransport>> created =
      client::GrpcTransport::Create(options);
  if (!created.ok()) {
    results.Error("create", created.status());
    return;
  }
  client::GrpcTransport& transport = **created;
  while (!context.stop->load()) {
    absl::StatusOr<v1::JoinResponse> joined = transport.Join();
    if (joined.ok()) break;
    results.Error("join", joined.status());
    pause();
  }
  auto codec = models::CreateUpdateCodec("fp32");
  if (!codec.ok()) {
    results.Error("codec", codec.status());
    return;
  }
  uint64_t last_round = 0;
  while (last_round < static_cast<uint64_t>(context.options->rounds) && !context.stop->load()) {
    absl::StatusOr<v1::Task> task = transport.PollTask(options.client_id);
    if (!task.ok()) {
      if (absl::IsNotFound(task.status())) continue;  // the long poll ended without a task
      if (context.stop->load()) break;
      results.Error("poll", task.status());
      pause();
      continue;
    }
    if (task->round() <= last_round) continue;
    absl::StatusOr<std::shared_ptr<const v1::ModelArtifact>> model =
        transport.FetchModel(task->model_version());
    if (!model.ok()) {
      results.Error("download", model.status());
      pause();
      continue;
    }
    absl::StatusOr<std::vector<models::ParameterLayout>> layout = models::LayoutOfArtifact(**model);
    if (!layout.ok()) {
      results.Error("layout", layout.status());
      pause();
      continue;
    }
    v1::EncodedUpdate update;
    update.set_round(task->round());
    update.set_model_version(task->model_version());
    update.set_client_id(options.client_id);
    update.set_num_examples(32 + index % 32);
    {
      std::vector<float> delta(static_cast<size_t>(models::LayoutSize(*layout)));
      uint64_t state =
          context.options->seed ^ (uint64_t{0x51ED270B} * (index + 1)) ^ (task->round() << 48);
      for (size_t i = 0; i + 1 < delta.size(); i += 2) {
        const uint64_t bits = SplitMix(state);
        // Two values uniform in [-0.01, 0.01).
        delta[i] = (static_cast<float>(bits >> 40) * 0x1p-24f - 0.5f) * 0.02f;
        delta[i + 1] = (static_cast<float>((bits >> 8) & 0xFFFFFF) * 0x1p-24f - 0.5f) * 0.02f;
      }
      if (delta.size() % 2 == 1) delta.back() = 0.0f;
      if (absl::Status s = (*codec)->Encode(delta, &update); !s.ok()) {
        results.Error("encode", s);
        return;
      }
    }
    const Clock::time_point start = Clock::now();
    absl::Status submitted = transport.SubmitUpdate(update);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    {
      std::lock_guard<std::mutex> lock(results.mu);
      results.submit_seconds.push_back(seconds);
    }
    if (!submitted.ok()) {
      results.Error("submit", submitted);
      pause();
      continue;  // a failed upload: the next poll hands out the same task again
    }
    {
      std::lock_guard<std::mutex> lock(results.mu);
      ++results.submitted;
    }
    last_round = task->round();
  }
}

// user + system CPU seconds of a live process, from /proc/<pid>/stat; -1 if
// it cannot be read.
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return -1;
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(line.substr(paren + 2));
  // Fields 3.. of proc(5); utime and stime are fields 14 and 15.
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int n = 3; n <= 15 && fields >> field; ++n) {
    if (n == 14 && !absl::SimpleAtoi(field, &utime)) return -1;
    if (n == 15 && !absl::SimpleAtoi(field, &stime)) return -1;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// VmHWM of a live process in KiB; 0 if it cannot be read (e.g. it exited).
int64_t VmHwmKib(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      int64_t kib = 0;
      std::istringstream(line.substr(6)) >> kib;
      return kib;
    }
  }
  return 0;
}

// Opened/closed timestamps of each round from the aggregator's JSON log.
std::vector<double> RoundSecondsFromLog(const fs::path& log) {
  std::ifstream in(log);
  std::string line;
  std::map<uint64_t, std::pair<int64_t, int64_t>> rounds;
  auto field = [](const std::string& l, const std::string& key) -> int64_t {
    const std::string needle = "\"" + key + "\":";
    const size_t at = l.find(needle);
    if (at == std::string::npos) return -1;
    size_t begin = at + needle.size();
    if (begin < l.size() && l[begin] == '"') ++begin;
    int64_t v = -1;
    std::istringstream(l.substr(begin)) >> v;
    return v;
  };
  while (std::getline(in, line)) {
    const bool opened = line.find("\"event\":\"round_opened\"") != std::string::npos;
    const bool closed = line.find("\"event\":\"round_closed\"") != std::string::npos;
    if (!opened && !closed) continue;
    const int64_t round = field(line, "round");
    const int64_t ts = field(line, "ts_ms");
    if (round < 0 || ts < 0) continue;
    (opened ? rounds[round].first : rounds[round].second) = ts;
  }
  std::vector<double> seconds;
  for (const auto& [round, times] : rounds) {
    if (times.first > 0 && times.second > 0) seconds.push_back((times.second - times.first) / 1e3);
  }
  return seconds;
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

int SetupFailure(const std::string& what) {
  std::fprintf(stderr, "fedge_load_bench: %s\n", what.c_str());
  return 2;
}

std::string Tail(const fs::path& file, int lines) {
  std::ifstream in(file);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0; i < all.size();
       ++i) {
    out += all[i] + "\n";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<BenchOptions> parsed = ParseArgs(argc, argv);
  if (!parsed.has_value()) return 2;
  BenchOptions& options = *parsed;
  const int n = options.clients;

  // --- work directory, certificates, state, enrollment ----------------------
  bool made_work = false;
  if (options.work.empty()) {
    std::string templ = (fs::temp_directory_path() / "fedge-load-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) return SetupFailure("cannot create a work directory");
    options.work = templ;
    made_work = true;
  }
  std::error_code ec;
  fs::create_directories(options.work, ec);
  const fs::path state = options.work / "state";
  if (fs::exists(state)) {
    return SetupFailure(absl::StrCat(state.string(), " exists; the benchmark needs a fresh state ",
                                     "directory (remove it or pick another --work)"));
  }
  if (options.certs.empty()) {
    options.certs = options.work / "certs";
    const std::string make = absl::StrCat("bash '", FEDGE_MAKE_DEV_CERTS, "' '",
                                          options.certs.string(), "' > /dev/null 2>&1");
    if (std::system(make.c_str()) != 0) {
      return SetupFailure(absl::StrCat("making certificates failed: ", make));
    }
  }
  for (const char* file : {"ca.pem", "server.pem", "server.key", "signing.key", "signing.pub"}) {
    if (!fs::exists(options.certs / file)) {
      return SetupFailure(absl::StrCat("--certs ", options.certs.string(), " lacks ", file,
                                       " (make it with scripts/make-dev-certs.sh DIR)"));
    }
  }
  {
    const Clock::time_point start = Clock::now();
    absl::StatusOr<std::unique_ptr<aggregator::StateStore>> store =
        aggregator::StateStore::Open(state);
    if (!store.ok()) return SetupFailure(store.status().ToString());
    for (int i = 0; i < n; ++i) {
      if (absl::Status s = (*store)->EnrollClient(DeviceId(i), DeviceToken(options.seed, i));
          !s.ok()) {
        return SetupFailure(s.ToString());
      }
    }
    std::printf("load_bench: enrolled %d token devices in %.1f s\n", n,
                std::chrono::duration<double>(Clock::now() - start).count());
  }

  // --- the aggregator process ------------------------------------------------
  const fs::path port_file = options.work / "aggregator.port";
  const fs::path log_file = options.work / "aggregator.log";
  fs::remove(port_file, ec);
  std::vector<std::string> args = {
      FEDGE_AGGREGATOR_BIN,
      "--state",
      state.string(),
      "--set",
      "listen=127.0.0.1:0",
      "--set",
      "port_file=" + port_file.string(),
      "--set",
      "signing_key=" + (options.certs / "signing.key").string(),
      "--set",
      "tls.cert=" + (options.certs / "server.pem").string(),
      "--set",
      "tls.key=" + (options.certs / "server.key").string(),
      "--set",
      "model.architecture=cnn-large",
      "--set",
      absl::StrCat("rounds.goal=", n),
      "--set",
      absl::StrCat("rounds.min_clients=", n),
      "--set",
      absl::StrCat("rounds.count=", options.rounds),
      "--set",
      absl::StrCat("rounds.deadline_s=", options.deadline_s),
  };
  for (const std::string& kv : options.extra_sets) {
    args.push_back("--set");
    args.push_back(kv);
  }
  std::vector<char*> child_argv;
  for (std::string& a : args) child_argv.push_back(a.data());
  child_argv.push_back(nullptr);
  const int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return SetupFailure("cannot create " + log_file.string());
  const pid_t parent = ::getpid();
  // Forked before any device thread or gRPC object exists, while this
  // process is small: the child's ru_maxrss then is the aggregator's own.
  const pid_t pid = ::fork();
  if (pid < 0) return SetupFailure("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the benchmark
    if (::getppid() != parent) ::_exit(127);
    ::dup2(log_fd, STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_WRONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDOUT_FILENO);
    ::execv(child_argv[0], child_argv.data());
    ::_exit(127);
  }
  ::close(log_fd);

  // Monitor: samples VmHWM every 10 ms and reaps the process with wait4.
  std::atomic<bool> exited{false};
  std::atomic<int64_t> last_hwm_kib{0};
  int exit_status = 0;
  struct rusage usage = {};
  std::thread monitor([&] {
    while (true) {
      if (int64_t kib = VmHwmKib(pid); kib > 0) last_hwm_kib = std::max(last_hwm_kib.load(), kib);
      if (::wait4(pid, &exit_status, WNOHANG, &usage) == pid) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    exited = true;
  });
  auto kill_aggregator = [&] {
    if (!exited.load()) ::kill(pid, SIGKILL);
    monitor.join();
  };

  int port = 0;
  const Clock::time_point spawn = Clock::now();
  while (port == 0 && !exited.load() && Clock::now() - spawn < std::chrono::seconds(300)) {
    absl::StatusOr<std::string> text = proto::ReadFile(port_file);
    if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port)) break;
    port = 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (port == 0) {
    kill_aggregator();
    return SetupFailure(absl::StrCat("the aggregator did not start; end of ", log_file.string(),
                                     ":\n", Tail(log_file, 10)));
  }
  const double ready_s = std::chrono::duration<double>(Clock::now() - spawn).count();
  const double startup_cpu_s = ProcessCpuSeconds(pid);
  std::printf("load_bench: aggregator pid %d ready on port %d after %.1f s (%.2f CPU s)\n", pid,
              port, ready_s, startup_cpu_s);
  std::fflush(stdout);

  // --- the devices -------------------------------------------------------------
  Results results;
  std::atomic<bool> stop{false};
  DeviceContext context;
  context.options = &options;
  context.transport.target = absl::StrCat("localhost:", port);
  context.transport.ca_file = options.certs / "ca.pem";
  context.transport.pinned_key_file = options.certs / "signing.pub";
  context.transport.poll_wait = std::chrono::seconds(10);
  context.transport.call_timeout = std::chrono::milliseconds(
      static_cast<int64_t>(options.deadline_s * 1000) + 60'000);  // uploads may queue
  context.results = &results;
  context.stop = &stop;
  const Clock::time_point serve_start = Clock::now();
  results.start = serve_start;
  std::vector<std::thread> devices;
  devices.reserve(n);
  for (int i = 0; i < n; ++i) devices.emplace_back(RunDevice, std::cref(context), i);

  // Stop the devices when the aggregator exits (it does after R rounds) or
  // when every round has had its deadline and more.
  const auto give_up = serve_start + std::chrono::milliseconds(static_cast<int64_t>(
                                         (options.deadline_s * options.rounds + 120) * 1000));
  std::thread watchdog([&] {
    while (!exited.load()) {
      if (Clock::now() > give_up) {
        std::fprintf(stderr, "load_bench: giving up: the rounds exceeded their deadlines\n");
        ::kill(pid, SIGTERM);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    while (!exited.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    stop = true;
  });
  for (std::thread& t : devices) t.join();
  const double devices_done_s = std::chrono::duration<double>(Clock::now() - serve_start).count();
  // Every device has finished its rounds; the aggregator exits by itself
  // after closing the last one.
  const auto exit_by = Clock::now() + std::chrono::seconds(120);
  while (!exited.load() && Clock::now() < exit_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!exited.load()) {
    std::fprintf(stderr, "load_bench: the aggregator did not exit after its rounds; stopping it\n");
    ::kill(pid, SIGTERM);
  }
  watchdog.join();
  monitor.join();
  const double serve_s = std::chrono::duration<double>(Clock::now() - serve_start).count();

  // --- results -------------------------------------------------------------------
  const bool clean_exit = WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 0;
  const double cpu_s = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
                       usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
  const double peak_rss_mb = usage.ru_maxrss / 1024.0;  // KiB on Linux
  int rounds_full = 0, rounds_failed = 0, rounds_partial = 0;
  int64_t accepted = 0;
  {
    absl::StatusOr<std::unique_ptr<aggregator::StateStore>> store =
        aggregator::StateStore::Open(state);
    if (!store.ok()) return SetupFailure(store.status().ToString());
    absl::StatusOr<std::vector<aggregator::RoundRecord>> rounds = (*store)->Rounds();
    if (!rounds.ok()) return SetupFailure(rounds.status().ToString());
    for (const aggregator::RoundRecord& r : *rounds) {
      if (r.state == aggregator::RoundState::kClosed) {
        accepted += r.participants;
        (r.participants == n ? rounds_full : rounds_partial)++;
      } else if (r.state == aggregator::RoundState::kFailed) {
        ++rounds_failed;
      } else {
        ++rounds_partial;  // still open: the aggregator was stopped
      }
    }
  }
  const std::vector<double> round_s = RoundSecondsFromLog(log_file);
  std::vector<double> sorted_rounds = round_s;
  const double median_round_s = Percentile(sorted_rounds, 0.5);
  const double p50 = Percentile(results.submit_seconds, 0.50);
  const double p99 = Percentile(results.submit_seconds, 0.99);
  const double serving_cpu_s = cpu_s - std::max(startup_cpu_s, 0.0);
  const double cpu_per_update = accepted > 0 ? serving_cpu_s / accepted : std::nan("");
  struct rusage self = {};
  ::getrusage(RUSAGE_SELF, &self);

  std::printf("load_bench: %d clients, cnn-large, %d rounds, token devices over TLS, loopback\n", n,
              options.rounds);
  std::printf("  aggregator exit: %s\n",
              clean_exit
                  ? "0 (after its rounds)"
                  : absl::StrCat("status ", exit_status, "; see ", log_file.string()).c_str());
  std::printf("  rounds closed with all %d updates: %d/%d (failed %d, short or open %d)\n", n,
              rounds_full, options.rounds, rounds_failed, rounds_partial);
  std::printf("  accepted updates: %lld; devices' successful submits: %lld\n",
              static_cast<long long>(accepted), static_cast<long long>(results.submitted));
  std::printf("  errors: %lld\n", static_cast<long long>(results.errors));
  for (const auto& [what, count] : results.errors_by_step) {
    std::printf("    %-36s %lld\n", what.c_str(), static_cast<long long>(count));
  }
  for (const std::string& e : results.first_errors) std::printf("    e.g. %s\n", e.c_str());
  std::printf("  submit latency: p50 %.3f s, p99 %.3f s over %zu calls\n", p50, p99,
              results.submit_seconds.size());
  std::printf("  round wall times (s):");
  for (double s : round_s) std::printf(" %.2f", s);
  std::printf("\n  aggregator peak RSS: %.1f MB (wait4 ru_maxrss; last VmHWM sample %.1f MB)\n",
              peak_rss_mb, last_hwm_kib.load() / 1024.0);
  std::printf(
      "  aggregator CPU: %.2f s in all, %.2f s at start-up, %.2f s serving; %.4f s per accepted "
      "update\n",
      cpu_s, startup_cpu_s, serving_cpu_s, cpu_per_update);
  std::printf(
      "  wall: %.1f s serving (devices done after %.1f s); load generator peak RSS %.0f MB\n",
      serve_s, devices_done_s, self.ru_maxrss / 1024.0);
  std::printf("| %d | %d/%d | %lld | %.3f | %.3f | %.0f | %.4f | %.1f |\n", n, rounds_full,
              options.rounds, static_cast<long long>(results.errors), p50, p99, peak_rss_mb,
              cpu_per_update, median_round_s);
  std::fflush(stdout);
  if (made_work && !options.keep) fs::remove_all(options.work, ec);
  const bool ok = clean_exit && rounds_full == options.rounds && results.errors == 0;
  return ok ? 0 : 1;
}
