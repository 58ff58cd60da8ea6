#pragma once

// crew::detail::eventcount: "sleep until a condition may have changed", without a lost
// wake-up and without a system call while nobody sleeps.
//
// Protocol: a waiter calls prepare() (counts itself in with a seq_cst RMW and reads the epoch),
// re-checks its condition, and only then wait()s on that epoch; it calls done() when it stops
// waiting. A notifier first makes the condition true (with a seq_cst store or RMW, or any store
// followed by a seq_cst fence), then calls notify_all(): a seq_cst load of the waiter count and,
// only when it is non-zero, an epoch bump and a futex wake. Either the waiter's re-check sees
// the notifier's change, or the notifier's load sees the waiter (a Dekker pair: both sides'
// operations are seq_cst), and the epoch read before the re-check makes a bump in between end
// the sleep at once.
//
// Used for producers waiting for room and for wait_idle() callers. Workers parking for work use
// detail::worker_parking instead, which wakes one chosen worker rather than all waiters.

#include <atomic>
#include <cstdint>

#include "cache_line.hpp"
#include "wait.hpp"

namespace crew::detail {

class eventcount {
 public:
  // Waiter: announce, then return the epoch to wait on. Thread-safe.
  std::uint32_t prepare() noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    return epoch_.load(std::memory_order_seq_cst);
  }
  // Waiter, already counted in: the epoch to wait on for the next re-check. Thread-safe.
  std::uint32_t epoch() const noexcept { return epoch_.load(std::memory_order_seq_cst); }
  // Waiter: sleep until notified after prepare() or the deadline passes (false). Thread-safe.
  bool wait(std::uint32_t epoch, steady_time deadline) noexcept {
    return wait_until(epoch_, epoch, deadline);
  }
  // Waiter: stop counting as one. relaxed: the count is only a hint that makes notify_all()
  // skip its system call; a stale non-zero costs one needless wake, never a lost one.
  void done() noexcept { waiters_.fetch_sub(1, std::memory_order_relaxed); }

  // Waiter: the whole protocol. Sleeps until `cond()` holds (true) or the deadline passes with
  // it still false (false); `cond` is re-checked after announcing and after every wake-up. The
  // fence orders the announcement before the re-check for conditions read with weaker loads.
  // Thread-safe.
  template <class Cond>
  bool await(Cond cond, steady_time deadline) {
    std::uint32_t e = prepare();
    bool holds = false;
    for (;;) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (cond()) {
        holds = true;
        break;
      }
      if (!wait(e, deadline)) {
        holds = cond();
        break;
      }
      e = epoch();
    }
    done();
    return holds;
  }

  // Notifier: whether anyone may be waiting (the seq_cst load of the handshake). Thread-safe.
  bool has_waiters() const noexcept { return waiters_.load(std::memory_order_seq_cst) != 0; }

  // Notifier: wake every waiter if there is one. Thread-safe.
  void notify_all() noexcept {
    if (has_waiters()) notify(epoch_, UINT32_MAX);
  }

 private:
  alignas(cache_line_size) std::atomic<std::uint32_t> waiters_{0};
  std::atomic<std::uint32_t> epoch_{0};
};

}  // namespace crew::detail
