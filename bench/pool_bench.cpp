// pool_bench: crew::worker_pool against the classic mutex + condition-variable pool
// (crew_bench::mutex_pool, bench/mutex_pool.hpp), in one binary, so that the ratios between them
// come from one run on one machine state.
//
// What is measured:
//   BM_Pool_Trivial/<contender>/p<P>w<W>   jobs/s (items_per_second) for trivial jobs: the job is
//       an int, the handler adds it to a thread_local (nothing shared between workers per job).
//       Each iteration, each of P producers submits kJobsPerProducer jobs one at a time with the
//       blocking submit, then the caller waits with wait_idle() until every job has run; the
//       time is wall-clock (UseRealTime) over the whole iteration. The pool and the producer
//       threads are built once per run, not timed. Queue capacity 1024 for every contender.
//       Diagnostic counters: cpu_cores (process CPU time / wall time, all threads) and
//       vcsw_per_kjob / ivcsw_per_kjob (voluntary / involuntary context switches per 1000 jobs):
//       they tell spinning from sleeping and show futex ping-pong.
//   BM_Pool_Bulk/<contender>/p<P>w<W>      the same, each producer submitting vectors of kBulk
//       jobs: crew's submit_bulk (one tail claim per run of jobs) against mutex_pool's
//       submit_bulk (one lock acquisition per call).
//   BM_Pool_WakeLatency/<contender>        submit-to-start latency from idle, 2 workers: the
//       producer sleeps kLatencyGap (so that the workers really park), stamps steady_clock::now()
//       into the job and submits; the handler records now - stamp. kLatencySamples samples per
//       run (one iteration), reported as counters p50_ns, p99_ns, p999_ns (and mean_ns).
//   BM_Pool_IdleCpu/<contender>            CPU the process burns while a 2-worker pool sits idle
//       (after a burst of jobs, so the workers have been awake): CLOCK_PROCESS_CPUTIME_ID over
//       kIdleWindow of sleep, reported as the counter cpu_ms_per_s (ms of CPU per second idle).
//
// Contenders:
//   crew           crew::worker_pool<int> (default, type-erased handler), recycle_after = 0.
//   crew_recycle   the same with the default recycle_after (65536, respawn): what recycling costs.
//   crew_concrete  crew::worker_pool<int, trivial_handler>, recycle_after = 0: the handler type
//                  named, so the call can be inlined.
//   mutex          crew_bench::mutex_pool<int> (std::function handler, std::deque bounded at
//                  1024, one mutex, condition variables not_empty / not_full).
// Configurations: P producers x W workers, P, W in {1, 2}. The reference machine has 2 cores,
// so p2w2 (and p2w1, p1w2 counting the producer) oversubscribe it ON PURPOSE: they show what
// each pool does when a thread is preempted inside it.
//
// Names are BM_Pool_<family>/<contender>[/p<P>w<W>], to which Google Benchmark appends
// /iterations:N and /real_time (and _median etc. for aggregates); group by the first three
// '/'-separated parts. Every run is checked: it fails (SkipWithError) unless every submitted job
// was accepted and ran.
//
// How to run (Release: -O2 -DNDEBUG):
//   build/bench/bench/pool_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true --benchmark_format=json    (one line)
// or --benchmark_out=pool_bench.json --benchmark_out_format=json to keep the console table.
// Compare medians, and compare contenders within one run, as ratios: on a shared VM the same cell
// can move by 3x between runs. --benchmark_filter='Trivial/.*/p1w2' picks one configuration.

#include <crew/worker_pool.hpp>

#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mutex_pool.hpp"

// Where the trivial handlers put their result: one per thread, so workers share nothing per job.
// External linkage, so that the compiler must keep the stores.
namespace crew_bench {
thread_local std::uint64_t t_sink = 0;
}  // namespace crew_bench

namespace {

constexpr std::size_t kCapacity = 1024;
// Jobs each producer submits per iteration (800 vectors of kBulk in the bulk family).
constexpr std::size_t kJobsPerProducer = 204'800;
constexpr std::size_t kBulk = 256;
static_assert(kJobsPerProducer % kBulk == 0, "a producer submits whole vectors of kBulk jobs.");
constexpr std::size_t kLatencySamples = 2000;
constexpr std::chrono::microseconds kLatencyGap{1500};
constexpr std::chrono::seconds kIdleWindow{1};
constexpr std::size_t kLatencyWorkers = 2;

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Process-wide resource usage (every thread, including ones that have exited).
struct usage {
  std::int64_t cpu_ns;
  std::int64_t voluntary_switches;
  std::int64_t involuntary_switches;
};

usage process_usage() noexcept {
  ::rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  const auto ns = [](const ::timeval& tv) {
    return std::int64_t{tv.tv_sec} * 1'000'000'000 + std::int64_t{tv.tv_usec} * 1'000;
  };
  return {ns(ru.ru_utime) + ns(ru.ru_stime), ru.ru_nvcsw, ru.ru_nivcsw};
}

std::int64_t process_cpu_ns() noexcept {
  ::timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The trivial job's handler, as a named type (crew_concrete) or behind type erasure.
struct trivial_handler {
  void operator()(int&& job) const noexcept { crew_bench::t_sink += static_cast<unsigned>(job); }
};

// The latency job: when it was submitted, and where its sample goes.
struct stamped_job {
  std::int64_t submitted_ns;
  std::size_t index;
};

// ---------------------------------------------------------------------------------------------
// Contenders, behind the few calls the benchmarks make.

template <class H>
using crew_pool = crew::worker_pool<int, H>;

crew::pool_options<int> crew_options(std::size_t workers, bool recycle) {
  crew::pool_options<int> options{.workers = workers, .queue_capacity = kCapacity};
  if (!recycle) options.recycle_after = 0;
  return options;
}

template <class Job, class H>
bool submit_one(crew::worker_pool<Job, H>& pool, Job job) {
  return pool.submit(std::move(job)) == crew::submit_status::accepted;
}
template <class Job, class H>
bool submit_one(crew_bench::mutex_pool<Job, H>& pool, Job job) {
  pool.submit(std::move(job));
  return true;
}

template <class H>
bool submit_many(crew_pool<H>& pool, std::vector<int>& jobs) {
  return pool.submit_bulk(jobs) == jobs.size();
}
template <class H>
bool submit_many(crew_bench::mutex_pool<int, H>& pool, std::vector<int>& jobs) {
  return pool.submit_bulk(jobs) == jobs.size();
}

template <class Job, class H>
std::uint64_t executed(const crew::worker_pool<Job, H>& pool) {
  return pool.stats().executed;
}
template <class Job, class H>
std::uint64_t executed(const crew_bench::mutex_pool<Job, H>& pool) {
  return pool.executed();
}

// ---------------------------------------------------------------------------------------------
// Producers: the calling thread is producer 0; producers 1..P-1 are threads kept across
// iterations, released for each iteration by a generation counter (a few microseconds per
// iteration of tens of milliseconds).

class producer_team {
 public:
  explicit producer_team(std::size_t producers) {
    for (std::size_t i = 1; i < producers; ++i) helpers_.emplace_back([this, i] { serve(i); });
  }
  producer_team(const producer_team&) = delete;
  producer_team& operator=(const producer_team&) = delete;
  ~producer_team() {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
      ++generation_;
    }
    start_.notify_all();
    for (std::thread& t : helpers_) t.join();
  }

  // Runs body(i) on producer i for every i, and returns when all have returned.
  void run(const std::function<void(std::size_t)>& body) {
    {
      std::lock_guard lock(mutex_);
      body_ = &body;
      pending_ = helpers_.size();
      ++generation_;
    }
    start_.notify_all();
    body(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
  }

 private:
  void serve(std::size_t index) {
    std::uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      start_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (quit_) return;
      const std::function<void(std::size_t)>* body = body_;
      lock.unlock();
      (*body)(index);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable start_;
  std::condition_variable done_;
  std::uint64_t generation_ = 0;
  std::size_t pending_ = 0;
  bool quit_ = false;
  const std::function<void(std::size_t)>* body_ = nullptr;
  std::vector<std::thread> helpers_;
};

// ---------------------------------------------------------------------------------------------
// Throughput: trivial jobs, one at a time or in vectors of kBulk.

template <class Pool>
void run_throughput(benchmark::State& state, Pool& pool, std::size_t producers, bool bulk) {
  producer_team team(producers);
  std::atomic<bool> refused{false};
  const std::function<void(std::size_t)> body = [&](std::size_t index) {
    const int value = static_cast<int>(index) + 1;
    bool ok = true;
    if (bulk) {
      std::vector<int> jobs(kBulk);
      for (std::size_t sent = 0; sent < kJobsPerProducer; sent += kBulk) {
        std::fill(jobs.begin(), jobs.end(), value);
        ok &= submit_many(pool, jobs);
      }
    } else {
      for (std::size_t sent = 0; sent < kJobsPerProducer; ++sent) ok &= submit_one(pool, value);
    }
    if (!ok) refused.store(true, std::memory_order_relaxed);
  };
  const usage before = process_usage();
  const std::int64_t start = now_ns();
  for (auto _ : state) {
    team.run(body);
    pool.wait_idle();
  }
  const std::int64_t wall = now_ns() - start;
  const usage after = process_usage();
  const auto total = static_cast<std::uint64_t>(state.iterations()) * producers * kJobsPerProducer;
  if (refused.load() || executed(pool) != total) {
    state.SkipWithError("a job was refused, or not every submitted job ran");
    return;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(total));
  // Diagnostics: cores kept busy (process CPU / wall time) and context switches per 1000 jobs.
  const double kjobs = static_cast<double>(total) / 1000.0;
  state.counters["cpu_cores"] =
      static_cast<double>(after.cpu_ns - before.cpu_ns) / static_cast<double>(wall);
  state.counters["vcsw_per_kjob"] =
      static_cast<double>(after.voluntary_switches - before.voluntary_switches) / kjobs;
  state.counters["ivcsw_per_kjob"] =
      static_cast<double>(after.involuntary_switches - before.involuntary_switches) / kjobs;
}

enum class contender { crew, crew_recycle, crew_concrete, mutex };

void bm_throughput(benchmark::State& state, contender who, std::size_t producers,
                   std::size_t workers, bool bulk) {
  switch (who) {
    case contender::crew: {
      crew::worker_pool<int> pool{trivial_handler{}, crew_options(workers, false)};
      run_throughput(state, pool, producers, bulk);
      break;
    }
    case contender::crew_recycle: {
      crew::worker_pool<int> pool{trivial_handler{}, crew_options(workers, true)};
      run_throughput(state, pool, producers, bulk);
      break;
    }
    case contender::crew_concrete: {
      crew_pool<trivial_handler> pool{trivial_handler{}, crew_options(workers, false)};
      run_throughput(state, pool, producers, bulk);
      break;
    }
    case contender::mutex: {
      crew_bench::mutex_pool<int> pool{trivial_handler{}, workers, kCapacity};
      run_throughput(state, pool, producers, bulk);
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Submit-to-start latency from idle.

std::int64_t percentile(const std::vector<std::int64_t>& sorted, double q) {
  // Nearest rank.
  const auto rank = static_cast<std::size_t>(q * static_cast<double>(sorted.size()) + 0.999999);
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

template <class Pool>
void run_wake_latency(benchmark::State& state, Pool& pool, std::vector<std::int64_t>& samples) {
  bool ok = true;
  for (auto _ : state) {
    for (std::size_t i = 0; i < kLatencySamples; ++i) {
      std::this_thread::sleep_for(kLatencyGap);
      ok &= submit_one(pool, stamped_job{now_ns(), i});
      pool.wait_idle();  // the handler's write to samples[i] happens before this returns
    }
  }
  if (!ok || executed(pool) != kLatencySamples) {
    state.SkipWithError("a job was refused, or not every submitted job ran");
    return;
  }
  std::vector<std::int64_t> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (const std::int64_t s : sorted) sum += static_cast<double>(s);
  state.counters["p50_ns"] = static_cast<double>(percentile(sorted, 0.50));
  state.counters["p99_ns"] = static_cast<double>(percentile(sorted, 0.99));
  state.counters["p999_ns"] = static_cast<double>(percentile(sorted, 0.999));
  state.counters["mean_ns"] = sum / static_cast<double>(sorted.size());
}

void bm_wake_latency(benchmark::State& state, contender who) {
  std::vector<std::int64_t> samples(kLatencySamples, 0);
  auto handler = [&samples](stamped_job&& job) {
    samples[job.index] = now_ns() - job.submitted_ns;
  };
  if (who == contender::crew) {
    crew::worker_pool<stamped_job> pool{
        handler, {.workers = kLatencyWorkers, .queue_capacity = kCapacity, .recycle_after = 0}};
    run_wake_latency(state, pool, samples);
  } else {
    crew_bench::mutex_pool<stamped_job> pool{handler, kLatencyWorkers, kCapacity};
    run_wake_latency(state, pool, samples);
  }
}

// ---------------------------------------------------------------------------------------------
// CPU burnt while idle.

template <class Pool>
void run_idle_cpu(benchmark::State& state, Pool& pool) {
  // Wake the workers with a burst of jobs first: idle after work is the interesting case.
  bool ok = true;
  for (int i = 0; i < 10'000; ++i) ok &= submit_one(pool, i);
  pool.wait_idle();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::int64_t cpu = 0;
  std::int64_t wall = 0;
  for (auto _ : state) {
    const std::int64_t cpu0 = process_cpu_ns();
    const std::int64_t wall0 = now_ns();
    std::this_thread::sleep_for(kIdleWindow);
    cpu += process_cpu_ns() - cpu0;
    wall += now_ns() - wall0;
  }
  if (!ok) {
    state.SkipWithError("a job was refused");
    return;
  }
  // ms of CPU per s of wall time = (cpu ns / 1e6) / (wall ns / 1e9).
  state.counters["cpu_ms_per_s"] = 1e3 * static_cast<double>(cpu) / static_cast<double>(wall);
}

void bm_idle_cpu(benchmark::State& state, contender who) {
  if (who == contender::crew) {
    crew::worker_pool<int> pool{trivial_handler{}, crew_options(kLatencyWorkers, false)};
    run_idle_cpu(state, pool);
  } else {
    crew_bench::mutex_pool<int> pool{trivial_handler{}, kLatencyWorkers, kCapacity};
    run_idle_cpu(state, pool);
  }
}

// ---------------------------------------------------------------------------------------------

const char* name_of(contender who) {
  switch (who) {
    case contender::crew: return "crew";
    case contender::crew_recycle: return "crew_recycle";
    case contender::crew_concrete: return "crew_concrete";
    case contender::mutex: return "mutex";
  }
  return "?";
}

void register_all() {
  struct config {
    std::size_t producers;
    std::size_t workers;
  };
  const config configs[] = {{1, 1}, {1, 2}, {2, 1}, {2, 2}};
  for (const config c : configs) {
    const std::string suffix = "/p" + std::to_string(c.producers) + "w" + std::to_string(c.workers);
    for (const contender who :
         {contender::crew, contender::crew_recycle, contender::crew_concrete, contender::mutex}) {
      const std::string name = std::string("BM_Pool_Trivial/") + name_of(who) + suffix;
      benchmark::RegisterBenchmark(name.c_str(),
                                   [who, c](benchmark::State& state) {
                                     bm_throughput(state, who, c.producers, c.workers, false);
                                   })
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  for (const config c : configs) {
    const std::string suffix = "/p" + std::to_string(c.producers) + "w" + std::to_string(c.workers);
    for (const contender who : {contender::crew, contender::mutex}) {
      const std::string name = std::string("BM_Pool_Bulk/") + name_of(who) + suffix;
      benchmark::RegisterBenchmark(name.c_str(),
                                   [who, c](benchmark::State& state) {
                                     bm_throughput(state, who, c.producers, c.workers, true);
                                   })
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  for (const contender who : {contender::crew, contender::mutex}) {
    const std::string latency = std::string("BM_Pool_WakeLatency/") + name_of(who);
    benchmark::RegisterBenchmark(latency.c_str(),
                                 [who](benchmark::State& state) { bm_wake_latency(state, who); })
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (const contender who : {contender::crew, contender::mutex}) {
    const std::string idle = std::string("BM_Pool_IdleCpu/") + name_of(who);
    benchmark::RegisterBenchmark(idle.c_str(),
                                 [who](benchmark::State& state) { bm_idle_cpu(state, who); })
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
