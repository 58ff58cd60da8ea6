#pragma once

// crew::detail: what a worker does around the handler, shared by every pool: running one job
// (the handler call in its stop-token or plain form, its exception to on_error, the latency
// samples and the executed count) and recycling the worker after its threshold (a respawn in
// place or a stack trim).
//
// Thread safety: run_job and recycle_worker are called by the worker they concern, on its own
// thread.

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "../options.hpp"
#include "pool_support.hpp"
#include "stack.hpp"
#include "worker_set.hpp"

namespace crew::detail {

// Runs `job` (stamped `enqueued_ns` when `track` is on) through `handler`, counting it in `c`.
// An exception the handler throws goes to `on_error` (whose own exceptions are discarded: it
// must not throw). Inlined into the worker loops: as a call it cost ~18 of a worker's ~76
// instructions per trivial job (saving and restoring registers around the try block).
template <class Handler, class Job>
[[gnu::always_inline]] inline void run_job(Handler& handler, Job&& job, std::uint64_t enqueued_ns,
                                           const std::stop_token& token, worker_counters& c,
                                           const std::function<void(std::exception_ptr)>& on_error,
                                           bool track, std::uint64_t now = 0) noexcept {
  std::uint64_t start = 0;
  if (track) {
    start = now != 0 ? now : now_ns();  // `now`: a read the caller made already (expiry)
    c.queue_wait.record(start > enqueued_ns ? start - enqueued_ns : 0);
  }
  try {
    if constexpr (std::is_invocable_v<Handler&, Job&&, std::stop_token>) {
      handler(std::forward<Job>(job), token);
    } else {
      handler(std::forward<Job>(job));
    }
  } catch (...) {
    c.failed.fetch_add(1, std::memory_order_relaxed);
    if (on_error) {
      try {
        on_error(std::current_exception());
      } catch (...) {  // NOLINT(bugprone-empty-catch): documented: on_error must not throw
      }
    }
  }
  if (track) c.run_time.record(now_ns() - start);
  bump(c.executed);
}

// Recycles worker i after it reached its threshold, as `options` say (only while `running`):
// respawn starts a successor thread running successor(i) and returns true (the caller must
// return without touching the worker again); trim gives back the unused stack and returns
// false. With recycle_stack_limit set, a worker whose resident stack is within it does neither.
template <class Options, class Successor>
bool recycle_worker(worker_set& workers, std::size_t i, worker_counters& c, const Options& options,
                    bool running, Successor successor) noexcept {
  if (!running) return false;
  if (options.recycle_stack_limit != 0 && resident_stack_bytes() <= options.recycle_stack_limit) {
    return false;
  }
  if (options.recycle == recycle_mode::trim) {
    (void)trim_stack();
    c.recycled.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (!workers.respawn(i, std::move(successor))) return false;
  // Counted after the start (a counter never goes back); fetch_add because the successor may
  // already count too. The pool outlives this thread: the successor joins it.
  c.recycled.fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace crew::detail
