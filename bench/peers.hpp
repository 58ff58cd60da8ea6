#pragma once

// crew_bench contenders: crew::worker_pool and what a C++ user would otherwise pick, behind one
// shape so that every benchmark family (bench/peers_bench.cpp, bench/memory_story.cpp) runs
// the same code for each of them.
//
// A job is an std::int64_t payload; every contender runs it by calling a plain function
// pointer `job_fn` (one indirect call per job for everybody). Each contender type has
//
//   Contender(std::size_t workers, job_fn fn);   // starts the workers
//   void submit(std::int64_t payload);           // any thread; blocks or queues, never drops
//   ~Contender();                                // runs every submitted job, then joins
//   static constexpr const char* name;           // stable name used in benchmark names / JSON
//
// crew_contender also takes crew::pool_options (recycling settings for the memory story).
// Peers are compiled only when CMake found them (CREW_HAVE_TBB / _BOOST / _MOODYCAMEL).
// `for_each_contender(f)` calls f.template operator()<Contender>() for every compiled-in
// contender, in a fixed order: crew first, thread-per-job last.

#include <crew/worker_pool.hpp>

#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

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
#if CREW_HAVE_MOODYCAMEL
#include <blockingconcurrentqueue.h>
#endif

namespace crew_bench {

using job_fn = void (*)(std::int64_t);

// crew with its default (type-erased) handler, as a user writes it; queue of 1024, no
// recycling unless the options say otherwise.
struct crew_contender {
  static constexpr const char* name = "crew";
  static crew::pool_options<std::int64_t> defaults(std::size_t workers) {
    return {.workers = workers, .queue_capacity = 1024, .recycle_after = 0};
  }
  crew_contender(std::size_t workers, job_fn fn) : crew_contender(fn, defaults(workers)) {}
  crew_contender(job_fn fn, const crew::pool_options<std::int64_t>& options)
      : pool([fn](std::int64_t&& s) { fn(s); }, options) {}
  void submit(std::int64_t s) { (void)pool.submit(std::int64_t{s}); }
  crew::worker_pool<std::int64_t> pool;
};

struct mutex_contender {
  static constexpr const char* name = "mutex_condvar";
  mutex_contender(std::size_t workers, job_fn fn)
      : pool([fn](std::int64_t&& s) { fn(s); }, workers, 1024) {}
  void submit(std::int64_t s) { pool.submit(std::int64_t{s}); }
  mutex_pool<std::int64_t> pool;
};

// One std::thread per job, detached (the "goroutine per request" of C++). The destructor waits
// for the threads it started to finish.
struct thread_per_job_contender {
  static constexpr const char* name = "thread_per_job";
  thread_per_job_contender(std::size_t /*workers*/, job_fn f) : fn(f) {}
  thread_per_job_contender(const thread_per_job_contender&) = delete;
  thread_per_job_contender& operator=(const thread_per_job_contender&) = delete;
  ~thread_per_job_contender() {
    while (running.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }
  // relaxed increment: only this (submitting) thread and the destructor, which runs after it
  // on the same thread, need it. Release decrement: the job's effects before the destructor's
  // acquire load sees zero.
  void submit(std::int64_t s) {
    running.fetch_add(1, std::memory_order_relaxed);
    try {
      std::thread([this, s] {
        fn(s);
        running.fetch_sub(1, std::memory_order_release);
      }).detach();
    } catch (...) {
      running.fetch_sub(1, std::memory_order_relaxed);  // no thread: nothing to wait for
      throw;
    }
  }
  job_fn fn;
  std::atomic<std::int64_t> running{0};
};

#if CREW_HAVE_TBB
// oneTBB with `workers` worker threads of its own, like every other contender. An arena of
// concurrency n keeps one of its n slots for application threads, and TBB starts at most
// (CPUs - 1) workers: task_arena(2) on 2 cores runs jobs on one thread, since the producer
// only enters to spawn. So: workers + 1 slots, one kept for the producers (without it,
// execute() from a producer is delegated to a worker and waits for it: 40x slower measured),
// and a global_control that lets TBB start `workers` threads.
struct tbb_contender {
  static constexpr const char* name = "onetbb";
  tbb_contender(std::size_t workers, job_fn f)
      : parallelism(tbb::global_control::max_allowed_parallelism, workers + 1),
        arena(static_cast<int>(workers) + 1, 1),
        fn(f) {}
  tbb_contender(const tbb_contender&) = delete;
  tbb_contender& operator=(const tbb_contender&) = delete;
  ~tbb_contender() {
    arena.execute([&] { group.wait(); });
  }
  void submit(std::int64_t s) {
    arena.execute([&] { group.run([f = fn, s] { f(s); }); });
  }
  tbb::global_control parallelism;
  tbb::task_arena arena;
  tbb::task_group group;
  job_fn fn;
};
#endif

#if CREW_HAVE_BOOST
struct asio_contender {
  static constexpr const char* name = "asio_thread_pool";
  asio_contender(std::size_t workers, job_fn f) : pool(workers), fn(f) {}
  asio_contender(const asio_contender&) = delete;
  asio_contender& operator=(const asio_contender&) = delete;
  ~asio_contender() { pool.join(); }
  void submit(std::int64_t s) {
    boost::asio::post(pool, [f = fn, s] { f(s); });
  }
  boost::asio::thread_pool pool;
  job_fn fn;
};
#endif

#if CREW_HAVE_MOODYCAMEL
// A pool as moodycamel's author suggests: BlockingConcurrentQueue, workers dequeue in bulk with
// a consumer token. Stopped by one sentinel (INT64_MIN) per worker.
//   moodycamel_pool      unbounded: the producer never waits.
//   moodycamel_bounded   bounded like crew's (1,024 queued jobs), the way a moodycamel user adds
//                        a bound: a LightweightSemaphore of free places that a producer waits on
//                        before it enqueues and a worker signals for each job it dequeues (so,
//                        like crew, a place is free once its job is taken, before it runs). The
//                        sentinels bypass the bound. A bounded crew against a bounded peer.
template <bool Bounded>
struct moodycamel_pool_contender {
  static constexpr const char* name = Bounded ? "moodycamel_bounded" : "moodycamel_pool";
  static constexpr std::int64_t stop = INT64_MIN;
  static constexpr std::size_t capacity = 1024;  // Bounded only
  using places_count = moodycamel::LightweightSemaphore::ssize_t;
  moodycamel_pool_contender(std::size_t workers, job_fn fn)
      : places(Bounded ? static_cast<places_count>(capacity) : 0) {
    for (std::size_t i = 0; i < workers; ++i) {
      threads.emplace_back([this, fn] {
        moodycamel::ConsumerToken token(queue);
        std::int64_t items[64];
        std::size_t stops = 0;
        const auto run = [&](std::size_t n) {
          if constexpr (Bounded) {
            places_count jobs = 0;
            for (std::size_t k = 0; k < n; ++k) jobs += items[k] == stop ? 0 : 1;
            if (jobs != 0) places.signal(jobs);
          }
          for (std::size_t k = 0; k < n; ++k) {
            if (items[k] == stop) {
              ++stops;
            } else {
              fn(items[k]);
            }
          }
        };
        while (stops == 0) run(queue.wait_dequeue_bulk(token, items, 64));
        // A bulk dequeue may take another worker's sentinel too: give the extra ones back.
        // Every producer finished before the destructor sent the sentinels, so what is left
        // in the queue now is visible: run it before leaving.
        for (std::size_t n; (n = queue.try_dequeue_bulk(token, items, 64)) != 0;) run(n);
        for (std::size_t k = 1; k < stops; ++k) queue.enqueue(stop);
      });
    }
  }
  moodycamel_pool_contender(const moodycamel_pool_contender&) = delete;
  moodycamel_pool_contender& operator=(const moodycamel_pool_contender&) = delete;
  ~moodycamel_pool_contender() {
    for (std::size_t i = 0; i < threads.size(); ++i) queue.enqueue(stop);
    for (auto& t : threads) t.join();
  }
  void submit(std::int64_t s) {
    if constexpr (Bounded) places.wait();
    queue.enqueue(s);
  }
  moodycamel::BlockingConcurrentQueue<std::int64_t> queue;
  moodycamel::LightweightSemaphore places;
  std::vector<std::thread> threads;
};
using moodycamel_contender = moodycamel_pool_contender<false>;
using moodycamel_bounded_contender = moodycamel_pool_contender<true>;
#endif

template <class F>
void for_each_contender(F&& f) {
  f.template operator()<crew_contender>();
  f.template operator()<mutex_contender>();
#if CREW_HAVE_MOODYCAMEL
  f.template operator()<moodycamel_contender>();
  f.template operator()<moodycamel_bounded_contender>();
#endif
#if CREW_HAVE_TBB
  f.template operator()<tbb_contender>();
#endif
#if CREW_HAVE_BOOST
  f.template operator()<asio_contender>();
#endif
  f.template operator()<thread_per_job_contender>();
}

}  // namespace crew_bench
