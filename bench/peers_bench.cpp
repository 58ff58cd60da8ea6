// peers_bench: crew::worker_pool against what a C++ user would otherwise pick, in one binary so
// the ratios come from one run (GitHub issue 6). The contenders are the shared ones of
// bench/peers.hpp: crew, the mutex + condvar pool (bench/mutex_pool.hpp), a pool on moodycamel's
// BlockingConcurrentQueue (bulk dequeue; unbounded, and bounded at 1,024 like crew by a
// semaphore: moodycamel_bounded), oneTBB (task_arena + task_group), Boost.Asio
// thread_pool, and one std::thread per job. Peers missing at configure time are skipped (their
// benchmarks are not registered; CMake says so). Every contender runs with
// workers = crew::hardware_workers() and runs its jobs through the same plain function pointer;
// every benchmark checks at the end, after the contender's destructor has run every job and
// joined, that exactly as many jobs ran as were submitted (else SkipWithError).
//
// What is measured (<c> is a contender's name):
//   BM_Peers_Trivial/<c>/p<P>   jobs/s for trivial jobs (the job adds one to a shared atomic
//       counter), P producers submitting one job at a time; an iteration ends when every job has
//       run (the producer spins, yielding, on the completion counter; the same for every
//       contender). Counter allocs_per_job: calls to operator new (this binary replaces it)
//       during the iteration, per job, not counting the producer threads' own std::thread.
//   BM_Peers_Trivial/crew_bulk/p<P>   the same jobs into crew with submit_bulk, in chunks of 256,
//       so bulk against single submits comes from one run.
//   BM_Peers_WakeLatency/<c>    submit-to-start latency from idle: sleep 1 ms so the workers go
//       idle, stamp, submit; the job records now - stamp. Counters p50_ns, p99_ns, p999_ns over
//       1000 samples (one iteration).
//   BM_Peers_Small/<c>    100,000 compute jobs of ~200 ns each (a multiply-xorshift chain whose
//       length is calibrated once at startup, before any benchmark runs, to 200 ns on this
//       machine; the JSON context records the length and the measured cost), one producer. Time
//       is manual: the makespan, from just before the first submit to the moment the last job
//       finished (stamped by the job that completed the set; the producer sleeps on a condition
//       variable meanwhile, so it takes no core from the workers). items_per_second.
//   BM_Peers_Skewed/<c>   as Small, but every 100th job (deterministic) runs 100x longer
//       (~20 us): how a pool copes with a few long jobs among many short ones.
//   BM_Peers_HeadOfLine/<c>   head-of-line blocking: 20,000 compute jobs, one producer submitting
//       one at a time; jobs 0, 100, 200, ... (1 in 100, a long one first) run 1000x longer than
//       the others: a short job is the spin chain calibrated at startup to ~1 us, a long one is
//       1000x its rounds (~1 ms). Each iteration is ~110 ms of work for 2 workers. Time is
//       manual, the makespan as in Small. Counters: makespan_ms (mean over the iterations);
//       ideal_ms = (19,800 x t_short + 200 x t_long) / workers, where t_short and t_long are the
//       costs of one short and one long job measured at startup on one thread (best of 7 runs of
//       2,000 short or 5 long calls, like peers_work_ns; JSON context peers_hol_short_ns and
//       peers_hol_long_ns): the makespan of a perfect scheduler whose submits cost nothing; and
//       makespan_over_ideal = makespan_ms / ideal_ms. 1.0 is unreachable: the producer shares the
//       workers' cores, and the last long job (job 19,900) is followed by only ~99 us of short
//       ones. A pool that lets short jobs wait behind a long one on a busy worker (a worker's
//       private batch, a stolen-from deque) while another worker idles shows up above the rest.
//       items_per_second too.
//   BM_Peers_Bursty/<c>   10 bursts of 10,000 trivial jobs, each burst after a 5 ms sleep in
//       which the workers go idle; a job carries its submit time (stamped just before the submit
//       call, so time spent blocked in a full bounded queue counts) and records when it starts.
//       Time is manual: the sum of the bursts (first submit to last completion), so the gaps are
//       excluded without PauseTiming. Counters burst_ms (median over the run's bursts), p50_ns and
//       p99_ns of submit-to-start over all its jobs. One iteration (the 10 bursts) per run.
//   BM_Peers_IdleCpu/<c>   the CPU an idle pool burns: construct, run 1000 trivial jobs, wait
//       for them, then read CLOCK_PROCESS_CPUTIME_ID across one second of sleeping. Counter
//       cpu_ms_per_s (process CPU ms per wall second: spinning, timers, wake-ups). One
//       iteration.
// thread_per_job runs fewer jobs (thread creation costs ~25 us here): 2,000 per producer in
// Trivial, and a tenth of the jobs in Small, Skewed (10,000), HeadOfLine (2,000, 20 of them long;
// its ideal_ms is for those) and Bursty (10 bursts of 1,000), so an iteration stays well under
// 2 s. Its items_per_second compare; its burst_ms, makespan_ms and makespan_over_ideal do not
// (HeadOfLine with all 20,000 jobs took 1.65 s an iteration, 14.5x its ideal, against 8.5x at
// 2,000: the more threads alive at once, the dearer each one).
//
// Run: build/bench/bench/peers_bench --benchmark_repetitions=5
//        --benchmark_report_aggregates_only=true --benchmark_format=json

#include <crew/worker_pool.hpp>

#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "alloc_counter.hpp"  // replaces operator new in this binary: g_news
#include "peers.hpp"

using crew_bench::g_news;

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using crew_bench::crew_contender;
using crew_bench::thread_per_job_contender;

constexpr std::size_t kJobsPerProducer = 200'000;  // Trivial
constexpr std::size_t kThreadPerJobJobs = 2'000;   // Trivial, thread_per_job
constexpr std::size_t kBulkChunk = 256;            // Trivial, crew_bulk
constexpr int kLatencySamples = 1000;              // WakeLatency
constexpr std::size_t kComputeJobs = 100'000;      // Small, Skewed
constexpr double kComputeNs = 200.0;               // Small, Skewed: cost of one job
constexpr std::size_t kSkewEvery = 100;            // Skewed: every 100th job is long...
constexpr std::int64_t kSkewFactor = 100;          // ... and 100x longer
constexpr std::size_t kHolJobs = 20'000;           // HeadOfLine, per iteration
constexpr double kHolShortNs = 1000.0;             // HeadOfLine: cost of a short job
constexpr std::size_t kHolLongEvery = 100;         // HeadOfLine: jobs 0, 100, 200, ... are long...
constexpr std::int64_t kHolLongFactor = 1000;      // ... and 1000x longer (~1 ms)
constexpr int kBursts = 10;                        // Bursty, per iteration
constexpr std::size_t kBurstJobs = 10'000;         // Bursty, per burst
constexpr auto kBurstGap = 5ms;                    // Bursty: idle time before each burst
constexpr std::size_t kWarmupJobs = 1000;          // IdleCpu
constexpr auto kIdleWindow = 1s;                   // IdleCpu
constexpr std::size_t kThreadPerJobShare = 10;     // thread_per_job: 1/10 of Small/.../Bursty
constexpr auto kWaitLimit = 60s;  // a wait for jobs longer than this fails the benchmark

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
      .count();
}

template <class Contender>
constexpr bool is_thread_per_job = std::is_same_v<Contender, thread_per_job_contender>;

std::size_t workers() { return crew::hardware_workers(); }

// ---- completion counting ------------------------------------------------------------------------
// Every job ends by adding one to g_done. A benchmark sets it to 0 before building its contender
// and compares it with the number of jobs it submitted after the contender's destructor ran them
// all: a lost or doubled job fails the benchmark.
std::atomic<std::uint64_t> g_done{0};

void count_job() {
  // (1) Release: publishes what the job wrote (WakeLatency's g_latency_ns) to the producer's
  // acquire load in wait_done.
  g_done.fetch_add(1, std::memory_order_release);
}

// Waits, spinning with yield, until g_done >= target; false after kWaitLimit.
bool wait_done(std::uint64_t target) {
  const auto limit = clock_type::now() + kWaitLimit;
  // (1) pairs with this acquire.
  while (g_done.load(std::memory_order_acquire) < target) {
    if (clock_type::now() > limit) return false;
    std::this_thread::yield();
  }
  return true;
}

// Rounds (Small, Skewed, Bursty): the producer submits a round of jobs and sleeps on a condition
// variable (so it does not take a core from the workers) until the job that brings g_done to
// g_target stamps the round's end and wakes it. The stamp is the last completion, exactly.
std::atomic<std::uint64_t> g_target{0};
std::mutex g_round_mutex;
std::condition_variable g_round_cv;
bool g_round_over = false;        // guarded by g_round_mutex
std::int64_t g_round_end_ns = 0;  // guarded by g_round_mutex

void count_job_timed() {
  // (2) acq_rel: the release publishes this job's writes (Bursty's g_waits slot); the acquire
  // lets the job that completes the round see every other job's writes (each earlier increment
  // heads a release sequence this RMW continues), and it hands them on to the producer through
  // g_round_mutex.
  const std::uint64_t n = g_done.fetch_add(1, std::memory_order_acq_rel) + 1;
  // Relaxed: the producer stored the target before it submitted this round's jobs, and each
  // contender's submit happens-before the job runs.
  if (n == g_target.load(std::memory_order_relaxed)) {
    const std::int64_t end = now_ns();
    {
      std::lock_guard lock(g_round_mutex);
      g_round_end_ns = end;
      g_round_over = true;
    }
    g_round_cv.notify_one();
  }
}

// Call before submitting a round; `target` is g_done's value once the round has run.
void begin_round(std::uint64_t target) {
  {
    std::lock_guard lock(g_round_mutex);
    g_round_over = false;
  }
  // Relaxed: read by the round's jobs only, which the submits that follow order after it.
  g_target.store(target, std::memory_order_relaxed);
}

// The round's last completion time, or nullopt when it did not come within kWaitLimit.
std::optional<std::int64_t> end_round() {
  std::unique_lock lock(g_round_mutex);
  if (!g_round_cv.wait_for(lock, kWaitLimit, [] { return g_round_over; })) return std::nullopt;
  return g_round_end_ns;
}

// After the contender is destroyed (every job ran, workers joined): exactly `submitted` jobs ran?
void check_ran(benchmark::State& state, std::uint64_t submitted) {
  const std::uint64_t ran = g_done.load();
  if (ran != submitted) {
    state.SkipWithError(
        ("ran " + std::to_string(ran) + " jobs, submitted " + std::to_string(submitted)).c_str());
  }
}

void timed_out(benchmark::State& state, std::uint64_t target) {
  state.SkipWithError(("timed out waiting for jobs: " + std::to_string(g_done.load()) + " of " +
                       std::to_string(target) + " ran")
                          .c_str());
}

// Sorted samples -> the value at quantile q (nearest rank below).
double quantile(const std::vector<std::int64_t>& sorted, double q) {
  return static_cast<double>(
      sorted[static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1))]);
}

// ---- jobs ---------------------------------------------------------------------------------------
void trivial_job(std::int64_t /*payload*/) { count_job(); }

// WakeLatency: the payload is the submit time.
std::atomic<std::int64_t> g_latency_ns{0};
void wake_job(std::int64_t stamp) {
  // Relaxed: published by count_job's release (1).
  g_latency_ns.store(now_ns() - stamp, std::memory_order_relaxed);
  count_job();
}

// Small, Skewed: the payload is the number of rounds of a multiply-xorshift chain. Each round
// depends on the one before, so the loop can be neither vectorised nor shortened.
std::uint64_t spin(std::int64_t rounds) {
  std::uint64_t x = static_cast<std::uint64_t>(rounds) | 1U;
  for (std::int64_t i = 0; i < rounds; ++i) {
    x ^= x >> 29;
    x *= 0x9E3779B97F4A7C15ULL;
  }
  return x;
}
std::int64_t g_rounds_200ns = 0;  // set by calibrate() before any benchmark runs
// HeadOfLine, also set by calibrate(): rounds of a short job (~1 us; a long one runs
// kHolLongFactor times as many), and the measured cost of one short and one long job.
std::int64_t g_hol_short_rounds = 0;
double g_hol_short_ns = 0.0;
double g_hol_long_ns = 0.0;

void compute_job(std::int64_t rounds) {
  benchmark::DoNotOptimize(spin(rounds));
  count_job_timed();
}

// Bursty: the payload is (index in the burst << kStampBits) | submit time - g_epoch_ns. 40 bits
// of nanoseconds are 18 minutes, far more than a run; the index needs 14 bits.
constexpr int kStampBits = 40;
constexpr std::int64_t kStampMask = (std::int64_t{1} << kStampBits) - 1;
std::int64_t g_epoch_ns = 0;        // set before a run's first submit, which orders it for jobs
std::vector<std::int64_t> g_waits;  // submit-to-start of the burst's job i, written by that job

void bursty_job(std::int64_t payload) {
  const std::int64_t started = now_ns() - g_epoch_ns;
  g_waits[static_cast<std::size_t>(payload >> kStampBits)] = started - (payload & kStampMask);
  count_job_timed();  // (2) publishes the write above
}

// ---- calibration --------------------------------------------------------------------------------
// Best of several runs: on a shared machine the fastest run is the least disturbed one.
double best_ns_per_call(std::int64_t rounds, int calls) {
  double best = std::numeric_limits<double>::infinity();
  for (int run = 0; run < 7; ++run) {
    const std::int64_t start = now_ns();
    for (int i = 0; i < calls; ++i) benchmark::DoNotOptimize(spin(rounds));
    best = std::min(best, static_cast<double>(now_ns() - start) / calls);
  }
  return best;
}

// Rounds of spin() for one call of target_ns: a first guess from ns_per_round (measured on one
// long call), then, since short calls do not run at quite the speed of one long one, corrected
// once at the real length (`calls` calls per timed run).
std::int64_t calibrate_rounds(double ns_per_round, double target_ns, int calls) {
  std::int64_t rounds = std::max<std::int64_t>(1, std::llround(target_ns / ns_per_round));
  const double ns_per_call = best_ns_per_call(rounds, calls);
  rounds = std::llround(static_cast<double>(rounds) * target_ns / ns_per_call);
  return std::max<std::int64_t>(1, rounds);
}

void calibrate() {
  constexpr std::int64_t kProbe = 1'000'000;
  const double ns_per_round = best_ns_per_call(kProbe, 1) / static_cast<double>(kProbe);
  g_rounds_200ns = calibrate_rounds(ns_per_round, kComputeNs, 10'000);
  benchmark::AddCustomContext("peers_work_rounds", std::to_string(g_rounds_200ns));
  benchmark::AddCustomContext("peers_work_ns",
                              std::to_string(best_ns_per_call(g_rounds_200ns, 10'000)));
  // HeadOfLine: ~65 ms more at startup (7 runs of 2,000 short calls, then of 5 long ones).
  g_hol_short_rounds = calibrate_rounds(ns_per_round, kHolShortNs, 2'000);
  g_hol_short_ns = best_ns_per_call(g_hol_short_rounds, 2'000);
  g_hol_long_ns = best_ns_per_call(g_hol_short_rounds * kHolLongFactor, 5);
  benchmark::AddCustomContext("peers_hol_short_rounds", std::to_string(g_hol_short_rounds));
  benchmark::AddCustomContext("peers_hol_short_ns", std::to_string(g_hol_short_ns));
  benchmark::AddCustomContext("peers_hol_long_ns", std::to_string(g_hol_long_ns));
}

// ---- benchmarks ---------------------------------------------------------------------------------
template <class Contender, bool Bulk>
void bm_trivial(benchmark::State& state, std::size_t producers, std::size_t per_producer) {
  g_done.store(0);
  std::uint64_t submitted = 0;
  std::uint64_t allocs = 0;
  {
    Contender c(workers(), trivial_job);
    // Submits per_producer jobs; returns how many were refused (crew's submit_bulk only: the
    // peers' submit never refuses).
    auto produce = [&c, per_producer]() -> std::size_t {
      std::size_t refused = 0;
      if constexpr (Bulk) {
        static constexpr std::array<std::int64_t, kBulkChunk> kChunk{};
        for (std::size_t i = 0; i < per_producer; i += kBulkChunk) {
          const std::size_t n = std::min(kBulkChunk, per_producer - i);
          refused += n - c.pool.submit_bulk(std::span(kChunk.data(), n));
        }
      } else {
        for (std::size_t i = 0; i < per_producer; ++i) c.submit(0);
      }
      return refused;
    };
    std::vector<std::thread> threads;
    threads.reserve(producers);  // before the count: the vector's buffer is not the pool's cost
    for (auto _ : state) {
      threads.clear();
      const std::uint64_t before = g_news.load();
      std::atomic<std::size_t> refused{0};
      for (std::size_t p = 1; p < producers; ++p) {
        threads.emplace_back([&] { refused += produce(); });
      }
      refused += produce();
      for (auto& t : threads) t.join();
      if (refused.load() != 0) {
        state.SkipWithError("crew's submit_bulk refused jobs");
        break;
      }
      submitted += producers * per_producer;
      if (!wait_done(submitted)) {
        timed_out(state, submitted);
        break;
      }
      // Producer threads themselves allocate (their std::thread state): not the pool's cost.
      allocs += g_news.load() - before - (producers - 1);
    }
  }
  check_ran(state, submitted);
  const auto jobs = static_cast<double>(state.iterations() * producers * per_producer);
  state.SetItemsProcessed(static_cast<std::int64_t>(jobs));
  state.counters["allocs_per_job"] = jobs > 0 ? static_cast<double>(allocs) / jobs : 0.0;
}

template <class Contender>
void bm_wake_latency(benchmark::State& state) {
  g_done.store(0);
  std::uint64_t submitted = 0;
  std::vector<std::int64_t> samples;
  {
    Contender c(workers(), wake_job);
    for (auto _ : state) {
      for (int i = 0; i < kLatencySamples && !state.error_occurred(); ++i) {
        std::this_thread::sleep_for(1ms);
        c.submit(now_ns());
        if (!wait_done(++submitted)) {
          timed_out(state, submitted);
        } else {
          // Relaxed: wait_done's acquire (1) already ordered the job's store before this load.
          samples.push_back(g_latency_ns.load(std::memory_order_relaxed));
        }
      }
    }
  }
  check_ran(state, submitted);
  if (state.error_occurred() || samples.empty()) return;
  std::sort(samples.begin(), samples.end());
  if (samples.front() < 0) state.SkipWithError("negative submit-to-start latency");
  state.counters["p50_ns"] = quantile(samples, 0.50);
  state.counters["p99_ns"] = quantile(samples, 0.99);
  state.counters["p999_ns"] = quantile(samples, 0.999);
}

// Small (skewed = false) and Skewed.
template <class Contender>
void bm_compute(benchmark::State& state, std::size_t jobs, bool skewed) {
  g_done.store(0);
  std::uint64_t submitted = 0;
  {
    Contender c(workers(), compute_job);
    for (auto _ : state) {
      submitted += jobs;
      begin_round(submitted);
      const std::int64_t start = now_ns();
      for (std::size_t i = 0; i < jobs; ++i) {
        const bool long_job = skewed && i % kSkewEvery == kSkewEvery - 1;
        c.submit(long_job ? g_rounds_200ns * kSkewFactor : g_rounds_200ns);
      }
      const std::optional<std::int64_t> end = end_round();
      if (!end) {
        timed_out(state, submitted);
        break;
      }
      state.SetIterationTime(static_cast<double>(*end - start) * 1e-9);
    }
  }
  check_ran(state, submitted);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(jobs));
}

// HeadOfLine: job i is long when i % kHolLongEvery == 0, so a long job heads every set.
template <class Contender>
void bm_head_of_line(benchmark::State& state, std::size_t jobs) {
  g_done.store(0);
  std::uint64_t submitted = 0;
  std::int64_t makespans_ns = 0;  // summed over the iterations
  const std::int64_t long_rounds = g_hol_short_rounds * kHolLongFactor;
  {
    Contender c(workers(), compute_job);
    for (auto _ : state) {
      submitted += jobs;
      begin_round(submitted);
      const std::int64_t start = now_ns();
      for (std::size_t i = 0; i < jobs; ++i) {
        c.submit(i % kHolLongEvery == 0 ? long_rounds : g_hol_short_rounds);
      }
      const std::optional<std::int64_t> end = end_round();
      if (!end) {
        timed_out(state, submitted);
        break;
      }
      makespans_ns += *end - start;
      state.SetIterationTime(static_cast<double>(*end - start) * 1e-9);
    }
  }
  check_ran(state, submitted);
  const auto iterations = static_cast<std::int64_t>(state.iterations());
  state.SetItemsProcessed(iterations * static_cast<std::int64_t>(jobs));
  if (state.error_occurred() || iterations == 0) return;
  const std::size_t long_jobs = (jobs + kHolLongEvery - 1) / kHolLongEvery;
  const double work_ns = static_cast<double>(jobs - long_jobs) * g_hol_short_ns +
                         static_cast<double>(long_jobs) * g_hol_long_ns;
  const double ideal_ms = work_ns / static_cast<double>(workers()) * 1e-6;
  const double makespan_ms =
      static_cast<double>(makespans_ns) * 1e-6 / static_cast<double>(iterations);
  state.counters["makespan_ms"] = makespan_ms;
  state.counters["ideal_ms"] = ideal_ms;
  state.counters["makespan_over_ideal"] = makespan_ms / ideal_ms;
}

template <class Contender>
void bm_bursty(benchmark::State& state, std::size_t burst_jobs) {
  g_done.store(0);
  g_waits.assign(burst_jobs, -1);
  std::uint64_t submitted = 0;
  std::vector<std::int64_t> waits;  // every job's submit-to-start, all bursts
  std::vector<std::int64_t> bursts;
  {
    Contender c(workers(), bursty_job);
    g_epoch_ns = now_ns();
    for (auto _ : state) {
      std::int64_t measured = 0;
      for (int b = 0; b < kBursts && !state.error_occurred(); ++b) {
        std::this_thread::sleep_for(kBurstGap);  // the workers go idle
        std::fill(g_waits.begin(), g_waits.end(), -1);
        submitted += burst_jobs;
        begin_round(submitted);
        const std::int64_t start = now_ns();
        for (std::size_t i = 0; i < burst_jobs; ++i) {
          c.submit((static_cast<std::int64_t>(i) << kStampBits) | (now_ns() - g_epoch_ns));
        }
        const std::optional<std::int64_t> end = end_round();
        if (!end) {
          timed_out(state, submitted);
        } else if (std::any_of(g_waits.begin(), g_waits.end(), [](auto w) { return w < 0; })) {
          state.SkipWithError("a job of the burst did not record its start");
        } else {
          measured += *end - start;
          bursts.push_back(*end - start);
          waits.insert(waits.end(), g_waits.begin(), g_waits.end());
        }
      }
      if (state.error_occurred()) break;
      state.SetIterationTime(static_cast<double>(measured) * 1e-9);
    }
  }
  check_ran(state, submitted);
  if (state.error_occurred() || bursts.empty()) return;
  std::sort(bursts.begin(), bursts.end());
  std::sort(waits.begin(), waits.end());
  state.SetItemsProcessed(static_cast<std::int64_t>(waits.size()));
  state.counters["burst_ms"] = quantile(bursts, 0.50) * 1e-6;
  state.counters["p50_ns"] = quantile(waits, 0.50);
  state.counters["p99_ns"] = quantile(waits, 0.99);
}

std::int64_t process_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

template <class Contender>
void bm_idle_cpu(benchmark::State& state) {
  g_done.store(0);
  double cpu_ms_per_s = -1.0;
  {
    Contender c(workers(), trivial_job);
    for (std::size_t i = 0; i < kWarmupJobs; ++i) c.submit(0);
    if (!wait_done(kWarmupJobs)) timed_out(state, kWarmupJobs);
    for (auto _ : state) {
      const std::int64_t cpu0 = process_cpu_ns();
      const std::int64_t wall0 = now_ns();
      std::this_thread::sleep_for(kIdleWindow);
      const std::int64_t cpu1 = process_cpu_ns();
      const std::int64_t wall1 = now_ns();
      cpu_ms_per_s =
          static_cast<double>(cpu1 - cpu0) * 1e-6 / (static_cast<double>(wall1 - wall0) * 1e-9);
    }
  }
  check_ran(state, kWarmupJobs);
  if (!state.error_occurred() && !(cpu_ms_per_s >= 0.0)) {
    state.SkipWithError("process CPU time did not advance monotonically");
  }
  state.counters["cpu_ms_per_s"] = cpu_ms_per_s;
}

// ---- registration -------------------------------------------------------------------------------
void register_all() {
  using benchmark::RegisterBenchmark;
  using std::string;
  crew_bench::for_each_contender([]<class C>() {
    const std::size_t per_producer = is_thread_per_job<C> ? kThreadPerJobJobs : kJobsPerProducer;
    for (std::size_t p : {1U, 2U}) {
      const string suffix = "/p" + std::to_string(p);
      RegisterBenchmark(("BM_Peers_Trivial/" + string(C::name) + suffix).c_str(),
                        bm_trivial<C, false>, p, per_producer)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
      if constexpr (std::is_same_v<C, crew_contender>) {
        RegisterBenchmark(("BM_Peers_Trivial/crew_bulk" + suffix).c_str(), bm_trivial<C, true>, p,
                          per_producer)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  });
  crew_bench::for_each_contender([]<class C>() {
    RegisterBenchmark(("BM_Peers_WakeLatency/" + string(C::name)).c_str(), bm_wake_latency<C>)
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  });
  for (const bool skewed : {false, true}) {
    crew_bench::for_each_contender([skewed]<class C>() {
      const std::size_t jobs = kComputeJobs / (is_thread_per_job<C> ? kThreadPerJobShare : 1);
      RegisterBenchmark(
          ((skewed ? "BM_Peers_Skewed/" : "BM_Peers_Small/") + string(C::name)).c_str(),
          bm_compute<C>, jobs, skewed)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    });
  }
  crew_bench::for_each_contender([]<class C>() {
    const std::size_t jobs = kHolJobs / (is_thread_per_job<C> ? kThreadPerJobShare : 1);
    RegisterBenchmark(("BM_Peers_HeadOfLine/" + string(C::name)).c_str(), bm_head_of_line<C>, jobs)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  });
  crew_bench::for_each_contender([]<class C>() {
    const std::size_t jobs = kBurstJobs / (is_thread_per_job<C> ? kThreadPerJobShare : 1);
    RegisterBenchmark(("BM_Peers_Bursty/" + string(C::name)).c_str(), bm_bursty<C>, jobs)
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  });
  crew_bench::for_each_contender([]<class C>() {
    RegisterBenchmark(("BM_Peers_IdleCpu/" + string(C::name)).c_str(), bm_idle_cpu<C>)
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  });
}

}  // namespace

// BENCHMARK_MAIN() with the calibration and the registration first.
int main(int argc, char** argv) {
  calibrate();
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
