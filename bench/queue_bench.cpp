// queue_bench: crew::bounded_queue<std::uint64_t> against peer queues, in one binary, so that
// the ratios between contenders come from one run on one machine state.
//
// What is measured: items/s through the queue. Each iteration moves a fixed number of items
// (kItemsPerProducer from each of P producer threads) to C consumer threads and ends when the
// consumers have popped every item. The threads are created once per benchmark run and kept
// across iterations (released by a futex-backed generation counter, so thread creation is not
// timed); the time is wall-clock (UseRealTime), from releasing the threads to the last one
// finishing. Producers and consumers busy-wait on a full or empty queue: a pause instruction
// for the first kSpinsBeforeYield failed attempts, then std::this_thread::yield() per attempt, so
// that oversubscribed runs make progress. Nothing else is done per item: this is the raw
// hand-off cost, an upper bound for any pool built on the queue.
//
// Every iteration is checked cheaply: the consumers count and sum what they pop, and the run
// fails with SkipWithError unless the count and the sum equal what the producers pushed (values
// 1..total, each exactly once). A run that makes no progress for kStallTimeout also fails.
//
// Contenders (capacity 1024 std::uint64_t items unless said otherwise):
//   crew              crew::bounded_queue: try_push/try_pop; bulk: try_push_bulk/try_pop_bulk.
//   mutex_deque       std::mutex + std::deque bounded at 1024, written below: the baseline.
//   moodycamel        moodycamel::ConcurrentQueue (CREW_HAVE_MOODYCAMEL) with producer and
//                     consumer tokens, as its author recommends: try_enqueue/try_dequeue;
//                     bulk: try_enqueue_bulk/try_dequeue_bulk. Bounded by preallocation, below.
//   moodycamel_notok  the same without tokens (implicit per-thread producers).
//   moodycamel_grow   the same with tokens, but enqueue/enqueue_bulk, which allocate when the
//                     preallocated blocks are full: UNBOUNDED, a producer never waits for room.
//   tbb               tbb::concurrent_bounded_queue (CREW_HAVE_TBB), set_capacity(1024),
//                     try_push/try_pop.
//   boost             boost::lockfree::queue (CREW_HAVE_BOOST) with
//                     boost::lockfree::capacity<1024>, bounded_push/pop.
//
// Configurations:
//   1P1C  one producer, one consumer.
//   2P2C  two producers, two consumers. The reference machine has 2 cores, so this is
//         oversubscribed on purpose: it shows how each queue behaves when a thread is preempted
//         in the middle of an operation (a lock holder, or a claimed but unpublished slot).
//   bulk  1P1C moving batches of kBatch = 32 items: crew try_push_bulk/try_pop_bulk against
//         moodycamel's (try_)enqueue_bulk/try_dequeue_bulk. mutex_deque, tbb and boost have no
//         bulk API, so they are not in this configuration.
//
// Names are BM_Queue/<contender>/<configuration>, e.g. BM_Queue/crew/1P1C, for scripts to group.
// Counters (per item moved, averaged over the run): full_retries (failed pushes), empty_retries
// (failed pops, including the final polls for the end of the iteration) and yields.
//
// How to run (Release build):
//   build/bench/bench/queue_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true --benchmark_format=json    (one line)
// Compare medians, and compare contenders within one run, as ratios: on a shared VM the same
// cell can move by 3x between runs. --benchmark_enable_random_interleaving=true spreads each
// contender's repetitions over the run, so slow phases of the machine hit everyone alike.
// --benchmark_filter='/1P1C$' picks one configuration.
//
// Caveats:
//   - moodycamel::ConcurrentQueue is unbounded: enqueue() allocates blocks as needed. It is
//     built with ConcurrentQueue(1024), which preallocates 32 blocks of 32 slots; try_enqueue*
//     never allocates, so moodycamel and moodycamel_notok hold at most 1024 items, like the
//     others. With tokens a block stays with the producer that took it, so each producer is
//     primed with one push and pop before the first iteration: it owns a block and cannot be
//     starved by the other. moodycamel_grow is the unbounded use: its queue keeps whatever it
//     grew to across the iterations of a run. FIFO order is per producer only.
//   - std::deque allocates and frees a 512-byte chunk every 64 items as it wraps around; that is
//     part of what the mutex_deque baseline costs.
//   - Per-item work is zero, so the queue's contended cache lines dominate; with real work
//     between operations every queue looks better and the gaps shrink.
//   - Busy-waiting threads steal the CPU from the thread they wait for when cores are scarce
//     (2P2C here); the yield after kSpinsBeforeYield attempts bounds that, and the counters show
//     how often it happened.
//   - Read the counters before the rates. full_retries ~= empty_retries ~= 0.25 with ~2 yields
//     per 1024 items (yields ~= 2m) is the signature of a producer and a consumer time-sharing
//     one core: each fills or drains the whole queue, spins 256 times, yields to the other. The
//     cell then measures a bounded queue's context-switch ping-pong, not a cross-core hand-off;
//     on this 2-core VM it happens in 1P1C too whenever anything else (a build) is running.
//     An unbounded queue (moodycamel_grow) avoids the ping-pong and looks far better there.

#include <crew/bounded_queue.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if CREW_HAVE_MOODYCAMEL
// bench/CMakeLists.txt puts the directory holding concurrentqueue.h on the include path.
#include <concurrentqueue.h>
#endif

#if CREW_HAVE_TBB
#include <tbb/concurrent_queue.h>
#endif

#if CREW_HAVE_BOOST
#include <boost/lockfree/policies.hpp>
#include <boost/lockfree/queue.hpp>
#endif

namespace {

using item = std::uint64_t;

constexpr std::size_t kCapacity = 1024;
constexpr std::size_t kBatch = 32;
// Items each producer pushes per iteration: 1P1C iterations take ~10-100 ms here.
constexpr std::uint64_t kItemsPerProducer = 1'000'000;
// Failed attempts spent on a pause instruction before each further attempt yields the CPU.
constexpr unsigned kSpinsBeforeYield = 256;
// Consumers publish their progress to the shared counter every this many items (and whenever
// they find the queue empty), so the end-of-iteration check costs no cache-line transfer per item.
constexpr std::uint64_t kFlushEvery = 256;
// An iteration that takes longer than this has lost items or deadlocked: fail the run.
constexpr std::chrono::seconds kStallTimeout{30};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// ---------------------------------------------------------------------------------------------
// Contenders. Each has a constructor taking the number of producers, and producer / consumer
// handles made once per thread (for per-thread state such as moodycamel's tokens) with
// push(item) / pop(item&) and, when kHasBulk, push_bulk(item*, n) -> taken (all-or-nothing or a
// prefix) and pop_bulk(item*, max) -> popped.

class crew_contender {
 public:
  static constexpr bool kHasBulk = true;
  explicit crew_contender(int /*producers*/) : queue_(kCapacity) {}

  class producer {
   public:
    explicit producer(crew_contender& c) : queue_(c.queue_) {}
    bool push(item v) { return queue_.try_push(std::move(v)); }
    std::size_t push_bulk(item* first, std::size_t n) { return queue_.try_push_bulk(first, n); }

   private:
    crew::bounded_queue<item>& queue_;
  };

  class consumer {
   public:
    explicit consumer(crew_contender& c) : queue_(c.queue_) {}
    bool pop(item& v) { return queue_.try_pop(v); }
    std::size_t pop_bulk(item* out, std::size_t max) { return queue_.try_pop_bulk(out, max); }

   private:
    crew::bounded_queue<item>& queue_;
  };

 private:
  crew::bounded_queue<item> queue_;
};

// The baseline: a std::deque under a std::mutex, bounded by a size check.
class mutex_deque_contender {
 public:
  static constexpr bool kHasBulk = false;
  explicit mutex_deque_contender(int /*producers*/) {}

  class producer {
   public:
    explicit producer(mutex_deque_contender& c) : c_(c) {}
    bool push(item v) {
      std::lock_guard<std::mutex> lock(c_.mutex_);
      if (c_.items_.size() >= kCapacity) return false;
      c_.items_.push_back(v);
      return true;
    }

   private:
    mutex_deque_contender& c_;
  };

  class consumer {
   public:
    explicit consumer(mutex_deque_contender& c) : c_(c) {}
    bool pop(item& v) {
      std::lock_guard<std::mutex> lock(c_.mutex_);
      if (c_.items_.empty()) return false;
      v = c_.items_.front();
      c_.items_.pop_front();
      return true;
    }

   private:
    mutex_deque_contender& c_;
  };

 private:
  std::mutex mutex_;
  std::deque<item> items_;
};

#if CREW_HAVE_MOODYCAMEL
// moodycamel::ConcurrentQueue is unbounded. ConcurrentQueue(1024) preallocates 32 blocks of 32;
// with Grow = false we call try_enqueue*, which never allocates, so at most 1024 items are inside
// (see the caveats on top); with Grow = true we call enqueue*, which allocates blocks whenever
// the preallocated ones are full, so the queue is unbounded and a producer never waits.
template <bool UseTokens, bool Grow>
class moodycamel_contender {
  static_assert(UseTokens || !Grow, "the growing variant is only measured with tokens");
  using queue_type = moodycamel::ConcurrentQueue<item>;

 public:
  static constexpr bool kHasBulk = true;
  explicit moodycamel_contender(int /*producers*/) : queue_(kCapacity) {}

  class producer {
   public:
    explicit producer(moodycamel_contender& c) : queue_(c.queue_), token_(c.queue_) {
      if constexpr (UseTokens && !Grow) {
        // Take one block for this producer now (no consumer runs yet), so that the other
        // producer cannot hold every preallocated block and starve this one forever.
        item primer = 0;
        if (queue_.try_enqueue(token_, primer)) queue_.try_dequeue_from_producer(token_, primer);
      }
    }
    bool push(item v) {
      if constexpr (Grow) {
        return queue_.enqueue(token_, v);
      } else if constexpr (UseTokens) {
        return queue_.try_enqueue(token_, v);
      } else {
        return queue_.try_enqueue(v);
      }
    }
    std::size_t push_bulk(item* first, std::size_t n) {
      // All or nothing.
      if constexpr (Grow) {
        return queue_.enqueue_bulk(token_, first, n) ? n : 0;
      } else if constexpr (UseTokens) {
        return queue_.try_enqueue_bulk(token_, first, n) ? n : 0;
      } else {
        return queue_.try_enqueue_bulk(first, n) ? n : 0;
      }
    }

   private:
    queue_type& queue_;
    moodycamel::ProducerToken token_;
  };

  class consumer {
   public:
    explicit consumer(moodycamel_contender& c) : queue_(c.queue_), token_(c.queue_) {}
    bool pop(item& v) {
      if constexpr (UseTokens) {
        return queue_.try_dequeue(token_, v);
      } else {
        return queue_.try_dequeue(v);
      }
    }
    std::size_t pop_bulk(item* out, std::size_t max) {
      if constexpr (UseTokens) {
        return queue_.try_dequeue_bulk(token_, out, max);
      } else {
        return queue_.try_dequeue_bulk(out, max);
      }
    }

   private:
    queue_type& queue_;
    moodycamel::ConsumerToken token_;
  };

 private:
  queue_type queue_;
};
#endif

#if CREW_HAVE_TBB
class tbb_contender {
 public:
  static constexpr bool kHasBulk = false;
  explicit tbb_contender(int /*producers*/) { queue_.set_capacity(kCapacity); }

  class producer {
   public:
    explicit producer(tbb_contender& c) : queue_(c.queue_) {}
    bool push(item v) { return queue_.try_push(v); }

   private:
    tbb::concurrent_bounded_queue<item>& queue_;
  };

  class consumer {
   public:
    explicit consumer(tbb_contender& c) : queue_(c.queue_) {}
    bool pop(item& v) { return queue_.try_pop(v); }

   private:
    tbb::concurrent_bounded_queue<item>& queue_;
  };

 private:
  tbb::concurrent_bounded_queue<item> queue_;
};
#endif

#if CREW_HAVE_BOOST
class boost_contender {
  using queue_type = boost::lockfree::queue<item, boost::lockfree::capacity<kCapacity>>;

 public:
  static constexpr bool kHasBulk = false;
  explicit boost_contender(int /*producers*/) {}

  class producer {
   public:
    explicit producer(boost_contender& c) : queue_(c.queue_) {}
    bool push(item v) { return queue_.bounded_push(v); }

   private:
    queue_type& queue_;
  };

  class consumer {
   public:
    explicit consumer(boost_contender& c) : queue_(c.queue_) {}
    bool pop(item& v) { return queue_.pop(v); }

   private:
    queue_type& queue_;
  };

 private:
  queue_type queue_;
};
#endif

// ---------------------------------------------------------------------------------------------
// Harness.

// Releases the worker threads for one iteration and waits for all of them to finish it. The
// workers sleep on a futex between iterations (std::atomic<std::uint32_t>::wait), so the thread
// running the benchmark loop does not compete with them for the CPU.
class rendezvous {
 public:
  explicit rendezvous(std::uint32_t workers) : workers_(workers) {}

  // Worker side: reports ready, then runs `iteration` once per release until shutdown().
  template <class F>
  void serve(F&& iteration) {
    std::uint32_t seen = 0;
    finish();
    for (;;) {
      generation_.wait(seen, std::memory_order_acquire);
      // (1) acquire pairs with the release in release_all/shutdown: the resets made before it
      // (done_, the consumed counter) are visible to this iteration.
      seen = generation_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_relaxed)) return;
      iteration();
      finish();
    }
  }

  // Benchmark side: waits until every worker has finished (or is ready, the first time).
  void wait_all() {
    // (2) acquire pairs with the release in finish(): each worker's results are visible.
    for (std::uint32_t d; (d = done_.load(std::memory_order_acquire)) != workers_;) {
      done_.wait(d, std::memory_order_acquire);
    }
  }

  // Benchmark side: starts one iteration on every worker. Call after wait_all().
  void release_all() {
    done_.store(0, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);  // (1)
    generation_.notify_all();
  }

  // Benchmark side: makes every worker return from serve(). Call after wait_all().
  void shutdown() {
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);  // (1)
    generation_.notify_all();
  }

 private:
  void finish() {
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == workers_) done_.notify_one();  // (2)
  }

  const std::uint32_t workers_;
  alignas(64) std::atomic<std::uint32_t> generation_{0};
  std::atomic<bool> stop_{false};
  alignas(64) std::atomic<std::uint32_t> done_{0};
};

// What one thread did over the whole run; each on its own cache line.
struct alignas(64) thread_stats {
  std::uint64_t items = 0;
  std::uint64_t sum = 0;
  std::uint64_t retries = 0;
  std::uint64_t yields = 0;
};

// Busy-wait policy on a full or empty queue; also detects stalls.
class backoff {
 public:
  backoff(std::atomic<bool>& abort, thread_stats& stats)
      : abort_(abort), stats_(stats), deadline_(std::chrono::steady_clock::now() + kStallTimeout) {}
  backoff(const backoff&) = delete;
  backoff& operator=(const backoff&) = delete;
  ~backoff() {
    stats_.retries += retries_;
    stats_.yields += yields_;
  }

  void reset() noexcept { spins_ = 0; }

  // Waits a little after a failed attempt; false when the run must be abandoned.
  bool wait() {
    ++retries_;
    if (++spins_ < kSpinsBeforeYield) {
      cpu_relax();
      return true;
    }
    ++yields_;
    std::this_thread::yield();
    if (spins_ % 1024 == 0) {
      if (abort_.load(std::memory_order_relaxed)) return false;
      if (std::chrono::steady_clock::now() > deadline_) {
        abort_.store(true, std::memory_order_relaxed);
        return false;
      }
    }
    return true;
  }

 private:
  std::atomic<bool>& abort_;
  thread_stats& stats_;
  const std::chrono::steady_clock::time_point deadline_;
  unsigned spins_ = 0;
  std::uint64_t retries_ = 0;
  std::uint64_t yields_ = 0;
};

// Pushes the values [first, first + count).
template <bool Bulk, class Producer>
void produce(Producer& producer, item first, std::uint64_t count, std::atomic<bool>& abort,
             thread_stats& stats) {
  backoff wait(abort, stats);
  const item end = first + count;
  if constexpr (!Bulk) {
    for (item v = first; v != end; ++v) {
      while (!producer.push(v)) {
        if (!wait.wait()) return;
      }
      wait.reset();
    }
  } else {
    std::array<item, kBatch> buffer;
    for (item v = first; v != end;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(kBatch, end - v));
      for (std::size_t i = 0; i < n; ++i) buffer[i] = v + i;
      for (std::size_t pushed = 0; pushed < n;) {
        const std::size_t k = producer.push_bulk(buffer.data() + pushed, n - pushed);
        if (k == 0) {
          if (!wait.wait()) return;
        } else {
          pushed += k;
          wait.reset();
        }
      }
      v += n;
    }
  }
}

// Pops until `consumed` (shared by the consumers) reaches `total`.
template <bool Bulk, class Consumer>
void consume(Consumer& consumer, std::uint64_t total, std::atomic<std::uint64_t>& consumed,
             std::atomic<bool>& abort, thread_stats& stats) {
  backoff wait(abort, stats);
  std::uint64_t items = 0;
  std::uint64_t sum = 0;
  std::uint64_t unflushed = 0;
  std::array<item, kBatch> buffer;
  for (;;) {
    std::size_t n = 0;
    if constexpr (Bulk) {
      n = consumer.pop_bulk(buffer.data(), kBatch);
      for (std::size_t i = 0; i < n; ++i) sum += buffer[i];
    } else {
      item v = 0;
      if (consumer.pop(v)) {
        sum += v;
        n = 1;
      }
    }
    if (n != 0) {
      items += n;
      unflushed += n;
      if (unflushed >= kFlushEvery) {
        consumed.fetch_add(unflushed, std::memory_order_relaxed);
        unflushed = 0;
      }
      wait.reset();
      continue;
    }
    if (unflushed != 0) {
      consumed.fetch_add(unflushed, std::memory_order_relaxed);
      unflushed = 0;
    }
    if (consumed.load(std::memory_order_relaxed) >= total) break;
    if (!wait.wait()) break;
  }
  stats.items += items;
  stats.sum += sum;
}

struct config {
  const char* name;
  int producers;
  int consumers;
  bool bulk;
};

constexpr std::array<config, 3> kConfigs{{
    {"1P1C", 1, 1, false},
    {"2P2C", 2, 2, false},
    {"bulk", 1, 1, true},
}};

template <class Contender, bool Bulk>
void bm_queue(benchmark::State& state, const config& cfg) {
  const auto producers = static_cast<std::uint32_t>(cfg.producers);
  const auto consumers = static_cast<std::uint32_t>(cfg.consumers);
  const std::uint64_t total = kItemsPerProducer * producers;

  Contender contender(cfg.producers);
  rendezvous sync(producers + consumers);
  std::atomic<bool> abort{false};
  alignas(64) std::atomic<std::uint64_t> consumed{0};
  std::vector<thread_stats> stats(producers + consumers);

  std::vector<std::jthread> threads;
  threads.reserve(producers + consumers);
  for (std::uint32_t i = 0; i < producers; ++i) {
    threads.emplace_back([&, i] {
      typename Contender::producer producer(contender);
      const item first = 1 + i * kItemsPerProducer;
      sync.serve([&] { produce<Bulk>(producer, first, kItemsPerProducer, abort, stats[i]); });
    });
  }
  for (std::uint32_t i = 0; i < consumers; ++i) {
    threads.emplace_back([&, i] {
      typename Contender::consumer consumer(contender);
      sync.serve([&] { consume<Bulk>(consumer, total, consumed, abort, stats[producers + i]); });
    });
  }
  sync.wait_all();  // every thread holds its handle (moodycamel: tokens, primed)

  std::uint64_t iterations = 0;
  for (auto _ : state) {
    consumed.store(0, std::memory_order_relaxed);  // published by release_all
    sync.release_all();
    sync.wait_all();
    ++iterations;
    if (abort.load(std::memory_order_relaxed)) break;
  }
  sync.shutdown();
  threads.clear();  // joins

  if (abort.load(std::memory_order_relaxed)) {
    state.SkipWithError("stalled: no progress for 30 s (lost items or deadlock)");
    return;
  }
  std::uint64_t popped = 0;
  std::uint64_t sum = 0;
  std::uint64_t full_retries = 0;
  std::uint64_t empty_retries = 0;
  std::uint64_t yields = 0;
  for (std::uint32_t i = 0; i < producers + consumers; ++i) {
    popped += stats[i].items;
    sum += stats[i].sum;
    (i < producers ? full_retries : empty_retries) += stats[i].retries;
    yields += stats[i].yields;
  }
  // Values 1..total, once per iteration: the sum is iterations * total * (total + 1) / 2.
  const std::uint64_t moved = iterations * total;
  if (popped != moved || sum != iterations * (total * (total + 1) / 2)) {
    state.SkipWithError(("lost or duplicated items: popped " + std::to_string(popped) + " of " +
                         std::to_string(moved) + ", or wrong sum")
                            .c_str());
    return;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(moved));
  const auto per_item = [&](std::uint64_t n) {
    return moved == 0 ? 0.0 : static_cast<double>(n) / static_cast<double>(moved);
  };
  state.counters["full_retries"] = per_item(full_retries);
  state.counters["empty_retries"] = per_item(empty_retries);
  state.counters["yields"] = per_item(yields);
}

template <class Contender>
void add(const char* name, const config& cfg) {
  const std::string full = std::string("BM_Queue/") + name + "/" + cfg.name;
  benchmark::internal::Benchmark* b = nullptr;
  if (!cfg.bulk) {
    b = benchmark::RegisterBenchmark(
        full.c_str(), [&cfg](benchmark::State& state) { bm_queue<Contender, false>(state, cfg); });
  } else if constexpr (Contender::kHasBulk) {
    b = benchmark::RegisterBenchmark(
        full.c_str(), [&cfg](benchmark::State& state) { bm_queue<Contender, true>(state, cfg); });
  } else {
    return;  // no bulk API: see the comment on top
  }
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

// Configuration-major order, so that one configuration's contenders run back to back.
void register_all() {
  for (const config& cfg : kConfigs) {
    add<crew_contender>("crew", cfg);
    add<mutex_deque_contender>("mutex_deque", cfg);
#if CREW_HAVE_MOODYCAMEL
    add<moodycamel_contender<true, false>>("moodycamel", cfg);
    add<moodycamel_contender<false, false>>("moodycamel_notok", cfg);
    add<moodycamel_contender<true, true>>("moodycamel_grow", cfg);
#endif
#if CREW_HAVE_TBB
    add<tbb_contender>("tbb", cfg);
#endif
#if CREW_HAVE_BOOST
    add<boost_contender>("boost", cfg);
#endif
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
