// keyed_bench: crew::keyed_pool against what a C++ user would otherwise use for per-key order,
// each contender in the same run (GitHub issue 11):
//   crew_keyed     crew::keyed_pool<std::uint32_t, job> (a concrete handler), block policy
//   asio_strands   one boost::asio strand per key over boost::asio::thread_pool (Boost only)
//   sharded        one single-worker crew::worker_pool per hash bucket, buckets = workers (the
//                  "pinned stripe" design: a key always goes to the same worker)
//   textbook       one mutex, std::unordered_map<Key, std::deque<job>> and a ready queue of keys
//                  with a condition variable (unbounded; a worker takes a key, runs up to 16 of
//                  its jobs, re-queues it or erases it)
// Every contender runs with workers = crew::hardware_workers(); its destructor runs every job
// and joins. Every job checks its key's order: it carries its sequence number within the key,
// compares it with the key's counter (plain memory: the contender must order a key's jobs) and
// bumps it; any job out of order, lost or run twice fails the benchmark (SkipWithError).
//
// What is measured (<c> is a contender's name):
//   BM_Keyed_Uniform/<c>   200,000 trivial jobs over 1,024 keys, uniformly, one producer; an
//       iteration ends when every job has run. items_per_second; allocs_per_job (calls to
//       operator new per job during the iteration: bench/alloc_counter.hpp).
//   BM_Keyed_Zipf/<c>      100,000 jobs of ~1 us of computation each over 100,000 keys drawn
//       from Zipf(s = 1.1) (the draw is fixed, made once); makespan (manual time: first submit
//       to last completion), items_per_second and makespan_ms; the floors ideal_ms (total work
//       over the workers, or the hottest key's work if longer), shard_bound_ms (the sharded
//       pool's busiest shard) and makespan_over_ideal, from the draw and the cost of one job
//       measured at startup on one thread (JSON context keyed_compute_job_ns). With 2 workers
//       the busiest shard holds 55.7% of the jobs (shard_bound = 1.11 x ideal); with 8 it
//       would hold 23.1% (1.85 x), so the sharded pool's handicap grows with the worker count.
//   BM_Keyed_HotKey/<c>/hot:<0|1>   cold keys' queue wait with and without a hot key: with
//       hot:1, 100,000 jobs of ~1 us on key 0 are submitted first (a backlog of ~100 ms for the
//       one worker key 0 may hold); then, with both, 2,000 trivial jobs on 1,000 other keys, one
//       every 20 us, each stamped at its submit. Counters cold_p50_us and cold_p99_us (submit to
//       start). The goal: hot:1 within 10x of hot:0 (one hot key must not stall the others).
//   BM_Keyed_Memory/<c>    10^6 keys touched once (one trivial job per key), queue of 4,096 where
//       the contender has one: the peak of the heap bytes the contender holds (operator new's
//       blocks, measured with malloc_usable_size; the RSS would be blurred by memory malloc keeps
//       from earlier benchmarks), construction included, counter peak_heap_mib. asio_strands
//       creates each key's strand at the key's first job (a strand per key is that design's
//       cost).
//
// Run: build/bench/bench/keyed_bench --benchmark_repetitions=5
//        --benchmark_report_aggregates_only=true --benchmark_format=json

#include <crew/keyed_pool.hpp>
#include <crew/worker_pool.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#if CREW_HAVE_BOOST
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#endif

#include "alloc_counter.hpp"  // replaces operator new in this binary: crew_bench::g_news

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
      .count();
}

std::size_t workers() { return crew::hardware_workers(); }

// ---- the jobs -----------------------------------------------------------------------------------
// A job: its key, its sequence number within the key, and what to do (rounds of computation,
// or a submit stamp for the cold jobs of HotKey).
struct job {
  std::uint32_t key;
  std::uint32_t seq;
  std::int64_t payload;
};

enum class kind : unsigned char { trivial, compute, stamped };

// Shared by the jobs of one benchmark run; reset before each contender is built.
struct run_state {
  std::vector<std::uint32_t> next_seq;  // per key; plain: ordered by the contender
  std::atomic<std::uint64_t> disorder{0};
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> target{0};  // the `done` count that ends the round (expect())
  std::mutex m;                          // with `finished`: the producer sleeps until the round
  std::condition_variable finished;      // ends, so it takes no core from the workers
  std::atomic<std::int64_t> last_end_ns{0};
  std::vector<std::int64_t> waits;  // HotKey: cold job i's submit-to-start, written by that job
  kind what = kind::trivial;
};
run_state* g_run = nullptr;

std::uint64_t spin(std::int64_t rounds) {
  std::uint64_t x = static_cast<std::uint64_t>(rounds) | 1U;
  for (std::int64_t i = 0; i < rounds; ++i) {
    x ^= x >> 29;
    x *= 0x9E3779B97F4A7C15ULL;
  }
  return x;
}
std::int64_t g_rounds_1us = 0;  // calibrated at startup
double g_compute_job_ns = 0;    // one compute job's cost on one thread, measured at startup

void run_job(const job& j) {
  run_state& r = *g_run;
  if (r.what == kind::stamped && j.payload >= 0) {
    r.waits[j.seq] = now_ns() - j.payload;  // cold jobs: seq is the index among them
  } else {
    if (r.next_seq[j.key] != j.seq) r.disorder.fetch_add(1, std::memory_order_relaxed);
    r.next_seq[j.key] = j.seq + 1;
    if (r.what == kind::compute || (r.what == kind::stamped && j.payload < 0)) {
      benchmark::DoNotOptimize(spin(g_rounds_1us));
    }
  }
  r.last_end_ns.store(now_ns(), std::memory_order_relaxed);
  // Release: the job's writes are visible to the producer's acquire load of `done`. The job
  // that ends the round wakes the producer (relaxed target: expect() stored it before the
  // round's first submit, which the pool orders before this job).
  if (r.done.fetch_add(1, std::memory_order_release) + 1 ==
      r.target.load(std::memory_order_relaxed)) {
    const std::lock_guard lock(r.m);
    r.finished.notify_all();
  }
}

struct job_handler {
  void operator()(job&& j) const { run_job(j); }
};

// ---- the contenders -----------------------------------------------------------------------------
struct crew_keyed {
  static constexpr const char* name = "crew_keyed";
  crew_keyed(std::size_t w, std::size_t capacity, std::uint32_t /*keys*/)
      : pool(job_handler{}, {.workers = w, .queue_capacity = capacity}) {}
  void submit(const job& j) { (void)pool.submit(j.key, job{j}); }
  crew::keyed_pool<std::uint32_t, job, job_handler> pool;
};

// The bucket of `key` among `shards` single-worker pools (the sharded contender, and the Zipf
// workload's bound for it).
std::size_t shard_of(std::uint32_t key, std::size_t shards) {
  const std::uint64_t h = std::uint64_t{key} * 0x9E3779B97F4A7C15ULL;
  return static_cast<std::size_t>((h >> 32) % shards);
}

struct sharded {
  static constexpr const char* name = "sharded";
  sharded(std::size_t w, std::size_t capacity, std::uint32_t /*keys*/) {
    for (std::size_t i = 0; i < w; ++i) {
      shards.push_back(std::make_unique<crew::worker_pool<job, job_handler>>(
          job_handler{}, crew::pool_options<job>{.workers = 1, .queue_capacity = capacity}));
    }
  }
  void submit(const job& j) { (void)shards[shard_of(j.key, shards.size())]->submit(job{j}); }
  std::vector<std::unique_ptr<crew::worker_pool<job, job_handler>>> shards;
};

// The textbook design: one lock, a map of per-key deques, a ready queue of keys.
struct textbook {
  static constexpr const char* name = "textbook";
  static constexpr int budget = 16;
  textbook(std::size_t w, std::size_t /*capacity*/, std::uint32_t /*keys*/) {
    for (std::size_t i = 0; i < w; ++i) threads.emplace_back([this] { work(); });
  }
  ~textbook() {
    {
      const std::lock_guard lock(m);
      stopping = true;
    }
    cv.notify_all();
    for (auto& t : threads) t.join();
  }
  textbook(const textbook&) = delete;
  textbook& operator=(const textbook&) = delete;
  void submit(const job& j) {
    bool wake = false;
    {
      const std::lock_guard lock(m);
      auto [it, fresh] = queues.try_emplace(j.key);
      it->second.push_back(j);
      if (fresh) {
        ready.push_back(j.key);
        wake = true;
      }
    }
    if (wake) cv.notify_one();
  }
  void work() {
    std::unique_lock lock(m);
    for (;;) {
      cv.wait(lock, [this] { return !ready.empty() || stopping; });
      if (ready.empty()) return;  // stopping, and every key drained
      const std::uint32_t key = ready.front();
      ready.pop_front();
      for (int n = 0;; ++n) {
        auto it = queues.find(key);
        if (it->second.empty()) {
          queues.erase(it);
          break;
        }
        if (n == budget) {
          ready.push_back(key);
          cv.notify_one();
          break;
        }
        const job j = it->second.front();
        it->second.pop_front();
        lock.unlock();
        run_job(j);
        lock.lock();
      }
    }
  }
  std::mutex m;
  std::condition_variable cv;
  std::unordered_map<std::uint32_t, std::deque<job>> queues;  // guarded by m
  std::deque<std::uint32_t> ready;                            // guarded by m
  bool stopping = false;                                      // guarded by m
  std::vector<std::thread> threads;
};

#if CREW_HAVE_BOOST
struct asio_strands {
  static constexpr const char* name = "asio_strands";
  using strand = boost::asio::strand<boost::asio::thread_pool::executor_type>;
  asio_strands(std::size_t w, std::size_t /*capacity*/, std::uint32_t keys)
      : pool(w), strands(keys) {}
  ~asio_strands() { pool.join(); }
  asio_strands(const asio_strands&) = delete;
  asio_strands& operator=(const asio_strands&) = delete;
  void submit(const job& j) {
    std::optional<strand>& s = strands[j.key];
    if (!s) s.emplace(boost::asio::make_strand(pool.get_executor()));
    boost::asio::post(*s, [j] { run_job(j); });
  }
  boost::asio::thread_pool pool;
  std::vector<std::optional<strand>> strands;  // created at a key's first job
};
#endif

// ---- workloads ----------------------------------------------------------------------------------
// Sequence numbers per key for a stream of keys.
std::vector<job> make_jobs(const std::vector<std::uint32_t>& keys, std::uint32_t key_count,
                           std::int64_t payload) {
  std::vector<std::uint32_t> seq(key_count, 0);
  std::vector<job> out;
  out.reserve(keys.size());
  for (std::uint32_t k : keys) out.push_back({k, seq[k]++, payload});
  return out;
}

std::uint64_t xorshift(std::uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

std::vector<std::uint32_t> uniform_keys(std::size_t n, std::uint32_t key_count) {
  std::uint64_t s = 0x243F6A8885A308D3ULL;
  std::vector<std::uint32_t> out(n);
  for (auto& k : out) k = static_cast<std::uint32_t>(xorshift(s) % key_count);
  return out;
}

// Zipf(s) over [0, key_count) by inverting the CDF.
std::vector<std::uint32_t> zipf_keys(std::size_t n, std::uint32_t key_count, double s_exp) {
  std::vector<double> cdf(key_count);
  double sum = 0;
  for (std::uint32_t i = 0; i < key_count; ++i) {
    sum += 1.0 / std::pow(static_cast<double>(i + 1), s_exp);
    cdf[i] = sum;
  }
  std::uint64_t s = 0x13198A2E03707344ULL;
  std::vector<std::uint32_t> out(n);
  for (auto& k : out) {
    const double u = static_cast<double>(xorshift(s) >> 11) * 0x1.0p-53 * sum;
    k = static_cast<std::uint32_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    if (k >= key_count) k = key_count - 1;
  }
  return out;
}

// Before a round's first submit: the round ends when `done` reaches `target`.
void expect(std::uint64_t target) { g_run->target.store(target, std::memory_order_relaxed); }

// Sleeps until the round expect() named has run (false after 120 s). The producer sleeps rather
// than polls: on 2 cores a polling producer takes CPU from the workers (the sharded pool's
// producer spent ~5 ms of CPU a Zipf round when this loop yielded, ~2.3 ms asleep).
bool wait_done(std::uint64_t target) {
  run_state& r = *g_run;
  std::unique_lock lock(r.m);
  return r.finished.wait_for(lock, 120s,
                             [&] { return r.done.load(std::memory_order_acquire) >= target; });
}

// Checks after the contender's destructor ran everything: every job exactly once, in order.
bool check(benchmark::State& state, run_state& r, std::uint64_t submitted) {
  if (r.done.load() != submitted) {
    state.SkipWithError(
        ("ran " + std::to_string(r.done.load()) + " of " + std::to_string(submitted) + " jobs")
            .c_str());
    return false;
  }
  if (r.disorder.load() != 0) {
    state.SkipWithError((std::to_string(r.disorder.load()) + " jobs ran out of key order").c_str());
    return false;
  }
  return true;
}

template <class C>
void bm_uniform(benchmark::State& state) {
  constexpr std::uint32_t keys = 1024;
  static const std::vector<job> jobs = make_jobs(uniform_keys(200'000, keys), keys, 0);
  run_state r;
  r.next_seq.assign(keys, 0);
  g_run = &r;
  std::uint64_t allocs = 0;
  std::uint64_t submitted = 0;
  {
    C c(workers(), 4096, keys);
    for (auto _ : state) {
      std::fill(r.next_seq.begin(), r.next_seq.end(), 0);  // a new round of the same stream
      const std::uint64_t before = crew_bench::g_news.load();
      expect(submitted + jobs.size());
      for (const job& j : jobs) c.submit(j);
      submitted += jobs.size();
      if (!wait_done(submitted)) {
        state.SkipWithError("timed out");
        break;
      }
      allocs += crew_bench::g_news.load() - before;
    }
  }
  if (!check(state, r, submitted)) return;
  state.SetItemsProcessed(static_cast<std::int64_t>(submitted));
  state.counters["allocs_per_job"] =
      submitted ? static_cast<double>(allocs) / static_cast<double>(submitted) : 0.0;
}

template <class C>
void bm_zipf(benchmark::State& state) {
  constexpr std::uint32_t keys = 100'000;
  static const std::vector<job> jobs = make_jobs(zipf_keys(100'000, keys, 1.1), keys, 0);
  run_state r;
  r.what = kind::compute;
  r.next_seq.assign(keys, 0);
  g_run = &r;
  std::uint64_t submitted = 0;
  double makespan_ms = 0;
  {
    C c(workers(), 4096, keys);
    for (auto _ : state) {
      std::fill(r.next_seq.begin(), r.next_seq.end(), 0);
      const std::int64_t start = now_ns();
      expect(submitted + jobs.size());
      for (const job& j : jobs) c.submit(j);
      submitted += jobs.size();
      if (!wait_done(submitted)) {
        state.SkipWithError("timed out");
        break;
      }
      const double seconds = static_cast<double>(r.last_end_ns.load() - start) * 1e-9;
      state.SetIterationTime(seconds);
      makespan_ms += seconds * 1e3;
    }
  }
  if (!check(state, r, submitted)) return;
  state.SetItemsProcessed(static_cast<std::int64_t>(submitted));
  const double mean_ms = makespan_ms / static_cast<double>(state.iterations());
  state.counters["makespan_ms"] = mean_ms;
  // The floors, from the draw and the measured cost of one job (submits counted as free):
  // ideal_ms, a work-conserving scheduler's (the total work over the workers, or the hottest
  // key's work when that is longer: a key's jobs run one at a time); shard_bound_ms, the
  // sharded pool's (its busiest shard's work, by shard_of).
  const std::size_t w = workers();
  std::vector<std::uint64_t> per_key(keys, 0);
  std::vector<std::uint64_t> per_shard(w, 0);
  for (const job& j : jobs) {
    ++per_key[j.key];
    ++per_shard[shard_of(j.key, w)];
  }
  const double job_ms = g_compute_job_ns * 1e-6;
  const double hottest = static_cast<double>(*std::max_element(per_key.begin(), per_key.end()));
  const double ideal_ms =
      std::max(static_cast<double>(jobs.size()) / static_cast<double>(w), hottest) * job_ms;
  const double shard_ms =
      static_cast<double>(*std::max_element(per_shard.begin(), per_shard.end())) * job_ms;
  state.counters["ideal_ms"] = ideal_ms;
  state.counters["shard_bound_ms"] = shard_ms;
  state.counters["makespan_over_ideal"] = mean_ms / ideal_ms;
}

template <class C>
void bm_hot_key(benchmark::State& state) {
  const bool hot = state.range(0) != 0;
  constexpr std::uint32_t keys = 1001;  // key 0 is the hot one; 1..1000 cold
  constexpr std::size_t backlog = 100'000;
  constexpr std::size_t cold = 2'000;
  run_state r;
  r.what = kind::stamped;
  r.next_seq.assign(keys, 0);
  r.waits.assign(cold, 0);
  g_run = &r;
  std::uint64_t submitted = 0;
  std::vector<std::int64_t> all;
  {
    C c(workers(), 131072, keys);
    for (auto _ : state) {
      std::fill(r.next_seq.begin(), r.next_seq.end(), 0);
      expect(submitted + (hot ? backlog : 0) + cold);
      if (hot) {
        for (std::uint32_t i = 0; i < backlog; ++i) c.submit(job{0, i, -1});
        submitted += backlog;
      }
      const std::int64_t t0 = now_ns();
      for (std::uint32_t i = 0; i < cold; ++i) {
        while (now_ns() < t0 + std::int64_t{20'000} * i) std::this_thread::yield();
        c.submit(job{1 + i % 1000, i, now_ns()});
      }
      submitted += cold;
      if (!wait_done(submitted)) {
        state.SkipWithError("timed out");
        break;
      }
      all.insert(all.end(), r.waits.begin(), r.waits.end());
    }
  }
  if (!check(state, r, submitted)) return;
  std::sort(all.begin(), all.end());
  const auto at = [&](double q) {
    return static_cast<double>(
               all[static_cast<std::size_t>(q * static_cast<double>(all.size() - 1))]) /
           1e3;
  };
  state.counters["cold_p50_us"] = at(0.5);
  state.counters["cold_p99_us"] = at(0.99);
}

template <class C>
void bm_memory(benchmark::State& state) {
  constexpr std::uint32_t keys = 1'000'000;
  run_state r;
  r.next_seq.assign(keys, 0);
  g_run = &r;
  std::uint64_t submitted = 0;
  double peak_mib = 0;
  for (auto _ : state) {
    std::fill(r.next_seq.begin(), r.next_seq.end(), 0);
    const std::int64_t before = crew_bench::g_heap_bytes.load();
    crew_bench::reset_heap_peak();
    {
      C c(workers(), 4096, keys);
      expect(submitted + keys);
      for (std::uint32_t k = 0; k < keys; ++k) c.submit(job{k, 0, 0});
      submitted += keys;
      if (!wait_done(submitted)) {
        state.SkipWithError("timed out");
        break;
      }
    }
    peak_mib = std::max(
        peak_mib, static_cast<double>(crew_bench::g_heap_peak.load() - before) / (1024.0 * 1024.0));
  }
  if (!check(state, r, submitted)) return;
  state.counters["peak_heap_mib"] = peak_mib;
}

template <class C>
void register_contender() {
  const std::string n = C::name;
  benchmark::RegisterBenchmark(("BM_Keyed_Uniform/" + n).c_str(), bm_uniform<C>)->UseRealTime();
  benchmark::RegisterBenchmark(("BM_Keyed_Zipf/" + n).c_str(), bm_zipf<C>)->UseManualTime();
  benchmark::RegisterBenchmark(("BM_Keyed_HotKey/" + n).c_str(), bm_hot_key<C>)
      ->ArgName("hot")
      ->Arg(0)
      ->Arg(1)
      ->Iterations(3)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("BM_Keyed_Memory/" + n).c_str(), bm_memory<C>)
      ->Iterations(1)
      ->UseRealTime();
}

void calibrate() {
  constexpr std::int64_t probe = 1'000'000;
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    const std::int64_t t = now_ns();
    benchmark::DoNotOptimize(spin(probe));
    best = std::min(best, static_cast<double>(now_ns() - t));
  }
  g_rounds_1us = std::max<std::int64_t>(1, std::llround(1000.0 * probe / best));
  benchmark::AddCustomContext("keyed_work_rounds_1us", std::to_string(g_rounds_1us));
  // The cost of one whole compute job (run_job: the order check, the work, the end stamp) on
  // one thread, best of 7 runs of 2,000 jobs on distinct keys: Zipf's bounds use it.
  run_state r;
  r.what = kind::compute;
  r.next_seq.assign(2000, 0);
  run_state* const saved = g_run;
  g_run = &r;
  best = 1e30;
  for (std::uint32_t round = 0; round < 7; ++round) {
    const std::int64_t t = now_ns();
    for (std::uint32_t k = 0; k < 2000; ++k) run_job({k, round, 0});
    best = std::min(best, static_cast<double>(now_ns() - t) / 2000.0);
  }
  g_run = saved;
  g_compute_job_ns = best;
  benchmark::AddCustomContext("keyed_compute_job_ns", std::to_string(g_compute_job_ns));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  calibrate();
  register_contender<crew_keyed>();
  register_contender<sharded>();
  register_contender<textbook>();
#if CREW_HAVE_BOOST
  register_contender<asio_strands>();
#else
  std::fprintf(stderr, "keyed_bench: Boost not found at configure time: asio_strands skipped\n");
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
