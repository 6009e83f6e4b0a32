#include "fedge/simulations/worker_pool.h"

namespace fedge::simulations {

WorkerPool::WorkerPool(int num_workers, std::function<void(int)> init) {
  if (num_workers < 1) num_workers = 1;
  for (int w = 0; w < num_workers; ++w) {
    threads_.emplace_back([this, w, init] {
      if (init) init(w);
      Loop(w);
    });
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_ready_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WorkerPool::ParallelFor(int64_t num_tasks, const std::function<void(int64_t, int)>& fn) {
  if (num_tasks <= 0) return;
  std::unique_lock<std::mutex> lock(mu_);
  job_ = &fn;
  num_tasks_ = num_tasks;
  next_task_.store(0);
  busy_ = size();
  ++generation_;
  work_ready_.notify_all();
  work_done_.wait(lock, [this] { return busy_ == 0; });
  job_ = nullptr;
}

void WorkerPool::Loop(int worker) {
  uint64_t seen = 0;
  while (true) {
    const std::function<void(int64_t, int)>* job = nullptr;
    int64_t n = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_ready_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = num_tasks_;
    }
    for (int64_t task = next_task_.fetch_add(1); task < n; task = next_task_.fetch_add(1)) {
      (*job)(task, worker);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--busy_ == 0) work_done_.notify_one();
    }
  }
}

}  // namespace fedge::simulations
