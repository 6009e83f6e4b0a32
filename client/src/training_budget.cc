#include "fedge/client/training_budget.h"

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/torch.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"

namespace fedge::client {
namespace {

// Counts the bytes LibTorch's CPU allocator hands out on this thread while
// installed, and their peak.
class PeakAllocationCounter final : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void* /*ptr*/, int64_t alloc_size, int64_t /*total_allocated*/,
                         int64_t /*total_reserved*/, c10::Device /*device*/) override {
    current_ += alloc_size;
    peak_ = std::max(peak_, current_);
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t peak() const { return peak_; }

 private:
  int64_t current_ = 0;
  int64_t peak_ = 0;
};

void ClearGradients(torch::nn::Module& net) {
  for (torch::Tensor& p : net.parameters()) p.mutable_grad() = torch::Tensor();
}

// Peak bytes of one forward + backward pass on `batch` zero examples.
int64_t MeasureStep(models::ModelInstance& model, int64_t batch) {
  torch::nn::Module& net = model.network();
  ClearGradients(net);
  auto counter = std::make_shared<PeakAllocationCounter>();
  {
    c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, counter);
    std::vector<int64_t> shape = {batch};
    shape.insert(shape.end(), model.spec().input_shape.begin(), model.spec().input_shape.end());
    const torch::Tensor x = torch::zeros(shape, torch::kFloat32);
    const torch::Tensor y = torch::zeros({batch}, torch::kInt64);
    torch::nn::functional::cross_entropy(model.network().forward(x), y).backward();
  }
  ClearGradients(net);
  return counter->peak();
}

std::string MiB(int64_t bytes) {
  return absl::StrCat(static_cast<double>(bytes) / (1024.0 * 1024.0), " MiB");
}

}  // namespace

absl::StatusOr<TrainingMemoryEstimate> EstimateTrainingMemory(models::ModelInstance& model,
                                                              const v1::TrainConfig& config) {
  try {
    const bool was_training = model.network().is_training();
    model.network().train();
    const int64_t one = MeasureStep(model, 1);
    const int64_t two = MeasureStep(model, 2);
    model.network().train(was_training);
    TrainingMemoryEstimate estimate;
    const int64_t parameter_bytes = model.parameters().size() * static_cast<int64_t>(sizeof(float));
    // The global copy and the delta; SGD keeps one momentum buffer per parameter.
    estimate.task_state_bytes = parameter_bytes * (config.momentum() > 0.0f ? 3 : 2);
    estimate.step_per_example_bytes = std::max<int64_t>(two - one, 0);
    estimate.step_fixed_bytes = std::max<int64_t>(one - estimate.step_per_example_bytes, 0);
    return estimate;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("estimating training memory failed: ", e.what()));
  }
}

BudgetedTraining::BudgetedTraining(TrainingBudget budget, Policy policy, Notify notify,
                                   const std::atomic<bool>* stop)
    : budget_(budget), policy_(std::move(policy)), notify_(std::move(notify)), stop_(stop) {}

void BudgetedTraining::Emit(BudgetEvent event, const std::string& detail) const {
  if (notify_) notify_(event, detail);
}

absl::StatusOr<int64_t> BudgetedTraining::PlanBatch(models::ModelInstance& model,
                                                    const v1::TrainConfig& config) {
  const int64_t asked = config.batch_size();
  if (budget_.max_training_bytes <= 0) return asked;
  absl::StatusOr<TrainingMemoryEstimate> estimate = EstimateTrainingMemory(model, config);
  if (!estimate.ok()) return estimate.status();
  if (estimate->Total(asked) <= budget_.max_training_bytes) return asked;
  if (estimate->Total(1) > budget_.max_training_bytes) {
    const std::string detail = absl::StrCat("training needs an estimated ", MiB(estimate->Total(1)),
                                            " even with a batch of 1; the ", "memory budget is ",
                                            MiB(budget_.max_training_bytes));
    Emit(BudgetEvent::kRefused, detail);
    return absl::ResourceExhaustedError(detail);
  }
  int64_t fits = asked;
  if (estimate->step_per_example_bytes > 0) {
    fits = (budget_.max_training_bytes - estimate->Total(0)) / estimate->step_per_example_bytes;
  }
  fits = std::clamp<int64_t>(fits, 1, asked);
  Emit(BudgetEvent::kBatchShrunk,
       absl::StrCat("batch size ", asked, " needs an estimated ", MiB(estimate->Total(asked)),
                    "; training with batch size ", fits, " (", MiB(estimate->Total(fits)),
                    ") to stay within the memory budget of ", MiB(budget_.max_training_bytes)));
  return fits;
}

absl::StatusOr<bool> BudgetedTraining::BeforeStep(const TrainMetrics& so_far) {
  auto now = std::chrono::steady_clock::now();
  if (so_far.steps == 0) {
    active_ = {};
  } else {
    active_ += now - last_step_;
  }
  auto cancelled = [this] { return stop_ != nullptr && stop_->load(); };
  if (cancelled()) return absl::CancelledError("local training was stopped");
  if (policy_) {
    bool paused = false;
    while (true) {
      absl::StatusOr<bool> allowed = policy_();
      if (!allowed.ok()) return allowed.status();
      if (*allowed) break;
      if (!paused) {
        paused = true;
        Emit(BudgetEvent::kPaused,
             absl::StrCat("the policy paused training after ", so_far.steps, " steps"));
      }
      // Sleep in short slices so that a stop is seen promptly.
      const auto until = std::chrono::steady_clock::now() + budget_.policy_poll;
      while (std::chrono::steady_clock::now() < until) {
        if (cancelled()) return absl::CancelledError("local training was stopped while paused");
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            std::chrono::milliseconds(20), until - std::chrono::steady_clock::now()));
      }
    }
    if (paused) {
      Emit(BudgetEvent::kResumed,
           absl::StrCat("the policy resumed training at step ", so_far.steps));
    }
  }
  if (budget_.max_training_time.count() > 0 && so_far.steps > 0 &&
      active_ >= budget_.max_training_time) {
    Emit(BudgetEvent::kTimeBudgetReached,
         absl::StrCat("the time budget of ", budget_.max_training_time.count(),
                      " ms ran out after ", so_far.steps, " steps (", so_far.examples_seen,
                      " examples); submitting them"));
    return false;
  }
  last_step_ = std::chrono::steady_clock::now();
  return true;
}

}  // namespace fedge::client
