// elastic_bench: what the worker lifecycle of issue 12 costs and buys, every contender in one
// run so the ratios come from one machine state.
//
//   BM_Elastic_Trivial/<fixed|elastic>/p1w2   trivial-job throughput (jobs/s): 1 producer submits
//       kJobs jobs (blocking submit), then wait_idle(). `elastic` is min_workers = 0, workers = 2,
//       grown to full size before timing (and idle_timeout long enough that it stays there): the
//       cost of elasticity at full size (the live() check per submit, the free-worker count on
//       idle transitions). Goal: within 5% of `fixed`.
//   BM_Elastic_Expiry/<off|on>/p1w2            the same on a fixed pool with max_queue_wait off
//       and on (1 s: nothing expires): the cost of expiry per job (one clock read at submit, one
//       at start).
//   BM_Elastic_Growth/<elastic|fixed>/w<N>     time from the first of N submits until N jobs are
//       running at once (each job waits at a latch for all N): an elastic pool growing from 0 to
//       N workers, against a fixed pool of N parked workers being woken. Counter us_per_worker.
//       Goal: growth within a few wake-up times per worker.
//   BM_Elastic_Footprint/<elastic|fixed|thread_per_job>   after a burst of kBurst 1-ms jobs
//       (16-way) and 500 ms of quiet: counters threads (the process's, minus the baseline) and
//       rss_kib. An elastic min_workers = 0 pool should hold no thread.
//
// Run (Release): build/bench/bench/elastic_bench --benchmark_repetitions=5
//   --benchmark_report_aggregates_only=true --benchmark_format=json; compare medians as ratios.

#include <crew/worker_pool.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

constexpr int kJobs = 200000;
constexpr int kBurst = 2000;

long status_field(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::strtol(line.c_str() + prefix.size(), nullptr, 10);
  }
  return -1;
}

struct trivial {
  void operator()(int v) const noexcept { benchmark::DoNotOptimize(v); }
};

template <class Pool>
void run_trivial(benchmark::State& state, Pool& pool) {
  for (auto _ : state) {
    for (int i = 0; i < kJobs; ++i) {
      if (pool.submit(int{i}) != crew::submit_status::accepted) {
        state.SkipWithError("a submit was refused");
        return;
      }
    }
    pool.wait_idle();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kJobs);
}

// Grows an elastic pool to its limit: `n` jobs that each wait until all n are running.
template <class Pool>
void grow_to(Pool& pool, std::atomic<int>& inside, int n) {
  inside.store(0);
  for (int i = 0; i < n; ++i) (void)pool.submit(-1);
  while (inside.load() < n) std::this_thread::yield();
  pool.wait_idle();
}

void bm_trivial(benchmark::State& state, bool elastic) {
  std::atomic<int> inside{0};
  std::atomic<int> target{0};
  auto handler = [&](int v) {
    if (v == -1) {  // the growth jobs
      inside.fetch_add(1);
      while (inside.load() < target.load()) std::this_thread::yield();
      return;
    }
    benchmark::DoNotOptimize(v);
  };
  crew::pool_options<int> o{.workers = 2, .recycle_after = 0};
  if (elastic) {
    o.min_workers = 0;
    o.idle_timeout = 1h;
  }
  crew::worker_pool<int> pool{handler, o};
  if (elastic) {
    target.store(2);
    grow_to(pool, inside, 2);
    if (pool.stats().workers != 2) state.SkipWithError("the elastic pool did not reach 2 workers");
  }
  run_trivial(state, pool);
  state.counters["live_workers"] = static_cast<double>(pool.stats().workers);
}

void bm_expiry(benchmark::State& state, bool on) {
  crew::pool_options<int> o{.workers = 2, .recycle_after = 0};
  if (on) o.max_queue_wait = 1s;
  crew::worker_pool<int> pool{trivial{}, o};
  run_trivial(state, pool);
  if (pool.stats().expired != 0) state.SkipWithError("jobs expired");
}

void bm_growth(benchmark::State& state, bool elastic, int n) {
  std::atomic<int> inside{0};
  std::atomic<bool> release{false};
  crew::pool_options<int> o{.workers = static_cast<std::size_t>(n), .recycle_after = 0};
  if (elastic) {
    o.min_workers = 0;
    o.idle_timeout = 1ms;
  }
  crew::worker_pool<int> pool{[&](int) {
                                inside.fetch_add(1);
                                while (!release.load()) std::this_thread::yield();
                              },
                              o};
  double total_us = 0;
  for (auto _ : state) {
    state.PauseTiming();
    // Let the pool go back to 0 workers (elastic) or park every worker (fixed).
    std::this_thread::sleep_for(elastic ? 30ms : 5ms);
    if (elastic && pool.stats().workers != 0) {
      state.SkipWithError("the elastic pool did not expire to 0");
      return;
    }
    inside.store(0);
    release.store(false);
    state.ResumeTiming();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) (void)pool.submit(int{i});
    while (inside.load() < n) std::this_thread::yield();
    const auto t1 = std::chrono::steady_clock::now();
    release.store(true);
    state.PauseTiming();
    pool.wait_idle();
    state.ResumeTiming();
    total_us += std::chrono::duration<double, std::micro>(t1 - t0).count();
  }
  state.counters["us_per_worker"] =
      total_us / static_cast<double>(state.iterations()) / static_cast<double>(n);
}

void bm_footprint(benchmark::State& state, int who) {
  const long threads_before = status_field("Threads");
  auto job = [](int) { std::this_thread::sleep_for(1ms); };
  for (auto _ : state) {
    if (who == 2) {  // thread per job, 16 at a time
      std::vector<std::thread> threads;
      for (int i = 0; i < kBurst; ++i) {
        threads.emplace_back(job, i);
        if (threads.size() == 16) {
          for (auto& t : threads) t.join();
          threads.clear();
        }
      }
      for (auto& t : threads) t.join();
      std::this_thread::sleep_for(500ms);
      state.counters["threads"] = static_cast<double>(status_field("Threads") - threads_before);
      state.counters["rss_kib"] = static_cast<double>(status_field("VmRSS"));
      continue;
    }
    crew::pool_options<int> o{.workers = 16, .recycle_after = 0};
    if (who == 0) {
      o.min_workers = 0;
      o.idle_timeout = 100ms;
    }
    crew::worker_pool<int> pool{job, o};
    for (int i = 0; i < kBurst; ++i) (void)pool.submit(int{i});
    pool.wait_idle();
    std::this_thread::sleep_for(500ms);
    state.counters["threads"] = static_cast<double>(status_field("Threads") - threads_before);
    state.counters["rss_kib"] = static_cast<double>(status_field("VmRSS"));
  }
}

const bool registered = [] {
  for (const bool elastic : {false, true}) {
    benchmark::RegisterBenchmark(
        (std::string("BM_Elastic_Trivial/") + (elastic ? "elastic" : "fixed") + "/p1w2").c_str(),
        [elastic](benchmark::State& s) { bm_trivial(s, elastic); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (const bool on : {false, true}) {
    benchmark::RegisterBenchmark(
        (std::string("BM_Elastic_Expiry/") + (on ? "on" : "off") + "/p1w2").c_str(),
        [on](benchmark::State& s) { bm_expiry(s, on); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (const bool elastic : {true, false}) {
    benchmark::RegisterBenchmark(
        (std::string("BM_Elastic_Growth/") + (elastic ? "elastic" : "fixed") + "/w8").c_str(),
        [elastic](benchmark::State& s) { bm_growth(s, elastic, 8); })
        ->Iterations(20)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
  const char* names[] = {"elastic", "fixed", "thread_per_job"};
  for (int who = 0; who < 3; ++who) {
    benchmark::RegisterBenchmark((std::string("BM_Elastic_Footprint/") + names[who]).c_str(),
                                 [who](benchmark::State& s) { bm_footprint(s, who); })
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
