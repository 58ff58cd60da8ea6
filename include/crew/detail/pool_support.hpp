#pragma once

// The small parts every crew pool shares around its handler: the queued envelope, per-worker
// counters, option checks and scope counters. No protocol lives here (see scheduler.hpp,
// worker_set.hpp and eventcount.hpp for those).

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "../options.hpp"
#include "../stats.hpp"
#include "cache_line.hpp"

namespace crew::detail {

inline std::uint64_t now_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

// Single-writer counter increment: a plain load and store (no lock prefix). Release, so that a
// reader's acquire load of the counter sees everything the writer did before counting.
inline void bump(std::atomic<std::uint64_t>& counter) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

inline std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// A queued job and, when latency tracking is on, when it was submitted.
template <class Job>
struct envelope {
  template <class U>
  requires std::constructible_from<Job, U&&> envelope(U&& u, std::uint64_t ts)
  noexcept(std::is_nothrow_constructible_v<Job, U&&>) : job(std::forward<U>(u)), enqueued_ns(ts) {}
  Job job;
  std::uint64_t enqueued_ns;
};

// Presents a range's iterator to bounded_queue::try_push_bulk as a source of envelopes, so a
// run of jobs is moved straight from the caller's range into the slots.
template <class Job, class It>
struct stamping_iterator {
  using value_type = envelope<Job>;
  using difference_type = std::ptrdiff_t;
  using iterator_concept = std::input_iterator_tag;
  envelope<Job> operator*() const noexcept { return envelope<Job>(std::ranges::iter_move(it), ts); }
  stamping_iterator& operator++() {
    ++it;
    return *this;
  }
  void operator++(int) { ++it; }
  It it;
  std::uint64_t ts;
};

// One worker's counters: one writer each (the worker's current thread), summed on read, so
// counting never serialises workers.
struct alignas(cache_line_size) worker_counters {
  // executed: single writer, so detail::bump's plain load+store suffices; release, so
  // wait_idle's acquire read sees the jobs' effects.
  std::atomic<std::uint64_t> executed{0};
  // failed and recycled: rare, fetch_add (an old and a new thread touch recycled around a
  // respawn). Relaxed: statistics only, nothing is published through them.
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> recycled{0};
  // expired: single writer (the worker), release like executed: wait_idle's acquire read sees
  // that on_expire returned.
  std::atomic<std::uint64_t> expired{0};
  std::uint64_t rng = 0;  // the worker's own jitter generator
  histogram_recorder queue_wait;
  histogram_recorder run_time;

  std::uint64_t executed_acquire() const noexcept {
    return executed.load(std::memory_order_acquire);
  }
  std::uint64_t expired_acquire() const noexcept { return expired.load(std::memory_order_acquire); }

  // A recycle threshold uniform in [n, 2n) (modulo bias is negligible for n << 2^64); 0 = never.
  std::uint64_t draw_threshold(std::uint64_t n) noexcept {
    return n == 0 ? 0 : n + splitmix64(rng) % n;
  }

  // Relaxed loads: a statistics snapshot.
  void add_to(pool_stats& s, bool latency) const noexcept {
    s.executed += executed.load(std::memory_order_relaxed);
    s.failed += failed.load(std::memory_order_relaxed);
    s.recycled += recycled.load(std::memory_order_relaxed);
    s.expired += expired.load(std::memory_order_relaxed);
    if (latency) {
      queue_wait.add_to(s.queue_wait);
      run_time.add_to(s.run_time);
    }
  }
};

// Counts a thread inside a scope (blocked producers, producers inside a waiting submit). The
// increment is seq_cst so a destructor that reads zero after closing cannot miss a producer
// that entered before the close; the decrement is the producer's last access to the pool.
struct blocked_scope {
  explicit blocked_scope(std::atomic<std::uint32_t>& c) noexcept : count(c) {
    count.fetch_add(1, std::memory_order_seq_cst);
  }
  ~blocked_scope() { count.fetch_sub(1, std::memory_order_seq_cst); }
  blocked_scope(const blocked_scope&) = delete;
  blocked_scope& operator=(const blocked_scope&) = delete;
  blocked_scope(blocked_scope&&) = delete;
  blocked_scope& operator=(blocked_scope&&) = delete;
  std::atomic<std::uint32_t>& count;
};

// The constructor's checks of pool_options, with messages naming the option.
template <class Options>
Options checked_options(Options o, std::size_t max_workers,
                        const std::string& owner = "crew::worker_pool") {
  if (o.workers == 0) {
    throw std::invalid_argument(owner + ": options.workers must be at least 1, got 0");
  }
  if (o.workers > max_workers) {
    throw std::invalid_argument(owner + ": options.workers is " + std::to_string(o.workers) +
                                ", more than the " + std::to_string(max_workers) +
                                " a pool accepts");
  }
  if (o.queue_capacity == 0) {
    throw std::invalid_argument(owner + ": options.queue_capacity must be at least 1, got 0");
  }
  if (o.min_workers && *o.min_workers > o.workers) {
    throw std::invalid_argument(owner + ": options.min_workers is " +
                                std::to_string(*o.min_workers) + ", more than options.workers (" +
                                std::to_string(o.workers) + ")");
  }
  if (o.idle_timeout.count() < 0) {
    throw std::invalid_argument(owner + ": options.idle_timeout must not be negative, got " +
                                std::to_string(o.idle_timeout.count()) + " ms");
  }
  if (o.max_queue_wait.count() < 0) {
    throw std::invalid_argument(owner + ": options.max_queue_wait must not be negative, got " +
                                std::to_string(o.max_queue_wait.count()) + " ns");
  }
  return o;
}

}  // namespace crew::detail
