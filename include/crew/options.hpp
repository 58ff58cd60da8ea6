#pragma once

// crew::pool_options<Job>: how a worker_pool is built.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "concurrency.hpp"

namespace crew {

// What submit(Job&&) does when the queue is full.
enum class overflow_policy : unsigned char {
  block,   // wait for room (never from inside a worker of the same pool: rejected there)
  reject,  // return submit_status::rejected; the job stays with the caller
  drop,    // drop the incoming job: it goes to on_drop (or is destroyed) and is counted
};

// How a worker gives back the memory it grew after recycle_after jobs.
enum class recycle_mode : unsigned char {
  respawn,  // a new thread replaces the worker: fresh stack, fresh thread_locals
  trim,     // the worker madvises the unused part of its own stack away and keeps running
};

constexpr std::string_view to_string(overflow_policy p) noexcept {
  switch (p) {
    case overflow_policy::block: return "block";
    case overflow_policy::reject: return "reject";
    case overflow_policy::drop: return "drop";
  }
  return "unknown";
}

constexpr std::string_view to_string(recycle_mode m) noexcept {
  return m == recycle_mode::respawn ? "respawn" : "trim";
}

// Who a worker thread is, as its hooks and its per-worker handler's factory see it.
struct worker_info {
  std::size_t index;         // the worker's slot, in [0, workers): unique among live workers
  std::uint64_t generation;  // how many threads that slot had before this one
};

// Options of a worker_pool<Job>: an aggregate meant for designated initializers,
//   {.workers = 8, .queue_capacity = 1024, .on_full = crew::overflow_policy::reject}
// Fields are only ever appended, so existing initializers keep compiling.
template <class Job>
struct pool_options {
  // Worker threads. Default: hardware_workers(), the CPUs this process may really use. For
  // I/O-bound jobs size by Little's law: workers = throughput x latency of one job.
  std::size_t workers = hardware_workers();
  // Queued (not yet started) jobs the pool holds; rounded up to a power of two.
  std::size_t queue_capacity = 1024;
  // What submit(Job&&) does when the queue is full.
  overflow_policy on_full = overflow_policy::block;
  // Recycle a worker after about this many jobs (each worker draws its own threshold from
  // [N, 2N) so they never recycle together); 0 = never.
  std::uint64_t recycle_after = 65536;
  // How a worker recycles. respawn is the default: it returns the stack and the thread_locals
  // (allocator caches included) for one thread start (~100 us) per 2^16 jobs or more.
  recycle_mode recycle = recycle_mode::respawn;
  // Stack size of each worker thread in bytes; 0 = the platform default (RLIMIT_STACK on glibc).
  std::size_t stack_size = 0;
  // When non-zero, a worker that reached its threshold recycles only if its resident stack
  // exceeds this many bytes, and draws a new threshold otherwise.
  std::size_t recycle_stack_limit = 0;
  // Prefix of the worker threads' names ("<name>-<index>", truncated to 15 bytes).
  std::string name = "crew";
  // Receives each job dropped under overflow_policy::drop, on the submitting thread, before
  // submit returns; an exception it throws reaches that caller.
  std::function<void(Job&&)> on_drop{};
  // Receives every exception a handler throws, on the worker that caught it. It must not throw
  // (an exception escaping it is discarded).
  std::function<void(std::exception_ptr)> on_error{};
  // Record queue-wait and run-time histograms (two clock reads per job); off costs nothing but
  // a predictable branch.
  bool track_latency = false;
  // Elastic size. Unset: a fixed pool of `workers` threads. Set (0 <= min_workers <= workers):
  // the pool starts min_workers threads, starts one more (one start in flight at most) when a
  // submit is accepted while no live worker is free and fewer than `workers` are alive, and lets
  // a worker above min_workers that stayed idle for idle_timeout exit.
  std::optional<std::size_t> min_workers{};
  // Elastic pools: how long a worker above min_workers may stay idle before it exits. >= 0.
  std::chrono::milliseconds idle_timeout{10000};
  // Run on each worker thread the pool starts (respawns and growth included) before its first
  // job, and after its last, in pairs: start, then the per-worker handler is built; the handler
  // is destroyed, then stop. A start hook that throws while the constructor waits makes the
  // constructor throw it; later, the exception goes to on_error and that start is abandoned.
  std::function<void(const worker_info&)> on_worker_start{};
  std::function<void(const worker_info&)> on_worker_stop{};
  // Job expiry: a job that waited longer than this between its acceptance and the moment a
  // worker reached it is not run but handed to on_expire (on that worker) and counted in
  // stats().expired. 0: jobs never expire. >= 0.
  std::chrono::nanoseconds max_queue_wait{0};
  // Receives each expired job, on the worker that reached it; an exception goes to on_error.
  // Unset: the expired job is destroyed (and still counted).
  std::function<void(Job&&)> on_expire{};
  // keyed_pool only: jobs of one key a worker runs in a row before the key goes behind the other
  // keys with work (fairness). Must be at least 1. (worker_pool ignores it.)
  std::size_t key_budget = 16;
  // keyed_pool only: queued jobs one key may hold (its running job does not count); a submit
  // over it gets its policy's answer without touching other keys. 0 = no per-key limit.
  std::size_t max_per_key = 0;
};

}  // namespace crew
