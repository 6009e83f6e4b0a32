// Resource budgets and the app's training policy, as a TrainingControl.
//
// Semantics (docs/embedding.md repeats them for app developers):
//
// - Memory: before a task trains, EstimateTrainingMemory measures what one
//   step costs: a dry forward + backward pass on zero inputs of batch 1 and
//   2 (counting every byte LibTorch's CPU allocator hands out, at its peak),
//   extrapolated linearly to the batch size, plus the state that lives for
//   the whole task (the global copy, the delta, momentum buffers). If the
//   estimate for the task's batch size exceeds the budget, the batch is
//   shrunk to the largest one that fits (kBatchShrunk); if not even a batch
//   of one fits, the task is refused with RESOURCE_EXHAUSTED (kRefused).
// - Time: the budget caps the active training time of one task (time spent
//   paused by the policy does not count). When it runs out, local training
//   stops after the current step and the steps taken so far are submitted,
//   weighted by the examples they saw (kTimeBudgetReached).
// - Policy: asked before every optimizer step (keep it cheap). When it says
//   no, training pauses between two batches (kPaused), asking again every
//   `policy_poll`, and resumes where it stopped when it says yes (kResumed):
//   same data order, same optimizer state. A policy error abandons the task
//   with that error. Threads are capped by models::SetComputeThreads, which
//   the caller applies on the training thread.
// - Stop: `stop` (when set) is checked before every step and while paused;
//   once true, training is abandoned with CANCELLED.
#ifndef FEDGE_CLIENT_TRAINING_BUDGET_H_
#define FEDGE_CLIENT_TRAINING_BUDGET_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "fedge/client/trainer.h"

namespace fedge::client {

struct TrainingBudget {
  // Bytes local training may allocate (model state + one step). 0: no cap.
  int64_t max_training_bytes = 0;
  // Active training time per task. 0: no cap.
  std::chrono::milliseconds max_training_time{0};
  // How often a paused trainer asks the policy again. REQUIRES: > 0.
  std::chrono::milliseconds policy_poll{1000};
};

// What one step of local training costs, measured on the model itself.
struct TrainingMemoryEstimate {
  int64_t task_state_bytes = 0;  // lives the whole task: global copy, delta, momentum
  int64_t step_fixed_bytes = 0;  // one step, independent of the batch (gradients, ...)
  int64_t step_per_example_bytes = 0;
  int64_t Total(int64_t batch) const {
    return task_state_bytes + step_fixed_bytes + step_per_example_bytes * batch;
  }
};

// Measures `model` (its parameters are left unchanged; gradients are
// cleared). Runs on the calling thread.
absl::StatusOr<TrainingMemoryEstimate> EstimateTrainingMemory(models::ModelInstance& model,
                                                              const v1::TrainConfig& config);

enum class BudgetEvent {
  kBatchShrunk,        // the memory budget lowered the batch size
  kRefused,            // the memory budget refused the task
  kPaused,             // the policy said no; training waits between batches
  kResumed,            // the policy said yes again
  kTimeBudgetReached,  // local training stopped early
};

class BudgetedTraining final : public TrainingControl {
 public:
  // May the device train now? true: yes, false: pause; an error abandons
  // the task. Null: always yes.
  using Policy = std::function<absl::StatusOr<bool>()>;
  using Notify = std::function<void(BudgetEvent event, const std::string& detail)>;

  // `stop` (may be null) must outlive this object.
  BudgetedTraining(TrainingBudget budget, Policy policy, Notify notify,
                   const std::atomic<bool>* stop);

  absl::StatusOr<int64_t> PlanBatch(models::ModelInstance& model,
                                    const v1::TrainConfig& config) override;
  absl::StatusOr<bool> BeforeStep(const TrainMetrics& so_far) override;

 private:
  void Emit(BudgetEvent event, const std::string& detail) const;

  const TrainingBudget budget_;
  const Policy policy_;
  const Notify notify_;
  const std::atomic<bool>* stop_;
  // Active training time of the current task.
  std::chrono::steady_clock::duration active_{};
  std::chrono::steady_clock::time_point last_step_{};
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_TRAINING_BUDGET_H_
