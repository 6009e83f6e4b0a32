// DeviceRunner: the loop a real device runs (what fedge-client does).
//
//   join (retrying while the aggregator is unreachable)
//   loop: send buffered updates -> poll for a task -> download + verify the
//         model -> train -> submit (buffered when the aggregator is away)
//         -> report metrics
//
// Waits between attempts follow an exponential backoff with full jitter,
// reset after every task that completes. A model that fails verification is
// refused and the device keeps its current one; an aggregator that refuses
// the device (not enrolled, revoked) ends the loop with that error.
//
// Thread safety: Run must not be called concurrently with itself.
#ifndef FEDGE_CLIENT_DEVICE_RUNNER_H_
#define FEDGE_CLIENT_DEVICE_RUNNER_H_

#include <atomic>
#include <filesystem>
#include <functional>

#include "fedge/client/device_client.h"
#include "fedge/client/grpc_transport.h"
#include "fedge/client/offline_store.h"
#include "fedge/client/offline_transport.h"

namespace fedge::client {

struct DeviceRunnerOptions {
  // Stop after this many completed tasks; 0: run until `stop`.
  int max_tasks = 0;
  BackoffOptions backoff;
  uint64_t seed = 1;
  // When set, the current verified model is kept here (written atomically),
  // so a restarted device starts from it.
  std::filesystem::path model_file;
  // Called after each completed task (e.g. to evaluate on local data).
  std::function<void(const TaskReport&)> on_task;
  // Called each time the device joined the federation.
  std::function<void(const v1::JoinResponse&)> on_join;
  // Called when a task failed, before the loop backs off (or ends, when the
  // aggregator refused the device). Not called for NOT_FOUND (no task yet).
  std::function<void(const absl::Status&)> on_task_failed;
};

class DeviceRunner {
 public:
  // All pointers must outlive the runner.
  DeviceRunner(GrpcTransport* transport, PendingUpdateStore* pending, DeviceClient* device,
               models::ModelInstance* model, const Trainer* trainer, DeviceRunnerOptions options);

  // Runs until max_tasks tasks completed or `stop` becomes true (checked
  // between steps and while waiting). Returns the error that ended it
  // (UNAUTHENTICATED / PERMISSION_DENIED from the aggregator), OK otherwise.
  absl::Status Run(const std::atomic<bool>& stop);

  int tasks_done() const { return tasks_done_; }

 private:
  // Sleeps up to `delay`, waking early on `stop`.
  static void Wait(std::chrono::milliseconds delay, const std::atomic<bool>& stop);

  GrpcTransport* transport_;
  PendingUpdateStore* pending_;
  OfflineTransport offline_;
  DeviceClient* device_;
  models::ModelInstance* model_;
  const Trainer* trainer_;
  DeviceRunnerOptions options_;
  int tasks_done_ = 0;
};

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_DEVICE_RUNNER_H_
