// peers_bench: crew::worker_pool against what a C++ user would otherwise pick, in one binary so
// the ratios come from one run: oneTBB (task_arena + task_group), Boost.Asio thread_pool, a pool
// on moodycamel's BlockingConcurrentQueue (bulk dequeue), the mutex + condvar pool
// (bench/mutex_pool.hpp), and one std::thread per job. Peers missing at configure time are
// skipped (their benchmarks are not registered; CMake says so).
//
// What is measured:
//   BM_Peers_Trivial/<contender>/p<P>   jobs/s for trivial jobs (the job adds to a relaxed
//       atomic counter), workers = crew::hardware_workers(), P producers submitting one job at a
//       time; an iteration ends when every job has run (the producer spins, yielding, on the
//       shared completion counter; the same for every contender). Counter allocs_per_job: calls
//       to operator new (this binary replaces it) during the iteration, per job.
//   BM_Peers_WakeLatency/<contender>     submit-to-start latency from idle: sleep 1 ms so the
//       workers go idle, stamp, submit; the job records now - stamp. p50_ns/p99_ns/p999_ns.
// thread-per-job runs fewer jobs per iteration (thread creation costs ~100 us here).
//
// Run: build/bench/bench/peers_bench --benchmark_repetitions=5
//        --benchmark_report_aggregates_only=true --benchmark_format=json

#include <crew/worker_pool.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "mutex_pool.hpp"

#if CREW_HAVE_TBB
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#endif
#if CREW_HAVE_BOOST
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#endif
#if CREW_HAVE_MOODYCAMEL
#include <blockingconcurrentqueue.h>
#endif

// ---- allocation counting ------------------------------------------------------------------------
namespace {
std::atomic<std::uint64_t> g_news{0};
void* counted(std::size_t n, std::size_t align) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = align <= alignof(std::max_align_t)
                ? std::malloc(n)
                : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace
void* operator new(std::size_t n) { return counted(n, 0); }
void* operator new[](std::size_t n) { return counted(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return counted(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted(n, static_cast<std::size_t>(a));
}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

using clock_type = std::chrono::steady_clock;
constexpr std::size_t kJobsPerProducer = 200'000;
constexpr std::size_t kThreadPerJobJobs = 2'000;
constexpr int kLatencySamples = 1000;

std::atomic<std::uint64_t> g_done{0};
std::atomic<std::int64_t> g_latency_ns{0};

// A job is a timestamp (0 for throughput runs); running it counts it and, for latency runs,
// records submit-to-start.
void run_job(std::int64_t stamp) {
  if (stamp != 0) {
    g_latency_ns.store(clock_type::now().time_since_epoch().count() - stamp,
                       std::memory_order_relaxed);
  }
  g_done.fetch_add(1, std::memory_order_release);
}

// Each contender: submit(stamp) from any thread. Built once per benchmark run.
struct crew_contender {
  explicit crew_contender(std::size_t workers)
      : pool([](std::int64_t&& s) { run_job(s); },
             {.workers = workers, .queue_capacity = 1024, .recycle_after = 0}) {}
  void submit(std::int64_t s) { (void)pool.submit(std::int64_t{s}); }
  crew::worker_pool<std::int64_t> pool;
};

struct mutex_contender {
  explicit mutex_contender(std::size_t workers)
      : pool([](std::int64_t&& s) { run_job(s); }, workers, 1024) {}
  void submit(std::int64_t s) { pool.submit(std::int64_t{s}); }
  crew_bench::mutex_pool<std::int64_t> pool;
};

struct thread_per_job_contender {
  explicit thread_per_job_contender(std::size_t) {}
  void submit(std::int64_t s) {
    std::thread([s] { run_job(s); }).detach();
  }
};

#if CREW_HAVE_TBB
struct tbb_contender {
  explicit tbb_contender(std::size_t workers) : arena(static_cast<int>(workers)) {}
  ~tbb_contender() {
    arena.execute([&] { group.wait(); });
  }
  void submit(std::int64_t s) {
    arena.execute([&] { group.run([s] { run_job(s); }); });
  }
  tbb::task_arena arena;
  tbb::task_group group;
};
#endif

#if CREW_HAVE_BOOST
struct asio_contender {
  explicit asio_contender(std::size_t workers) : pool(workers) {}
  ~asio_contender() { pool.join(); }
  void submit(std::int64_t s) {
    boost::asio::post(pool, [s] { run_job(s); });
  }
  boost::asio::thread_pool pool;
};
#endif

#if CREW_HAVE_MOODYCAMEL
// A pool as moodycamel's author suggests: BlockingConcurrentQueue, workers dequeue in bulk.
struct moodycamel_contender {
  explicit moodycamel_contender(std::size_t workers) {
    for (std::size_t i = 0; i < workers; ++i) {
      threads.emplace_back([this] {
        moodycamel::ConsumerToken token(queue);
        std::int64_t items[64];
        for (;;) {
          const std::size_t n = queue.wait_dequeue_bulk(token, items, 64);
          for (std::size_t k = 0; k < n; ++k) {
            if (items[k] < 0) return;
            run_job(items[k]);
          }
        }
      });
    }
  }
  ~moodycamel_contender() {
    for (std::size_t i = 0; i < threads.size(); ++i) queue.enqueue(-1);
    for (auto& t : threads) t.join();
  }
  void submit(std::int64_t s) { queue.enqueue(s); }
  moodycamel::BlockingConcurrentQueue<std::int64_t> queue;
  std::vector<std::thread> threads;
};
#endif

void wait_done(std::uint64_t target) {
  while (g_done.load(std::memory_order_acquire) < target) std::this_thread::yield();
}

template <class Contender>
void bm_trivial(benchmark::State& state, std::size_t producers, std::size_t per_producer) {
  Contender c(crew::hardware_workers());
  std::uint64_t allocs = 0;
  for (auto _ : state) {
    g_done.store(0);
    const std::uint64_t before = g_news.load();
    std::vector<std::thread> threads;
    for (std::size_t p = 1; p < producers; ++p) {
      threads.emplace_back([&] {
        for (std::size_t i = 0; i < per_producer; ++i) c.submit(0);
      });
    }
    for (std::size_t i = 0; i < per_producer; ++i) c.submit(0);
    for (auto& t : threads) t.join();
    wait_done(producers * per_producer);
    // Producer threads themselves allocate (their std::thread state): not the pool's cost.
    allocs += g_news.load() - before - (producers - 1);
  }
  const auto jobs = static_cast<double>(state.iterations() * producers * per_producer);
  state.SetItemsProcessed(static_cast<std::int64_t>(jobs));
  state.counters["allocs_per_job"] = static_cast<double>(allocs) / jobs;
}

template <class Contender>
void bm_latency(benchmark::State& state) {
  Contender c(crew::hardware_workers());
  std::vector<std::int64_t> samples;
  for (auto _ : state) {
    for (int i = 0; i < kLatencySamples; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      const std::uint64_t target = g_done.load() + 1;
      c.submit(clock_type::now().time_since_epoch().count());
      wait_done(target);
      samples.push_back(g_latency_ns.load());
    }
  }
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    return static_cast<double>(
        samples[static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1))]);
  };
  state.counters["p50_ns"] = at(0.50);
  state.counters["p99_ns"] = at(0.99);
  state.counters["p999_ns"] = at(0.999);
}

template <class Contender>
void register_contender(const std::string& name, std::size_t per_producer) {
  for (std::size_t p : {1U, 2U}) {
    benchmark::RegisterBenchmark(("BM_Peers_Trivial/" + name + "/p" + std::to_string(p)).c_str(),
                                 bm_trivial<Contender>, p, per_producer)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark(("BM_Peers_WakeLatency/" + name).c_str(), bm_latency<Contender>)
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

const int registered = [] {
  register_contender<crew_contender>("crew", kJobsPerProducer);
  register_contender<mutex_contender>("mutex_condvar", kJobsPerProducer);
#if CREW_HAVE_MOODYCAMEL
  register_contender<moodycamel_contender>("moodycamel_pool", kJobsPerProducer);
#endif
#if CREW_HAVE_TBB
  register_contender<tbb_contender>("onetbb", kJobsPerProducer);
#endif
#if CREW_HAVE_BOOST
  register_contender<asio_contender>("asio_thread_pool", kJobsPerProducer);
#endif
  register_contender<thread_per_job_contender>("thread_per_job", kThreadPerJobJobs);
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
