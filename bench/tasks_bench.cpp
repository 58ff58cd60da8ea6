// tasks_bench: crew's closures (crew::task_pool) against what users of closure pools run today,
// in one binary so the ratios come from one run (GitHub issue 13).
//
//   BM_Tasks_Trivial/<c>   jobs/s for trivial closures (each adds one to a shared atomic counter;
//       a 16-byte capture), one producer submitting one closure at a time; an iteration ends when
//       every closure has run (the producer spins, yielding, on the counter). Contenders:
//         crew_task_pool      crew::task_pool::submit(closure)
//         crew_task_group     crew::task_group::run(closure), then wait()
//         asio_post           boost::asio::post on boost::asio::thread_pool
//         tbb_task_group      tbb::task_group::run in a task_arena (as bench/peers.hpp sets it up)
//         mutex_std_function  a mutex + condvar pool of std::function<void()> (BS::thread_pool's
//                             design; bench/mutex_pool.hpp)
//   BM_Tasks_Result/<c>/window:<W>   tasks/s for closures returning an integer through a
//       future: submit W tasks, then get() their futures in order; repeat. W = 256 is throughput
//       with results; W = 1 is the round trip (submit, get, submit, ...: the latency of a result,
//       ~1 us per packaged_task round trip elsewhere, says issue 13). Contenders:
//         crew_submit_task    crew::task_pool::submit_task
//         mutex_packaged_task a mutex + condvar pool of std::packaged_task (bench/mutex_pool.hpp)
//         std_async           std::async(std::launch::async, f) (a thread per task; fewer tasks)
//       Every std::future costs its std::promise's set_value a futex wake system call (libstdc++
//       sets the result under std::call_once, glibc's pthread_once wakes unconditionally: ~270 ns
//       here), the same for every contender.
//   Counter allocs_per_task: calls to operator new (this binary replaces it) during the
//   iteration, per task.
// Every contender runs on hardware_workers() workers. Missing peers (oneTBB, Boost) are skipped
// with a message at startup.
//
// Run: build/bench/bench/tasks_bench --benchmark_repetitions=5
//        --benchmark_report_aggregates_only=true --benchmark_format=json

#include <crew/concurrency.hpp>
#include <crew/task.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <future>
#include <thread>
#include <utility>
#include <vector>

#include "alloc_counter.hpp"  // replaces operator new in this binary: g_news
#include "mutex_pool.hpp"

#if CREW_HAVE_TBB
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#endif
#if CREW_HAVE_BOOST
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#endif

using crew_bench::g_news;

namespace {

constexpr std::size_t kTrivialTasks = 200'000;  // Trivial, per iteration
constexpr std::size_t kResultTasks = 50'000;    // Result, per iteration
constexpr std::size_t kAsyncTasks = 2'000;      // Result, std_async (a thread per task)
constexpr std::size_t kRoundTrips = 5'000;      // RoundTrip, per iteration
constexpr std::size_t kAsyncRoundTrips = 500;   // RoundTrip, std_async

std::size_t workers() { return crew::hardware_workers(); }

// The trivial closure every contender runs: 16 bytes (a pointer and an increment).
struct bump {
  std::atomic<std::uint64_t>* done;
  std::uint64_t by;
  void operator()() const { done->fetch_add(by, std::memory_order_relaxed); }
};

void wait_for(const std::atomic<std::uint64_t>& done, std::uint64_t n) {
  while (done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

// Runs `iteration(n)` per benchmark iteration (n tasks; it returns when all have run) and sets
// items_per_second and allocs_per_task.
template <class Iteration>
void measure(benchmark::State& state, std::size_t n, Iteration&& iteration) {
  std::uint64_t news = 0;
  std::uint64_t tasks = 0;
  for (auto _ : state) {
    const std::uint64_t before = g_news.load(std::memory_order_relaxed);
    iteration(n);
    news += g_news.load(std::memory_order_relaxed) - before;
    tasks += n;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(tasks));
  state.counters["allocs_per_task"] =
      benchmark::Counter(static_cast<double>(news) / static_cast<double>(tasks));
}

// ---- trivial closures -----------------------------------------------------------------------

void BM_Tasks_Trivial_crew_task_pool(benchmark::State& state) {
  crew::task_pool pool{{.workers = workers(), .queue_capacity = 1024, .recycle_after = 0}};
  std::atomic<std::uint64_t> done{0};
  measure(state, kTrivialTasks, [&](std::size_t n) {
    const std::uint64_t target = done.load() + n;
    for (std::size_t i = 0; i < n; ++i) (void)pool.submit(bump{&done, 1});
    wait_for(done, target);
  });
}

void BM_Tasks_Trivial_crew_task_group(benchmark::State& state) {
  crew::task_pool pool{{.workers = workers(), .queue_capacity = 1024, .recycle_after = 0}};
  crew::task_group group{pool};
  std::atomic<std::uint64_t> done{0};
  measure(state, kTrivialTasks, [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) (void)group.run(bump{&done, 1});
    group.wait();
  });
}

void BM_Tasks_Trivial_mutex_std_function(benchmark::State& state) {
  crew_bench::mutex_pool<std::function<void()>> pool{[](std::function<void()>&& f) { f(); },
                                                     workers(), 1024};
  std::atomic<std::uint64_t> done{0};
  measure(state, kTrivialTasks, [&](std::size_t n) {
    const std::uint64_t target = done.load() + n;
    for (std::size_t i = 0; i < n; ++i) pool.submit(std::function<void()>(bump{&done, 1}));
    wait_for(done, target);
  });
}

#if CREW_HAVE_BOOST
void BM_Tasks_Trivial_asio_post(benchmark::State& state) {
  boost::asio::thread_pool pool(workers());
  std::atomic<std::uint64_t> done{0};
  measure(state, kTrivialTasks, [&](std::size_t n) {
    const std::uint64_t target = done.load() + n;
    for (std::size_t i = 0; i < n; ++i) boost::asio::post(pool, bump{&done, 1});
    wait_for(done, target);
  });
  pool.join();
}
#endif

#if CREW_HAVE_TBB
// workers + 1 arena slots (one kept for the producer) and a global_control letting TBB start
// `workers` threads: see bench/peers.hpp's tbb_contender for why.
void BM_Tasks_Trivial_tbb_task_group(benchmark::State& state) {
  tbb::global_control parallelism(tbb::global_control::max_allowed_parallelism, workers() + 1);
  tbb::task_arena arena(static_cast<int>(workers()) + 1, 1);
  tbb::task_group group;
  std::atomic<std::uint64_t> done{0};
  measure(state, kTrivialTasks, [&](std::size_t n) {
    arena.execute([&] {
      for (std::size_t i = 0; i < n; ++i) group.run(bump{&done, 1});
      group.wait();
    });
  });
}
#endif

// ---- results through futures ------------------------------------------------------------------

// Submits n tasks returning i, `window_size` in flight: submit a window, then get() each of its
// futures; checks the values.
template <class Submit>
void windows(benchmark::State& state, std::size_t n, Submit&& submit, std::size_t window_size) {
  std::vector<std::future<std::uint64_t>> window;
  window.reserve(window_size);
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < n; i += window_size) {
    const std::size_t end = i + window_size < n ? i + window_size : n;
    for (std::size_t k = i; k < end; ++k) window.push_back(submit(static_cast<std::uint64_t>(k)));
    for (auto& f : window) sum += f.get();
    window.clear();
  }
  if (sum != static_cast<std::uint64_t>(n) * (n - 1) / 2) state.SkipWithError("wrong results");
}

// state.range(0): the window (futures in flight); 1 is a round trip.
std::size_t window_of(const benchmark::State& state) {
  return static_cast<std::size_t>(state.range(0));
}
std::size_t tasks_for(const benchmark::State& state, std::size_t windowed, std::size_t single) {
  return window_of(state) == 1 ? single : windowed;
}

void BM_Tasks_Result_crew_submit_task(benchmark::State& state) {
  crew::task_pool pool{{.workers = workers(), .queue_capacity = 1024, .recycle_after = 0}};
  measure(state, tasks_for(state, kResultTasks, kRoundTrips), [&](std::size_t n) {
    windows(
        state, n, [&](std::uint64_t v) { return pool.submit_task([v] { return v; }).result; },
        window_of(state));
  });
}

void BM_Tasks_Result_mutex_packaged_task(benchmark::State& state) {
  using job = std::packaged_task<std::uint64_t()>;
  crew_bench::mutex_pool<job> pool{[](job&& j) { j(); }, workers(), 1024};
  measure(state, tasks_for(state, kResultTasks, kRoundTrips), [&](std::size_t n) {
    windows(
        state, n,
        [&](std::uint64_t v) {
          job j([v] { return v; });
          auto f = j.get_future();
          pool.submit(std::move(j));
          return f;
        },
        window_of(state));
  });
}

void BM_Tasks_Result_std_async(benchmark::State& state) {
  measure(state, tasks_for(state, kAsyncTasks, kAsyncRoundTrips), [&](std::size_t n) {
    windows(
        state, n, [](std::uint64_t v) { return std::async(std::launch::async, [v] { return v; }); },
        window_of(state));
  });
}

void register_all() {
  benchmark::RegisterBenchmark("BM_Tasks_Trivial/crew_task_pool", BM_Tasks_Trivial_crew_task_pool)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_Tasks_Trivial/crew_task_group", BM_Tasks_Trivial_crew_task_group)
      ->UseRealTime();
#if CREW_HAVE_BOOST
  benchmark::RegisterBenchmark("BM_Tasks_Trivial/asio_post", BM_Tasks_Trivial_asio_post)
      ->UseRealTime();
#else
  std::fputs("tasks_bench: Boost.Asio not found (install libboost-dev): asio_post skipped\n",
             stderr);
#endif
#if CREW_HAVE_TBB
  benchmark::RegisterBenchmark("BM_Tasks_Trivial/tbb_task_group", BM_Tasks_Trivial_tbb_task_group)
      ->UseRealTime();
#else
  std::fputs("tasks_bench: oneTBB not found (install libtbb-dev): tbb_task_group skipped\n",
             stderr);
#endif
  benchmark::RegisterBenchmark("BM_Tasks_Trivial/mutex_std_function",
                               BM_Tasks_Trivial_mutex_std_function)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_Tasks_Result/crew_submit_task", BM_Tasks_Result_crew_submit_task)
      ->ArgName("window")
      ->Arg(256)
      ->Arg(1)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_Tasks_Result/mutex_packaged_task",
                               BM_Tasks_Result_mutex_packaged_task)
      ->ArgName("window")
      ->Arg(256)
      ->Arg(1)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_Tasks_Result/std_async", BM_Tasks_Result_std_async)
      ->ArgName("window")
      ->Arg(256)
      ->Arg(1)
      ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("workers", std::to_string(workers()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
