#pragma once

// A watchdog for crew's stress tests: a test that outlives its budget prints what it can see of
// the pool (every worker's state, stats(), queue depth) plus a caller-supplied note (the seed)
// and aborts, so CI fails with a diagnosis instead of hanging until ctest's TIMEOUT kills it.
//
//   crew_test::watchdog dog{std::chrono::seconds(120), "chaos seed=42"};
//   dog.watch(pool);    // while the pool is alive
//   ...
//   dog.unwatch();      // before the pool is destroyed... or leave it watched: see below
//
// The dump reads the pool's racy, thread-safe observers only (stats(), state_of()); the pool is
// watched from watch() to unwatch(), and a dump can only happen on the failure path.

#include <crew/worker_pool.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace crew_test {

inline const char* to_cstr(crew::worker_state s) {
  switch (s) {
    case crew::worker_state::starting: return "starting";
    case crew::worker_state::idle: return "idle";
    case crew::worker_state::running: return "running";
    case crew::worker_state::parked: return "parked";
    case crew::worker_state::exited: return "exited";
  }
  return "?";
}

// Prints the pool's own view of itself to stderr.
template <class Pool>
void dump_pool(const Pool& pool) {
  const auto s = pool.stats();
  std::fprintf(
      stderr,
      "  pool: workers=%zu busy=%zu queue_depth=%zu capacity=%zu blocked_producers=%zu "
      "shut_down=%d\n"
      "  counters: accepted=%llu executed=%llu handed_back=%llu rejected=%llu "
      "dropped=%llu failed=%llu recycled=%llu\n",
      static_cast<std::size_t>(s.workers), static_cast<std::size_t>(s.busy),
      static_cast<std::size_t>(s.queue_depth), static_cast<std::size_t>(s.capacity),
      static_cast<std::size_t>(s.blocked_producers), pool.is_shut_down() ? 1 : 0,
      static_cast<unsigned long long>(s.accepted), static_cast<unsigned long long>(s.executed),
      static_cast<unsigned long long>(s.handed_back), static_cast<unsigned long long>(s.rejected),
      static_cast<unsigned long long>(s.dropped), static_cast<unsigned long long>(s.failed),
      static_cast<unsigned long long>(s.recycled));
  for (std::size_t i = 0; i < pool.workers(); ++i) {
    std::fprintf(stderr, "  worker %zu: %s\n", i, to_cstr(pool.state_of(i)));
  }
}

class watchdog {
 public:
  watchdog(std::chrono::milliseconds budget, std::string note)
      : note_(std::move(note)), thread_([this, budget] { run(budget); }) {}
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  watchdog(watchdog&&) = delete;
  watchdog& operator=(watchdog&&) = delete;

  template <class Pool>
  void watch(const Pool& pool) {
    std::lock_guard lock(mutex_);
    dump_ = [&pool] { dump_pool(pool); };
  }
  void unwatch() {
    std::lock_guard lock(mutex_);
    dump_ = nullptr;
  }
  // Replaces the note printed on expiry (for example with the current run's seed).
  void note(std::string text) {
    std::lock_guard lock(mutex_);
    note_ = std::move(text);
  }

 private:
  void run(std::chrono::milliseconds budget) {
    std::unique_lock lock(mutex_);
    if (cv_.wait_for(lock, budget, [&] { return done_; })) return;
    std::fprintf(stderr, "\nWATCHDOG: test exceeded its budget of %lld ms: %s\n",
                 static_cast<long long>(budget.count()), note_.c_str());
    if (dump_) {
      dump_();
    } else {
      std::fprintf(stderr, "  (no pool being watched)\n");
    }
    std::fflush(stderr);
    std::abort();
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string note_;
  std::function<void()> dump_;
  std::thread thread_;  // last: started after the members it uses
};

}  // namespace crew_test
