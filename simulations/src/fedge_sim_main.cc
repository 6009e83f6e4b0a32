// fedge-sim: runs a federated simulation and writes its reports.
//
//   fedge-sim [--plugin LIB ...] [--config FILE] [--set key=value ...] [--out DIR]
//
// With no arguments it runs the default experiment (Fashion-MNIST, 100
// clients, Dirichlet(0.5), 10 clients per round, cnn, FedAvg).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fedge/data/partition.h"
#include "fedge/models/artifact.h"
#include "fedge/models/model_zoo.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/plugin.h"
#include "fedge/simulations/config.h"
#include "fedge/simulations/multiprocess.h"
#include "fedge/proto/version.h"
#include "fedge/simulations/report.h"
#include "fedge/simulations/simulation.h"

namespace {

using fedge::simulations::SimulationConfig;

void PrintHelp() {
  std::cout << R"(fedge-sim: federated learning simulation with many virtual clients in one process.

Usage:
  fedge-sim [--plugin LIB ...] [--config FILE] [--set key=value ...] [--out DIR]
            [--mode inprocess|multiprocess]

  (no arguments)      run the default experiment: Fashion-MNIST, 100 clients,
                      Dirichlet(alpha=0.5) label skew, 10 clients per round, cnn, FedAvg
  --config FILE       YAML file; nested keys map to the dotted keys below
                      (train: {learning_rate: 0.05} sets train.learning_rate)
  --set key=value     override one key (repeatable; applied after --config)
  --plugin LIB        load a shared library first, whose registration lines add
                      mechanisms, strategies, codecs or models (repeatable;
                      see examples/custom_mechanism)
  --out DIR           output folder (default: runs/<run.name>): rounds.csv,
                      summary.json, report.html, model_final.pb (the last
                      version as devices download it), student.pb when
                      distilling, drift.json when drift.type or monitor.enabled
                      is set
  --mode MODE         inprocess (default): every client in this process;
                      multiprocess: a real deployment on loopback, one fedge-aggregator
                      and one fedge-client process per client over TLS, with the same
                      config and reports (scratch files in OUT/multiprocess)
  --help              this text

Keys (type, default):
)";
  std::cout << fedge::simulations::ConfigTable().Help(fedge::simulations::DefaultConfig());
  std::cout << "\nExample:\n  fedge-sim --set strategy.name=fedadam --set "
               "strategy.server_learning_rate=0.01 "
               "--set round.rounds=50\n";
}

// A binary of the build: the environment variable `env` when set, else the
// path the build recorded.
std::string SiblingBinary(const char* env, const char* built) {
  const char* value = std::getenv(env);
  return value != nullptr && *value != '\0' ? std::string(value) : std::string(built);
}

int Fail(const std::string& message) {
  std::cerr << "fedge-sim: error: " << message << "\n";
  return 2;
}

std::string FormatDuration(double seconds) {
  const int s = static_cast<int>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

std::string FormatBytes(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000.0 && u < 4) {
    bytes /= 1000.0;
    ++u;
  }
  return absl::StrFormat("%.1f %s", bytes, units[u]);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::printf("fedge-sim %s\n", FEDGE_VERSION_STRING);
    return 0;
  }
  SimulationConfig config = fedge::simulations::DefaultConfig();
  std::string config_file;
  std::vector<std::pair<std::string, std::string>> overrides;
  std::string out_dir;
  std::string mode = "inprocess";

  std::vector<std::string> args(argv + 1, argv + argc);
  // Plug-ins first (--help included): what they register, and the keys they
  // declare, are then valid config.
  if (absl::Status s = fedge::config::LoadPluginFlags(args); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&](const std::string& flag) -> const std::string* {
      if (i + 1 >= args.size()) return nullptr;
      return &args[++i];
    };
    if (arg == "--help" || arg == "-h") {
      PrintHelp();
      return 0;
    } else if (arg == "--config") {
      const std::string* v = value(arg);
      if (v == nullptr) return Fail("--config needs a file name");
      config_file = *v;
    } else if (arg == "--set") {
      const std::string* v = value(arg);
      if (v == nullptr) return Fail("--set needs key=value");
      const size_t eq = v->find('=');
      if (eq == std::string::npos || eq == 0) {
        return Fail(absl::StrCat("--set expects key=value, got '", *v, "'"));
      }
      overrides.emplace_back(v->substr(0, eq), v->substr(eq + 1));
    } else if (arg == "--mode") {
      const std::string* v = value(arg);
      if (v == nullptr || (*v != "inprocess" && *v != "multiprocess")) {
        return Fail("--mode needs inprocess or multiprocess");
      }
      mode = *v;
    } else if (arg == "--out") {
      const std::string* v = value(arg);
      if (v == nullptr) return Fail("--out needs a directory");
      out_dir = *v;
    } else {
      return Fail(absl::StrCat("unknown argument '", arg, "' (see fedge-sim --help)"));
    }
  }

  // The file, then --set on top: a key --set names is not read from the
  // file, so --set can replace what the file has (a wrong value included).
  std::vector<std::string> assignments, labels;
  for (const auto& [key, v] : overrides) {
    assignments.push_back(absl::StrCat(key, "=", v));
    labels.push_back("--set " + assignments.back());
  }
  if (absl::Status s = fedge::simulations::ApplyConfigLayers(
          config, config_file.empty() ? std::vector<std::string>{} : std::vector{config_file},
          assignments, labels);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (absl::Status s = fedge::simulations::ValidateConfig(config); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (out_dir.empty()) out_dir = absl::StrCat("runs/", config.run.name);
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Fail(absl::StrCat("cannot create output folder '", out_dir, "': ", ec.message()));

  const bool tty = isatty(STDERR_FILENO) == 1;
  const bool live = config.run.progress == "on" || (config.run.progress == "auto" && tty);
  const int total_rounds = config.round.rounds;

  std::cerr << "fedge-sim: " << config.run.name << ": " << config.data.dataset << ", "
            << config.partition.num_clients << " clients (" << config.partition.method << "), "
            << fedge::simulations::ClientsPerRound(config) << " per round, "
            << config.model.architecture << ", " << config.strategy << ", " << total_rounds
            << " rounds\n";
  absl::StatusOr<fedge::data::TrainTest> data = fedge::simulations::LoadData(config);
  if (!data.ok()) return Fail(std::string(data.status().message()));

  auto on_round = [&](const fedge::simulations::RoundRecord& r) {
    if (!live && !(r.round == total_rounds || r.round % std::max(1, total_rounds / 10) == 0))
      return;
    const double per_round = r.elapsed_seconds / r.round;
    const std::string privacy =
        config.privacy.mode == "none"
            ? ""
            : absl::StrFormat(" | eps %.4g (delta %g)", r.epsilon, config.privacy.delta);
    const std::string line = absl::StrFormat(
        "round %d/%d | test acc %.2f%% | test loss %.4f | train loss %.4f%s | %.2f s/round | "
        "elapsed %s | ETA %s",
        r.round, total_rounds, 100.0 * r.test_accuracy, r.test_loss, r.train_loss, privacy,
        per_round, FormatDuration(r.elapsed_seconds),
        FormatDuration(per_round * (total_rounds - r.round)));
    if (tty && live) {
      std::cerr << "\r\033[K" << line << std::flush;
      if (r.round == total_rounds) std::cerr << "\n";
    } else {
      std::cerr << line << "\n";
    }
  };

  absl::StatusOr<fedge::simulations::SimulationResult> result;
  if (mode == "multiprocess") {
    fedge::simulations::MultiprocessOptions options;
    options.aggregator_binary = SiblingBinary("FEDGE_AGGREGATOR", FEDGE_AGGREGATOR_BIN);
    options.client_binary = SiblingBinary("FEDGE_CLIENT", FEDGE_CLIENT_BIN);
    options.cert_script = FEDGE_MAKE_DEV_CERTS;
    options.work_dir = std::filesystem::path(out_dir) / "multiprocess";
    // The largest device's examples (each device rebuilds this partition),
    // as the in-process mode caps secure aggregation's weights.
    fedge::data::PartitionOptions partition = config.partition;
    partition.seed = config.run.seed;
    absl::StatusOr<fedge::data::Partition> parts = fedge::data::PartitionExamples(
        data->train.labels, data->train.num_classes, partition);
    if (!parts.ok()) return Fail(std::string(parts.status().message()));
    for (const auto& part : *parts) {
      options.max_client_examples = std::max<uint64_t>(options.max_client_examples, part.size());
    }
    result = fedge::simulations::RunMultiprocess(config, std::move(data->test), options, on_round);
  } else {
    result = fedge::simulations::RunSimulation(config, std::move(*data), on_round);
  }
  if (!result.ok()) return Fail(std::string(result.status().message()));

  const auto& summary = result->summary;
  const std::string csv = out_dir + "/rounds.csv";
  const std::string json = out_dir + "/summary.json";
  const std::string html = out_dir + "/report.html";
  for (const absl::Status& s :
       {fedge::simulations::WriteRoundsCsv(csv, result->rounds),
        fedge::simulations::WriteSummaryJson(json, summary, result->rounds),
        fedge::simulations::WriteHtmlReport(html, summary, result->rounds)}) {
    if (!s.ok()) return Fail(std::string(s.message()));
  }
  for (const auto& [name, artifact] : {std::pair{"model_final.pb", result->final_artifact},
                                       std::pair{"student.pb", result->student_artifact}}) {
    if (artifact == nullptr) continue;
    if (absl::Status s =
            fedge::proto::WriteFileAtomic(out_dir + "/" + name, artifact->SerializeAsString());
        !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }

  if (!summary.stop_reason.empty()) {
    std::cerr << "fedge-sim: stopped after round " << summary.rounds << ": " << summary.stop_reason
              << "\n";
  }
  if (summary.privacy_mode != "none") {
    std::cout << absl::StrFormat("privacy: %s DP, epsilon %.4g at delta %g after %d rounds\n",
                                 summary.privacy_mode, summary.epsilon, summary.delta,
                                 summary.rounds);
  }
  const auto print_device_model = [](const char* what,
                                     const fedge::simulations::DeviceModelSummary& m) {
    std::cout << absl::StrFormat(
        "%s: %s, %d parameters, artifact %s, test accuracy %.2f%%\n", what, m.architecture,
        m.parameters, FormatBytes(static_cast<double>(m.artifact_bytes)), 100.0 * m.accuracy);
    if (m.int8_artifact_bytes > 0) {
      std::cout << absl::StrFormat(
          "%s in int8: artifact %s, test accuracy %.2f%%; one-example latency fp32 %.0f us, "
          "int8 %.0f us (%s)\n",
          what, FormatBytes(static_cast<double>(m.int8_artifact_bytes)), 100.0 * m.int8_accuracy,
          m.fp32_latency_us, m.int8_latency_us, m.int8_engine);
    }
  };
  if (summary.device_model.has_value()) print_device_model("device model", *summary.device_model);
  if (summary.student.has_value()) print_device_model("distilled student", *summary.student);
  if (summary.sparsity > 0.0) {
    std::cout << absl::StrFormat(
        "pruned %.1f%% of the weights; final artifact %s (dense fp32 %s)\n",
        100.0 * summary.sparsity, FormatBytes(static_cast<double>(summary.artifact_bytes)),
        FormatBytes(static_cast<double>(summary.fp32_artifact_bytes)));
  }
  if (result->drift) {
    const fedge::simulations::DriftRunSummary& d = *result->drift;
    const std::string drift_json = out_dir + "/drift.json";
    if (absl::Status s = fedge::simulations::WriteDriftJson(drift_json, d); !s.ok()) {
      return Fail(std::string(s.message()));
    }
    std::cout << absl::StrFormat("drift: %s at round %d in %d of %d clients; reaction %s\n", d.type,
                                 d.injection_round, d.drifted_clients, d.clients, d.reaction);
    if (!d.detectors.empty()) {
      std::cout << absl::StrFormat("  %-20s %14s %10s %12s %14s %12s\n", "detector",
                                   "within 1 round", "detected", "delay rounds", "delay samples",
                                   "false alarms");
    }
    for (const auto& s : d.detectors) {
      std::cout << absl::StrFormat(
          "  %-20s %6d/%-3d %4.0f%% %6d/%-3d %12.2f %14.1f %5d/%-3d %4.1f%%\n", s.detector,
          s.detected_within_one_round, s.drifted_clients,
          s.drifted_clients ? 100.0 * s.detected_within_one_round / s.drifted_clients : 0.0,
          s.detected, s.drifted_clients, s.mean_delay_rounds, s.mean_delay_samples,
          s.clean_with_alarm, s.clean_clients,
          s.clean_clients ? 100.0 * s.clean_with_alarm / s.clean_clients : 0.0);
    }
    if (d.injection_round > 1) {
      std::cout << absl::StrFormat(
          "  pre-drift accuracy %.2f%%, recovery target %.2f%% on drifted data: %s; %d extra "
          "rounds, %d alerts\n",
          100.0 * d.pre_drift_accuracy, 100.0 * d.recovery_target,
          d.recovery_rounds > 0 ? absl::StrCat("recovered after ", d.recovery_rounds, " rounds")
                                : std::string("not recovered"),
          d.extra_rounds, d.alerts);
    }
    if (d.fine_tunes > 0) {
      std::cout << absl::StrFormat(
          "  %d local fine-tunes after drift reports: device stream accuracy %.2f%% (global "
          "model) -> %.2f%% (fine-tuned)\n",
          d.fine_tunes, 100.0 * d.fine_tune_accuracy_before, 100.0 * d.fine_tune_accuracy_after);
    }
    std::cout << "  wrote " << drift_json << "\n";
  }
  std::cout << absl::StrFormat(
      "final accuracy %.2f%% (best %.2f%%) after %d rounds in %s (%.1f s)\n"
      "bytes up %s, down %s; %d parameters; peak RSS %.0f MB\n"
      "wrote %s, %s, %s\n",
      100.0 * summary.final_accuracy, 100.0 * summary.best_accuracy, summary.rounds,
      FormatDuration(summary.wall_seconds), summary.wall_seconds,
      FormatBytes(static_cast<double>(summary.bytes_up)),
      FormatBytes(static_cast<double>(summary.bytes_down)), summary.num_parameters,
      summary.peak_rss_mb, csv, json, html);
  return 0;
}
