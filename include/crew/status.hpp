#pragma once

// What a submit or a shutdown returns.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace crew {

// The outcome of one submit. [[nodiscard]]: a job that was not accepted is still in the
// caller's hands, so ignoring the status can silently lose it.
enum class [[nodiscard]] submit_status : unsigned char{
    accepted,   // queued; it will run, or come back in a shutdown_report::handed_back
    rejected,   // no room (try_submit, overflow_policy::reject, or a waiting form called from a
                // worker of the same pool); the job was not moved from
    dropped,    // no room under overflow_policy::drop: the job went to on_drop (or was destroyed)
    closed,     // the pool is shutting down or shut down; the job was not moved from
    timed_out,  // submit_for/submit_until: no room before the deadline; not moved from
    cancelled,  // submit(job, stop_token): stop requested while waiting; not moved from
};

// How shutdown() treats the jobs still queued.
enum class shutdown_mode : unsigned char {
  drain,  // run every queued job, then stop
  abort,  // run none of them: hand them back; running jobs see a stop request
};

// What a worker is doing, as stats() and worker_pool::state_of() see it.
enum class worker_state : std::uint8_t { starting, idle, running, parked, exited };

constexpr std::string_view to_string(submit_status s) noexcept {
  switch (s) {
    case submit_status::accepted: return "accepted";
    case submit_status::rejected: return "rejected";
    case submit_status::dropped: return "dropped";
    case submit_status::closed: return "closed";
    case submit_status::timed_out: return "timed_out";
    case submit_status::cancelled: return "cancelled";
  }
  return "unknown";
}

constexpr std::string_view to_string(shutdown_mode m) noexcept {
  return m == shutdown_mode::drain ? "drain" : "abort";
}

// What a shutdown call did.
template <class Job>
struct shutdown_report {
  // Jobs run to completion or exception by this pool in total, at the time of return.
  std::uint64_t executed = 0;
  // Accepted jobs that never started, taken out of the pool by this call. Each one appears in
  // exactly one report.
  std::vector<Job> handed_back;
  // Workers that had not exited at return: only a deadline shutdown can return while a job
  // ignores its stop token. The destructor joins them later.
  std::size_t still_running = 0;
  // Every accepted job ran (none was handed back, by this call or an earlier one) and no job
  // was still running at return.
  bool drained = false;
};

}  // namespace crew
