#pragma once

// crew::detail::queue_wait_limit: the check behind max_queue_wait (DESIGN.md, "Job expiry"):
// whether a job stamped at acceptance (now_ns()) waited longer than the limit when a worker
// reached it. Exact: one clock read at acceptance (the stamp) and one here; with latency
// tracking on, this read is the job's start time as well (made anyway).
//
// A coarse clock for this check is not exact (it lagged up to 13 ms here) and bought nothing:
// issue 12's note has the measurements.
//
// Thread safety: immutable after construction; any thread.

#include <chrono>
#include <cstdint>

#include "pool_support.hpp"

namespace crew::detail {

class queue_wait_limit {
 public:
  // `limit` <= 0: off.
  explicit queue_wait_limit(std::chrono::nanoseconds limit) noexcept
      : limit_ns_(limit.count() > 0 ? static_cast<std::uint64_t>(limit.count()) : 0) {}

  bool on() const noexcept { return limit_ns_ != 0; }

  // Whether a job stamped `enqueued` waited past the limit; `now` receives the clock read (the
  // job's start time for latency tracking). Only when on().
  [[gnu::always_inline]] bool exceeded(std::uint64_t enqueued, std::uint64_t& now) const noexcept {
    now = now_ns();
    return now > enqueued && now - enqueued > limit_ns_;
  }

 private:
  std::uint64_t limit_ns_;
};

}  // namespace crew::detail
