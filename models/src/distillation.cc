#include "fedge/models/distillation.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedge::models {

absl::Status ValidateDistillationOptions(const DistillationOptions& options) {
  if (!(options.temperature > 0.0) || !std::isfinite(options.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DistillationOptions.temperature is ", options.temperature, "; must be > 0"));
  }
  if (options.epochs < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("DistillationOptions.epochs is ", options.epochs, "; must be >= 1"));
  }
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("DistillationOptions.batch_size is ", options.batch_size, "; must be >= 1"));
  }
  if (!(options.learning_rate > 0.0) || !std::isfinite(options.learning_rate)) {
    return absl::InvalidArgumentError(absl::StrCat("DistillationOptions.learning_rate is ",
                                                   options.learning_rate, "; must be > 0"));
  }
  return absl::OkStatus();
}

torch::Tensor DistillationLoss(const torch::Tensor& student_logits,
                               const torch::Tensor& teacher_logits, double temperature) {
  // log-softmax on both sides keeps large logits finite; kl_div takes the
  // student's log-probabilities and, with log_target, the teacher's.
  const torch::Tensor student = torch::log_softmax(student_logits / temperature, 1);
  const torch::Tensor teacher = torch::log_softmax(teacher_logits / temperature, 1);
  return torch::kl_div(student, teacher, at::Reduction::Sum, /*log_target=*/true) /
         static_cast<double>(student_logits.size(0)) * (temperature * temperature);
}

absl::StatusOr<DistillationReport> Distill(Network& teacher, ModelInstance& student,
                                           const torch::Tensor& proxy,
                                           const DistillationOptions& options) {
  if (absl::Status s = ValidateDistillationOptions(options); !s.ok()) return s;
  if (!proxy.defined() || proxy.dim() < 1 || proxy.size(0) == 0) {
    return absl::InvalidArgumentError("distillation needs a non-empty proxy set");
  }
  try {
    const int64_t n = proxy.size(0);
    // The teacher's logits, once: it does not change.
    torch::Tensor targets;
    {
      torch::NoGradGuard no_grad;
      teacher.eval();
      std::vector<torch::Tensor> parts;
      for (int64_t begin = 0; begin < n; begin += 256) {
        parts.push_back(teacher.forward(proxy.narrow(0, begin, std::min<int64_t>(256, n - begin))));
      }
      targets = torch::cat(parts);
    }
    Network& net = student.network();
    {
      torch::NoGradGuard no_grad;
      net.eval();
      const torch::Tensor probe = net.forward(proxy.narrow(0, 0, 1));
      if (probe.size(1) != targets.size(1)) {
        return absl::InvalidArgumentError(absl::StrCat("the student has ", probe.size(1),
                                                       " classes, the teacher ", targets.size(1)));
      }
    }
    net.train();
    torch::optim::Adam optimizer(net.parameters(),
                                 torch::optim::AdamOptions(options.learning_rate));
    auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    DistillationReport report;
    for (int epoch = 0; epoch < options.epochs; ++epoch) {
      const torch::Tensor order = torch::randperm(n, generator, torch::kInt64);
      double loss_sum = 0.0;
      for (int64_t begin = 0; begin < n; begin += options.batch_size) {
        const torch::Tensor idx = order.narrow(0, begin, std::min(options.batch_size, n - begin));
        optimizer.zero_grad();
        const torch::Tensor loss =
            DistillationLoss(net.forward(proxy.index_select(0, idx)), targets.index_select(0, idx),
                             options.temperature);
        loss.backward();
        optimizer.step();
        loss_sum += loss.item<double>() * static_cast<double>(idx.size(0));
        ++report.steps;
      }
      if (!std::isfinite(loss_sum)) {
        return absl::FailedPreconditionError(
            absl::StrCat("distillation diverged in epoch ", epoch + 1,
                         " (loss not finite); lower DistillationOptions.learning_rate (",
                         options.learning_rate, ")"));
      }
      const double mean = loss_sum / static_cast<double>(n);
      if (epoch == 0) report.first_epoch_loss = mean;
      report.last_epoch_loss = mean;
    }
    net.eval();
    return report;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("distillation failed: ", e.what()));
  }
}

}  // namespace fedge::models
