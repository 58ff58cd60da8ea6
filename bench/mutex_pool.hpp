#pragma once

// crew_bench::mutex_pool<Job>: the classic worker pool, the baseline crew's pool benchmarks
// compare against. It is what most programs write by hand: N std::thread workers, a
// std::deque<Job> bounded at a capacity, one std::mutex and two std::condition_variables,
// not_empty (workers wait for jobs) and not_full (producers wait for room). A third condition
// variable, idle, serves wait_idle() only, so that it never steals a wake-up meant for a worker
// or a producer.
//
// It is written to be a fair baseline, not a straw man:
//  - every wait is a predicate loop under the mutex and every state change that a waiter
//    checks is made under the same mutex, so no wake-up can be lost;
//  - a worker takes the lock once per job: it pops the next job in the same critical section in
//    which it accounts for the previous one;
//  - notifications are made after the lock is released where that is safe, and glibc's
//    notify_one/notify_all make no system call when nobody waits;
//  - submit_bulk takes the lock once per call (again only when it has to wait for room).
// The handler is a std::function by default: one indirect call per job, like crew's default
// type-erased handler. It must not throw (an exception escaping it terminates the program).
//
// Thread safety: submit, submit_bulk, wait_idle and executed may be called from any thread
// except the pool's own workers, concurrently. Construction and destruction are not
// thread-safe; the destructor runs every queued job, then joins the workers.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <ranges>
#include <thread>
#include <utility>
#include <vector>

namespace crew_bench {

template <class Job, class Handler = std::function<void(Job&&)>>
class mutex_pool {
 public:
  mutex_pool(Handler handler, std::size_t workers, std::size_t capacity)
      : handler_(std::move(handler)), capacity_(capacity == 0 ? 1 : capacity) {
    threads_.reserve(workers);
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }

  mutex_pool(const mutex_pool&) = delete;
  mutex_pool& operator=(const mutex_pool&) = delete;

  // Drains: the workers leave only once the queue is empty.
  ~mutex_pool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    not_empty_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  // Queues a job, waiting while the queue is full.
  void submit(Job&& job) {
    {
      std::unique_lock lock(mutex_);
      not_full_.wait(lock, [this] { return jobs_.size() < capacity_; });
      jobs_.push_back(std::move(job));
    }
    not_empty_.notify_one();
  }

  // Queues every element of `range` in order under one lock acquisition, waiting for room when
  // the queue fills up (the workers are woken for what was queued before the wait). Returns how
  // many were queued: all of them.
  template <std::ranges::input_range R>
  std::size_t submit_bulk(R&& range) {
    std::size_t queued = 0;
    std::size_t unannounced = 0;  // queued since the last notification
    {
      std::unique_lock lock(mutex_);
      const auto end = std::ranges::end(range);
      for (auto it = std::ranges::begin(range); it != end; ++it) {
        if (jobs_.size() >= capacity_) {
          // Sleeping workers must hear about the jobs already queued before this producer
          // sleeps too, or nobody would make room.
          notify_workers(unannounced);
          unannounced = 0;
          not_full_.wait(lock, [this] { return jobs_.size() < capacity_; });
        }
        jobs_.push_back(Job(std::ranges::iter_move(it)));
        ++queued;
        ++unannounced;
      }
    }
    notify_workers(unannounced);
    return queued;
  }

  // Blocks until the queue is empty and no job is running.
  void wait_idle() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return jobs_.empty() && running_ == 0; });
  }

  // Jobs whose handler has returned so far.
  std::uint64_t executed() const {
    std::lock_guard lock(mutex_);
    return executed_;
  }

 private:
  void notify_workers(std::size_t jobs) {
    if (jobs == 1) {
      not_empty_.notify_one();
    } else if (jobs > 1) {
      not_empty_.notify_all();
    }
  }

  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      not_empty_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and nothing left to run
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      ++running_;
      lock.unlock();
      not_full_.notify_one();
      handler_(std::move(job));
      lock.lock();
      --running_;
      ++executed_;
      if (running_ == 0 && jobs_.empty()) idle_.notify_all();
    }
  }

  Handler handler_;
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable not_empty_;  // jobs_ became non-empty, or stopping_ was set
  std::condition_variable not_full_;   // jobs_ has room
  std::condition_variable idle_;       // jobs_ is empty and running_ == 0
  std::deque<Job> jobs_;               // guarded by mutex_, like everything below
  std::size_t running_ = 0;
  std::uint64_t executed_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;  // last: the workers start once the rest is built
};

}  // namespace crew_bench
