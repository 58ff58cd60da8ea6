#pragma once

// Shared helpers for crew's tests: a lifetime-tracking element type and a scale factor that
// shrinks stress loops under the sanitizers (ThreadSanitizer runs 5-15x slower).

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace crew_test {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool under_tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool under_tsan = true;
#else
inline constexpr bool under_tsan = false;
#endif
#else
inline constexpr bool under_tsan = false;
#endif

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool under_asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool under_asan = true;
#else
inline constexpr bool under_asan = false;
#endif
#else
inline constexpr bool under_asan = false;
#endif

// `n` scaled for the build: full size normally, smaller under sanitizers, and multiplied by
// CREW_TEST_SCALE (a positive number, default 1) from the environment for longer local runs.
inline std::uint64_t scaled(std::uint64_t n) {
  double factor = 1.0;
  if (const char* env = std::getenv("CREW_TEST_SCALE")) {
    const double v = std::strtod(env, nullptr);
    if (v > 0) factor = v;
  }
  if (under_tsan) factor /= 8;
  if (under_asan) factor /= 2;
  const auto r = static_cast<std::uint64_t>(static_cast<double>(n) * factor);
  return r == 0 ? 1 : r;
}

// Counts constructions and destructions of `tracked` objects that point at it.
struct lifetime_counts {
  std::atomic<long> constructed_{0};
  std::atomic<long> destroyed_{0};
  long constructed() const { return constructed_.load(); }
  long destroyed() const { return destroyed_.load(); }
  long live() const { return constructed() - destroyed(); }
};

// A move-only element that records its lifetime: every construction (including moves) and
// destruction is counted, and a destroyed object is poisoned so a double destroy is caught.
struct tracked {
  tracked(lifetime_counts& c, int v) : counts(&c), value(v) { counts->constructed_.fetch_add(1); }
  tracked(tracked&& other) noexcept : counts(other.counts), value(other.value) {
    counts->constructed_.fetch_add(1);
  }
  tracked& operator=(tracked&& other) noexcept {
    counts = other.counts;
    value = other.value;
    return *this;
  }
  tracked(const tracked&) = delete;
  tracked& operator=(const tracked&) = delete;
  ~tracked() {
    if (alive != magic) std::abort();  // destroyed twice, or never constructed
    alive = 0;
    counts->destroyed_.fetch_add(1);
  }

  static constexpr std::uint32_t magic = 0x600DF00D;
  lifetime_counts* counts;
  int value;
  std::uint32_t alive = magic;
};

}  // namespace crew_test

#include <crew/worker_pool.hpp>

#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace crew_test {

// A gate handlers can wait at: closed until open() is called. Thread-safe.
class gate {
 public:
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return open_; });
  }
  // Waits until open() or `limit` passes; returns whether the gate is open.
  bool wait_for(std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, limit, [&] { return open_; });
  }
  bool is_open() {
    std::lock_guard lock(mutex_);
    return open_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Spins (with sleeps) until pred() holds or `limit` passes; returns pred(). Used to wait for
// an event that must happen, with a generous limit so a bug fails the test instead of hanging.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return pred();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// A field of /proc/self/status in its unit (kB for memory, a count for Threads), or -1.
inline long proc_status_field(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0)
      return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
  }
  return -1;
}

inline long thread_count() { return proc_status_field("Threads"); }

// CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID), and a duration in ms.
inline std::chrono::nanoseconds thread_cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}
inline double ms(std::chrono::nanoseconds d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Wall and CPU time (of the calling thread) taken by one call.
struct call_cost {
  std::chrono::nanoseconds wall{0};
  std::chrono::nanoseconds cpu{0};
};

template <class F>
call_cost measure(F&& f) {
  const auto wall0 = std::chrono::steady_clock::now();
  const auto cpu0 = thread_cpu_now();
  f();
  const auto cpu1 = thread_cpu_now();
  const auto wall1 = std::chrono::steady_clock::now();
  return {std::chrono::duration_cast<std::chrono::nanoseconds>(wall1 - wall0), cpu1 - cpu0};
}

// ThreadSanitizer starts a background thread of its own at the first pthread_create: start it
// before taking a thread-count baseline. join() returns when the kernel clears the thread's tid
// word, which is before the thread leaves /proc/self/task: a count read right after it saw the
// joined thread about once in 50 tries here (CI once took a baseline of 2 that way). So wait
// for the thread's task entry to go.
inline void start_sanitizer_threads() {
  pid_t tid = 0;
  std::thread([&tid] { tid = static_cast<pid_t>(::syscall(SYS_gettid)); }).join();
  const std::string entry = "/proc/self/task/" + std::to_string(tid);
  eventually([&] { return ::access(entry.c_str(), F_OK) != 0; }, std::chrono::seconds(10));
}
inline long rss_kib() { return proc_status_field("VmRSS"); }

// One worker held inside its first job until release.open(), and a queue of capacity 1 filled
// behind it: the pool's queue is full until the gate opens. The handler counts the jobs it ran
// and sums their values.
struct full_pool {
  using job = std::unique_ptr<int>;
  explicit full_pool(crew::overflow_policy policy = crew::overflow_policy::block,
                     std::function<void(job&&)> on_drop = {}) {
    crew::pool_options<job> o{.workers = 1, .queue_capacity = 1, .on_full = policy};
    o.on_drop = std::move(on_drop);
    pool = std::make_unique<crew::worker_pool<job>>(
        [this](job&& j) {
          started.fetch_add(1);
          if (*j == 0) release.wait();
          ran.fetch_add(1);
          sum.fetch_add(*j);
        },
        std::move(o));
    EXPECT_EQ(pool->try_submit(std::make_unique<int>(0)), crew::submit_status::accepted);
    EXPECT_TRUE(eventually([&] { return started.load() == 1; }));
    EXPECT_EQ(pool->try_submit(std::make_unique<int>(1)), crew::submit_status::accepted);
  }
  full_pool(const full_pool&) = delete;
  full_pool& operator=(const full_pool&) = delete;
  ~full_pool() {
    release.open();
    pool.reset();
  }
  gate release;
  std::atomic<int> started{0};
  std::atomic<int> ran{0};
  std::atomic<long> sum{0};
  std::unique_ptr<crew::worker_pool<job>> pool;
};

}  // namespace crew_test
