#pragma once

// crew::detail::worker_set: a pool's worker threads and their lifecycle: starting them,
// respawning one in place (recycling), stopping, knowing which are alive, and joining every
// thread the pool ever started.
//
// Lifecycle of worker i: starting -> (idle | running | parked)* -> exited. A respawn starts a
// successor thread that first joins its predecessor, so at most two threads of worker i exist
// at once and none is ever left unjoined; live() counts workers, not threads (a respawn leaves it
// unchanged). Once stop_respawns() has been called no new thread is started, so a shutdown that
// has seen live() == 0 may join every handle.
//
// Thread safety: every member may be called from any thread unless it says otherwise. The
// thread handles are guarded by a mutex (starts, respawns and joins are rare); the states and
// the live count are atomics.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>

#include "../status.hpp"
#include "cache_line.hpp"
#include "thread.hpp"
#include "wait.hpp"

namespace crew::detail {

// The pool whose worker the calling thread is, or nullptr: how a pool recognises calls made
// from its own workers. Mutable per-thread identity, by design.
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables)
inline thread_local const void* current_pool = nullptr;

// "<prefix>-<index>", keeping the index whole within Linux's 15-byte thread names (the prefix is
// cut instead).
inline std::string worker_thread_name(const std::string& prefix, std::size_t index) {
  const std::string suffix = "-" + std::to_string(index);
  constexpr std::size_t limit = 15;
  if (suffix.size() >= limit) return suffix.substr(suffix.size() - limit);
  return prefix.substr(0, limit - suffix.size()) + suffix;
}

class worker_set {
 public:
  worker_set(std::size_t count, std::size_t stack_size, std::string name)
      : records_(std::make_unique<record[]>(count)),
        count_(count),
        stack_size_(stack_size),
        name_(std::move(name)) {}

  worker_set(const worker_set&) = delete;
  worker_set& operator=(const worker_set&) = delete;
  worker_set(worker_set&&) = delete;
  worker_set& operator=(worker_set&&) = delete;
  ~worker_set() { join_all(); }

  std::size_t size() const noexcept { return count_; }

  // Starts every worker: body(i) (noexcept) runs on worker i's thread. On failure to start a
  // thread, stops the started ones through `abort()` (which must make them exit), joins them and
  // rethrows std::system_error. Call once, from the constructing thread.
  template <class Body, class Abort>
  void start_all(Body body, Abort abort) {
    live_.store(static_cast<std::uint32_t>(count_), std::memory_order_relaxed);
    std::size_t started = 0;
    try {
      const std::lock_guard lock(mutex_);
      for (; started < count_; ++started) records_[started].thread = spawn(started, body, false);
    } catch (...) {
      // Workers that never started never count themselves out.
      live_.fetch_sub(static_cast<std::uint32_t>(count_ - started), std::memory_order_seq_cst);
      for (std::size_t i = started; i < count_; ++i) set_state(i, worker_state::exited);
      abort();
      (void)wait_all_exited(steady_time::max());
      join_all();
      throw;
    }
    // The pool is ready when its constructor returns: every worker has made its per-thread
    // set-up (its stop source), so no allocation of a worker's start lands among the jobs.
    for (;;) {
      const std::uint32_t n = started_.load(std::memory_order_seq_cst);
      if (n >= count_) break;
      (void)wait_until(started_, n, steady_time::max());
    }
  }

  // Worker i, once at its first start after its per-thread set-up. Worker i only.
  void mark_started(std::size_t i) noexcept {
    set_state(i, worker_state::idle);
    started_.fetch_add(1, std::memory_order_seq_cst);
    wake_all(started_);
  }

  // Replaces the calling worker i's thread by a new one running body(i) (after joining this
  // one). True when the caller must now return without touching worker i again; false when no
  // new thread was started (respawns stopped, or the start failed: keep going). Worker i only.
  template <class Body>
  bool respawn(std::size_t i, Body body) noexcept {
    const std::lock_guard lock(mutex_);
    if (no_respawn_.load(std::memory_order_seq_cst)) return false;
    record& r = records_[i];
    r.predecessor = std::move(r.thread);
    try {
      r.thread = spawn(i, body, true);
    } catch (...) {
      r.thread = std::move(r.predecessor);  // out of threads or memory: keep this one
      return false;
    }
    return true;
  }

  // No thread is started after this returns (shutdown begins). Thread-safe.
  void stop_respawns() noexcept {
    const std::lock_guard lock(mutex_);
    no_respawn_.store(true, std::memory_order_seq_cst);
  }

  // Requests a stop on every worker's token (abort). Thread-safe.
  void request_stop_all() noexcept {
    const std::lock_guard lock(mutex_);  // against adopt_stop_source()
    stop_all_ = true;
    for (std::size_t i = 0; i < count_; ++i) (void)records_[i].stop.request_stop();
  }

  // Called by worker i on its thread before its first job: replaces its stop source by one
  // allocated on this thread and returns its token. A handler of the stop-token form copies the
  // token per job (an atomic RMW on the source's shared state); sources allocated one after the
  // other by the constructing thread sit 32 bytes apart and would false-share between workers,
  // while glibc serves each new thread from its own arena. A stop already requested carries
  // over. Worker i only.
  std::stop_token adopt_stop_source(std::size_t i) noexcept {
    try {
      std::stop_source mine;
      const std::lock_guard lock(mutex_);
      if (stop_all_) (void)mine.request_stop();
      records_[i].stop = std::move(mine);
    } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory: keep the constructor's source
    }
    return stop_token(i);
  }

  // Worker i's current stop token. Worker i only (a respawned successor keeps the source).
  std::stop_token stop_token(std::size_t i) const noexcept {
    const std::lock_guard lock(mutex_);
    return records_[i].stop.get_token();
  }

  // Worker i's state. Relaxed stores and loads: a diagnostic snapshot (stats().busy,
  // state_of()) and the shutdown's "settled" wait, which re-reads until it holds and is ordered
  // by the live count's seq_cst operations where it matters.
  void set_state(std::size_t i, worker_state s) noexcept {
    records_[i].state.store(s, std::memory_order_relaxed);
  }
  worker_state state(std::size_t i) const noexcept {
    return records_[i].state.load(std::memory_order_relaxed);
  }

  // Called by worker i as its very last action on the pool: exited, counted out, waiters woken.
  void exited(std::size_t i) noexcept {
    set_state(i, worker_state::exited);
    // seq_cst (release at least): everything this worker did is visible to a shutdown that
    // sees the count drop.
    live_.fetch_sub(1, std::memory_order_seq_cst);
    wake_all(live_);
  }

  std::uint32_t live() const noexcept { return live_.load(std::memory_order_seq_cst); }

  // Waits until every worker has exited, or the deadline passes (false). Thread-safe.
  bool wait_all_exited(steady_time deadline) noexcept {
    for (;;) {
      const std::uint32_t n = live();
      if (n == 0) return true;
      if (!wait_until(live_, n, deadline)) return live() == 0;
    }
  }

  // Waits (without deadline) until every worker has exited or is running a job: after an abort
  // every other worker exits within a wake-up, so this is how a deadline shutdown joins the idle
  // ones before it returns. Returns the number still running. Thread-safe.
  std::size_t wait_settled() noexcept {
    for (;;) {
      const std::uint32_t n = live();
      std::size_t running = 0;
      bool settled = true;
      for (std::size_t i = 0; i < count_; ++i) {
        const worker_state s = state(i);
        if (s == worker_state::running) {
          ++running;
        } else if (s != worker_state::exited) {
          settled = false;
        }
      }
      // A worker sets its state to exited just before it counts itself out of live(): settled
      // only once live() has caught up, so still_running counts no exiting worker.
      if (settled && running == n) return running;
      // A worker that is neither running nor exited is about to exit (or to start one last job,
      // which it then counts as running): wait for the count to move, with a short timeout so a
      // state change without an exit is seen too.
      (void)wait_until(live_, n, std::chrono::steady_clock::now() + std::chrono::milliseconds(1));
    }
  }

  // Joins the threads of workers that have exited (a respawned worker's predecessor is joined
  // by its successor). Never from a worker. Thread-safe.
  void join_exited() noexcept {
    const std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < count_; ++i) {
      if (state(i) == worker_state::exited) records_[i].thread.join();
    }
  }

  // Joins every thread (blocks until running jobs return). Never from a worker. Thread-safe.
  void join_all() noexcept {
    const std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < count_; ++i) records_[i].thread.join();
  }

 private:
  struct alignas(cache_line_size) record {
    std::atomic<worker_state> state{worker_state::starting};
    // One stop source per worker; padded to its own line with the state. (The shared state it
    // points to is a heap block: see the note on stop tokens in worker_pool.hpp.)
    std::stop_source stop;
    native_thread thread;       // the current thread; guarded by mutex_
    native_thread predecessor;  // a respawned worker's old thread, joined by the new one
  };

  template <class Body>
  native_thread spawn(std::size_t i, Body& body, bool successor) {
    record& r = records_[i];
    return native_thread::start(
        [&r, body, i, successor]() noexcept {
          if (successor) r.predecessor.join();
          body(i);
        },
        stack_size_, worker_thread_name(name_, i));
  }

  std::unique_ptr<record[]> records_;
  std::size_t count_;
  std::size_t stack_size_;
  std::string name_;
  mutable std::mutex mutex_;
  bool stop_all_ = false;  // guarded by mutex_
  std::atomic<bool> no_respawn_{false};
  alignas(cache_line_size) std::atomic<std::uint32_t> live_{0};
  std::atomic<std::uint32_t> started_{0};  // first starts, for start_all's wait
};

}  // namespace crew::detail
