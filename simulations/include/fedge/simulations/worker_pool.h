// WorkerPool: a fixed set of threads that live for a whole simulation, each
// with its own index, so per-worker state (a model replica, LibTorch's
// per-thread settings) is set once and reused every round.
//
// ParallelFor(n, fn) runs fn(task, worker) for task = 0..n-1 on the workers
// (dynamic assignment: an idle worker takes the next task) and returns when
// all are done. Thread safety: ParallelFor must not be called concurrently
// or from inside a task.
#ifndef FEDGE_SIMULATIONS_WORKER_POOL_H_
#define FEDGE_SIMULATIONS_WORKER_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fedge::simulations {

class WorkerPool {
 public:
  // `init(worker)` runs once on each worker thread before any task.
  WorkerPool(int num_workers, std::function<void(int)> init);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int size() const { return static_cast<int>(threads_.size()); }
  void ParallelFor(int64_t num_tasks, const std::function<void(int64_t, int)>& fn);

 private:
  void Loop(int worker);

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  const std::function<void(int64_t, int)>* job_ = nullptr;
  int64_t num_tasks_ = 0;
  std::atomic<int64_t> next_task_{0};
  uint64_t generation_ = 0;
  int busy_ = 0;
  bool stop_ = false;
};

}  // namespace fedge::simulations

#endif  // FEDGE_SIMULATIONS_WORKER_POOL_H_
