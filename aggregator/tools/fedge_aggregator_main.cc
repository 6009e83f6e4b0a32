// fedge-aggregator: a federation's aggregator (gRPC over TLS), and the
// operator commands on its state directory.
//
//   fedge-aggregator [serve] --config FILE [--set key=value ...] [--insecure]
//   fedge-aggregator enroll  --state DIR ID [--token TOKEN | --generate-token]
//   fedge-aggregator revoke  --state DIR ID
//   fedge-aggregator rollback --state DIR --signing-key KEY VERSION
//   fedge-aggregator versions --state DIR
//   fedge-aggregator clients  --state DIR
//   fedge-aggregator keygen / endorse-key   (key_commands.h)
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fedge/aggregator/server.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/models/artifact.h"
#include "fedge/models/model_instance.h"
#include "fedge/models/signing.h"
#include "fedge/privacy/secagg/protocol.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/plugin.h"
#include "fedge/proto/log.h"
#include "fedge/proto/version.h"
#include "fedge/proto/status_macros.h"
#include "key_commands.h"
#include "serve_config.h"
#include "validation_set.h"

namespace {

using fedge::aggregator::tools::DefaultServeConfig;
using fedge::aggregator::tools::ServeConfig;
using fedge::aggregator::tools::ServeKeys;

void PrintHelp() {
  std::cout << R"(fedge-aggregator: the aggregator of a fedge federation (gRPC over TLS).

Usage:
  fedge-aggregator [serve] [--plugin LIB ...] --config FILE [--set key=value ...] [--insecure]
                   [--check]
  fedge-aggregator enroll   --state DIR ID [--token TOKEN | --generate-token]
  fedge-aggregator revoke   --state DIR ID
  fedge-aggregator rollback --state DIR --signing-key KEY VERSION
  fedge-aggregator versions --state DIR
  fedge-aggregator clients  --state DIR
)" << fedge::aggregator::tools::kKeyCommandsHelp << R"(
serve: restores DIR (continuing an interrupted round) or starts a federation
with a new model, and runs rounds. Logs are JSON lines on stderr. --check
only reads the config and flags and reports the first error. --plugin loads
a shared library whose mechanisms, strategies or codecs become config values
(examples/custom_mechanism).
enroll: lets device ID join: by its certificate (CN=ID) or, with a token, by
ID and token. rollback: publishes version VERSION's model again as the newest
version (stop the aggregator first). KEY and REF name a PEM file or a
PKCS#11 URI (pkcs11:token=..;object=..?module-path=..&pin-source=..).
keygen: makes a key (in the token for a URI; the private key never leaves
it): ed25519 signs models (--public-out: the PEM devices pin), ec-p256 is a
TLS or CA key (--csr-*: a certificate request for it). endorse-key: appends
to the rotation chain FILE (signing_key_chain) NEXT's endorsement by
CURRENT, the chain's newest key (docs/security.md, "Key rotation").

Keys for serve (YAML nesting maps to dots; --set overrides the file;
--state and --insecure override both):
)" << ServeKeys().Help(DefaultServeConfig());
}

int Fail(const absl::Status& status) {
  std::cerr << "fedge-aggregator: error: " << status.message() << "\n";
  return 2;
}

absl::StatusOr<fedge::v1::ModelArtifact> InitialModel(const ServeConfig& config) {
  fedge::models::ModelSpec spec;
  spec.architecture = config.architecture;
  spec.input_shape = config.input_shape;
  spec.num_classes = config.num_classes;
  FEDGE_ASSIGN_OR_RETURN(auto model, fedge::models::ModelInstance::Create(spec, config.model_seed));
  fedge::models::ArtifactOptions options;
  return fedge::models::BuildFp32Artifact(spec, model->parameters().layout(),
                                          model->parameters().values(), options);
}

volatile std::sig_atomic_t g_stop = 0;  // the signal that asked to stop, or 0

// First SIGINT/SIGTERM: stop gracefully (the watcher below). A second one
// while stopping: exit at once.
void OnStopSignal(int signo) {
  if (g_stop != 0) {
    constexpr char kMessage[] = "fedge-aggregator: second signal, exiting now\n";
    (void)!::write(2, kMessage, sizeof(kMessage) - 1);
    std::_Exit(128 + signo);
  }
  g_stop = signo;
}

// Memory of the serve path goes back to the system (bench/load.sh, 1,000
// devices submitting 2.3 MB cnn-large updates, 3 rounds, BDP probe off):
//  * the large buffers (an update's bytes, the parsed update, its journal
//    record, the decoded delta) are allocated on one thread and freed on
//    another; glibc raises its mmap threshold to the largest block freed, so
//    they end up in per-thread arenas and stay there: peak RSS 2.47 GB after
//    2 rounds;
//  * with a fixed 128 KiB threshold, gRPC's 64 KiB read slices still
//    fragmented the arenas of its I/O threads (malloc_stats: 2.35 GB taken
//    from the system, 315 MB in use): peak 2.40 GB; trimming once a second
//    brought it to 1.96 GB;
//  * a fixed 32 KiB threshold (read slices get their own mappings, unmapped
//    on free) and the trim: peak 775 MB.
// Set before serving; the library is left alone (embedders own their
// allocator policy).
void ReturnFreedMemoryToTheSystem() {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 32 * 1024);  // setting it turns the dynamic threshold off
#endif
}

// Releases the free pages inside malloc's arenas (glibc otherwise returns
// only an arena's top). Called about once a second; it costs milliseconds.
void ReleaseFreeArenaPages() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

int Serve(ServeConfig config) {
  if (config.server.secure_aggregation.has_value()) {
    const auto protocol = config.server.secure_aggregation->protocol.protocol;
    config.server.secure_aggregation = config.secagg;
    config.server.secure_aggregation->protocol.protocol = protocol;
    config.server.secure_aggregation->graph_seed = config.server.policy.seed;
  }
  if (config.server.state_dir.empty()) {
    return Fail(absl::InvalidArgumentError("state_dir is not set (--state DIR)"));
  }
  if (config.privacy.mode != "none") {
    // The sampling rate (the round's devices over the enrolled ones) is
    // set when the server opens its state directory.
    absl::StatusOr<fedge::aggregator::PrivateAggregationOptions> privacy =
        fedge::aggregator::PrivateAggregationOptionsFrom(config.privacy, config.server.policy.goal,
                                                         /*sampling_rate=*/0.0,
                                                         config.server.policy.seed);
    if (!privacy.ok()) return Fail(privacy.status());
    config.server.privacy = *std::move(privacy);
    config.server.seeded_sampling |= config.privacy.random == "seeded";
    if (config.privacy.mode != "local" && config.server.drift.has_value() &&
        config.server.drift->reaction == "extra-round") {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "policy.reaction 'extra-round' with privacy.mode '", config.privacy.mode,
          "': extra rounds pick the devices that reported drift, not a Poisson sample, so the "
          "privacy accounting would not hold; use policy.reaction 'alert' or 'none'")));
    }
    if (config.privacy.mode != "local" && config.server.sampling != "poisson") {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "rounds.sampling 'fixed' with privacy.mode '", config.privacy.mode,
          "': the privacy accounting assumes Poisson sampling (each device drawn independently); "
          "set rounds.sampling=poisson")));
    }
    if (config.privacy.random == "seeded") {
      fedge::LogEvent("warning", "seeded_privacy_noise", {},
                      "privacy.random=seeded: the noise is reproducible from rounds.seed, so "
                      "whoever knows the seed can remove it; use it for tests only");
    }
  }
  ReturnFreedMemoryToTheSystem();
  if (!config.validation_dir.empty()) {
    absl::StatusOr<std::shared_ptr<const fedge::aggregator::ValidationSet>> validation =
        fedge::aggregator::ValidationSet::Load(config.validation_dir, config.validation_examples);
    if (!validation.ok()) {
      return Fail(absl::Status(validation.status().code(),
                               absl::StrCat("validation.data: ", validation.status().message())));
    }
    fedge::LogEvent(
        "info", "validation_set",
        {{"dir", config.validation_dir}, {"examples", std::to_string((*validation)->size())}});
    config.server.validate = [set = *validation](const fedge::v1::ModelArtifact& master) {
      return set->Evaluate(master);
    };
  }
  absl::StatusOr<std::unique_ptr<fedge::aggregator::StateStore>> probe =
      fedge::aggregator::StateStore::Open(config.server.state_dir);
  if (!probe.ok()) return Fail(probe.status());
  const bool empty = !(*probe)->LatestVersion().ok();
  probe->reset();
  if (empty) {
    absl::StatusOr<fedge::v1::ModelArtifact> initial = InitialModel(config);
    if (!initial.ok()) return Fail(initial.status());
    config.server.initial_model = *std::move(initial);
  }
  absl::StatusOr<std::unique_ptr<fedge::aggregator::AggregatorServer>> server =
      fedge::aggregator::AggregatorServer::Start(config.server);
  if (!server.ok()) return Fail(server.status());
  if (!config.port_file.empty()) {
    absl::Status s =
        fedge::proto::WriteFileAtomic(config.port_file, std::to_string((*server)->port()) + "\n");
    if (!s.ok()) return Fail(s);
  }
  if (!config.ops_port_file.empty()) {
    if ((*server)->ops_port() == 0) {
      return Fail(absl::InvalidArgumentError("ops.port_file is set but ops.listen is not"));
    }
    absl::Status s = fedge::proto::WriteFileAtomic(config.ops_port_file,
                                                   std::to_string((*server)->ops_port()) + "\n");
    if (!s.ok()) return Fail(s);
  }
  // SIGINT/SIGTERM: stop serving; an open round stays open in the state
  // directory (its accepted updates are journaled) and continues at the next
  // start. A second signal exits at once.
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    for (int tick = 1; !done.load(); ++tick) {
      if (g_stop != 0) {
        fedge::LogEvent("info", "shutdown_requested",
                        {{"signal", g_stop == SIGINT ? "SIGINT" : "SIGTERM"}},
                        "stopping: no new calls are taken; an open round continues at the next "
                        "start (a second signal exits at once)");
        (*server)->Shutdown();
        return;
      }
      if (tick % 20 == 0) ReleaseFreeArenaPages();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  absl::Status status = (*server)->Wait();
  done = true;
  watcher.join();
  (*server)->Shutdown();
  if (!status.ok()) return Fail(status);
  fedge::LogEvent("info", "stopped",
                  {{"why", g_stop != 0 ? "signal" : "rounds done"},
                   {"latest_version", std::to_string((*server)->latest_version())}});
  return 0;
}

int Rollback(const std::string& state_dir, const std::string& key_file, uint64_t target) {
  absl::StatusOr<fedge::models::SigningKey> key = fedge::models::SigningKey::Load(key_file);
  if (!key.ok()) return Fail(key.status());
  auto store = fedge::aggregator::StateStore::Open(state_dir);
  if (!store.ok()) return Fail(store.status());
  auto latest = (*store)->LatestVersion();
  if (!latest.ok()) return Fail(latest.status());
  auto master = (*store)->ReadMaster(target);
  if (!master.ok()) return Fail(master.status());
  auto artifact = (*store)->ReadArtifact(target);
  if (!artifact.ok()) return Fail(artifact.status());
  const uint64_t version = latest->version + 1;
  fedge::aggregator::VersionRecord record;
  record.version = version;
  record.parent = target;
  record.created_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  record.note = absl::StrCat("rollback to ", target);
  for (fedge::v1::ModelArtifact* a : {&*master, &*artifact}) {
    absl::Status s = fedge::models::VerifySignedArtifact(*a, key->public_key());
    if (!s.ok()) return Fail(s);
    a->mutable_header()->set_version(version);
    a->mutable_header()->set_parent_version(target);
    a->mutable_header()->set_created_at_unix_ms(record.created_at_ms);
    (*a->mutable_header()->mutable_metrics())["rollback_of"] = static_cast<double>(target);
    s = fedge::models::SignArtifact(*a, *key);
    if (!s.ok()) return Fail(s);
  }
  record.master_bytes = master->ByteSizeLong();
  record.artifact_bytes = artifact->ByteSizeLong();
  record.metrics["rollback_of"] = static_cast<double>(target);
  absl::Status s = (*store)->AddVersion(record, *master, *artifact);
  if (!s.ok()) return Fail(s);
  std::cout << "published version " << version << " = the model of version " << target << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::printf("fedge-aggregator %s\n", FEDGE_VERSION_STRING);
    return 0;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  // Plug-ins first: what they register is then a valid config value.
  if (absl::Status s = fedge::config::LoadPluginFlags(args); !s.ok()) return Fail(s);
  std::string command = "serve";
  if (!args.empty() && args[0].rfind("--", 0) != 0) {
    command = args[0];
    args.erase(args.begin());
  }
  if (command == "help" || (!args.empty() && (args[0] == "--help" || args[0] == "-h"))) {
    PrintHelp();
    return 0;
  }
  if (fedge::aggregator::tools::IsKeyCommand(command)) {
    std::map<std::string, std::string> flags;
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i].rfind("--", 0) != 0 || i + 1 >= args.size()) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat(command, ": expected --flag value pairs, got '", args[i], "'")));
      }
      flags[args[i].substr(2)] = args[i + 1];
      ++i;
    }
    absl::Status s = fedge::aggregator::tools::RunKeyCommand(command, flags);
    return s.ok() ? 0 : Fail(s);
  }
  ServeConfig config = DefaultServeConfig();
  std::vector<std::string> config_files, overrides;
  bool insecure = false;
  std::vector<std::string> positional;
  std::string state_dir, signing_key, token;
  bool generate_token = false;
  bool check_only = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) {
        std::cerr << "fedge-aggregator: error: " << arg << " needs a value\n";
        std::exit(2);
      }
      return args[++i];
    };
    if (arg == "--config") {
      config_files.push_back(value());
    } else if (arg == "--set") {
      overrides.push_back(value());
    } else if (arg == "--check") {
      check_only = true;
    } else if (arg == "--insecure") {
      insecure = true;
    } else if (arg == "--state") {
      state_dir = value();
    } else if (arg == "--signing-key") {
      signing_key = value();
    } else if (arg == "--token") {
      token = value();
    } else if (arg == "--generate-token") {
      generate_token = true;
    } else if (arg.rfind("--", 0) == 0) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg)));
    } else {
      positional.push_back(arg);
    }
  }
  // The files, then --set on top: a key --set names is not read from a file.
  std::vector<std::string> labels;
  for (const std::string& assignment : overrides) labels.push_back("--set " + assignment);
  if (absl::Status s = ServeKeys().ApplyLayers(config, config_files, overrides, labels); !s.ok()) {
    return Fail(s);
  }
  if (insecure) config.server.tls.insecure = true;
  if (!state_dir.empty()) config.server.state_dir = state_dir;
  if (command == "serve") {
    if (!positional.empty()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("unexpected argument ", positional[0])));
    }
    if (check_only) {
      std::cout << "config OK\n";
      return 0;
    }
    return Serve(std::move(config));
  }
  if (state_dir.empty()) return Fail(absl::InvalidArgumentError("--state DIR is required"));
  if (command == "enroll" || command == "revoke") {
    if (positional.size() != 1) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(command, " takes one device id")));
    }
    auto store = fedge::aggregator::StateStore::Open(state_dir);
    if (!store.ok()) return Fail(store.status());
    if (command == "revoke") {
      if (absl::Status s = (*store)->RevokeClient(positional[0]); !s.ok()) return Fail(s);
      std::cout << "revoked " << positional[0] << "\n";
      return 0;
    }
    if (generate_token) {
      absl::StatusOr<std::string> generated = fedge::aggregator::GenerateEnrollmentToken();
      if (!generated.ok()) return Fail(generated.status());
      token = *std::move(generated);
    }
    if (absl::Status s = (*store)->EnrollClient(positional[0], token); !s.ok()) return Fail(s);
    if (token.empty()) {
      std::cout << "enrolled " << positional[0] << " (certificate CN=" << positional[0] << ")\n";
    } else {
      std::cout << "enrolled " << positional[0] << " with token " << token << "\n";
    }
    return 0;
  }
  if (command == "rollback") {
    uint64_t target;
    if (positional.size() != 1 || !absl::SimpleAtoi(positional[0], &target)) {
      return Fail(absl::InvalidArgumentError("rollback takes one version number"));
    }
    if (signing_key.empty()) return Fail(absl::InvalidArgumentError("--signing-key is required"));
    return Rollback(state_dir, signing_key, target);
  }
  if (command == "versions" || command == "clients") {
    auto store = fedge::aggregator::StateStore::Open(state_dir);
    if (!store.ok()) return Fail(store.status());
    if (command == "clients") {
      auto clients = (*store)->Clients();
      if (!clients.ok()) return Fail(clients.status());
      for (const auto& c : *clients) {
        std::cout << absl::StrFormat("%-24s %-12s %s\n", c.id,
                                     c.token_sha256.empty() ? "certificate" : "token",
                                     c.revoked ? "revoked" : "enrolled");
      }
      return 0;
    }
    auto versions = (*store)->Versions();
    if (!versions.ok()) return Fail(versions.status());
    std::cout << absl::StrFormat("%-8s %-8s %-6s %-12s %-12s %-12s %s\n", "version", "parent",
                                 "round", "int8_bytes", "fp32_bytes", "status", "note");
    for (const auto& v : *versions) {
      std::string note = v.note;
      if (!v.status_reason.empty()) note += (note.empty() ? "" : "; ") + v.status_reason;
      std::cout << absl::StrFormat("%-8d %-8d %-6d %-12d %-12d %-12s %s\n", v.version, v.parent,
                                   v.round, v.artifact_bytes, v.master_bytes, v.status, note);
    }
    return 0;
  }
  return Fail(absl::InvalidArgumentError(absl::StrCat("unknown command '", command, "'")));
}
