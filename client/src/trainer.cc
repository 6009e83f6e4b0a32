#include "fedge/client/trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace fedge::client {
namespace {

absl::Status FieldError(const std::string& field, const std::string& requirement, double value) {
  return absl::InvalidArgumentError(
      absl::StrCat("TrainConfig.", field, " must be ", requirement, ", got ", value));
}

// Reads the examples at `idx` from the app's source into a fresh batch
// shaped for `spec`, and checks what the app gave: labels in range, finite
// features.
absl::Status ReadSourceBatch(const ExampleSource& source, const torch::Tensor& idx,
                             const models::ModelSpec& spec, torch::Tensor* x, torch::Tensor* y) {
  const int64_t b = idx.size(0);
  std::vector<int64_t> shape = {b};
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  *x = torch::empty(shape, torch::kFloat32);
  *y = torch::empty({b}, torch::kInt64);
  const torch::Tensor indices = idx.contiguous();
  absl::Status read = source.ReadBatch(
      std::span<const int64_t>(indices.data_ptr<int64_t>(), static_cast<size_t>(b)),
      std::span<float>(x->data_ptr<float>(), static_cast<size_t>(x->numel())),
      std::span<int64_t>(y->data_ptr<int64_t>(), static_cast<size_t>(b)));
  if (!read.ok()) {
    return absl::Status(
        read.code(),
        absl::StrCat("reading a batch of ", b, " examples from the data source: ", read.message()));
  }
  const int64_t lo = y->min().item<int64_t>();
  const int64_t hi = y->max().item<int64_t>();
  if (lo < 0 || hi >= spec.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("the data source gave label ", lo < 0 ? lo : hi,
                                                   "; the model has ", spec.num_classes,
                                                   " classes"));
  }
  if (!torch::isfinite(*x).all().item<bool>()) {
    return absl::InvalidArgumentError("the data source gave non-finite features");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTrainConfig(const v1::TrainConfig& config) {
  if (config.local_epochs() < 1) return FieldError("local_epochs", ">= 1", config.local_epochs());
  if (config.batch_size() < 1) return FieldError("batch_size", ">= 1", config.batch_size());
  if (!(config.learning_rate() > 0.0f) || !std::isfinite(config.learning_rate())) {
    return FieldError("learning_rate", "> 0 and finite", config.learning_rate());
  }
  if (!(config.momentum() >= 0.0f && config.momentum() < 1.0f)) {
    return FieldError("momentum", "in [0, 1)", config.momentum());
  }
  if (!(config.weight_decay() >= 0.0f) || !std::isfinite(config.weight_decay())) {
    return FieldError("weight_decay", ">= 0", config.weight_decay());
  }
  if (!(config.proximal_mu() >= 0.0f) || !std::isfinite(config.proximal_mu())) {
    return FieldError("proximal_mu", ">= 0", config.proximal_mu());
  }
  return absl::OkStatus();
}

absl::StatusOr<LocalUpdate> Trainer::Fit(models::ModelInstance& model, const LocalDataset& data,
                                         const v1::TrainConfig& config,
                                         std::span<const uint8_t> mask) const {
  if (absl::Status s = ValidateTrainConfig(config); !s.ok()) return s;
  if ((data.store == nullptr && data.source == nullptr) || data.size() == 0) {
    return absl::InvalidArgumentError("cannot train on an empty local dataset");
  }
  const bool from_source = data.store == nullptr;
  if (from_source) {
    int64_t numel = 1;
    for (int64_t d : model.spec().input_shape) numel *= d;
    if (data.source->example_numel() != numel ||
        data.source->num_classes() != model.spec().num_classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the data source has examples of ", data.source->example_numel(), " features in ",
          data.source->num_classes(), " classes; the model '", model.spec().architecture,
          "' takes ", numel, " features and ", model.spec().num_classes, " classes"));
    }
  }
  if (!mask.empty() && static_cast<int64_t>(mask.size()) != model.parameters().size()) {
    return absl::InvalidArgumentError(absl::StrCat("the pruning mask has ", mask.size(),
                                                   " flags, the model ", model.parameters().size(),
                                                   " parameters"));
  }
  try {
    models::FlatParameters& params = model.parameters();
    // The flat buffer is every parameter, so one masked_fill_ re-prunes them all.
    torch::Tensor pruned;
    if (!mask.empty()) {
      pruned = torch::from_blob(const_cast<uint8_t*>(mask.data()),
                                {static_cast<int64_t>(mask.size())}, torch::kUInt8)
                   .eq(0);
      torch::NoGradGuard no_grad;
      params.tensor().masked_fill_(pruned, 0.0f);
    }
    const torch::Tensor global = params.tensor().clone();
    torch::nn::Module& net = model.network();
    net.train();

    torch::optim::SGD optimizer(net.parameters(), torch::optim::SGDOptions(config.learning_rate())
                                                      .momentum(config.momentum())
                                                      .weight_decay(config.weight_decay()));
    const float mu = config.proximal_mu();
    std::vector<torch::Tensor> prox_anchor;  // per-parameter views of `global`
    if (mu > 0.0f) {
      for (const models::ParameterLayout& p : params.layout()) {
        prox_anchor.push_back(global.narrow(0, p.offset, p.numel).view(p.shape));
      }
    }

    const int64_t n = data.size();
    const torch::Tensor local_indices =
        data.indices != nullptr
            ? torch::from_blob(const_cast<int32_t*>(data.indices->data()), {n}, torch::kInt32)
                  .to(torch::kInt64)
            : torch::arange(n, torch::kInt64);
    auto generator = at::make_generator<at::CPUGeneratorImpl>(config.seed());
    int64_t batch = config.batch_size();
    if (control_ != nullptr) {
      absl::StatusOr<int64_t> planned = control_->PlanBatch(model, config);
      if (!planned.ok()) return planned.status();
      if (*planned < 1 || *planned > batch) {
        return absl::InternalError(absl::StrCat("the training control planned batch size ",
                                                *planned, " outside [1, ", batch, "]"));
      }
      batch = *planned;
    }
    bool stopped_early = false;

    TrainMetrics metrics;
    double loss_sum = 0.0;
    int64_t correct = 0;
    bool done = false;
    for (uint32_t epoch = 0; epoch < config.local_epochs() && !done; ++epoch) {
      const torch::Tensor order =
          local_indices.index_select(0, torch::randperm(n, generator, torch::kInt64));
      for (int64_t start = 0; start < n; start += batch) {
        if (control_ != nullptr) {
          absl::StatusOr<bool> go = control_->BeforeStep(metrics);
          if (!go.ok()) return go.status();
          if (!*go) {
            stopped_early = true;
            done = true;
            break;
          }
        }
        const torch::Tensor idx = order.narrow(0, start, std::min(batch, n - start));
        torch::Tensor x;
        torch::Tensor y;
        if (from_source) {
          if (absl::Status s = ReadSourceBatch(*data.source, idx, model.spec(), &x, &y); !s.ok()) {
            return s;
          }
        } else {
          x = data.store->GatherFeatures(idx);
          y = data.store->GatherLabels(idx);
        }
        optimizer.zero_grad();
        const torch::Tensor logits = model.network().forward(x);
        const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
        loss.backward();
        if (mu > 0.0f) {
          torch::NoGradGuard no_grad;
          auto parameters = net.parameters();
          for (size_t i = 0; i < parameters.size(); ++i) {
            parameters[i].mutable_grad().add_(parameters[i] - prox_anchor[i], mu);
          }
        }
        optimizer.step();
        if (pruned.defined()) {
          torch::NoGradGuard no_grad;
          params.tensor().masked_fill_(pruned, 0.0f);
        }
        const int64_t b = idx.size(0);
        loss_sum += loss.item<double>() * static_cast<double>(b);
        correct += logits.argmax(1).eq(y).sum().item<int64_t>();
        metrics.examples_seen += b;
        ++metrics.steps;
        if (config.max_steps() > 0 && metrics.steps >= config.max_steps()) {
          done = true;
          break;
        }
      }
    }
    if (metrics.steps == 0) {
      return absl::AbortedError("local training was stopped before its first step");
    }
    if (!std::isfinite(loss_sum)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "local training diverged (loss is not finite); lower TrainConfig.learning_rate (",
          config.learning_rate(), ")"));
    }
    metrics.loss = loss_sum / static_cast<double>(metrics.examples_seen);
    metrics.accuracy = static_cast<double>(correct) / static_cast<double>(metrics.examples_seen);

    LocalUpdate update;
    // Stopped early (time budget, policy): weigh the update by what it saw.
    update.num_examples = stopped_early ? std::min(n, metrics.examples_seen) : n;
    update.metrics = metrics;
    update.delta.resize(static_cast<size_t>(params.size()));
    const float* local = params.values().data();
    const float* start = global.data_ptr<float>();
    for (size_t i = 0; i < update.delta.size(); ++i) update.delta[i] = local[i] - start[i];
    return update;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("local training failed: ", e.what()));
  }
}

absl::StatusOr<EvalMetrics> Evaluate(models::ModelInstance& model, const ExampleStore& store,
                                     int64_t begin, int64_t end, int64_t batch_size) {
  if (begin < 0 || end > store.size() || begin > end || batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("bad evaluation range [", begin, ", ", end,
                                                   ") of ", store.size(), " with batch ",
                                                   batch_size));
  }
  try {
    torch::NoGradGuard no_grad;
    model.network().eval();
    EvalMetrics metrics;
    double loss_sum = 0.0;
    int64_t correct = 0;
    for (int64_t start = begin; start < end; start += batch_size) {
      const int64_t b = std::min(batch_size, end - start);
      const torch::Tensor idx = torch::arange(start, start + b, torch::kInt64);
      const torch::Tensor logits = model.network().forward(store.GatherFeatures(idx));
      const torch::Tensor y = store.GatherLabels(idx);
      loss_sum +=
          torch::nn::functional::cross_entropy(
              logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
              .item<double>();
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    }
    metrics.examples = end - begin;
    if (metrics.examples > 0) {
      metrics.loss = loss_sum / static_cast<double>(metrics.examples);
      metrics.accuracy = static_cast<double>(correct) / static_cast<double>(metrics.examples);
    }
    return metrics;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("evaluation failed: ", e.what()));
  }
}

}  // namespace fedge::client
