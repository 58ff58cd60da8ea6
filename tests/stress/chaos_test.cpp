// A randomized chaos harness for crew::worker_pool. Each run draws a pool configuration and a
// mix of operations from a seed, drives the pool from several producer threads with every
// submit form and policy (single, bulk, timed, cancellable, from inside handlers), wait_idle
// callers, a stats reader and a canceller, with handlers that throw (std and non-std), sleep,
// recurse deeply and recycle their worker, and ends with a racing shutdown of a random mode,
// sometimes from several threads at once. It then checks DESIGN.md's invariants job by job.
// The same harness drives a crew::task_pool (the task variant): each job is then a closure that
// owns it, so the accounting is the same code, and "a refused closure is not moved from" is
// checked on every refusal.
//
// Environment (small defaults for CI):
//   CREW_STRESS_SEED     base seed (default: random); run i uses seed_i, and run 0 uses the
//                        base seed itself, so a failing run is replayed with
//                        CREW_STRESS_SEED=<its seed> (the configuration and each thread's
//                        sequence of operations repeat; the interleaving does not).
//   CREW_STRESS_SECONDS  how long to keep starting runs (default 8; 3 under sanitizers).
//   CREW_TEST_SCALE      multiplies the jobs per run (crew_test::scaled).

#include <crew/task.hpp>
#include <crew/worker_pool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "stress/watchdog.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::overflow_policy;
using crew::recycle_mode;
using crew::shutdown_mode;
using crew::submit_status;
using clock_type = std::chrono::steady_clock;

constexpr std::uint32_t canary_live = 0xC0FFEE11;
constexpr std::uint32_t canary_moved = 0x0DDBA11;

// A job that carries its id and a canary; moving from it marks the source, so a job the pool
// did not accept can be checked for "not moved from".
struct job {
  explicit job(std::uint64_t i) noexcept : id(i) {}
  job(job&& o) noexcept : id(o.id), canary(o.canary) { o.canary = canary_moved; }
  job& operator=(job&& o) noexcept {
    id = o.id;
    canary = o.canary;
    o.canary = canary_moved;
    return *this;
  }
  job(const job&) = delete;
  job& operator=(const job&) = delete;
  ~job() = default;
  std::uint64_t id;
  std::uint32_t canary = canary_live;
};

struct non_std_error {
  int code;
};

std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 0) : fallback;
}

double env_seconds() {
  if (const char* v = std::getenv("CREW_STRESS_SECONDS")) {
    const double s = std::strtod(v, nullptr);
    if (s > 0) return s;
  }
  return (crew_test::under_tsan || crew_test::under_asan) ? 3.0 : 8.0;
}

[[gnu::noinline]] unsigned recurse(unsigned depth) {
  volatile char pad[96];
  pad[0] = static_cast<char>(depth);
  pad[95] = pad[0];
  if (depth == 0) return static_cast<unsigned char>(pad[95]);
  return recurse(depth - 1) + static_cast<unsigned char>(pad[95]);
}

struct config {
  std::uint64_t seed = 0;
  std::size_t workers = 1;
  std::size_t capacity = 1;
  overflow_policy policy = overflow_policy::block;
  std::uint64_t recycle_after = 0;
  recycle_mode recycle = recycle_mode::respawn;
  std::size_t stack_size = 0;
  std::size_t recycle_stack_limit = 0;
  bool track_latency = false;
  bool with_on_error = true;
  int producers = 2;
  std::uint64_t max_ids = 1000;
  std::chrono::milliseconds run_for{50};
  int shutdown_threads = 1;
  // Elastic runs (issue 12): grow from min_workers, expire idle workers after idle_ms, racing
  // submits and every shutdown mode. -1: a fixed pool.
  int min_workers = -1;
  int idle_ms = 0;

  static config draw(std::uint64_t seed) {
    std::mt19937_64 r(seed);
    auto pick = [&](std::uint64_t n) { return r() % n; };
    config c;
    c.seed = seed;
    c.workers = 1 + pick(4);
    const std::size_t caps[] = {1, 2, 4, 8, 16, 64, 256};
    c.capacity = caps[pick(7)];
    c.policy = static_cast<overflow_policy>(pick(3));
    const std::uint64_t recycles[] = {0, 1, 2, 5, 20, 100};
    c.recycle_after = recycles[pick(6)];
    c.recycle = pick(2) == 0 ? recycle_mode::respawn : recycle_mode::trim;
    c.stack_size = pick(3) == 0 ? std::size_t{1} << 20 : 0;
    c.recycle_stack_limit = pick(4) == 0 ? 64 * 1024 : 0;
    c.track_latency = pick(2) == 0;
    c.with_on_error = pick(4) != 0;
    c.producers = 1 + static_cast<int>(pick(4));
    c.max_ids = crew_test::scaled(20'000) / (1 + pick(4));
    c.run_for = std::chrono::milliseconds(10 + pick(150));
    c.shutdown_threads = pick(3) == 0 ? 2 + static_cast<int>(pick(2)) : 1;
    if (pick(2) == 0) {
      c.min_workers = static_cast<int>(pick(c.workers + 1));
      c.idle_ms = static_cast<int>(pick(3));
    }
    return c;
  }

  std::string describe() const {
    char buf[460];
    std::snprintf(buf, sizeof buf,
                  "seed=%llu workers=%zu capacity=%zu on_full=%s recycle_after=%llu recycle=%s "
                  "stack=%zu stack_limit=%zu latency=%d producers=%d ids=%llu run=%lldms "
                  "shutdowners=%d min_workers=%d idle=%dms",
                  static_cast<unsigned long long>(seed), workers, capacity,
                  std::string(crew::to_string(policy)).c_str(),
                  static_cast<unsigned long long>(recycle_after),
                  std::string(crew::to_string(recycle)).c_str(), stack_size, recycle_stack_limit,
                  track_latency ? 1 : 0, producers, static_cast<unsigned long long>(max_ids),
                  static_cast<long long>(run_for.count()), shutdown_threads, min_workers, idle_ms);
    return buf;
  }
};

struct totals {
  std::uint64_t runs = 0, executed = 0, handed_back = 0, dropped = 0, refused = 0,
                shutdown_calls = 0, racing_shutdowns = 0, recycled = 0, thrown = 0;
};

template <class Variant>
class harness;

// The worker_pool variant: jobs are submitted as they are.
struct job_variant {
  static constexpr const char* name = "worker_pool";
  using item = job;  // what a producer submits
  using pool_type = crew::worker_pool<job, std::function<void(job&&, std::stop_token)>>;
  using value_type = job;  // what the pool stores and hands back
  static item wrap(harness<job_variant>* /*h*/, job&& j) { return std::move(j); }
  static job& inner(item& i) { return i; }
  static void release(item& /*i*/) {}
  static pool_type make(harness<job_variant>& h, crew::pool_options<job>&& o);
  static void on_drop(harness<job_variant>& h, job&& j);
  // Counts the report's hand-back per job id.
  static void account(harness<job_variant>& h, crew::shutdown_report<job>& rep);
};

// The task_pool variant: a job travels inside a closure (job_call) that owns it and runs the
// harness's handler when called. A job_call destroyed without having run, still owning its job,
// was handed back (in a report) or dropped (inside on_drop): its destructor counts it.
struct task_variant {
  static constexpr const char* name = "task_pool";
  class job_call {
   public:
    job_call(harness<task_variant>* h, job&& j) noexcept : h_(h), j_(std::move(j)) {}
    job_call(job_call&& o) noexcept : h_(o.h_), j_(std::move(o.j_)) {}
    job_call(const job_call&) = delete;
    job_call& operator=(const job_call&) = delete;
    job_call& operator=(job_call&&) = delete;
    ~job_call();
    void operator()();  // the harness's handler (tasks get no stop token)
    job& inner() noexcept { return j_; }
    // The producer's own closure, checked after its submit: its destructor must count nothing.
    void release() noexcept { h_ = nullptr; }

   private:
    harness<task_variant>* h_;
    job j_;
  };
  using item = job_call;
  using pool_type = crew::task_pool;
  using value_type = crew::task;
  static item wrap(harness<task_variant>* h, job&& j) { return {h, std::move(j)}; }
  static job& inner(item& i) { return i.inner(); }
  static void release(item& i) { i.release(); }
  static pool_type make(harness<task_variant>& h, crew::pool_options<crew::task>&& o);
  static void on_drop(harness<task_variant>& h, crew::task&& t);
  // Destroys the report's tasks: each job_call counts its job as handed back.
  static void account(harness<task_variant>& h, crew::shutdown_report<crew::task>& rep);
  // Set while on_drop destroys a dropped task, so its job_call counts a drop.
  static inline thread_local bool dropping = false;
};

// Everything one run observes. Per-id counters are the ground truth the pool is checked against.
template <class Variant>
class harness {
 public:
  explicit harness(const config& c)
      : c_(c), runs_(c.max_ids), handed_(c.max_ids), dropped_(c.max_ids), accepted_(c.max_ids) {}

  using pool_type = typename Variant::pool_type;
  using item = typename Variant::item;
  using value_type = typename Variant::value_type;

  // Records a violation (from any thread); the first few are printed with the seed.
  void fail(const std::string& what) {
    const auto n = failures_.fetch_add(1);
    if (n < 20) {
      std::lock_guard lock(log_mutex_);
      messages_ += "  " + what + "\n";
    }
  }
  void expect(bool ok, const char* what, std::uint64_t id) {
    if (!ok) fail(std::string(what) + " (job " + std::to_string(id) + ")");
  }

  bool take_ids(std::uint64_t n, std::uint64_t& first) {
    first = next_id_.fetch_add(n, std::memory_order_relaxed);
    return first + n <= c_.max_ids;
  }

  void handler(job&& j, std::stop_token token) {
    expect(j.canary == canary_live, "handler got a moved-from or corrupt job", j.id);
    if (j.id >= c_.max_ids) {
      fail("handler got an unknown id " + std::to_string(j.id));
      return;
    }
    invoked_.fetch_add(1, std::memory_order_relaxed);
    expect(runs_[j.id].fetch_add(1, std::memory_order_relaxed) == 0, "job ran twice", j.id);
    const std::uint64_t kind = mix(j.id ^ c_.seed) % 1000;
    if (kind < 20) {
      thrown_.fetch_add(1, std::memory_order_relaxed);
      throw std::runtime_error("chaos");
    } else if (kind < 35) {
      thrown_.fetch_add(1, std::memory_order_relaxed);
      throw non_std_error{static_cast<int>(j.id)};
    } else if (kind < 40) {
      thrown_.fetch_add(1, std::memory_order_relaxed);
      throw 7;
    } else if (kind < 50) {
      // Sleeps up to ~2 ms in slices, leaving early when asked to stop.
      for (std::uint64_t i = 0; i < kind - 39 && !token.stop_requested(); ++i) {
        std::this_thread::sleep_for(200us);
      }
    } else if (kind < 65) {
      const unsigned depth = 200 + static_cast<unsigned>(mix(j.id) % 1800);
      if (recurse(depth) == 12345678U) fail("impossible");
    } else if (kind < 90) {
      // Re-entrant submits from the worker: never wait, whatever the form.
      std::uint64_t id = 0;
      if (pool_ != nullptr && take_ids(1, id)) {
        item child = Variant::wrap(this, job(id));
        const submit_status s = kind < 75   ? pool_->try_submit(std::move(child))
                                : kind < 82 ? pool_->submit(std::move(child))
                                            : pool_->submit_for(std::move(child), 1ms);
        record_single(s, Variant::inner(child), id, kind < 75 ? 'T' : kind < 82 ? 'S' : 'F', true);
        Variant::release(child);
      }
    }
  }

  // Checks and counts the outcome of one single-job submit. form: S submit, T try_submit,
  // F submit_for/until, C submit(job, token).
  void record_single(submit_status s, const job& j, std::uint64_t id, char form, bool in_worker) {
    bool allowed = s == submit_status::accepted || s == submit_status::closed;
    switch (form) {
      case 'T': allowed = allowed || s == submit_status::rejected; break;
      case 'F': allowed = allowed || s == submit_status::timed_out; break;
      case 'C': allowed = allowed || s == submit_status::cancelled; break;
      case 'S':
        allowed = allowed ||
                  (c_.policy == overflow_policy::reject && s == submit_status::rejected) ||
                  (c_.policy == overflow_policy::drop && s == submit_status::dropped);
        break;
      default: break;
    }
    // From a worker of the pool, a waiting form finding the queue full returns rejected.
    if (in_worker && form != 'T') allowed = allowed || s == submit_status::rejected;
    if (!allowed)
      fail(std::string("unexpected status ") + std::string(crew::to_string(s)) + " from form " +
           form + " (job " + std::to_string(id) + ")");
    switch (s) {
      case submit_status::accepted:
        expect(j.canary == canary_moved, "accepted job was not moved from", id);
        accepted_[id].store(1, std::memory_order_relaxed);
        n_accepted_.fetch_add(1, std::memory_order_relaxed);
        break;
      case submit_status::dropped:
        expect(j.canary == canary_moved, "dropped job was not moved from", id);
        expect(dropped_[id].load(std::memory_order_relaxed) == 1, "dropped job missed on_drop", id);
        break;
      case submit_status::rejected:
      case submit_status::timed_out:
      case submit_status::cancelled:
        n_refused_.fetch_add(1, std::memory_order_relaxed);
        [[fallthrough]];
      case submit_status::closed:
        expect(j.canary == canary_live && j.id == id, "refused job was moved from", id);
        break;
    }
  }

  void on_drop(job&& j) {
    expect(j.canary == canary_live, "on_drop got a moved-from job", j.id);
    if (j.id < c_.max_ids) {
      expect(dropped_[j.id].fetch_add(1, std::memory_order_relaxed) == 0, "job dropped twice",
             j.id);
    }
    n_dropped_.fetch_add(1, std::memory_order_relaxed);
  }

  // A job that came back unstarted in a shutdown report.
  void handed_back(const job& j) {
    expect(j.canary == canary_live, "handed-back job was moved from", j.id);
    if (j.id >= c_.max_ids) {
      fail("handed back an unknown id");
      return;
    }
    handed_[j.id].fetch_add(1, std::memory_order_relaxed);
  }

  void producer(int index, std::atomic<bool>& stop, std::mutex& cancel_mutex,
                std::stop_source& cancel_source) {
    std::mt19937_64 r(mix(c_.seed ^ (0x100 + static_cast<std::uint64_t>(index))));
    pool_type& pool = *pool_;
    std::vector<item> bulk;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::uint64_t op = r() % 100;
      if (op < 2) {
        pool.wait_idle();
        continue;
      }
      if (op < 6) {
        check_snapshot(pool.stats());
        continue;
      }
      if (op < 18) {
        const std::uint64_t n = 1 + r() % 40;
        std::uint64_t first = 0;
        if (!take_ids(n, first)) break;
        bulk.clear();
        for (std::uint64_t i = 0; i < n; ++i) bulk.push_back(Variant::wrap(this, job(first + i)));
        const bool try_form = (op & 1) != 0;
        const std::size_t k = try_form ? pool.try_submit_bulk(bulk) : pool.submit_bulk(bulk);
        if (k > n) fail("bulk accepted more than it was given");
        if (k < n && (try_form || c_.policy == overflow_policy::reject)) short_bulks_++;
        for (std::uint64_t i = 0; i < n; ++i) {
          const std::uint64_t id = first + i;
          const job& b = Variant::inner(bulk[i]);
          if (i < k) {
            expect(b.canary == canary_moved, "bulk-accepted job not moved from", id);
            accepted_[id].store(1, std::memory_order_relaxed);
            n_accepted_.fetch_add(1, std::memory_order_relaxed);
          } else if (dropped_[id].load(std::memory_order_relaxed) != 0) {
            expect(!try_form && c_.policy == overflow_policy::drop, "bulk drop under wrong form",
                   id);
            expect(b.canary == canary_moved, "bulk-dropped job not moved from", id);
          } else {
            expect(b.canary == canary_live, "bulk-refused job was moved from", id);
          }
          Variant::release(bulk[i]);
        }
        continue;
      }
      std::uint64_t id = 0;
      if (!take_ids(1, id)) break;
      item j = Variant::wrap(this, job(id));
      submit_status s{};
      char form = 'S';
      if (op < 40) {
        s = pool.submit(std::move(j));
      } else if (op < 55) {
        form = 'T';
        s = pool.try_submit(std::move(j));
      } else if (op < 70) {
        form = 'F';
        const auto t = std::chrono::microseconds(static_cast<long>(r() % 3000)) - 500us;
        s = pool.submit_for(std::move(j), t);
      } else if (op < 80) {
        form = 'F';
        if (r() % 2 == 0) {
          s = pool.submit_until(std::move(j), std::chrono::system_clock::now() - 1s);
        } else {
          s = pool.submit_until(std::move(j),
                                clock_type::now() + std::chrono::microseconds(r() % 2000));
        }
      } else {
        form = 'C';
        std::stop_token token;
        if (r() % 8 == 0) {
          std::stop_source stopped;
          stopped.request_stop();
          token = stopped.get_token();
        } else {
          std::lock_guard lock(cancel_mutex);
          token = cancel_source.get_token();
        }
        s = pool.submit(std::move(j), token);
      }
      record_single(s, Variant::inner(j), id, form, false);
      Variant::release(j);
      if (r() % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(r() % 300));
    }
  }

  // Invariants of any snapshot, from any thread.
  void check_snapshot(const crew::pool_stats& s) {
    if (s.accepted < s.executed + s.handed_back) {
      fail("snapshot: accepted " + std::to_string(s.accepted) + " < executed " +
           std::to_string(s.executed) + " + handed_back " + std::to_string(s.handed_back));
    }
    if (s.worker_limit != c_.workers || s.workers > s.worker_limit) {
      fail("snapshot: wrong worker count");
    }
    if (s.busy > s.workers) fail("snapshot: busy > workers");
  }

  // Runs the whole scenario; returns the number of violations.
  std::uint64_t run(totals& sum, crew_test::watchdog& dog) {
    std::mt19937_64 r(mix(c_.seed ^ 0xABCDEF));
    const long threads_before = crew_test::thread_count();
    std::vector<crew::shutdown_report<value_type>> reports;
    bool drain_only = true;
    crew::pool_stats final_stats;
    std::uint64_t recycled = 0;
    {
      crew::pool_options<value_type> o{
          .workers = c_.workers,
          .queue_capacity = c_.capacity,
          .on_full = c_.policy,
          .recycle_after = c_.recycle_after,
          .recycle = c_.recycle,
          .stack_size = c_.stack_size,
          .recycle_stack_limit = c_.recycle_stack_limit,
          .name = "chaos",
          .on_drop = [this](value_type&& j) { Variant::on_drop(*this, std::move(j)); },
          .on_error = {},
          .track_latency = c_.track_latency};
      if (c_.min_workers >= 0) {
        o.min_workers = static_cast<std::size_t>(c_.min_workers);
        o.idle_timeout = std::chrono::milliseconds(c_.idle_ms);
      }
      if (c_.with_on_error) {
        o.on_error = [this](std::exception_ptr e) {
          on_error_calls_.fetch_add(1, std::memory_order_relaxed);
          if (!e) fail("on_error got a null exception_ptr");
        };
      }
      pool_type pool = Variant::make(*this, std::move(o));
      pool_ = &pool;
      dog.watch(pool);

      std::atomic<bool> stop_producers{false};
      std::atomic<bool> stop_helpers{false};
      std::mutex cancel_mutex;
      std::stop_source cancel_source;
      std::vector<std::thread> threads;
      for (int p = 0; p < c_.producers; ++p) {
        threads.emplace_back([&, p] { producer(p, stop_producers, cancel_mutex, cancel_source); });
      }
      std::thread reader([&] {
        crew::pool_stats prev;
        while (!stop_helpers.load(std::memory_order_relaxed)) {
          const crew::pool_stats s = pool.stats();
          check_snapshot(s);
          if (s.accepted < prev.accepted || s.executed < prev.executed ||
              s.handed_back < prev.handed_back || s.rejected < prev.rejected ||
              s.dropped < prev.dropped || s.recycled < prev.recycled) {
            fail("a counter went backwards between two snapshots");
          }
          for (std::size_t i = 0; i < pool.workers(); ++i) (void)pool.state_of(i);
          (void)pool.is_shut_down();
          prev = s;
          std::this_thread::sleep_for(100us);
        }
      });
      std::thread canceller([&] {
        while (!stop_helpers.load(std::memory_order_relaxed)) {
          std::this_thread::sleep_for(700us);
          std::stop_source old;
          {
            std::lock_guard lock(cancel_mutex);
            old = std::exchange(cancel_source, std::stop_source{});
          }
          old.request_stop();
        }
      });

      std::this_thread::sleep_for(c_.run_for);

      // The racing shutdown: one to three threads, each a random mode, while producers submit.
      std::vector<crew::shutdown_report<value_type>> raced(
          static_cast<std::size_t>(c_.shutdown_threads));
      std::vector<std::thread> closers;
      std::vector<int> modes;
      for (int k = 0; k < c_.shutdown_threads; ++k) {
        const int mode = static_cast<int>(r() % 5);
        if (mode != 0) drain_only = false;
        modes.push_back(mode);
      }
      for (int k = 0; k < c_.shutdown_threads; ++k) {
        closers.emplace_back([&, k] {
          auto& rep = raced[static_cast<std::size_t>(k)];
          switch (modes[static_cast<std::size_t>(k)]) {
            case 0: rep = pool.shutdown(shutdown_mode::drain); break;
            case 1: rep = pool.shutdown(shutdown_mode::abort); break;
            case 2: rep = pool.shutdown_for(std::chrono::microseconds(mix(k) % 3000)); break;
            case 3: rep = pool.shutdown_until(std::chrono::system_clock::now() - 1s); break;
            default: rep = pool.shutdown_for(-1ms); break;
          }
        });
      }
      for (auto& t : closers) t.join();
      stop_producers = true;
      for (auto& t : threads) t.join();
      stop_helpers = true;
      reader.join();
      canceller.join();
      if (!pool.is_shut_down()) fail("is_shut_down() false after shutdown returned");
      for (auto& rep : raced) {
        if (drain_only && rep.still_running != 0) fail("a drain returned with workers running");
        reports.push_back(std::move(rep));
      }
      // Collects hand-backs of workers a deadline shutdown left running, and joins them.
      reports.push_back(pool.shutdown());
      if (reports.back().still_running != 0) fail("final shutdown left workers running");
      if (drain_only && !reports.back().drained) fail("drain-only run did not report drained");
      final_stats = pool.stats();
      recycled = final_stats.recycled;
      dog.unwatch();
      pool_ = nullptr;
    }

    // Per-job accounting.
    std::vector<bool> reported_drained;
    std::vector<bool> reported_empty;
    std::vector<std::size_t> reported_running;
    for (auto& rep : reports) {
      reported_drained.push_back(rep.drained);
      reported_empty.push_back(rep.handed_back.empty());
      reported_running.push_back(rep.still_running);
      Variant::account(*this, rep);
    }
    std::uint64_t ran = 0, back = 0, dropped = 0;
    for (std::uint64_t id = 0; id < c_.max_ids; ++id) {
      const unsigned run_n = runs_[id].load(), back_n = handed_[id].load(),
                     drop_n = dropped_[id].load();
      ran += run_n;
      back += back_n;
      dropped += drop_n;
      if (accepted_[id].load() != 0) {
        expect(run_n + back_n == 1, "accepted job not run or handed back exactly once", id);
        expect(drop_n == 0, "accepted job was also dropped", id);
        if (drain_only) expect(run_n == 1, "accepted job did not run under drain", id);
      } else {
        expect(run_n == 0 && back_n == 0, "a job not accepted ran or came back", id);
        expect(drop_n <= 1, "a job dropped more than once", id);
      }
    }
    // The final shutdown left no worker running (checked above): drained means exactly "nothing
    // came back"; no report may claim drained while it hands jobs back or leaves workers running.
    if (reported_drained.back() != (back == 0)) fail("final report's drained flag is wrong");
    for (std::size_t k = 0; k < reports.size(); ++k) {
      if (reported_drained[k] && (!reported_empty[k] || reported_running[k] != 0)) {
        fail("a report claimed drained with jobs handed back or running");
      }
    }
    const auto eq = [&](const char* what, std::uint64_t pool_says, std::uint64_t we_say) {
      if (pool_says != we_say) {
        fail(std::string("stats().") + what + " = " + std::to_string(pool_says) +
             ", harness counted " + std::to_string(we_say));
      }
    };
    eq("accepted", final_stats.accepted, n_accepted_.load());
    eq("executed", final_stats.executed, ran);
    eq("executed (handler calls)", final_stats.executed, invoked_.load());
    eq("handed_back", final_stats.handed_back, back);
    eq("accepted = executed + handed_back", final_stats.accepted,
       final_stats.executed + final_stats.handed_back);
    eq("dropped", final_stats.dropped, n_dropped_.load());
    eq("dropped (per job)", final_stats.dropped, dropped);
    eq("failed", final_stats.failed, thrown_.load());
    if (c_.with_on_error) eq("failed (on_error calls)", final_stats.failed, on_error_calls_.load());
    if (final_stats.rejected < n_refused_.load() ||
        final_stats.rejected > n_refused_.load() + short_bulks_.load()) {
      fail("stats().rejected = " + std::to_string(final_stats.rejected) + ", harness counted " +
           std::to_string(n_refused_.load()) + " refusals and " +
           std::to_string(short_bulks_.load()) + " short bulks");
    }
    if (final_stats.queue_depth != 0 || final_stats.busy != 0) fail("work left after shutdown");
    if (c_.recycle_after == 0 && recycled != 0) fail("recycled with recycle_after = 0");
    if (!crew_test::eventually([&] { return crew_test::thread_count() <= threads_before; }, 10s)) {
      fail("threads alive after destruction: " + std::to_string(crew_test::thread_count()) +
           " vs " + std::to_string(threads_before) + " before");
    }

    sum.runs++;
    sum.executed += ran;
    sum.handed_back += back;
    sum.dropped += dropped;
    sum.refused += n_refused_.load();
    sum.shutdown_calls += static_cast<std::uint64_t>(c_.shutdown_threads);
    sum.racing_shutdowns += c_.shutdown_threads > 1 ? 1 : 0;
    sum.recycled += recycled;
    sum.thrown += thrown_.load();
    std::printf(
        "chaos run (%s) seed=%llu: executed=%llu handed_back=%llu dropped=%llu refused=%llu "
        "shutdowns=%d recycled=%llu thrown=%llu\n",
        Variant::name, static_cast<unsigned long long>(c_.seed),
        static_cast<unsigned long long>(ran), static_cast<unsigned long long>(back),
        static_cast<unsigned long long>(dropped),
        static_cast<unsigned long long>(n_refused_.load()), c_.shutdown_threads,
        static_cast<unsigned long long>(recycled), static_cast<unsigned long long>(thrown_.load()));
    return failures_.load();
  }

  std::string messages() {
    std::lock_guard lock(log_mutex_);
    return messages_;
  }

 private:
  config c_;
  pool_type* pool_ = nullptr;
  std::vector<std::atomic<std::uint8_t>> runs_, handed_, dropped_, accepted_;
  std::atomic<std::uint64_t> next_id_{0};
  std::atomic<std::uint64_t> invoked_{0}, thrown_{0}, on_error_calls_{0}, n_accepted_{0},
      n_dropped_{0}, n_refused_{0}, short_bulks_{0};
  std::atomic<std::uint64_t> failures_{0};
  std::mutex log_mutex_;
  std::string messages_;
};

job_variant::pool_type job_variant::make(harness<job_variant>& h, crew::pool_options<job>&& o) {
  return pool_type{[&h](job&& j, std::stop_token t) { h.handler(std::move(j), std::move(t)); },
                   std::move(o)};
}
void job_variant::on_drop(harness<job_variant>& h, job&& j) { h.on_drop(std::move(j)); }
void job_variant::account(harness<job_variant>& h, crew::shutdown_report<job>& rep) {
  for (const job& j : rep.handed_back) h.handed_back(j);
}

task_variant::job_call::~job_call() {
  // Moved from, run (the handler took the job), or the producer's own after its submit.
  if (h_ == nullptr || j_.canary != canary_live) return;
  if (dropping) {
    h_->on_drop(std::move(j_));
  } else {
    h_->handed_back(j_);
  }
}
void task_variant::job_call::operator()() {
  job taken(std::move(j_));  // leaves the closure's job moved from: its destructor counts nothing
  h_->handler(std::move(taken), std::stop_token{});
}
task_variant::pool_type task_variant::make(harness<task_variant>& /*h*/,
                                           crew::pool_options<crew::task>&& o) {
  return pool_type{std::move(o)};
}
void task_variant::on_drop(harness<task_variant>& /*h*/, crew::task&& t) {
  dropping = true;
  { const crew::task dropped(std::move(t)); }
  dropping = false;
}
void task_variant::account(harness<task_variant>& /*h*/, crew::shutdown_report<crew::task>& rep) {
  rep.handed_back.clear();
}

// Starts runs for `seconds`; returns after the first run with violations.
template <class Variant>
void chaos_runs(double seconds) {
  crew_test::start_sanitizer_threads();
  const std::uint64_t base = env_u64(
      "CREW_STRESS_SEED", std::random_device{}() ^ (std::uint64_t{std::random_device{}()} << 32));
  std::printf("chaos (%s): base seed %llu (CREW_STRESS_SEED), %.1f s (CREW_STRESS_SECONDS)\n",
              Variant::name, static_cast<unsigned long long>(base), seconds);
  const auto end = clock_type::now() + std::chrono::duration<double>(seconds);
  totals sum;
  const auto budget = std::chrono::milliseconds(crew_test::under_tsan ? 180'000 : 90'000);
  for (std::uint64_t i = 0; i == 0 || clock_type::now() < end; ++i) {
    const std::uint64_t seed = i == 0 ? base : mix(base + i);
    const config c = config::draw(seed);
    crew_test::watchdog dog{budget, "chaos run " + c.describe() + "\n  reproduce with " +
                                        "CREW_STRESS_SEED=" + std::to_string(seed)};
    harness<Variant> h(c);
    const std::uint64_t failures = h.run(sum, dog);
    EXPECT_EQ(failures, 0U) << "invariant violations in chaos run " << c.describe() << "\n"
                            << h.messages() << "reproduce with CREW_STRESS_SEED=" << seed
                            << " (configuration and operations repeat; the interleaving does not)";
    if (failures != 0) break;
  }
  std::printf(
      "chaos summary: runs=%llu executed=%llu handed_back=%llu dropped=%llu "
      "refused=%llu shutdown_calls=%llu multi_thread_shutdown_races=%llu recycled=%llu "
      "exceptions=%llu\n",
      static_cast<unsigned long long>(sum.runs), static_cast<unsigned long long>(sum.executed),
      static_cast<unsigned long long>(sum.handed_back),
      static_cast<unsigned long long>(sum.dropped), static_cast<unsigned long long>(sum.refused),
      static_cast<unsigned long long>(sum.shutdown_calls),
      static_cast<unsigned long long>(sum.racing_shutdowns),
      static_cast<unsigned long long>(sum.recycled), static_cast<unsigned long long>(sum.thrown));
}

TEST(Chaos, RandomizedRunsKeepEveryInvariant) { chaos_runs<job_variant>(env_seconds()); }

// The task variant gets half the time: the pool underneath is the same.
TEST(Chaos, RandomizedTaskPoolRunsKeepEveryInvariant) {
  chaos_runs<task_variant>(env_seconds() / 2);
}

}  // namespace
