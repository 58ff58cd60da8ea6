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
//         crew_submit_task_polled_get  the same, the producer polling each future (yielding)
//                             before its get(): what a future that spins before it sleeps gives
//         mutex_packaged_task a mutex + condvar pool of std::packaged_task (bench/mutex_pool.hpp)
//         std_async           std::async(std::launch::async, f) (a thread per task; fewer tasks)
//         spin_handoff        the ceiling of any pool here: workers that never sleep, each
//                             spinning on an SPSC ring of its own (not a usable pool)
//         future_floor        no pool: the std::promise/std::future work alone, in one thread
//                             (counters producer_ns and worker_ns; see its comment)
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
#include <crew/detail/wait.hpp>  // cpu_relax
#include <crew/task.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
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
template <class Submit, class BeforeGet = void (*)(std::future<std::uint64_t>&)>
void windows(
    benchmark::State& state, std::size_t n, Submit&& submit, std::size_t window_size,
    BeforeGet before_get = [](std::future<std::uint64_t>&) {}) {
  std::vector<std::future<std::uint64_t>> window;
  window.reserve(window_size);
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < n; i += window_size) {
    const std::size_t end = i + window_size < n ? i + window_size : n;
    for (std::size_t k = i; k < end; ++k) window.push_back(submit(static_cast<std::uint64_t>(k)));
    for (auto& f : window) {
      before_get(f);
      sum += f.get();
    }
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

// crew_submit_task with a get() that polls before it blocks: the producer yields while the
// future is not ready (wait_for(0s) reads the state without a system call) and calls get() once
// it is. What a future whose wait spins before it sleeps would give (std::future's blocks at
// once, and the worker's set_value must then wake it); not something a pool can do for its
// callers' get().
void BM_Tasks_Result_crew_submit_task_polled_get(benchmark::State& state) {
  crew::task_pool pool{{.workers = workers(), .queue_capacity = 1024, .recycle_after = 0}};
  measure(state, tasks_for(state, kResultTasks, kRoundTrips), [&](std::size_t n) {
    windows(
        state, n, [&](std::uint64_t v) { return pool.submit_task([v] { return v; }).result; },
        window_of(state),
        [](std::future<std::uint64_t>& f) {
          while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
            std::this_thread::yield();
          }
        });
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

// What every pool that hands results through std::future pays per task, with no pool at all:
// one thread makes a window of std::promise + std::future pairs (the producer's part, with the
// get() and destruction of each future), then sets each promise's value and destroys it (the
// worker's part; set_value's call_once makes its futex wake here as on a worker). Counters, in
// ns per task: producer_ns, worker_ns. On c cores with one producer, no pool can pass
// 1 / max(producer_ns, (producer_ns + worker_ns) / c) tasks/s: the bound the ratio goals of
// BM_Tasks_Result are read against.
void BM_Tasks_Result_future_floor(benchmark::State& state) {
  using clock = std::chrono::steady_clock;
  const std::size_t window_size = window_of(state);
  std::vector<std::promise<std::uint64_t>> promises;
  std::vector<std::future<std::uint64_t>> futures;
  promises.reserve(window_size);
  futures.reserve(window_size);
  clock::duration producer{};
  clock::duration worker{};
  std::uint64_t sum = 0;
  std::uint64_t expected = 0;
  measure(state, kResultTasks, [&](std::size_t n) {
    for (std::size_t i = 0; i < n; i += window_size) {
      const std::size_t end = i + window_size < n ? i + window_size : n;
      const auto t0 = clock::now();
      for (std::size_t k = i; k < end; ++k) {
        futures.push_back(promises.emplace_back().get_future());
      }
      const auto t1 = clock::now();
      for (std::size_t k = i; k < end; ++k) promises[k - i].set_value(k);
      promises.clear();
      const auto t2 = clock::now();
      for (auto& f : futures) sum += f.get();
      futures.clear();
      const auto t3 = clock::now();
      producer += (t1 - t0) + (t3 - t2);
      worker += t2 - t1;
    }
    expected += static_cast<std::uint64_t>(n) * (n - 1) / 2;
  });
  if (sum != expected) state.SkipWithError("wrong results");
  const auto per_task = [&](clock::duration d) {
    return benchmark::Counter(
        static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()) /
        static_cast<double>(state.iterations() * kResultTasks));
  };
  state.counters["producer_ns"] = per_task(producer);
  state.counters["worker_ns"] = per_task(worker);
}

// The most any pool could do with std::future here: `workers()` threads that never sleep, each
// polling (with a yield: 2 cores, 3 threads) a single-producer single-consumer ring of its own that
// the producer fills round robin (no lock, no shared claim, no parking, no bound checks beyond the
// ring). Not a usable pool (its workers burn their cores while idle); the ceiling crew_submit_task
// is read against.
class spin_handoff {
 public:
  explicit spin_handoff(std::size_t n) : rings_(n) {
    for (std::size_t w = 0; w < n; ++w) threads_.emplace_back([this, w] { run(rings_[w]); });
  }
  spin_handoff(const spin_handoff&) = delete;
  spin_handoff& operator=(const spin_handoff&) = delete;
  ~spin_handoff() {
    stop_.store(true, std::memory_order_release);
    for (auto& t : threads_) t.join();
  }
  std::future<std::uint64_t> submit(std::uint64_t v) {
    ring& r = rings_[next_++ % rings_.size()];
    // relaxed: the producer is the only writer of tail. acquire on head: the worker is done
    // with the cell (its promise released) before the producer reuses it.
    const std::size_t tail = r.tail.load(std::memory_order_relaxed);
    while (tail - r.head.load(std::memory_order_acquire) == ring_size) crew::detail::cpu_relax();
    cell& c = r.cells[tail % ring_size];
    c.promise = std::promise<std::uint64_t>{};
    c.value = v;
    auto f = c.promise.get_future();
    r.tail.store(tail + 1, std::memory_order_release);  // publishes the cell to its worker
    return f;
  }

 private:
  static constexpr std::size_t ring_size = 1024;
  struct cell {
    std::promise<std::uint64_t> promise;
    std::uint64_t value = 0;
  };
  struct alignas(64) ring {
    std::vector<cell> cells = std::vector<cell>(ring_size);
    alignas(64) std::atomic<std::size_t> head{0};
    alignas(64) std::atomic<std::size_t> tail{0};
  };
  void run(ring& r) {
    for (std::size_t head = 0;;) {
      // acquire: pairs with submit's release of tail (the cell's promise and value).
      if (r.tail.load(std::memory_order_acquire) == head) {
        // acquire/release with the destructor: a flag only; every cell was taken by then.
        if (stop_.load(std::memory_order_acquire)) return;
        // Yield, not pause: with more threads than cores, a spinning worker would keep the
        // producer it waits for off the core.
        std::this_thread::yield();
        continue;
      }
      cell& c = r.cells[head % ring_size];
      c.promise.set_value(c.value);
      { const std::promise<std::uint64_t> done(std::move(c.promise)); }  // drops its reference
      r.head.store(++head, std::memory_order_release);  // the cell is free for the producer
    }
  }
  std::vector<ring> rings_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::size_t next_ = 0;
};

void BM_Tasks_Result_spin_handoff(benchmark::State& state) {
  spin_handoff pool{workers()};
  measure(state, tasks_for(state, kResultTasks, kRoundTrips), [&](std::size_t n) {
    windows(
        state, n, [&](std::uint64_t v) { return pool.submit(v); }, window_of(state));
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
  benchmark::RegisterBenchmark("BM_Tasks_Result/crew_submit_task_polled_get",
                               BM_Tasks_Result_crew_submit_task_polled_get)
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
  benchmark::RegisterBenchmark("BM_Tasks_Result/spin_handoff", BM_Tasks_Result_spin_handoff)
      ->ArgName("window")
      ->Arg(256)
      ->Arg(1)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_Tasks_Result/future_floor", BM_Tasks_Result_future_floor)
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
