#include "client_config.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "fedge/data/dataset.h"
#include "fedge/client/transport_registry.h"

namespace fedge::client::tools {
namespace {

using Key = config::Key<ClientToolConfig>;

// A flag and the key it sets; a flag without a value sets `fixed`.
struct Flag {
  const char* flag;
  const char* key;
  const char* fixed = nullptr;
};

constexpr Flag kFlags[] = {
    {"--aggregator", "aggregator"},
    {"--id", "device_id"},
    {"--pinned-key", "pinned_key"},
    {"--ca", "tls.ca"},
    {"--cert", "tls.cert"},
    {"--key", "tls.key"},
    {"--token", "tls.token"},
    {"--insecure", "tls.insecure", "true"},
    {"--data", "data.dir"},
    {"--shard", "partition.shard"},
    {"--num-shards", "partition.num_clients"},
    {"--partition", "partition.method"},
    {"--alpha", "partition.alpha"},
    {"--shards-per-client", "partition.shards_per_client"},
    {"--min-examples", "partition.min_examples"},
    {"--partition-seed", "partition.seed"},
    {"--state", "state_dir"},
    {"--tasks", "max_tasks"},
    {"--codec", "codec"},
    {"--threads", "threads"},
    {"--poll-wait-ms", "poll_wait_ms"},
    {"--transport", "transport"},
};

const Flag* FindFlag(const std::string& arg) {
  for (const Flag& f : kFlags) {
    if (arg == f.flag) return &f;
  }
  return nullptr;
}

std::vector<Key> DataKeys() {
  return {
      Key::Bool(
          "monitor.enabled",
          "watch the device's data for drift after each task (a DriftMonitor; its state survives "
          "a restart) and report drift to the aggregator",
          [](const ClientToolConfig& c) { return c.monitor; },
          [](ClientToolConfig& c, bool v) { c.monitor = v; }),
      Key::List(
          "monitor.detectors",
          "the drift monitor's detectors, each name or name:stream (error, loss, confidence, "
          "features)",
          [](const ClientToolConfig& c) { return c.monitor_detectors; },
          [](ClientToolConfig& c, std::vector<std::string> v) {
            c.monitor_detectors = std::move(v);
          })
          .NonEmpty(),
      Key::Enum(
          "fault.drift",
          "tests only: drift this device's data (none, rotation, noise, label-swap) from round "
          "fault.drift_round on",
          [] { return std::vector<std::string>{"label-swap", "noise", "none", "rotation"}; },
          [](const ClientToolConfig& c) { return c.drift.type; },
          [](ClientToolConfig& c, const std::string& v) { c.drift.type = v; }),
      Key::Int(
          "fault.drift_round", "tests only: the first round whose task sees drifted data",
          [](const ClientToolConfig& c) { return static_cast<int64_t>(c.drift.round); },
          [](ClientToolConfig& c, int64_t v) { c.drift.round = static_cast<int>(v); })
          .Min(1)
          .Max(1'000'000),
      Key::Double(
          "fault.drift_rotation_degrees", "tests only: rotation angle",
          [](const ClientToolConfig& c) { return c.drift.rotation_degrees; },
          [](ClientToolConfig& c, double v) { c.drift.rotation_degrees = v; })
          .AtLeast(-360)
          .AtMost(360),
      Key::Double(
          "fault.drift_noise_std", "tests only: noise std, in units of the value range",
          [](const ClientToolConfig& c) { return c.drift.noise_std; },
          [](ClientToolConfig& c, double v) { c.drift.noise_std = v; })
          .AtLeast(0)
          .AtMost(1e6),
      Key::Int(
          "fault.drift_swap_a", "tests only: label-swap's first class",
          [](const ClientToolConfig& c) { return static_cast<int64_t>(c.drift.swap_a); },
          [](ClientToolConfig& c, int64_t v) { c.drift.swap_a = static_cast<int>(v); })
          .Min(0)
          .Max(1'000'000),
      Key::Int(
          "fault.drift_swap_b", "tests only: label-swap's second class",
          [](const ClientToolConfig& c) { return static_cast<int64_t>(c.drift.swap_b); },
          [](ClientToolConfig& c, int64_t v) { c.drift.swap_b = static_cast<int>(v); })
          .Min(0)
          .Max(1'000'000),
      Key::Enum(
          "transport", "how the device reaches the aggregator (a registered client transport)",
          RegisteredClientTransports,
          [](const ClientToolConfig& c) { return c.transport; },
          [](ClientToolConfig& c, const std::string& v) { c.transport = v; }),
      Key::String(
          "fault.secagg_drops",
          "tests only: drop out of secure aggregation, ROUND:PHASE,... (phase 1-4; 1: never "
          "advertise keys)",
          [](const ClientToolConfig& c) {
            std::string text;
            for (const auto& [round, phase] : c.secagg_drops) {
              absl::StrAppend(&text, text.empty() ? "" : ",", round, ":", phase);
            }
            return text;
          },
          [](ClientToolConfig& c, const std::string& v) {
            c.secagg_drops = ParseSecAggDrops(v).value_or(std::map<uint64_t, int>{});
          })
          .Check([](const config::Value& v) {
            return ParseSecAggDrops(std::get<std::string>(v)).status();
          }),
      Key::String(
          "data.dir", "IDX dataset directory (gzipped or not)",
          [](const ClientToolConfig& c) { return c.data_dir; },
          [](ClientToolConfig& c, const std::string& v) { c.data_dir = v; })
          .NonEmpty(),
      Key::Enum(
          "partition.method", "how the training split is divided among the clients",
          data::PartitionMethods,
          [](const ClientToolConfig& c) { return c.partition.method; },
          [](ClientToolConfig& c, const std::string& v) { c.partition.method = v; }),
      Key::Int(
          "partition.num_clients", "clients the training split is divided among",
          [](const ClientToolConfig& c) { return c.partition.num_clients; },
          [](ClientToolConfig& c, int64_t v) { c.partition.num_clients = static_cast<int>(v); })
          .Min(1)
          .Max(10'000'000),
      Key::Int(
          "partition.shard", "this device's part (below partition.num_clients)",
          [](const ClientToolConfig& c) { return c.shard; },
          [](ClientToolConfig& c, int64_t v) { c.shard = static_cast<int>(v); })
          .Min(0)
          .Max(10'000'000),
      Key::Double(
          "partition.alpha",
          "Dirichlet concentration (dirichlet, quantity-skew); smaller = more skew",
          [](const ClientToolConfig& c) { return c.partition.alpha; },
          [](ClientToolConfig& c, double v) { c.partition.alpha = v; })
          .Above(0),
      Key::Int(
          "partition.shards_per_client", "label shards per client (shards)",
          [](const ClientToolConfig& c) { return c.partition.shards_per_client; },
          [](ClientToolConfig& c, int64_t v) {
            c.partition.shards_per_client = static_cast<int>(v);
          })
          .Min(1)
          .Max(1'000'000),
      Key::Int(
          "partition.min_examples", "fewest examples a client may get (dirichlet, quantity-skew)",
          [](const ClientToolConfig& c) { return c.partition.min_examples_per_client; },
          [](ClientToolConfig& c, int64_t v) {
            c.partition.min_examples_per_client = static_cast<int>(v);
          })
          .Min(0)
          .Max(1'000'000),
      Key::Int(
          "partition.seed", "seed of the partition (fedge-sim's run.seed)",
          [](const ClientToolConfig& c) { return static_cast<int64_t>(c.partition.seed); },
          [](ClientToolConfig& c, int64_t v) { c.partition.seed = static_cast<uint64_t>(v); })
          .Min(0),
  };
}

}  // namespace

absl::StatusOr<std::map<uint64_t, int>> ParseSecAggDrops(const std::string& text) {
  std::map<uint64_t, int> drops;
  if (text.empty()) return drops;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(entry, ':');
    uint64_t round = 0;
    int phase = 0;
    if (!absl::SimpleAtoi(parts.first, &round) || !absl::SimpleAtoi(parts.second, &phase) ||
        round < 1 || phase < 1 || phase > 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected ROUND:PHASE entries (round >= 1, phase 1-4), got '", entry, "'"));
    }
    drops[round] = phase;
  }
  return drops;
}

ClientToolConfig DefaultClientToolConfig() {
  ClientToolConfig config;
  config.data_dir = data::kDefaultFashionMnistDir;
  config.partition.num_clients = 1;
  config.partition.seed = 1;
  return config;
}

const config::KeyTable<ClientToolConfig>& ClientToolKeys() {
  static const auto* table = [] {
    // fedge-client has no training budget and no loss-stream detector (its
    // drift monitor is monitor.enabled): those keys of the C API are left
    // out rather than accepted and ignored.
    auto* t = new config::KeyTable<ClientToolConfig>("fedge-client");
    t->Include(
        DeviceKeys().Without({"budget", "drift"}, ""),
        [](const ClientToolConfig& c) { return c.device; },
        [](ClientToolConfig& c, DeviceConfig d) { c.device = std::move(d); });
    for (Key& key : DataKeys()) t->Add(std::move(key));
    return t;
  }();
  return *table;
}

std::string ClientToolHelp() {
  std::string help = R"(fedge-client: a fedge device process. Trains on its shard of an IDX dataset
(e.g. Debian's Fashion-MNIST) for an aggregator reached over gRPC + TLS.

Usage:
  fedge-client [--config FILE] [--set key=value ...] [flags]
  fedge-client --aggregator HOST:PORT --id ID --pinned-key signing.pub
               (--ca ca.pem (--cert C --key K | --token T) | --insecure)
               [--data DIR] [--shard I --num-shards N] [--state DIR] [--tasks N]

  --config FILE     YAML file; nested keys map to the dotted keys below
  --set key=value   set one key (repeatable); --set and the flags apply after
                    the files, in command-line order

Flags (each sets one key):
)";
  for (const Flag& f : kFlags) {
    absl::StrAppendFormat(&help, "  %-22s %s%s\n", f.flag, f.key,
                          f.fixed ? absl::StrCat("=", f.fixed) : std::string());
  }
  help += "\nKeys (type, default):\n";
  help += ClientToolKeys().Help(DefaultClientToolConfig());
  return help;
}

absl::StatusOr<ClientToolConfig> LoadClientToolConfig(const std::vector<std::string>& args) {
  const config::KeyTable<ClientToolConfig>& keys = ClientToolKeys();
  std::vector<std::string> files;
  // (what the user wrote, key=value), in command-line order.
  std::vector<std::pair<std::string, std::string>> assignments;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const Flag* flag = FindFlag(arg);
    const bool takes_value = arg == "--config" || arg == "--set" || (flag && !flag->fixed);
    if (flag == nullptr && !takes_value) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg, " (see --help)"));
    }
    if (takes_value && i + 1 >= args.size()) {
      return absl::InvalidArgumentError(absl::StrCat(arg, " needs a value (see --help)"));
    }
    if (arg == "--config") {
      files.push_back(args[++i]);
    } else if (arg == "--set") {
      ++i;
      assignments.emplace_back("--set " + args[i], args[i]);
    } else if (flag->fixed) {
      assignments.emplace_back(arg, absl::StrCat(flag->key, "=", flag->fixed));
    } else {
      assignments.emplace_back(arg, absl::StrCat(flag->key, "=", args[++i]));
    }
  }
  ClientToolConfig config = DefaultClientToolConfig();
  // The files, then the flags and --set on top: a key they name is not read
  // from a file.
  std::vector<std::string> written, values;
  for (const auto& [flag, assignment] : assignments) {
    written.push_back(flag);
    values.push_back(assignment);
  }
  if (absl::Status s = keys.ApplyLayers(config, files, values, written); !s.ok()) return s;
  if (config.shard >= config.partition.num_clients) {
    return absl::InvalidArgumentError(absl::StrCat("partition.shard (--shard) ", config.shard,
                                                   " is not below partition.num_clients "
                                                   "(--num-shards) ",
                                                   config.partition.num_clients));
  }
  if (config.device.state_dir.empty() && !config.device.transport.client_id.empty()) {
    config.device.state_dir = "fedge-device-" + config.device.transport.client_id;
  }
  if (absl::Status s = ValidateDeviceConfig(config.device); !s.ok()) return s;
  return config;
}

}  // namespace fedge::client::tools
