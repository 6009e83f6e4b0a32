#include "fedge/simulations/multiprocess.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "fedge/aggregator/round_manager.h"
#include "fedge/aggregator/state_store.h"
#include "fedge/client/dataset_store.h"
#include "fedge/client/trainer.h"
#include "fedge/models/artifact.h"
#include "fedge/models/model_instance.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/log.h"
#include "fedge/proto/status_macros.h"

namespace fedge::simulations {

using client::MakeExampleStore;
using data::Dataset;

namespace {

constexpr int kMaxClients = 64;

// A child process; killed (SIGTERM, then SIGKILL) when destroyed if still
// running.
class Child {
 public:
  static absl::StatusOr<Child> Spawn(const std::vector<std::string>& args,
                                     const std::filesystem::path& log) {
    const pid_t pid = ::fork();
    if (pid < 0) return absl::InternalError("fork failed");
    if (pid == 0) {
      if (std::freopen(log.c_str(), "w", stderr) == nullptr) std::_Exit(126);
      if (std::freopen("/dev/null", "w", stdout) == nullptr) std::_Exit(126);
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::_Exit(127);
    }
    return Child(pid);
  }
  Child(Child&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  ~Child() { Stop(); }

  // The exit code once it has exited, or nullopt while it runs.
  std::optional<int> Poll() {
    if (pid_ <= 0) return exit_code_;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    return exit_code_;
  }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100 && !Poll().has_value(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  explicit Child(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  std::optional<int> exit_code_;
};

std::string Number(double v) { return absl::StrFormat("%.17g", v); }

std::string LastLines(const std::filesystem::path& log) {
  absl::StatusOr<std::string> text = proto::ReadFile(log);
  if (!text.ok()) return "";
  const size_t from = text->size() > 600 ? text->size() - 600 : 0;
  return text->substr(from);
}

}  // namespace

absl::Status CheckMultiprocessConfig(const SimulationConfig& config) {
  auto refuse = [](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--mode multiprocess does not support ", key, ": ", why));
  };
  if (config.data.dataset == "synthetic") {
    return refuse("data.dataset=synthetic", "devices read IDX files (fashion-mnist, mnist)");
  }
  if (config.partition.method == "natural") {
    return refuse("partition.method=natural", "use iid, dirichlet, shards or quantity-skew");
  }
  if (config.partition.num_clients > kMaxClients) {
    return refuse(absl::StrCat("partition.num_clients=", config.partition.num_clients),
                  absl::StrCat("one process per client: at most ", kMaxClients));
  }
  if (config.drift.type != "none" && config.drift.type != "rotation" &&
      config.drift.type != "noise" && config.drift.type != "label-swap") {
    return refuse("drift.type=" + config.drift.type,
                  "fedge-client injects rotation, noise and label-swap");
  }
  if (config.drift.type != "none" && config.drift.mode != "sudden") {
    return refuse("drift.mode=" + config.drift.mode, "fedge-client injects sudden drift");
  }
  if (config.reaction.extra_rounds != 1 || config.reaction.extra_round_clients != 0) {
    return refuse("policy.extra_rounds / policy.extra_round_clients",
                  "fedge-aggregator runs one extra round of the devices that asked");
  }
  if (config.proxy.examples > 0) return refuse("proxy.examples", "no proxy data in deployments");
  if (config.distill.student != "none") return refuse("distill.student", "not in deployments");
  if (config.prune.sparsity > 0.0) return refuse("prune.sparsity", "not yet in deployments");
  if (config.clip_norm > 0.0) return refuse("update.clip_norm", "not yet in deployments");
  if (UsesErrorFeedback(config) || config.codec == "qsgd" || config.codec == "topk") {
    return refuse("update.codec=" + config.codec,
                  "fedge-client takes no codec options or error feedback yet");
  }
  if (config.secure_aggregation.dropout > 0.0 && UsesPoissonSampling(config)) {
    return refuse("secure_aggregation.dropout with Poisson sampling",
                  "the devices are told their dropouts from the fixed-size cohorts");
  }
  return absl::OkStatus();
}

absl::StatusOr<SimulationResult> RunMultiprocess(const SimulationConfig& config, Dataset test,
                                                 const MultiprocessOptions& options,
                                                 const RoundCallback& on_round) {
  FEDGE_RETURN_IF_ERROR(ValidateConfig(config));
  FEDGE_RETURN_IF_ERROR(CheckMultiprocessConfig(config));
  for (const auto& binary : {options.aggregator_binary, options.client_binary}) {
    if (::access(binary.c_str(), X_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("cannot run ", binary.string()));
    }
  }
  const auto run_start = std::chrono::steady_clock::now();
  const std::filesystem::path work = options.work_dir;
  std::error_code ec;
  std::filesystem::remove_all(work, ec);
  std::filesystem::create_directories(work, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", work.string()));
  const std::filesystem::path certs = work / "certs";
  const std::string make_certs =
      absl::StrCat("bash '", options.cert_script.string(), "' '", certs.string(), "' > '",
                   (work / "certs.log").string(), "' 2>&1");
  if (std::system(make_certs.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("making development certificates failed; see ",
                                            (work / "certs.log").string()));
  }

  // Enroll the devices with fresh tokens.
  const std::filesystem::path state = work / "aggregator-state";
  const int clients = config.partition.num_clients;
  std::vector<std::string> ids(clients);
  std::vector<std::string> tokens(clients);
  {
    FEDGE_ASSIGN_OR_RETURN(auto store, aggregator::StateStore::Open(state));
    for (int i = 0; i < clients; ++i) {
      ids[i] = absl::StrFormat("client-%05d", i);
      FEDGE_ASSIGN_OR_RETURN(tokens[i], aggregator::GenerateEnrollmentToken());
      FEDGE_RETURN_IF_ERROR(store->EnrollClient(ids[i], tokens[i]));
    }
  }

  const int per_round = ClientsPerRound(config);
  const std::filesystem::path port_file = work / "aggregator.port";
  const v1::TrainConfig& train = config.train;
  std::vector<std::string> aggregator_args = {
      options.aggregator_binary.string(),
      "--state",
      state.string(),
      "--set",
      "signing_key=" + (certs / "signing.key").string(),
      "--set",
      "tls.cert=" + (certs / "server.pem").string(),
      "--set",
      "tls.key=" + (certs / "server.key").string(),
      "--set",
      "listen=127.0.0.1:0",
      "--set",
      "port_file=" + port_file.string(),
      "--set",
      "model.architecture=" + config.model.architecture,
      "--set",
      absl::StrCat("model.seed=", config.run.seed),
      "--set",
      "strategy=" + config.strategy,
      "--set",
      "strategy.server_learning_rate=" + Number(config.strategy_options.server_learning_rate),
      "--set",
      "strategy.server_momentum=" + Number(config.strategy_options.server_momentum),
      "--set",
      "strategy.beta1=" + Number(config.strategy_options.beta1),
      "--set",
      "strategy.beta2=" + Number(config.strategy_options.beta2),
      "--set",
      "strategy.tau=" + Number(config.strategy_options.tau),
      "--set",
      "codec=" + config.codec,
      "--set",
      "artifact=" + config.artifact.precision,
      "--set",
      absl::StrCat("rounds.count=", config.round.rounds),
      "--set",
      absl::StrCat("rounds.goal=", per_round),
      "--set",
      absl::StrCat("rounds.min_clients=", clients),
      "--set",
      "rounds.min_updates=1",  // as in-process: what arrived closes a round at its deadline
      "--set",
      "rounds.deadline_s=3600",
      "--set",
      absl::StrCat("rounds.seed=", config.run.seed),
      "--set",
      "rounds.sampling_random=seeded",  // the in-process run's cohorts
      "--set",
      absl::StrCat("train.local_epochs=", train.local_epochs()),
      "--set",
      absl::StrCat("train.batch_size=", train.batch_size()),
      "--set",
      "train.learning_rate=" + Number(train.learning_rate()),
      "--set",
      "train.momentum=" + Number(train.momentum()),
      "--set",
      "train.lr_decay=" + Number(config.lr_decay),
      "--set",
      "train.weight_decay=" + Number(train.weight_decay()),
      "--set",
      "train.proximal_mu=" + Number(train.proximal_mu()),
      "--set",
      absl::StrCat("train.max_steps=", train.max_steps()),
      "--set",
      absl::StrCat("train.seed=", config.run.seed)};
  if (UsesPoissonSampling(config)) {
    aggregator_args.push_back("--set");
    aggregator_args.push_back("rounds.sampling=poisson");
  }
  if (config.privacy.mode != "none") {
    const aggregator::PrivacyChoice& p = config.privacy;
    for (const std::string& kv :
         {"privacy.mode=" + p.mode, "privacy.mechanism=" + p.mechanism,
          "privacy.noise_multiplier=" + Number(p.noise_multiplier),
          "privacy.clipping=" + p.clipping, "privacy.clip_norm=" + Number(p.clip_norm),
          "privacy.target_quantile=" + Number(p.target_quantile),
          "privacy.clip_learning_rate=" + Number(p.clip_learning_rate),
          "privacy.count_noise_stddev=" + Number(p.count_noise_stddev),
          "privacy.delta=" + Number(p.delta), "privacy.epsilon_budget=" + Number(p.epsilon_budget),
          "privacy.integer_scale=" + Number(p.integer_scale), "privacy.random=" + p.random}) {
      aggregator_args.push_back("--set");
      aggregator_args.push_back(kv);
    }
  }
  if (config.monitor.enabled) {
    const aggregator::DriftPolicyOptions& policy = config.reaction.policy;
    for (const std::string& kv :
         {"policy.reaction=" + policy.reaction,
          absl::StrCat("policy.window_rounds=", policy.window_rounds),
          "policy.threshold=" + Number(policy.threshold),
          absl::StrCat("policy.cooldown_rounds=", policy.cooldown_rounds)}) {
      aggregator_args.push_back("--set");
      aggregator_args.push_back(kv);
    }
  }
  if (config.secure_aggregation.protocol != "none") {
    // As in-process: weights are example counts, capped above every
    // client's count, so none is cut.
    const double bound =
        config.clip_norm > 0.0 ? config.clip_norm : config.secure_aggregation.bound;
    for (const std::string& kv :
         {"secure_aggregation=" + config.secure_aggregation.protocol,
          "secure_aggregation.threshold=" + Number(config.secure_aggregation.threshold),
          absl::StrCat("secure_aggregation.neighbours=", config.secure_aggregation.neighbours),
          absl::StrCat("secure_aggregation.min_survivors=",
                       config.secure_aggregation.min_survivors),
          "secure_aggregation.bound=" + Number(bound),
          absl::StrCat("secure_aggregation.max_weight=", options.max_client_examples)}) {
      aggregator_args.push_back("--set");
      aggregator_args.push_back(kv);
    }
  }
  // Simulated dropouts: each device is told the rounds and phases it drops
  // out at (the cohorts the coordinator will draw, and the drops the
  // in-process mode simulates); a phase left unanswered closes at its
  // deadline, so the deadlines are short.
  std::vector<std::string> drops(static_cast<size_t>(clients));
  if (config.secure_aggregation.protocol != "none" && config.secure_aggregation.dropout > 0.0) {
    for (int r = 1; r <= config.round.rounds; ++r) {
      FEDGE_ASSIGN_OR_RETURN(std::vector<std::string> cohort,
                             aggregator::RoundManager::SelectCohort(ids, per_round,
                                                                    config.run.seed, r));
      const std::vector<int> phases = SecAggDropPhases(config, r, cohort.size());
      for (size_t j = 0; j < cohort.size(); ++j) {
        if (phases[j] > 4) continue;
        std::string& text = drops[std::stoul(cohort[j].substr(std::string("client-").size()))];
        absl::StrAppend(&text, text.empty() ? "" : ",", r, ":", phases[j]);
      }
    }
    for (const char* kv : {"rounds.deadline_s=15", "secure_aggregation.phase_timeout_s=5"}) {
      aggregator_args.push_back("--set");
      aggregator_args.push_back(kv);
    }
  }
  FEDGE_ASSIGN_OR_RETURN(Child aggregator, Child::Spawn(aggregator_args, work / "aggregator.log"));
  int port = 0;
  for (int i = 0; i < 1200 && port == 0; ++i) {
    if (absl::StatusOr<std::string> text = proto::ReadFile(port_file); text.ok()) {
      port = std::atoi(text->c_str());
    } else if (aggregator.Poll().has_value()) {
      return absl::InternalError(
          absl::StrCat("fedge-aggregator exited at start: ", LastLines(work / "aggregator.log")));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  if (port == 0) return absl::DeadlineExceededError("fedge-aggregator did not start listening");

  // The devices whose data drifts: the in-process choice for the seed.
  const std::vector<bool> drifted =
      config.drift.type != "none"
          ? data::ChooseDriftedClients(static_cast<size_t>(clients), config.drift.fraction,
                                       config.run.seed)
          : std::vector<bool>(static_cast<size_t>(clients), false);
  std::vector<Child> devices;
  for (int i = 0; i < clients; ++i) {
    std::vector<std::string> args = {options.client_binary.string(),
                                     "--aggregator",
                                     absl::StrCat("localhost:", port),
                                     "--id",
                                     ids[i],
                                     "--token",
                                     tokens[i],
                                     "--ca",
                                     (certs / "ca.pem").string(),
                                     "--pinned-key",
                                     (certs / "signing.pub").string(),
                                     "--data",
                                     config.data.dir,
                                     "--shard",
                                     std::to_string(i),
                                     "--num-shards",
                                     std::to_string(clients),
                                     "--partition",
                                     config.partition.method,
                                     "--alpha",
                                     Number(config.partition.alpha),
                                     "--shards-per-client",
                                     std::to_string(config.partition.shards_per_client),
                                     "--min-examples",
                                     std::to_string(config.partition.min_examples_per_client),
                                     "--partition-seed",
                                     std::to_string(config.run.seed),
                                     "--state",
                                     (work / ids[i]).string(),
                                     "--threads",
                                     std::to_string(std::max(1, config.run.intra_op_threads)),
                                     "--codec",
                                     config.codec};
    if (config.privacy.mode != "none" && config.privacy.random == "seeded") {
      // As in-process: each device's noise reproducible from its task.
      args.push_back("--set");
      args.push_back("privacy.seeded_noise=true");
    }
    if (config.monitor.enabled) {
      args.push_back("--set");
      args.push_back("monitor.enabled=true");
      args.push_back("--set");
      args.push_back("monitor.detectors=" + absl::StrJoin(config.monitor.options.detectors, ","));
    }
    if (drifted[static_cast<size_t>(i)]) {
      const DriftScenarioOptions& d = config.drift;
      for (const std::string& kv :
           {"fault.drift=" + d.type, absl::StrCat("fault.drift_round=", d.round),
            "fault.drift_rotation_degrees=" + Number(d.rotation_degrees),
            "fault.drift_noise_std=" + Number(d.noise_std),
            absl::StrCat("fault.drift_swap_a=", d.swap_a),
            absl::StrCat("fault.drift_swap_b=", d.swap_b)}) {
        args.push_back("--set");
        args.push_back(kv);
      }
    }
    if (!drops[static_cast<size_t>(i)].empty()) {
      args.push_back("--set");
      args.push_back("fault.secagg_drops=" + drops[static_cast<size_t>(i)]);
    }
    FEDGE_ASSIGN_OR_RETURN(Child device, Child::Spawn(args, work / (ids[i] + ".log")));
    devices.push_back(std::move(device));
  }
  LogEvent("info", "multiprocess_started",
           {{"aggregator_port", std::to_string(port)},
            {"clients", std::to_string(clients)},
            {"work_dir", work.string()}});

  // The aggregator exits after its rounds; a device that exits early failed.
  std::optional<int> aggregator_exit;
  while (!(aggregator_exit = aggregator.Poll()).has_value()) {
    for (int i = 0; i < clients; ++i) {
      if (std::optional<int> code = devices[i].Poll(); code.has_value()) {
        return absl::InternalError(absl::StrCat("fedge-client ", ids[i], " exited with ", *code,
                                                ": ", LastLines(work / (ids[i] + ".log"))));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  devices.clear();  // SIGTERM to every device
  if (*aggregator_exit != 0) {
    return absl::InternalError(absl::StrCat("fedge-aggregator exited with ", *aggregator_exit, ": ",
                                            LastLines(work / "aggregator.log")));
  }
  const double run_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();

  // Evaluate every published version on the test split.
  FEDGE_ASSIGN_OR_RETURN(auto store, aggregator::StateStore::Open(state));
  FEDGE_ASSIGN_OR_RETURN(std::vector<aggregator::VersionRecord> versions, store->Versions());
  FEDGE_ASSIGN_OR_RETURN(std::vector<aggregator::RoundRecord> rounds, store->Rounds());
  models::ModelSpec spec = config.model;
  spec.input_shape = test.example_shape;
  spec.num_classes = test.num_classes;
  FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<const client::ExampleStore> test_store,
                         MakeExampleStore(std::move(test)));
  models::SetComputeThreads(std::max(1, config.run.threads));
  FEDGE_ASSIGN_OR_RETURN(std::unique_ptr<models::ModelInstance> model,
                         models::ModelInstance::Create(spec, config.run.seed));
  SimulationResult result;
  result.summary.experiment = config.run.name;
  result.summary.config = DescribeConfig(config);
  int64_t started_ms = versions.empty() ? 0 : versions.front().created_at_ms;
  for (const aggregator::VersionRecord& version : versions) {
    if (version.round == 0) continue;  // the initial model
    FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact master, store->ReadMaster(version.version));
    FEDGE_RETURN_IF_ERROR(
        models::DecodeArtifact(master, model->parameters().layout(), model->parameters().values()));
    FEDGE_ASSIGN_OR_RETURN(
        client::EvalMetrics metrics,
        client::Evaluate(*model, *test_store, 0, test_store->size(), config.eval.batch_size));
    RoundRecord record;
    record.round = static_cast<int>(version.round);
    record.test_accuracy = metrics.accuracy;
    record.test_loss = metrics.loss;
    auto metric = [&](const char* key) {
      auto it = version.metrics.find(key);
      return it == version.metrics.end() ? 0.0 : it->second;
    };
    record.train_loss = metric("train_loss");
    if (config.privacy.mode != "none") {
      record.epsilon = metric("epsilon_spent");
      record.clip_norm = config.privacy.clip_norm;
    }
    record.participants = static_cast<int>(metric("participants"));
    record.bytes_up = static_cast<uint64_t>(metric("bytes_up"));
    // Each participant downloaded the version its task named once.
    for (const aggregator::RoundRecord& round : rounds) {
      if (round.round != version.round) continue;
      for (const aggregator::VersionRecord& base : versions) {
        if (base.version == round.model_version) {
          record.bytes_down = base.artifact_bytes * static_cast<uint64_t>(record.participants);
        }
      }
    }
    record.artifact_bytes = version.artifact_bytes;
    record.elapsed_seconds = static_cast<double>(version.created_at_ms - started_ms) / 1000.0;
    record.wall_seconds = record.elapsed_seconds -
                          (result.rounds.empty() ? 0.0 : result.rounds.back().elapsed_seconds);
    result.rounds.push_back(record);
    if (on_round) on_round(record);
    result.summary.artifact_bytes = version.artifact_bytes;
    result.summary.fp32_artifact_bytes = version.master_bytes;
    result.final_parameters.assign(model->parameters().values().begin(),
                                   model->parameters().values().end());
    FEDGE_ASSIGN_OR_RETURN(v1::ModelArtifact artifact, store->ReadArtifact(version.version));
    result.final_artifact = std::make_shared<const v1::ModelArtifact>(std::move(artifact));
  }
  if (result.rounds.empty()) return absl::InternalError("the aggregator published no version");
  RunSummary& summary = result.summary;
  summary.privacy_mode = config.privacy.mode;
  if (config.privacy.mode != "none") summary.delta = config.privacy.delta;
  SummarizeRounds(result.rounds, summary);
  summary.num_parameters = static_cast<int64_t>(result.final_parameters.size());
  summary.wall_seconds = run_seconds;
  summary.peak_rss_mb = PeakRssMb();
  return result;
}

}  // namespace fedge::simulations
