#include "fedge/client/device_config.h"

#include <chrono>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fedge/client/drift_detector.h"
#include "fedge/models/pkcs11.h"
#include "fedge/models/update_codec.h"

namespace fedge::client {
namespace {

using config::DurationUnit;
using Key = config::Key<DeviceConfig>;
using std::chrono::milliseconds;

constexpr int64_t kMiB = 1024 * 1024;

// A file or directory; `field` returns the path member of a const or
// mutable config.
template <typename Field>
Key Path(std::string name, std::string help, Field field) {
  return Key::String(
      std::move(name), std::move(help),
      [field](const DeviceConfig& c) { return field(c).string(); },
      [field](DeviceConfig& c, const std::string& v) { field(c) = v; });
}

std::vector<std::string> DriftDetectorChoices() {
  std::vector<std::string> names = RegisteredDriftDetectors();
  names.insert(names.begin(), "none");
  return names;
}

// The device watches its training loss: one number per observation and no
// reference window.
absl::Status CheckLossDetector(const config::Value& value) {
  const std::string& name = std::get<std::string>(value);
  if (name == "none") return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<DriftDetector>> detector = CreateDriftDetector(name);
  if (!detector.ok()) return detector.status();
  if ((*detector)->observation_size() != 1 || (*detector)->uses_reference()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", name, "' does not watch a loss stream (use page-hinkley, adwin or none)"));
  }
  return absl::OkStatus();
}

}  // namespace

DeviceConfig DefaultDeviceConfig() {
  DeviceConfig config;
  config.transport.poll_wait = milliseconds(5000);
  return config;
}

const config::KeyTable<DeviceConfig>& DeviceKeys() {
  static const config::KeyTable<DeviceConfig>* table = [] {
    auto* t = new config::KeyTable<DeviceConfig>(
        "", {
                Key::String(
                    "aggregator",
                    "the aggregator's address, host:port (its certificate must name the host)",
                    [](const DeviceConfig& c) { return c.transport.target; },
                    [](DeviceConfig& c, const std::string& v) { c.transport.target = v; }),
                Key::String(
                    "device_id", "this device's id (the CN of its certificate, or its enrolled id)",
                    [](const DeviceConfig& c) { return c.transport.client_id; },
                    [](DeviceConfig& c, const std::string& v) { c.transport.client_id = v; }),
                Path(
                    "pinned_key",
                    "the aggregator's Ed25519 public key (PEM): models it did not sign are refused",
                    [](auto& c) -> auto& { return c.transport.pinned_key_file; }),
                Path(
                    "state_dir",
                    "device state directory: encrypted pending updates, their key and the current "
                    "model",
                    [](auto& c) -> auto& { return c.state_dir; }),
                Path(
                    "tls.ca", "CA of the aggregator's certificate (PEM)",
                    [](auto& c) -> auto& { return c.transport.ca_file; }),
                Path(
                    "tls.cert", "this device's certificate (mutual TLS; with tls.key)",
                    [](auto& c) -> auto& { return c.transport.cert_file; }),
                Path(
                    "tls.key",
                    "this device's private key (with tls.cert): a PEM file, or a PKCS#11 URI "
                    "(pkcs11:token=..;object=..?module-path=..&pin-source=..) of a key on its token",
                    [](auto& c) -> auto& { return c.transport.key_file; })
                    .Check([](const config::Value& v) { return models::CheckKeyRef(std::get<std::string>(v)); }),
                Key::Bool(
                    "tls.enroll",
                    "when tls.cert does not exist: make tls.key, send a CSR with tls.token and "
                    "store the certificate the aggregator issues at tls.cert",
                    [](const DeviceConfig& c) { return c.transport.enroll; },
                    [](DeviceConfig& c, bool v) { c.transport.enroll = v; }),
                Key::String(
                    "tls.token", "enrollment token (devices without a certificate)",
                    [](const DeviceConfig& c) { return c.transport.token; },
                    [](DeviceConfig& c, const std::string& v) { c.transport.token = v; }),
                Key::Bool(
                    "tls.insecure", "plaintext (aggregators started with --insecure; tests only)",
                    [](const DeviceConfig& c) { return c.transport.insecure; },
                    [](DeviceConfig& c, bool v) { c.transport.insecure = v; }),
                Key::Int(
                    "threads", "LibTorch intra-op threads",
                    [](const DeviceConfig& c) { return c.threads; },
                    [](DeviceConfig& c, int64_t v) { c.threads = static_cast<int>(v); })
                    .Min(1),
                Key::Enum(
                    "codec", "update codec", models::RegisteredUpdateCodecs,
                    [](const DeviceConfig& c) { return c.codec; },
                    [](DeviceConfig& c, const std::string& v) { c.codec = v; })
                    .Pluggable(),
                Key::Duration(
                    "poll_wait_ms", "longest wait of one task poll", DurationUnit::kMilliseconds,
                    [](const DeviceConfig& c) { return c.transport.poll_wait; },
                    [](DeviceConfig& c, milliseconds v) { c.transport.poll_wait = v; })
                    .AtLeast(1),
                Key::Duration(
                    "call_timeout_ms", "deadline of every other call to the aggregator",
                    DurationUnit::kMilliseconds,
                    [](const DeviceConfig& c) { return c.transport.call_timeout; },
                    [](DeviceConfig& c, milliseconds v) { c.transport.call_timeout = v; })
                    .AtLeast(1),
                Key::Int(
                    "max_tasks", "stop after this many completed tasks (0: no limit)",
                    [](const DeviceConfig& c) { return c.max_tasks; },
                    [](DeviceConfig& c, int64_t v) { c.max_tasks = v; })
                    .Min(0),
                Key::Int(
                    "budget.max_training_memory_mb",
                    "refuse a task whose training would need more memory, in MiB (0: no limit)",
                    [](const DeviceConfig& c) { return c.budget.max_training_bytes / kMiB; },
                    [](DeviceConfig& c, int64_t v) { c.budget.max_training_bytes = v * kMiB; })
                    .Min(0)
                    .Max(std::numeric_limits<int64_t>::max() / kMiB),
                Key::Duration(
                    "budget.max_task_seconds",
                    "stop a task's training after this long (0: no limit)", DurationUnit::kSeconds,
                    [](const DeviceConfig& c) { return c.budget.max_training_time; },
                    [](DeviceConfig& c, milliseconds v) { c.budget.max_training_time = v; })
                    .AtLeast(0),
                Key::Duration(
                    "budget.policy_poll_ms",
                    "how often the app's policy callback is asked while training",
                    DurationUnit::kMilliseconds,
                    [](const DeviceConfig& c) { return c.budget.policy_poll; },
                    [](DeviceConfig& c, milliseconds v) { c.budget.policy_poll = v; })
                    .AtLeast(1),
                Key::Enum(
                    "drift.detector", "loss-stream drift detector watching training (none: off)",
                    DriftDetectorChoices, [](const DeviceConfig& c) { return c.drift_detector; },
                    [](DeviceConfig& c, const std::string& v) { c.drift_detector = v; })
                    .Check(CheckLossDetector),
                Key::Bool(
                    "privacy.require_secure_aggregation",
                    "refuse tasks that send the update in the clear (no secure aggregation)",
                    [](const DeviceConfig& c) { return c.privacy_floor.require_secure_aggregation; },
                    [](DeviceConfig& c, bool v) { c.privacy_floor.require_secure_aggregation = v; }),
                Key::Double(
                    "privacy.max_clip_norm",
                    "refuse DP tasks whose clip bound is larger or unset (0: no limit)",
                    [](const DeviceConfig& c) { return c.privacy_floor.max_clip_norm; },
                    [](DeviceConfig& c, double v) { c.privacy_floor.max_clip_norm = v; })
                    .AtLeast(0)
                    .AtMost(1e9),
                Key::Double(
                    "privacy.min_noise_multiplier",
                    "refuse tasks whose aggregate noise multiplier is smaller, or that ask for no "
                    "DP (0: no minimum)",
                    [](const DeviceConfig& c) { return c.privacy_floor.min_noise_multiplier; },
                    [](DeviceConfig& c, double v) { c.privacy_floor.min_noise_multiplier = v; })
                    .AtLeast(0)
                    .AtMost(1e6),
                Key::Double(
                    "privacy.local_noise_multiplier",
                    "Gaussian noise this device adds to its clipped update itself, in units of "
                    "the clip bound (0: none)",
                    [](const DeviceConfig& c) { return c.privacy_floor.local_noise_multiplier; },
                    [](DeviceConfig& c, double v) { c.privacy_floor.local_noise_multiplier = v; })
                    .AtLeast(0)
                    .AtMost(1e6),
                Key::Bool(
                    "privacy.seeded_noise",
                    "DP noise reproducible from the task's seed (simulations and tests only: "
                    "whoever knows the seed can remove it)",
                    [](const DeviceConfig& c) { return c.seeded_noise; },
                    [](DeviceConfig& c, bool v) { c.seeded_noise = v; }),
            });
    // Names of ClientTransportOptions fields and of other tools' keys.
    for (const auto& [from, to] :
         std::vector<std::pair<std::string, std::string>>{{"ca_file", "ca"},
                                                          {"cert_file", "cert"},
                                                          {"key_file", "key"},
                                                          {"pinned_key_file", "pinned_key"},
                                                          {"target", "aggregator"},
                                                          {"id", "device_id"},
                                                          {"client_id", "device_id"}}) {
      t->SuggestLeaf(from, to);
    }
    return t;
  }();
  return *table;
}

absl::Status ValidateDeviceConfig(const DeviceConfig& config) {
  if (absl::Status s = DeviceKeys().CheckRequired(
          config, {"aggregator", "device_id", "pinned_key", "state_dir"});
      !s.ok()) {
    return s;
  }
  const ClientTransportOptions& t = config.transport;
  if (!t.insecure && t.ca_file.empty()) {
    return absl::InvalidArgumentError(
        "config key 'tls.ca' is required unless tls.insecure is true");
  }
  if (t.cert_file.empty() != t.key_file.empty()) {
    return absl::InvalidArgumentError("config keys 'tls.cert' and 'tls.key' go together");
  }
  if (t.enroll && (t.cert_file.empty() || t.token.empty() || t.insecure)) {
    return absl::InvalidArgumentError(
        "config key 'tls.enroll' needs 'tls.cert', 'tls.key' and 'tls.token', and TLS "
        "(not tls.insecure)");
  }
  if (!t.insecure && t.cert_file.empty() && t.token.empty()) {
    return absl::InvalidArgumentError(
        "config needs 'tls.cert' and 'tls.key' (mutual TLS) or 'tls.token'");
  }
  return absl::OkStatus();
}

}  // namespace fedge::client
