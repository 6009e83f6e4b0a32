#include "drift_streams.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "fedge/client/dataset_store.h"
#include "fedge/proto/status_macros.h"
#include "fedge/data/drift_scenario.h"

namespace fedge::simulations::internal {

using data::Dataset;

namespace {

using client::MakeExampleStore;

// `count` stream examples of client `c` in a round where `share` of its data
// is drifted.
std::vector<int64_t> SampleStream(const DriftSetup& setup, const ClientDrift& c, double share,
                                  int count, std::mt19937_64& rng) {
  std::discrete_distribution<int> pick_class(c.class_weights.begin(), c.class_weights.end());
  std::vector<int64_t> out(count);
  for (int64_t& index : out) {
    if (setup.label_shift && c.drifted && share > 0.0 &&
        std::uniform_real_distribution<double>(0.0, 1.0)(rng) < share) {
      index = c.shifted[rng() % c.shifted.size()];
      continue;
    }
    const std::vector<int32_t>& pool = setup.own_stream ? c.train : setup.by_class[pick_class(rng)];
    const int32_t base = pool[rng() % pool.size()];
    index = base;
    if (!setup.label_shift && c.drifted && share > 0.0 && ExampleDrifted(base, share, setup.seed)) {
      index = base + setup.clean_size;
    }
  }
  return out;
}

// Input summaries: images average-pooled to grid x grid per channel, vectors
// pooled to at most 64 values.
torch::Tensor Summarize(const torch::Tensor& x, int grid) {
  if (x.dim() == 4) return torch::adaptive_avg_pool2d(x, {grid, grid}).flatten(1).contiguous();
  const torch::Tensor flat = x.flatten(1);
  if (flat.size(1) <= 64) return flat.contiguous();
  return torch::adaptive_avg_pool1d(flat.unsqueeze(1), 64).squeeze(1).contiguous();
}

int SummarySize(const std::vector<int64_t>& shape, int grid) {
  if (shape.size() == 3) return static_cast<int>(shape[0]) * grid * grid;
  int64_t size = 1;
  for (int64_t d : shape) size *= d;
  return static_cast<int>(std::min<int64_t>(size, 64));
}

std::span<const float> Span(const torch::Tensor& t) {
  return {t.data_ptr<float>(), static_cast<size_t>(t.numel())};
}

Dataset Concatenate(Dataset a, const Dataset& b) {
  a.pixels.insert(a.pixels.end(), b.pixels.begin(), b.pixels.end());
  a.values.insert(a.values.end(), b.values.begin(), b.values.end());
  a.labels.insert(a.labels.end(), b.labels.begin(), b.labels.end());
  return a;
}

Dataset Subset(const Dataset& d, const std::vector<int32_t>& indices) {
  Dataset out = d;
  const int64_t size = d.example_size();
  out.pixels.clear();
  out.values.clear();
  out.labels.clear();
  for (int32_t i : indices) {
    if (!d.pixels.empty()) {
      out.pixels.insert(out.pixels.end(), d.pixels.begin() + i * size,
                        d.pixels.begin() + (i + 1) * size);
    } else {
      out.values.insert(out.values.end(), d.values.begin() + i * size,
                        d.values.begin() + (i + 1) * size);
    }
    out.labels.push_back(d.labels[i]);
  }
  return out;
}

DetectorDriftStats DetectorStats(const std::string& key, const DriftSetup& setup, int injection) {
  DetectorDriftStats stats;
  stats.detector = key;
  std::vector<double> delays_samples;
  double delay_rounds = 0.0;
  for (const ClientDrift& c : setup.clients) {
    if (c.monitor == nullptr) continue;
    const ClientDrift::Alarm* first_after = nullptr;
    bool early = false;
    for (const ClientDrift::Alarm& a : c.alarms) {
      if (a.key != key) continue;
      if (a.round < injection) early = true;
      if (a.round >= injection && first_after == nullptr) first_after = &a;
    }
    if (!c.drifted) {
      ++stats.clean_clients;
      if (early || first_after != nullptr) ++stats.clean_with_alarm;
      continue;
    }
    ++stats.drifted_clients;
    if (early) ++stats.drifted_with_early_alarm;
    if (first_after == nullptr) continue;
    ++stats.detected;
    if (first_after->round <= injection + 1) ++stats.detected_within_one_round;
    delay_rounds += first_after->round - injection;
    delays_samples.push_back(static_cast<double>(first_after->samples - c.samples_at_injection));
  }
  if (!delays_samples.empty()) {
    stats.mean_delay_rounds = delay_rounds / static_cast<double>(delays_samples.size());
    double sum = 0.0;
    for (double d : delays_samples) sum += d;
    stats.mean_delay_samples = sum / static_cast<double>(delays_samples.size());
    std::sort(delays_samples.begin(), delays_samples.end());
    const size_t m = delays_samples.size();
    stats.median_delay_samples = m % 2 == 1
                                     ? delays_samples[m / 2]
                                     : 0.5 * (delays_samples[m / 2 - 1] + delays_samples[m / 2]);
  }
  return stats;
}

}  // namespace

std::vector<int32_t> CurrentIndices(const DriftSetup& setup, const ClientDrift& c, double share) {
  std::vector<int32_t> out(c.train.size());
  for (size_t k = 0; k < c.train.size(); ++k) {
    out[k] = c.train[k];
    if (c.drifted && share > 0.0 && ExampleDrifted(c.train[k], share, setup.seed)) {
      out[k] =
          setup.label_shift ? c.shifted[k] : c.train[k] + static_cast<int32_t>(setup.clean_size);
    }
  }
  return out;
}

absl::Status PrepareDrift(const SimulationConfig& config, const data::Partition& partition,
                          data::TrainTest& data, DriftSetup& drift) {
  drift.active = config.drift.type != "none" || config.monitor.enabled;
  drift.label_shift = config.drift.type == "label-shift";
  drift.own_stream = config.partition.method == "natural";
  drift.seed = config.run.seed;
  drift.clean_size = data.train.num_examples();
  if (drift.active) {
    if (config.drift.type != "none") {
      const size_t with_data = static_cast<size_t>(std::count_if(
          partition.begin(), partition.end(), [](const auto& p) { return !p.empty(); }));
      const std::vector<bool> chosen =
          ChooseDriftedClients(with_data, config.drift.fraction, config.run.seed);
      size_t k = 0;
      drift.clients.resize(partition.size());
      for (size_t i = 0; i < partition.size(); ++i) {
        if (!partition[i].empty()) drift.clients[i].drifted = chosen[k++];
      }
    } else {
      drift.clients.resize(partition.size());
    }
    drift.by_class.assign(data.train.num_classes, {});
    for (int32_t t = 0; t < static_cast<int32_t>(data.train.labels.size()); ++t) {
      drift.by_class[data.train.labels[t]].push_back(t);
    }
    for (size_t i = 0; i < partition.size(); ++i) {
      ClientDrift& c = drift.clients[i];
      c.train = partition[i];
      c.class_weights.assign(data.train.num_classes, 0.0);
      for (int32_t t : c.train) c.class_weights[data.train.labels[t]] += 1.0;
      if (c.drifted && drift.label_shift) {
        c.shifted = LabelShiftIndices(data.train.labels, data.train.num_classes, c.train.size(),
                                      config.drift.label_shift_alpha, config.run.seed * 7919 + i);
      }
    }
    if (config.drift.type != "none") {
      std::vector<int32_t> shifted_test;
      if (drift.label_shift) {
        // The drifted clients' new class mix, drawn from the test split.
        std::vector<double> class_weight(data.test.num_classes, 0.0);
        for (const ClientDrift& c : drift.clients) {
          for (int32_t idx : c.shifted) class_weight[data.train.labels[idx]] += 1.0;
        }
        std::vector<std::vector<int32_t>> by_class(data.test.num_classes);
        for (int32_t t = 0; t < static_cast<int32_t>(data.test.labels.size()); ++t) {
          by_class[data.test.labels[t]].push_back(t);
        }
        std::discrete_distribution<int> pick(class_weight.begin(), class_weight.end());
        std::mt19937_64 rng(config.run.seed ^ 0x7465737431ULL);
        for (int64_t t = 0; t < data.test.num_examples(); ++t) {
          const auto& pool = by_class[pick(rng)];
          if (!pool.empty()) shifted_test.push_back(pool[rng() % pool.size()]);
        }
        FEDGE_ASSIGN_OR_RETURN(drift.drifted_test,
                               MakeExampleStore(Subset(data.test, shifted_test)));
      } else {
        FEDGE_ASSIGN_OR_RETURN(Dataset drifted_test,
                               MakeDriftedCopy(data.test, config.drift, config.run.seed + 1));
        FEDGE_ASSIGN_OR_RETURN(drift.drifted_test, MakeExampleStore(std::move(drifted_test)));
        FEDGE_ASSIGN_OR_RETURN(Dataset drifted_train,
                               MakeDriftedCopy(data.train, config.drift, config.run.seed + 2));
        data.train = Concatenate(std::move(data.train), drifted_train);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CreateMonitors(const SimulationConfig& config, const std::vector<std::string>& ids,
                            const std::vector<size_t>& partition_of,
                            const client::ExampleStore& train,
                            const std::vector<int64_t>& example_shape, DriftSetup& drift) {
    drift.features = SummarySize(example_shape, config.monitor.summary_grid);
    client::DriftMonitorOptions monitor_options = config.monitor.options;
    monitor_options.features = drift.features;
    for (size_t k = 0; k < ids.size(); ++k) {
      ClientDrift& c = drift.clients[partition_of[k]];
      FEDGE_ASSIGN_OR_RETURN(c.monitor, client::DriftMonitor::Create(ids[k], monitor_options));
      c.reference.assign(
          c.train.begin(),
          c.train.begin() + std::min<size_t>(c.train.size(), config.monitor.reference_size));
      if (c.reference.size() < 2) {
        c.monitor.reset();  // too little data to watch
        continue;
      }
      try {
        torch::NoGradGuard no_grad;
        const torch::Tensor idx =
            torch::tensor(std::vector<int64_t>(c.reference.begin(), c.reference.end()));
        const torch::Tensor summary =
            Summarize(train.GatherFeatures(idx), config.monitor.summary_grid);
        FEDGE_RETURN_IF_ERROR(c.monitor->SetReference(Span(summary), {}));
      } catch (const std::exception& e) {
        return absl::InternalError(absl::StrCat("drift monitor reference: ", e.what()));
      }
    }
  return absl::OkStatus();
}

absl::StatusOr<int> MonitorClients(const MonitorRound& run, int r, uint64_t version,
                                   const std::vector<float>& parameters, DriftSetup& drift) {
  const SimulationConfig& config = *run.config;
  std::vector<client::DeviceClient>& clients = *run.clients;
  const std::vector<size_t>& partition_of = *run.partition_of;
  std::vector<std::unique_ptr<models::ModelInstance>>& replicas = *run.replicas;
  const std::shared_ptr<const client::ExampleStore>& train_store = run.train;
  client::ClientTransport& transport = *run.transport;
  const client::Trainer& trainer = *run.trainer;
  std::atomic<int> reports{0};
    const double share = DriftedShare(config.drift, r);
    std::vector<absl::Status> status(clients.size());
    run.pool->ParallelFor(static_cast<int64_t>(clients.size()), [&](int64_t k, int worker) {
      ClientDrift& c = drift.clients[partition_of[k]];
      if (c.monitor == nullptr) return;
      if (r == config.drift.round) c.samples_at_injection = c.monitor->samples();
      try {
        torch::NoGradGuard no_grad;
        models::ModelInstance& model = *replicas[worker];
        if (absl::Status s = model.parameters().CopyFrom(parameters); !s.ok()) {
          status[k] = s;
          return;
        }
        model.network().eval();
        auto to_tensor = [](const std::vector<int32_t>& v) {
          return torch::tensor(std::vector<int64_t>(v.begin(), v.end()));
        };
        // Confidence reference: the current model on the reference window.
        const torch::Tensor ref_probs = torch::softmax(
            model.network().forward(train_store->GatherFeatures(to_tensor(c.reference))), 1);
        const torch::Tensor ref_conf = std::get<0>(ref_probs.max(1)).contiguous();
        if (absl::Status s = c.monitor->SetReference({}, Span(ref_conf)); !s.ok()) {
          status[k] = s;
          return;
        }
        std::mt19937_64 rng(config.run.seed * 1'000'003ULL + partition_of[k] * 7919ULL + r);
        const std::vector<int64_t> picked =
            SampleStream(drift, c, share, config.monitor.samples_per_round, rng);
        const torch::Tensor idx = torch::tensor(picked);
        const torch::Tensor x = train_store->GatherFeatures(idx);
        const torch::Tensor y = train_store->GatherLabels(idx);
        const torch::Tensor logits = model.network().forward(x);
        const torch::Tensor confidence = std::get<0>(torch::softmax(logits, 1).max(1)).contiguous();
        const torch::Tensor summary = Summarize(x, config.monitor.summary_grid);
        const int64_t labelled = static_cast<int64_t>(
            std::llround(config.monitor.label_fraction * static_cast<double>(picked.size())));
        const torch::Tensor loss =
            torch::nn::functional::cross_entropy(
                logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
                .narrow(0, 0, labelled)
                .contiguous();
        const torch::Tensor error =
            logits.argmax(1).ne(y).to(torch::kFloat32).narrow(0, 0, labelled).contiguous();
        std::optional<v1::DriftReport> report;
        for (int part = 0; part < 2; ++part) {
          if (part == 1 && labelled == 0) break;
          absl::StatusOr<client::MonitorOutcome> outcome =
              part == 0
                  ? c.monitor->ObserveInference(Span(summary), Span(confidence), version, r)
                  : c.monitor->ObserveFeedback(Span(loss), Span(error), version, r);
          if (!outcome.ok()) {
            status[k] = outcome.status();
            return;
          }
          for (const v1::DriftEvent& e : outcome->alarms) {
            c.alarms.push_back(
                {absl::StrCat(e.detector(), ":", e.stream()), r, e.monitor_samples()});
          }
          if (outcome->report && !report) report = std::move(outcome->report);
        }
        if (report) {
          if (absl::Status s = transport.ReportDrift(*report); !s.ok()) {
            status[k] = s;
            return;
          }
          ++reports;
          // The device fine-tunes on its recent data and takes it as its new
          // reference (its training data now looks like this).
          const std::vector<int32_t> now = CurrentIndices(drift, c, share);
          if (config.monitor.fine_tune_epochs > 0) {
            // Both models are scored on the same fresh stream sample.
            const torch::Tensor probe =
                torch::tensor(SampleStream(drift, c, share, config.monitor.samples_per_round, rng));
            const torch::Tensor px = train_store->GatherFeatures(probe);
            const torch::Tensor py = train_store->GatherLabels(probe);
            auto accuracy = [&] {
              torch::NoGradGuard guard;
              model.network().eval();
              return model.network()
                  .forward(px)
                  .argmax(1)
                  .eq(py)
                  .to(torch::kFloat64)
                  .mean()
                  .item<double>();
            };
            const double before = accuracy();
            v1::TrainConfig tune = config.train;
            tune.set_local_epochs(static_cast<uint32_t>(config.monitor.fine_tune_epochs));
            tune.set_seed(config.run.seed ^ (partition_of[k] * 104729ULL + r));
            tune.set_learning_rate(static_cast<float>(config.train.learning_rate() *
                                                      std::pow(config.lr_decay, r - 1)));
            torch::AutoGradMode with_gradients(true);  // the task runs without them
            absl::StatusOr<client::LocalUpdate> tuned =
                trainer.Fit(model,
                            client::LocalDataset{train_store,
                                                 std::make_shared<const std::vector<int32_t>>(now)},
                            tune);
            if (!tuned.ok()) {
              status[k] = tuned.status();
              return;
            }
            c.fine_tunes.push_back({before, accuracy()});
          }
          c.reference.assign(
              now.begin(),
              now.begin() + std::min<size_t>(now.size(), config.monitor.reference_size));
          const torch::Tensor ref_summary = Summarize(
              train_store->GatherFeatures(to_tensor(c.reference)), config.monitor.summary_grid);
          if (absl::Status s = c.monitor->SetReference(Span(ref_summary), {}); !s.ok()) {
            status[k] = s;
            return;
          }
          c.monitor->ResetDetectors();
        }
      } catch (const std::exception& e) {
        status[k] =
            absl::InternalError(absl::StrCat("drift monitor of ", clients[k].id(), ": ", e.what()));
      }
    });
    for (const absl::Status& s : status) FEDGE_RETURN_IF_ERROR(s);
    return reports.load();
}

void FinishDriftSummary(const SimulationConfig& config, const DriftSetup& drift,
                        const std::vector<size_t>& partition_of, DriftRunSummary& d) {
    d.type = config.drift.type;
    d.injection_round = config.drift.type != "none" ? config.drift.round : 0;
    d.clients = static_cast<int>(partition_of.size());
    for (size_t k : partition_of) d.drifted_clients += drift.clients[k].drifted;
    d.reaction = config.reaction.policy.reaction;
    if (d.injection_round > 1) {
      d.pre_drift_accuracy = d.rounds[d.injection_round - 2].clean_accuracy;
      d.recovery_target = d.pre_drift_accuracy - config.reaction.recovery_tolerance;
      for (int r = d.injection_round; r <= config.round.rounds; ++r) {
        if (d.rounds[r - 1].drifted_accuracy >= d.recovery_target) {
          d.recovery_rounds = r - d.injection_round + 1;
          break;
        }
      }
    }
    for (const ClientDrift& c : drift.clients) {
      for (const auto& [before, after] : c.fine_tunes) {
        ++d.fine_tunes;
        d.fine_tune_accuracy_before += before;
        d.fine_tune_accuracy_after += after;
      }
    }
    if (d.fine_tunes > 0) {
      d.fine_tune_accuracy_before /= d.fine_tunes;
      d.fine_tune_accuracy_after /= d.fine_tunes;
    }
    if (config.monitor.enabled) {
      std::vector<std::string> keys;
      for (const ClientDrift& c : drift.clients) {
        if (c.monitor != nullptr) {
          keys = c.monitor->detector_keys();
          break;
        }
      }
      for (const std::string& key : keys) {
        d.detectors.push_back(DetectorStats(key, drift, std::max(1, d.injection_round)));
      }
    }
}

}  // namespace fedge::simulations::internal
