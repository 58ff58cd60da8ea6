#pragma once

// crew::pool_stats: a snapshot of what a pool is doing, its latency
// histograms, and their Prometheus text exposition.
//
// A snapshot is a plain value: copy it, keep it, compare it. It is
// "consistent enough": each number was true at some instant during the call
// that took it, but not necessarily all at the same instant (the pool sums
// per-worker counters without stopping the workers).

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace crew {

// Log-scale latency histogram snapshot. Bucket i (0 <= i < bucket_count-1) counts samples whose
// value in nanoseconds is <= upper_bound_ns(i) and > upper_bound_ns(i-1); the last bucket is +Inf.
// Bucket 0 also holds every sample below 256 ns, including 0.
struct latency_histogram {
  static constexpr std::size_t bucket_count = 24;

  // upper_bound_ns(i) = 2^(i+8) ns for i < bucket_count-1 (256 ns ... 2^30 ns, about 1.07 s);
  // for the last bucket (and any larger i) it is UINT64_MAX, which stands for +Inf.
  // Never throws; thread-safe.
  static constexpr std::uint64_t upper_bound_ns(std::size_t i) noexcept {
    return i < bucket_count - 1 ? std::uint64_t{1} << (i + 8)
                                : std::numeric_limits<std::uint64_t>::max();
  }

  // Index of the bucket a sample of `ns` nanoseconds falls in: 0 for ns <= 256, the i with
  // 2^(i+7) < ns <= 2^(i+8) up to 2^30, bucket_count-1 above that. Branch-free but for the
  // clamp. Never throws; thread-safe.
  static constexpr std::size_t bucket_index(std::uint64_t ns) noexcept {
    // (ns - 1) without wrapping at 0; OR-ing 255 makes every value <= 256 land in bucket 0.
    const std::uint64_t below = (ns - static_cast<std::uint64_t>(ns != 0)) | 0xFFU;
    const auto index = static_cast<std::size_t>(std::bit_width(below)) - 8;
    return std::min(index, bucket_count - 1);
  }

  std::array<std::uint64_t, bucket_count> counts{};  // per bucket, NOT cumulative
  std::uint64_t count = 0;                           // number of samples
  std::uint64_t sum_ns = 0;                          // sum of samples

  // Approximate quantile q in [0,1] in ns: the upper bound of the bucket holding the sample of
  // rank ceil(q * n) (at least 1), where n is the sum of `counts`; UINT64_MAX when that bucket is
  // the +Inf one; 0 when empty. q is clamped to [0,1] (NaN counts as 0). Never throws; safe to
  // call concurrently on the same object, not concurrently with a modification.
  [[nodiscard]] std::uint64_t quantile_ns(double q) const noexcept {
    std::uint64_t total = 0;
    for (const std::uint64_t c : counts) {
      total += c;
    }
    if (total == 0) {
      return 0;
    }
    if (!(q > 0.0)) {
      q = 0.0;  // also NaN
    }
    if (q > 1.0) {
      q = 1.0;
    }
    const double wanted = std::ceil(q * static_cast<double>(total));
    std::uint64_t rank = 1;
    if (wanted >= static_cast<double>(total)) {
      rank = total;
    } else if (wanted > 1.0) {
      rank = static_cast<std::uint64_t>(wanted);
    }
    std::uint64_t seen = 0;
    std::size_t bucket = 0;
    for (const std::uint64_t c : counts) {
      seen += c;
      if (seen >= rank) {
        return upper_bound_ns(bucket);
      }
      ++bucket;
    }
    return upper_bound_ns(bucket_count - 1);
  }

  // Adds another histogram's buckets, count and sum to this one (unsigned, wrapping on
  // overflow). Never throws; not thread-safe for *this.
  latency_histogram& operator+=(const latency_histogram& other) noexcept {
    std::transform(counts.begin(), counts.end(), other.counts.begin(), counts.begin(),
                   std::plus<>{});
    count += other.count;
    sum_ns += other.sum_ns;
    return *this;
  }
};

// A snapshot of a pool (see worker_pool::stats()). Gauges describe the instant of the snapshot;
// counters count since the pool was constructed.
struct pool_stats {
  std::size_t workers = 0;            // live worker threads (at most worker_limit; fewer in an
                                      // elastic pool below full size, 0 after shutdown)
  std::size_t busy = 0;               // workers running a job
  std::size_t queue_depth = 0;        // jobs waiting in the queue
  std::size_t capacity = 0;           // real queue capacity
  std::size_t blocked_producers = 0;  // submitters waiting for room
  std::uint64_t accepted = 0;         // jobs accepted into the queue
  std::uint64_t rejected = 0;         // submits refused for lack of room (rejected, timed out,
                                      // cancelled)
  std::uint64_t dropped = 0;          // jobs dropped under overflow_policy::drop
  std::uint64_t executed = 0;         // handler invocations, thrown or not
  std::uint64_t failed = 0;           // handler invocations that threw
  std::uint64_t handed_back = 0;      // accepted jobs returned unstarted by a shutdown
  std::uint64_t recycled = 0;         // worker respawns and stack trims
  bool latency_enabled = false;       // histograms below are filled only when true
  latency_histogram queue_wait;       // submit -> start of the job
  latency_histogram run_time;         // start -> end of the handler
  std::size_t active_keys = 0;        // keyed_pool: keys with a queued or running job (a key
                                      // counts until its worker gives it up, an instant after
                                      // its last job returned)
  std::size_t worker_limit = 0;       // the configured maximum (workers of an elastic pool);
                                      // `workers` above is the live count
  std::uint64_t expired = 0;          // jobs not run because they waited past max_queue_wait
                                      // (each went to on_expire)
};

namespace detail {

// A per-worker latency recorder: exactly one thread (its worker) records, any thread reads.
//
// Why relaxed loads and stores, and no read-modify-write: with a single writer, a load
// followed by a store of the incremented value cannot lose an update (nobody else stores), so
// the lock-prefixed RMW is unnecessary and the hot path is plain moves. Each counter is its own
// atomic, so a reader on another thread never sees a torn value, only some recent value of each
// counter; readers need only eventually consistent counts (a snapshot may see a bucket
// incremented before `count`), and nothing else is published through these counters, so no
// acquire/release pairing is needed. Aligned to a cache line so two workers' recorders never
// share one.
class alignas(64) histogram_recorder {
 public:
  // Records one sample of `ns` nanoseconds. Only one thread may call record() on a given
  // recorder (the single writer); concurrent add_to() calls are fine. Never throws.
  void record(std::uint64_t ns) noexcept {
    // bucket_index() < bucket_count for every input, so the subscript is in bounds.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-bounds-constant-array-index)
    std::atomic<std::uint64_t>& bucket = counts_[latency_histogram::bucket_index(ns)];
    bucket.store(bucket.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    count_.store(count_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    sum_ns_.store(sum_ns_.load(std::memory_order_relaxed) + ns, std::memory_order_relaxed);
  }

  // Adds what this recorder has counted so far to `out`. Thread-safe with respect to record()
  // and other add_to() calls; each counter is read atomically, but the counters need not be
  // mutually consistent while record() runs. Never throws.
  void add_to(latency_histogram& out) const noexcept {
    std::transform(out.counts.begin(), out.counts.end(), counts_.begin(), out.counts.begin(),
                   [](std::uint64_t sum, const std::atomic<std::uint64_t>& bucket) {
                     return sum + bucket.load(std::memory_order_relaxed);
                   });
    out.count += count_.load(std::memory_order_relaxed);
    out.sum_ns += sum_ns_.load(std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<std::uint64_t>, latency_histogram::bucket_count> counts_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_ns_{0};
};

static_assert(alignof(histogram_recorder) == 64 && sizeof(histogram_recorder) % 64 == 0,
              "histogram_recorder must occupy whole cache lines so that two workers' recorders "
              "never share one.");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "histogram_recorder needs lock-free 64-bit atomics to stay cheap on the hot path.");

// True when `name` matches [a-zA-Z_:][a-zA-Z0-9_:]*. Never throws; thread-safe.
constexpr bool is_prometheus_metric_name(std::string_view name) noexcept {
  if (name.empty()) {
    return false;
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) {
      return false;
    }
  }
  return true;
}

// Appends an unsigned integer in decimal. May throw std::bad_alloc.
inline void append_uint(std::string& out, std::uint64_t value) {
  std::array<char, 24> buf{};  // UINT64_MAX has 20 digits
  const auto result = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  out.append(buf.data(), result.ptr);
}

// Appends a double in the shortest form that reads back exactly ("2.56e-07", "0.001048576",
// "1.5"), the form Prometheus clients use. May throw std::bad_alloc.
inline void append_double(std::string& out, double value) {
  std::array<char, 64> buf{};  // the longest shortest form of a double has 24 characters
  const auto result = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  if (result.ec == std::errc{}) {
    out.append(buf.data(), result.ptr);
  }
}

// Appends the HELP and TYPE lines of one metric family. May throw std::bad_alloc.
inline void append_header(std::string& out, std::string_view prefix, std::string_view suffix,
                          std::string_view help, std::string_view type) {
  out.append("# HELP ").append(prefix).append(suffix).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(prefix).append(suffix).append(" ").append(type).append("\n");
}

// Appends one gauge or counter family: HELP, TYPE and the sample. May throw std::bad_alloc.
inline void append_scalar(std::string& out, std::string_view prefix, std::string_view suffix,
                          std::string_view help, std::string_view type, std::uint64_t value) {
  append_header(out, prefix, suffix, help, type);
  out.append(prefix).append(suffix).append(" ");
  append_uint(out, value);
  out.append("\n");
}

// Appends one histogram family in seconds: cumulative `_bucket{le="..."}` lines ending in
// le="+Inf", then `_sum` and `_count`. `_count` is the +Inf bucket (the sum of the buckets), so
// the exposition is self-consistent even when the snapshot's `count` was read at a slightly
// different instant than its buckets. May throw std::bad_alloc.
inline void append_histogram(std::string& out, std::string_view prefix, std::string_view suffix,
                             std::string_view help, const latency_histogram& histogram) {
  append_header(out, prefix, suffix, help, "histogram");
  std::uint64_t cumulative = 0;
  std::size_t bucket = 0;
  for (const std::uint64_t c : histogram.counts) {
    cumulative += c;
    out.append(prefix).append(suffix).append("_bucket{le=\"");
    if (++bucket < latency_histogram::bucket_count) {
      append_double(out, static_cast<double>(latency_histogram::upper_bound_ns(bucket - 1)) / 1e9);
    } else {
      out.append("+Inf");
    }
    out.append("\"} ");
    append_uint(out, cumulative);
    out.append("\n");
  }
  out.append(prefix).append(suffix).append("_sum ");
  append_double(out, static_cast<double>(histogram.sum_ns) / 1e9);
  out.append("\n");
  out.append(prefix).append(suffix).append("_count ");
  append_uint(out, cumulative);
  out.append("\n");
}

}  // namespace detail

// Prometheus text exposition format 0.0.4 of a snapshot. `name` is a metric prefix
// (e.g. "crew" or "image_pool"); it must match [a-zA-Z_:][a-zA-Z0-9_:]*, otherwise
// std::invalid_argument. Counters end in `_total` and are TYPE counter; workers, busy,
// queue depth, capacity, blocked producers, active keys are gauges; every metric has a HELP and a
// TYPE line. When latency_enabled, the two histograms are exposed as TYPE histogram with cumulative
// `_bucket{le="..."}` lines in SECONDS (le values like "2.56e-07", last le="+Inf"), `_sum`
// (seconds) and `_count`.
//
// The families, for name "crew": gauges crew_workers, crew_busy_workers, crew_queue_depth,
// crew_queue_capacity, crew_blocked_producers; counters crew_accepted_total,
// crew_rejected_total, crew_dropped_total, crew_executed_total, crew_failed_total,
// crew_handed_back_total, crew_recycled_total; gauges crew_active_keys, crew_worker_limit;
// counter crew_expired_total; histograms
// crew_queue_wait_seconds and crew_run_time_seconds. Every line ends in '\n'. Throws
// std::invalid_argument for a bad name, std::bad_alloc when out of memory; thread-safe (it only
// reads `stats`).
inline std::string to_prometheus(const pool_stats& stats, std::string_view name) {
  if (!detail::is_prometheus_metric_name(name)) {
    throw std::invalid_argument("crew::to_prometheus: metric name prefix \"" + std::string(name) +
                                "\" does not match [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  std::string out;
  out.reserve(stats.latency_enabled ? 6144 : 2048);
  const auto gauge = [&](std::string_view suffix, std::string_view help, std::uint64_t value) {
    detail::append_scalar(out, name, suffix, help, "gauge", value);
  };
  const auto counter = [&](std::string_view suffix, std::string_view help, std::uint64_t value) {
    detail::append_scalar(out, name, suffix, help, "counter", value);
  };
  gauge("_workers", "Live worker threads in the pool.", stats.workers);
  gauge("_busy_workers", "Workers running a job.", stats.busy);
  gauge("_queue_depth", "Jobs waiting in the queue.", stats.queue_depth);
  gauge("_queue_capacity", "Capacity of the queue.", stats.capacity);
  gauge("_blocked_producers", "Producers waiting for room in the queue.", stats.blocked_producers);
  counter("_accepted_total", "Jobs accepted into the queue.", stats.accepted);
  counter("_rejected_total", "Submits refused for lack of room (rejected, timed out, cancelled).",
          stats.rejected);
  counter("_dropped_total", "Jobs dropped because the queue was full.", stats.dropped);
  counter("_executed_total", "Jobs whose handler was invoked, thrown or not.", stats.executed);
  counter("_failed_total", "Jobs whose handler threw.", stats.failed);
  counter("_handed_back_total", "Accepted jobs handed back unstarted by a shutdown.",
          stats.handed_back);
  counter("_recycled_total", "Worker recycles (respawns and stack trims).", stats.recycled);
  gauge("_active_keys", "Keys with a queued or running job (keyed pools; 0 otherwise).",
        stats.active_keys);
  gauge("_worker_limit", "Most worker threads the pool may run (elastic pools grow up to it).",
        stats.worker_limit);
  counter("_expired_total", "Jobs not run because they waited longer than max_queue_wait.",
          stats.expired);
  if (stats.latency_enabled) {
    detail::append_histogram(out, name, "_queue_wait_seconds",
                             "Time from submit to the start of the job.", stats.queue_wait);
    detail::append_histogram(out, name, "_run_time_seconds", "Time the handler ran.",
                             stats.run_time);
  }
  return out;
}

}  // namespace crew
