#pragma once

// crew::detail::worker_set: a pool's worker threads and their lifecycle: starting them,
// respawning one in place (recycling), growing an elastic pool by one, retiring an idle worker,
// stopping, knowing which are alive, and joining every thread the pool ever started.
//
// Slots. A pool of `workers` has that many slots; worker_info::index is the slot. A slot is
// vacant (no thread counts for it), occupied (its thread is a live worker) or retiring (its
// thread decided to expire and is tearing down). live() is the number of occupied slots plus the
// claims in progress (a grower or a resuming retiree that raised the count and has not taken its
// slot yet); it never exceeds `workers` because every raise is a compare-exchange below it.
//
// Growth (elastic pools, argued): at most one start is in flight (start_flag_, taken by a
// compare-exchange and released by the new thread once its start-up is done, or by the grower
// when it gives up). A grower first raises live() (bounded), then takes a vacant or retiring
// slot. Free slots (vacant or retiring) are never fewer than pending claims: occupied + claims
// = live() <= workers, so free = workers - occupied >= claims; a grower therefore always finds a
// slot (a resuming retiree may lose its own slot to a grower and then exits: the grower's thread
// takes over the work). A thread started in a slot whose previous thread has not finished
// (retiring, or exited and not joined) is that thread's successor: it joins it first, so one
// slot never runs two workers' code at once (its per-worker handler is built after the old one
// was destroyed), and no thread is ever left unjoined.
//
// Expiry (argued): an idle worker retires by lowering live() (a compare-exchange that keeps it
// at min_workers or above), marking its slot retiring, and then re-checking for work (seq_cst
// loads). A producer pushes (a seq_cst RMW) and then reads live() and the free count (seq_cst):
// either the producer sees the lowered count (and grows the pool if no free worker is left), or
// the retiree's re-check sees the job (and it resumes, raising live() again if that is still
// below `workers` and its slot is still its own; otherwise a grower has started a worker that
// will find the job). No job is left without a worker.
//
// Thread safety: every member may be called from any thread unless it says otherwise. The
// thread handles are guarded by a mutex (starts, respawns, growth and joins are rare); the
// states, slots and counts are atomics. Joins never happen while a thread that could still take
// the mutex is unjoined: a thread takes it only during its start-up, and join_all runs only once
// live() is 0 (every started thread has passed its start-up), join_exited only on exited ones.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>

#include "../options.hpp"
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

// Why a thread of a slot is running: the pool's first threads, a recycling respawn, a growth.
enum class start_kind : unsigned char { initial, respawn, growth };

// What a growth attempt did: started a thread; found another start in flight (its new thread
// re-checks the waiting jobs once started); took the start flag and gave it back (at the bound
// or shutting down): then the caller re-checks, since a start skipped meanwhile because of the
// flag would otherwise be lost (tests/model/elastic.pml); or the thread start threw (given to
// on_failure, the flag given back): starts back off, so the caller does not look again.
enum class growth : unsigned char { started, in_flight, gave_up, failed };

class worker_set {
 public:
  // `count` slots; `floor` workers stay however long they idle (min_workers; count when fixed).
  worker_set(std::size_t count, std::size_t floor, std::size_t stack_size, std::string name)
      : records_(std::make_unique<record[]>(count)),
        count_(count),
        floor_(static_cast<std::uint32_t>(floor)),
        stack_size_(stack_size),
        name_(std::move(name)) {}

  worker_set(const worker_set&) = delete;
  worker_set& operator=(const worker_set&) = delete;
  worker_set(worker_set&&) = delete;
  worker_set& operator=(worker_set&&) = delete;
  ~worker_set() { join_all(); }

  std::size_t size() const noexcept { return count_; }
  std::uint32_t floor() const noexcept { return floor_; }

  // Starts workers 0..n-1: body(i) (noexcept) runs on worker i's thread and reports its start-up
  // through started(). Waits until each has; if a thread cannot be started, or a start-up failed
  // (the first failure's exception), stops the started ones through `abort()` (which must make
  // them exit), joins them and rethrows. Call once, from the constructing thread.
  template <class Body, class Abort>
  void start_initial(std::size_t n, Body body, Abort abort) {
    live_.store(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
    std::size_t started = 0;
    std::exception_ptr failure;
    try {
      const std::lock_guard lock(mutex_);
      for (; started < n; ++started) {
        prepare(started, start_kind::initial);
        records_[started].thread = spawn(started, body, false);
      }
    } catch (...) {
      failure = std::current_exception();
      // Slots that never started never count themselves out.
      live_.fetch_sub(static_cast<std::uint32_t>(n - started), std::memory_order_seq_cst);
      for (std::size_t i = started; i < n; ++i) vacate_slot(i);
    }
    // The pool is ready when its constructor returns: every worker has made its per-thread
    // set-up (its stop source, hooks, handler), so no allocation of a worker's start lands among
    // the jobs.
    for (;;) {
      const std::uint32_t k = initial_done_.load(std::memory_order_seq_cst);
      if (k >= started) break;
      (void)wait_until(initial_done_, k, steady_time::max());
    }
    if (!failure) {
      const std::lock_guard lock(mutex_);
      failure = initial_failure_;
    }
    if (failure) {
      abort();
      (void)wait_all_exited(steady_time::max());
      join_all();
      std::rethrow_exception(failure);
    }
  }

  // Worker i's thread, once its start-up is done (`failure` empty) or failed: counts an initial
  // start for start_initial, or ends the growth in flight. Worker i only.
  void started(std::size_t i, const std::exception_ptr& failure) noexcept {
    if (!failure) set_state(i, worker_state::idle);
    switch (records_[i].kind) {
      case start_kind::initial: {
        if (failure) {
          const std::lock_guard lock(mutex_);
          if (!initial_failure_) initial_failure_ = failure;
        }
        initial_done_.fetch_add(1, std::memory_order_seq_cst);
        wake_all(initial_done_);
        break;
      }
      case start_kind::growth: start_flag_.store(false, std::memory_order_seq_cst); break;
      case start_kind::respawn: break;
    }
  }

  // Who worker i is: its slot and how many threads the slot had before this one. Worker i only
  // (written before its thread was started).
  worker_info info(std::size_t i) const noexcept { return {i, records_[i].generation}; }
  start_kind kind(std::size_t i) const noexcept { return records_[i].kind; }
  bool first_start(std::size_t i) const noexcept { return records_[i].generation == 0; }

  // Replaces the calling worker i's thread by a new one running body(i) (after joining this
  // one). True when the caller must now end without touching worker i again (the slot is its
  // successor's); false when no new thread was started (respawns stopped, or the start failed:
  // keep going). Worker i only.
  template <class Body>
  bool respawn(std::size_t i, Body body) noexcept {
    const std::lock_guard lock(mutex_);
    if (no_respawn_.load(std::memory_order_seq_cst)) return false;
    record& r = records_[i];
    r.predecessor = std::move(r.thread);
    const auto kind = r.kind;
    prepare(i, start_kind::respawn);
    try {
      r.thread = spawn(i, body, true);
    } catch (...) {
      r.thread = std::move(r.predecessor);  // out of threads or memory: keep this one
      r.kind = kind;
      --r.generation;
      set_state(i, worker_state::running);
      return false;
    }
    return true;
  }

  // Starts one more worker running body(slot) if fewer than size() are live, no other start is
  // in flight and starts are allowed (or `draining`: shutdown's last resort when no worker is
  // left). std::system_error from the thread start goes to `on_failure` (the pool's on_error).
  // Thread-safe; never blocks on another start.
  template <class Body, class OnFailure>
  growth grow(Body body, OnFailure on_failure, bool draining = false) noexcept {
    bool expected = false;
    if (!start_flag_.compare_exchange_strong(expected, true, std::memory_order_seq_cst)) {
      return growth::in_flight;
    }
    if (!raise_live()) {
      start_flag_.store(false, std::memory_order_seq_cst);
      return growth::gave_up;
    }
    const std::lock_guard lock(mutex_);
    if (no_respawn_.load(std::memory_order_seq_cst) && !draining) return give_up_growth();
    std::size_t s = 0;
    for (; s < count_; ++s) {
      std::uint8_t v = vacant;
      if (records_[s].slot.compare_exchange_strong(v, occupied, std::memory_order_seq_cst)) break;
      v = retiring;
      if (records_[s].slot.compare_exchange_strong(v, occupied, std::memory_order_seq_cst)) break;
    }
    if (s == count_) return give_up_growth();  // unreachable by the argument above; defensive
    record& r = records_[s];
    // The predecessor field is empty again once the previous successor ran (it joins it first).
    r.predecessor.join();
    r.predecessor = std::move(r.thread);
    prepare(s, start_kind::growth);
    try {
      r.thread = spawn(s, body, true);
    } catch (...) {
      r.thread = std::move(r.predecessor);
      on_failure(std::current_exception());
      vacate_slot(s);
      (void)give_up_growth();
      return growth::failed;
    }
    return growth::started;
  }

  // Whether a start (growth) is in flight. seq_cst: shutdown reads it after stopping starts.
  bool start_in_flight() const noexcept { return start_flag_.load(std::memory_order_seq_cst); }

  // Worker i, idle past its timeout: lowers live() unless that would go below the floor, and
  // marks its slot retiring. False: it stays (at the floor). Worker i only.
  bool retire(std::size_t i) noexcept {
    std::uint32_t n = live_.load(std::memory_order_seq_cst);
    do {
      if (n <= floor_) return false;
    } while (!live_.compare_exchange_weak(n, n - 1, std::memory_order_seq_cst));
    records_[i].slot.store(retiring, std::memory_order_seq_cst);
    wake_all(live_);
    return true;
  }

  // A retiring worker i whose re-check found work: takes its slot back if live() is still below
  // size() and no grower took the slot over. False: it must end (a new worker has the work).
  // Worker i only.
  bool resume(std::size_t i) noexcept {
    if (!raise_live()) return false;
    std::uint8_t v = retiring;
    // After the raise (seq_cst), the shutdown flag: either a shutdown that stopped starts sees
    // the raised count (and waits for this worker), or this worker sees the flag and leaves.
    if (!no_respawn_.load(std::memory_order_seq_cst) &&
        records_[i].slot.compare_exchange_strong(v, occupied, std::memory_order_seq_cst)) {
      return true;
    }
    live_.fetch_sub(1, std::memory_order_seq_cst);
    wake_all(live_);
    return false;
  }

  // A retired worker i's last action on the pool, after its teardown: its slot becomes vacant
  // (unless a successor took it over: then the successor owns the slot and its state). Under the
  // mutex, so the state cannot overwrite a successor's (a grower prepares a slot under it).
  // Worker i only.
  void retired(std::size_t i) noexcept {
    {
      const std::lock_guard lock(mutex_);
      std::uint8_t v = retiring;
      if (records_[i].slot.compare_exchange_strong(v, vacant, std::memory_order_seq_cst)) {
        set_state(i, worker_state::exited);
      }
    }
    wake_all(live_);
  }

  // Called by worker i as its very last action on the pool when it leaves for good (shutdown,
  // or a start-up that failed): vacant, exited, counted out, waiters woken. Worker i only.
  void exited(std::size_t i) noexcept {
    vacate_slot(i);
    // seq_cst (release at least): everything this worker did is visible to a shutdown that
    // sees the count drop.
    live_.fetch_sub(1, std::memory_order_seq_cst);
    wake_all(live_);
  }

  // No thread is started after this returns (shutdown begins), except a drain's last resort.
  // Thread-safe.
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

  // Called by the first thread of slot i before its first job: replaces the slot's stop source
  // by one allocated on this thread and returns its token. A handler of the stop-token form
  // copies the token per job (an atomic RMW on the source's shared state); sources allocated one
  // after the other by the constructing thread sit 32 bytes apart and would false-share between
  // workers, while glibc serves each new thread from its own arena. A stop already requested
  // carries over. Worker i only.
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

  // Slot i's current stop token (later threads of a slot keep its source). Worker i only.
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

  std::uint32_t live() const noexcept { return live_.load(std::memory_order_seq_cst); }

  // Free workers of an elastic pool (idle, polling or parked), as counted by the workers' own
  // transitions. seq_cst: the producer's half of the growth handshake reads it after its push.
  std::uint32_t free_workers() const noexcept { return free_.load(std::memory_order_seq_cst); }
  void became_free() noexcept { free_.fetch_add(1, std::memory_order_seq_cst); }
  void became_busy() noexcept { free_.fetch_sub(1, std::memory_order_seq_cst); }

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
    join_taken([this](std::size_t i) { return state(i) == worker_state::exited; });
  }

  // Joins every thread (blocks until running jobs and retiring workers' teardowns return).
  // Never from a worker; only once live() is 0 (every thread is past its start-up) or from the
  // destructor. Thread-safe.
  void join_all() noexcept {
    join_taken([](std::size_t) { return true; });
  }

 private:
  static constexpr std::uint8_t vacant = 0;
  static constexpr std::uint8_t occupied = 1;
  static constexpr std::uint8_t retiring = 2;

  struct alignas(cache_line_size) record {
    std::atomic<worker_state> state{worker_state::exited};
    std::atomic<std::uint8_t> slot{vacant};
    start_kind kind = start_kind::initial;  // written under mutex_ before the thread starts
    // Threads this slot had before the current one; written under mutex_ before it starts.
    std::uint64_t generation = 0;
    bool used = false;  // whether the slot ever had a thread (guarded by mutex_)
    // One stop source per slot; padded to its own line with the state. (The shared state it
    // points to is a heap block: see the note on stop tokens in worker_pool.hpp.)
    std::stop_source stop;
    native_thread thread;       // the current thread; guarded by mutex_
    native_thread predecessor;  // a previous thread of the slot, joined by the current one
  };

  // Under mutex_: slot i is about to get a thread of `kind`.
  void prepare(std::size_t i, start_kind kind) noexcept {
    record& r = records_[i];
    if (r.used) ++r.generation;
    r.used = true;
    r.kind = kind;
    r.slot.store(occupied, std::memory_order_seq_cst);
    set_state(i, worker_state::starting);
  }

  void vacate_slot(std::size_t i) noexcept {
    set_state(i, worker_state::exited);
    records_[i].slot.store(vacant, std::memory_order_seq_cst);
  }

  // Raises live() by one unless it is at size(). seq_cst: the bound and the expiry handshake.
  bool raise_live() noexcept {
    std::uint32_t n = live_.load(std::memory_order_seq_cst);
    do {
      if (n >= count_) return false;
    } while (!live_.compare_exchange_weak(n, n + 1, std::memory_order_seq_cst));
    return true;
  }

  // Under mutex_: undoes a growth's raise of live() and ends the start in flight.
  growth give_up_growth() noexcept {
    live_.fetch_sub(1, std::memory_order_seq_cst);
    start_flag_.store(false, std::memory_order_seq_cst);
    wake_all(live_);
    return growth::gave_up;
  }

  // Takes the handles of the slots `which(i)` selects out under the mutex and joins them outside
  // it: a retiring worker takes the mutex for its last step (retired()), and a thread being
  // joined must be able to finish.
  template <class Which>
  void join_taken(Which which) noexcept {
    for (std::size_t i = 0; i < count_; ++i) {
      native_thread current;
      native_thread previous;
      {
        const std::lock_guard lock(mutex_);
        if (!which(i)) continue;
        current = std::move(records_[i].thread);
        previous = std::move(records_[i].predecessor);
      }
      current.join();
      previous.join();
    }
  }

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
  std::uint32_t floor_;
  std::size_t stack_size_;
  std::string name_;
  mutable std::mutex mutex_;
  bool stop_all_ = false;               // guarded by mutex_
  std::exception_ptr initial_failure_;  // guarded by mutex_
  std::atomic<bool> no_respawn_{false};
  std::atomic<bool> start_flag_{false};  // a growth in flight
  alignas(cache_line_size) std::atomic<std::uint32_t> live_{0};
  std::atomic<std::uint32_t> initial_done_{0};  // initial start-ups reported, for start_initial
  alignas(cache_line_size) std::atomic<std::uint32_t> free_{0};
};

}  // namespace crew::detail
