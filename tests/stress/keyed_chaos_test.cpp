// A randomized chaos harness for crew::keyed_pool, modelled on chaos_test.cpp (the worker_pool
// harness). Each run draws from a seed a pool configuration (1-4 workers, capacity, 1-64 keys,
// sometimes under a hash that collides, key_budget, max_per_key, policy, recycling) and a mix of
// operations; several producer threads submit with every form (submit, try_submit, submit_for,
// submit_until, the stop-token submit, submit_bulk, try_submit_bulk; handlers submit too), while
// handlers throw, sleep and recurse, a stats reader, wait_idle callers and a canceller run; a
// racing shutdown of a random mode (drain, abort, deadline), sometimes from several threads at
// once, ends the run. Then DESIGN.md's "Keyed pools" contract is checked job by job.
//
// How per-key order is checked without knowing the pool's acceptance order: every submitting
// thread is a "lane" (producers, and each worker thread that submits from a handler); its
// submits are in program order, so per (key, lane) the jobs must run in increasing id order, and
// a job's submit begins after every submit whose acceptance its thread has seen. Each job carries
// that knowledge: `after[lane]` = (id + 1) of the latest job of its key that `lane` had been told
// was accepted when this job's submit began (published with release/acquire). Those jobs are
// ahead of it in its key's FIFO, so when it runs they must have run, and when it is handed back
// they must have run or come before it in the hand-back. The per-key state the handlers write
// for these checks is plain (not atomic): the pool must order one key's jobs, and TSan checks
// the edges.
//
// Environment (small defaults for CI), as chaos_test.cpp:
//   CREW_STRESS_SEED     base seed (default: random); run i uses seed_i, and run 0 uses the
//                        base seed itself, so a failing run is replayed with
//                        CREW_STRESS_SEED=<its seed> (the configuration and each thread's
//                        sequence of operations repeat; the interleaving does not).
//   CREW_STRESS_SECONDS  how long to keep starting runs (default 8; 3 under sanitizers).
//   CREW_TEST_SCALE      multiplies the jobs per run (crew_test::scaled).

#include <crew/keyed_pool.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
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
#include <utility>
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
constexpr std::size_t max_lanes = 12;   // submitting threads whose order is checked
constexpr std::uint8_t no_lane = 0xFF;  // a thread beyond them: accounted, order not checked
constexpr std::uint32_t max_keys = 64;

// Stateless mixing of a seed (one step of splitmix64 from `x`).
std::uint64_t mix(std::uint64_t x) { return crew::detail::splitmix64(x); }

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

struct non_std_error {
  int code;
};

// A job: its id, its key's index, the lane that submitted it and what that lane knew (see the
// top of the file), and a canary that moving from it marks, so a job the pool did not accept can
// be checked for "not moved from".
struct job {
  job(std::uint32_t i, std::uint32_t k, std::uint8_t l) noexcept : id(i), key(k), lane(l) {}
  job(job&& o) noexcept : id(o.id), key(o.key), lane(o.lane), after(o.after), canary(o.canary) {
    o.canary = canary_moved;
  }
  job& operator=(job&& o) noexcept {
    id = o.id;
    key = o.key;
    lane = o.lane;
    after = o.after;
    canary = o.canary;
    o.canary = canary_moved;
    return *this;
  }
  job(const job&) = delete;
  job& operator=(const job&) = delete;
  ~job() = default;
  std::uint32_t id;
  std::uint32_t key;
  std::uint8_t lane;
  std::array<std::uint32_t, max_lanes> after{};
  std::uint32_t canary = canary_live;
};

// The pool's Hash: std::hash, one bucket for every key (only KeyEqual tells them apart), or four.
struct chaos_hash {
  int mode = 0;
  std::size_t operator()(const std::string& k) const noexcept {
    const std::size_t h = std::hash<std::string>{}(k);
    return mode == 1 ? 42 : mode == 2 ? (h & 3U) : h;
  }
};

struct config {
  std::uint64_t seed = 0;
  std::size_t workers = 1;
  std::size_t capacity = 1;
  overflow_policy policy = overflow_policy::block;
  std::uint64_t recycle_after = 0;
  recycle_mode recycle = recycle_mode::respawn;
  std::uint32_t keys = 1;
  int hash_mode = 0;
  std::size_t key_budget = 16;
  std::size_t max_per_key = 0;
  unsigned hot_percent = 0;  // share of submits that go to key 0
  bool track_latency = false;
  bool with_on_error = true;
  int producers = 2;
  std::uint32_t max_ids = 1000;
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
    const std::uint64_t recycles[] = {0, 0, 1, 2, 5, 20, 100};
    c.recycle_after = recycles[pick(7)];
    c.recycle = pick(2) == 0 ? recycle_mode::respawn : recycle_mode::trim;
    const std::uint32_t key_counts[] = {1, 2, 3, 5, 8, 16, 64, 0};
    c.keys = key_counts[pick(8)];
    if (c.keys == 0) c.keys = 1 + static_cast<std::uint32_t>(pick(max_keys));
    const std::uint64_t h = pick(10);
    c.hash_mode = h < 6 ? 0 : h < 8 ? 1 : 2;
    const std::size_t budgets[] = {1, 2, 3, 16, 64};
    c.key_budget = budgets[pick(5)];
    const std::size_t per_key[] = {1, 2, 3, 5};
    c.max_per_key = pick(2) == 0 ? 0 : per_key[pick(4)];
    c.hot_percent = pick(3) == 0 ? 30 + static_cast<unsigned>(pick(60)) : 0;
    c.track_latency = pick(2) == 0;
    c.with_on_error = pick(4) != 0;
    c.producers = 1 + static_cast<int>(pick(4));
    c.max_ids = static_cast<std::uint32_t>(crew_test::scaled(20'000) / (1 + pick(4)));
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
                  "keys=%u hash=%s key_budget=%zu max_per_key=%zu hot=%u%% latency=%d "
                  "producers=%d ids=%u run=%lldms shutdowners=%d min_workers=%d idle=%dms",
                  static_cast<unsigned long long>(seed), workers, capacity,
                  std::string(crew::to_string(policy)).c_str(),
                  static_cast<unsigned long long>(recycle_after),
                  std::string(crew::to_string(recycle)).c_str(), keys,
                  hash_mode == 0   ? "std"
                  : hash_mode == 1 ? "one-bucket"
                                   : "four-buckets",
                  key_budget, max_per_key, hot_percent, track_latency ? 1 : 0, producers, max_ids,
                  static_cast<long long>(run_for.count()), shutdown_threads, min_workers, idle_ms);
    return buf;
  }
};

struct totals {
  std::uint64_t runs = 0, executed = 0, handed_back = 0, dropped = 0, refused = 0,
                shutdown_calls = 0, racing_shutdowns = 0, recycled = 0, thrown = 0,
                child_submits = 0, ordered_checks = 0;
};

// Tells each run's lanes apart from the previous run's (thread_local lanes, see lane()).
std::atomic<std::uint64_t> run_generation{0};

// Everything one run observes. Per-id counters are the ground truth the pool is checked against.
class harness {
 public:
  using handler_type = std::function<void(job&&, std::stop_token)>;
  using pool_type = crew::keyed_pool<std::string, job, handler_type, chaos_hash>;

  explicit harness(const config& c)
      : c_(c),
        generation_(run_generation.fetch_add(1) + 1),
        runs_(c.max_ids),
        handed_(c.max_ids),
        dropped_(c.max_ids),
        accepted_(c.max_ids),
        keys_(c.keys),
        next_lane_(static_cast<std::size_t>(c.producers)) {
    for (std::uint32_t k = 0; k < c.keys; ++k) {
      // Half the keys are long enough to live on the heap: ASan sees the table's key copies.
      names_.push_back(k % 2 == 0 ? "k" + std::to_string(k)
                                  : "a-key-name-too-long-for-the-small-string-buffer-" +
                                        std::to_string(k));
    }
  }

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

  bool take_ids(std::uint32_t n, std::uint32_t& first) {
    first = next_id_.fetch_add(n, std::memory_order_relaxed);
    return first + static_cast<std::uint64_t>(n) <= c_.max_ids;
  }

  // A worker thread's lane in this run (assigned on its first submit; producers have lanes
  // 0 .. producers-1), or no_lane.
  std::uint8_t lane() {
    thread_local std::uint64_t generation = 0;
    thread_local std::uint8_t mine = no_lane;
    if (generation != generation_) {
      generation = generation_;
      const std::size_t l = next_lane_.fetch_add(1, std::memory_order_relaxed);
      mine = l < max_lanes ? static_cast<std::uint8_t>(l) : no_lane;
    }
    return mine;
  }

  std::uint32_t pick_key(std::uint64_t x) const {
    if (c_.hot_percent != 0 && x % 100 < c_.hot_percent) return 0;
    return static_cast<std::uint32_t>((x >> 8) % c_.keys);
  }

  // What the submitting thread knows was accepted under `key` (see the top of the file).
  std::array<std::uint32_t, max_lanes> snapshot(std::uint32_t key) const {
    std::array<std::uint32_t, max_lanes> a{};
    for (std::size_t l = 0; l < max_lanes; ++l) {
      a[l] = keys_[key].acked[l].load(std::memory_order_acquire);
    }
    return a;
  }
  void ack(std::uint32_t key, std::uint8_t lane, std::uint32_t id) {
    if (lane != no_lane) keys_[key].acked[lane].store(id + 1, std::memory_order_release);
  }

  void handler(job&& j, std::stop_token token) {
    expect(j.canary == canary_live, "handler got a moved-from or corrupt job", j.id);
    if (j.id >= c_.max_ids || j.key >= c_.keys) {
      fail("handler got an unknown id " + std::to_string(j.id) + " or key " +
           std::to_string(j.key));
      return;
    }
    invoked_.fetch_add(1, std::memory_order_relaxed);
    expect(runs_[j.id].fetch_add(1, std::memory_order_relaxed) == 0, "job ran twice", j.id);
    key_state& k = keys_[j.key];
    // Exclusion: no other job of this key is inside its handler.
    const int before = k.inside.fetch_add(1, std::memory_order_acq_rel);
    if (before != 0) {
      fail("two jobs of key " + std::to_string(j.key) + " ran at once (job " +
           std::to_string(j.id) + ")");
    }
    int seen = k.max_inside.load(std::memory_order_relaxed);
    while (before + 1 > seen && !k.max_inside.compare_exchange_weak(seen, before + 1)) {
    }
    const int running = all_inside_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (static_cast<std::size_t>(running) > c_.workers) fail("more jobs running than workers");
    struct leave {
      harness* h;
      key_state* k;
      ~leave() {
        h->all_inside_.fetch_sub(1, std::memory_order_relaxed);
        k->inside.fetch_sub(1, std::memory_order_acq_rel);
      }
    } const guard{this, &k};
    // Order: every job its submitter knew was accepted under this key has run (plain reads and
    // writes: the pool orders the jobs of one key), and per lane the ids increase.
    for (std::size_t l = 0; l < max_lanes; ++l) {
      if (k.last_run[l] < j.after[l]) {
        fail("key " + std::to_string(j.key) + ": job " + std::to_string(j.id) + " ran before job " +
             std::to_string(j.after[l] - 1) + " of its key, accepted before its submit began");
      }
    }
    if (j.lane != no_lane) {
      if (k.last_run[j.lane] >= j.id + 1) {
        fail("key " + std::to_string(j.key) + ": job " + std::to_string(j.id) + " of lane " +
             std::to_string(j.lane) + " ran after the lane's later job " +
             std::to_string(k.last_run[j.lane] - 1));
      }
      k.last_run[j.lane] = j.id + 1;
      ordered_.fetch_add(1, std::memory_order_relaxed);
    }
    ++k.ran;
    const std::uint64_t kind = mix(j.id ^ c_.seed) % 1000;
    if (kind < 20) {
      thrown_.fetch_add(1, std::memory_order_relaxed);
      throw std::runtime_error("chaos");
    } else if (kind < 30) {
      thrown_.fetch_add(1, std::memory_order_relaxed);
      throw non_std_error{static_cast<int>(j.id)};
    } else if (kind < 35) {
      thrown_.fetch_add(1, std::memory_order_relaxed);
      throw 7;
    } else if (kind < 45) {
      // Sleeps up to ~2 ms in slices, leaving early when asked to stop: its key waits meanwhile.
      for (std::uint64_t i = 0; i < kind - 34 && !token.stop_requested(); ++i) {
        std::this_thread::sleep_for(200us);
      }
    } else if (kind < 55) {
      const unsigned depth = 200 + static_cast<unsigned>(mix(j.id) % 1800);
      if (recurse(depth) == 12345678U) fail("impossible");
    } else if (kind < 100 && pool_ != nullptr) {
      child_submit(j, kind);
    }
  }

  // Re-entrant submits from the worker (never wait, whatever the form): under the running job's
  // own key a third of the time.
  void child_submit(const job& parent, std::uint64_t kind) {
    pool_type& pool = *pool_;
    const std::uint64_t x = mix(parent.id + 0x51);
    const std::uint32_t key = x % 3 == 0 ? parent.key : pick_key(x >> 4);
    const std::uint8_t me = lane();
    children_.fetch_add(1, std::memory_order_relaxed);
    if (kind >= 90) {
      const std::uint32_t n = 1 + static_cast<std::uint32_t>(x % 3);
      bulk_submit(pool, key, n, kind % 2 == 0, me);
      return;
    }
    std::uint32_t id = 0;
    if (!take_ids(1, id)) return;
    job child(id, key, me);
    child.after = snapshot(key);
    const bool was_shut = shut_.load(std::memory_order_acquire);
    const char form = kind < 65 ? 'T' : kind < 75 ? 'S' : kind < 82 ? 'F' : 'C';
    submit_status s{};
    switch (form) {
      case 'T': s = pool.try_submit(names_[key], std::move(child)); break;
      case 'S': s = pool.submit(names_[key], std::move(child)); break;
      case 'F': s = pool.submit_for(names_[key], std::move(child), 1ms); break;
      default: {
        std::stop_source never;
        s = pool.submit(names_[key], std::move(child), never.get_token());
        break;
      }
    }
    record_single(s, child, id, key, me, form, true, was_shut);
  }

  // Checks and counts the outcome of one single-job submit. form: S submit, T try_submit,
  // F submit_for/until, C submit(key, job, token).
  void record_single(submit_status s, const job& j, std::uint32_t id, std::uint32_t key,
                     std::uint8_t me, char form, bool in_worker, bool was_shut) {
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
    // From a worker of the pool, a waiting form finding no room returns rejected.
    if (in_worker && form != 'T') allowed = allowed || s == submit_status::rejected;
    if (!allowed) {
      fail(std::string("unexpected status ") + std::string(crew::to_string(s)) + " from form " +
           form + (in_worker ? " in a worker" : "") + " (job " + std::to_string(id) + ")");
    }
    if (was_shut && s != submit_status::closed) {
      fail(std::string("a submit begun after a shutdown returned got ") +
           std::string(crew::to_string(s)) + " (job " + std::to_string(id) + ")");
    }
    switch (s) {
      case submit_status::accepted:
        expect(j.canary == canary_moved, "accepted job was not moved from", id);
        accepted_[id].store(1, std::memory_order_relaxed);
        n_accepted_.fetch_add(1, std::memory_order_relaxed);
        ack(key, me, id);
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

  // One bulk submit of n fresh jobs under `key`; checks the accepted prefix and the canaries.
  void bulk_submit(pool_type& pool, std::uint32_t key, std::uint32_t n, bool try_form,
                   std::uint8_t me) {
    std::uint32_t first = 0;
    if (!take_ids(n, first)) return;
    std::vector<job> bulk;
    bulk.reserve(n);  // no reallocation: moves would mark the canaries
    const auto known = snapshot(key);
    for (std::uint32_t i = 0; i < n; ++i) {
      bulk.emplace_back(first + i, key, me);
      bulk.back().after = known;
    }
    const bool was_shut = shut_.load(std::memory_order_acquire);
    const std::size_t k =
        try_form ? pool.try_submit_bulk(names_[key], bulk) : pool.submit_bulk(names_[key], bulk);
    if (k > n) fail("bulk accepted more than it was given");
    if (was_shut && k != 0) fail("a bulk begun after a shutdown returned was accepted");
    if (k < n) short_bulks_.fetch_add(1, std::memory_order_relaxed);
    std::uint32_t dropped_here = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::uint32_t id = first + i;
      if (i < k) {
        expect(bulk[i].canary == canary_moved, "bulk-accepted job not moved from", id);
        accepted_[id].store(1, std::memory_order_relaxed);
        n_accepted_.fetch_add(1, std::memory_order_relaxed);
      } else if (dropped_[id].load(std::memory_order_relaxed) != 0) {
        ++dropped_here;
        expect(!try_form && c_.policy == overflow_policy::drop, "bulk drop under wrong form", id);
        expect(bulk[i].canary == canary_moved, "bulk-dropped job not moved from", id);
      } else {
        expect(bulk[i].canary == canary_live, "bulk-refused job was moved from", id);
      }
    }
    // Under drop, a bulk that stops early drops all the rest (or none: it stopped at closed).
    if (dropped_here != 0 && dropped_here != n - k) {
      fail("a bulk under drop dropped only part of its unaccepted tail");
    }
    if (k != 0) ack(key, me, first + static_cast<std::uint32_t>(k) - 1);
  }

  void on_drop(job&& j) {
    expect(j.canary == canary_live, "on_drop got a moved-from job", j.id);
    if (j.id < c_.max_ids) {
      expect(dropped_[j.id].fetch_add(1, std::memory_order_relaxed) == 0, "job dropped twice",
             j.id);
    }
    n_dropped_.fetch_add(1, std::memory_order_relaxed);
  }

  void producer(int index, std::atomic<bool>& stop, std::mutex& cancel_mutex,
                std::stop_source& cancel_source) {
    std::mt19937_64 r(mix(c_.seed ^ (0x100 + static_cast<std::uint64_t>(index))));
    pool_type& pool = *pool_;
    const auto me = static_cast<std::uint8_t>(index);
    while (!stop.load(std::memory_order_relaxed)) {
      const std::uint64_t op = r() % 100;
      if (op < 2) {
        pool.wait_idle();
        continue;
      }
      if (op < 5) {
        check_snapshot(pool.stats());
        continue;
      }
      const std::uint32_t key = pick_key(r());
      if (op < 17) {
        bulk_submit(pool, key, 1 + static_cast<std::uint32_t>(r() % 24), (op & 1) != 0, me);
        continue;
      }
      std::uint32_t id = 0;
      if (!take_ids(1, id)) break;
      job j(id, key, me);
      j.after = snapshot(key);
      const bool was_shut = shut_.load(std::memory_order_acquire);
      const std::string& name = names_[key];
      submit_status s{};
      char form = 'S';
      if (op < 40) {
        s = pool.submit(name, std::move(j));
      } else if (op < 55) {
        form = 'T';
        s = pool.try_submit(name, std::move(j));
      } else if (op < 70) {
        form = 'F';
        const auto t = std::chrono::microseconds(static_cast<long>(r() % 3000)) - 500us;
        s = pool.submit_for(name, std::move(j), t);
      } else if (op < 80) {
        form = 'F';
        if (r() % 2 == 0) {
          s = pool.submit_until(name, std::move(j), std::chrono::system_clock::now() - 1s);
        } else {
          s = pool.submit_until(name, std::move(j),
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
        s = pool.submit(name, std::move(j), token);
      }
      record_single(s, j, id, key, me, form, false, was_shut);
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
    if (s.active_keys > c_.keys) {
      fail("snapshot: active_keys " + std::to_string(s.active_keys) + " > the " +
           std::to_string(c_.keys) + " keys in use");
    }
    if (s.active_keys > s.capacity + s.worker_limit) {
      fail("snapshot: active_keys > capacity + workers");
    }
    if (s.blocked_producers > static_cast<std::size_t>(c_.producers)) {
      fail("snapshot: blocked_producers " + std::to_string(s.blocked_producers) + " > the " +
           std::to_string(c_.producers) + " producers (a worker waited?)");
    }
  }

  // Runs the whole scenario; returns the number of violations.
  std::uint64_t run(totals& sum, crew_test::watchdog& dog) {
    std::mt19937_64 r(mix(c_.seed ^ 0xABCDEF));
    const long threads_before = crew_test::thread_count();
    std::vector<crew::shutdown_report<std::pair<std::string, job>>> reports;
    bool drain_only = true;
    crew::pool_stats final_stats;
    std::uint64_t recycled = 0;
    {
      crew::pool_options<job> o{.workers = c_.workers,
                                .queue_capacity = c_.capacity,
                                .on_full = c_.policy,
                                .recycle_after = c_.recycle_after,
                                .recycle = c_.recycle,
                                .name = "kchaos",
                                .on_drop = [this](job&& j) { on_drop(std::move(j)); },
                                .on_error = {},
                                .track_latency = c_.track_latency,
                                .key_budget = c_.key_budget,
                                .max_per_key = c_.max_per_key};
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
      pool_type pool{[this](job&& j, std::stop_token t) { handler(std::move(j), std::move(t)); },
                     std::move(o), chaos_hash{c_.hash_mode}};
      if (pool.capacity() < c_.capacity) fail("capacity() below queue_capacity");
      pool_ = &pool;
      // keyed_pool has no state_of(): the watchdog sees stats() and is_shut_down() only.
      struct watch_view {
        const pool_type* p;
        crew::pool_stats stats() const { return p->stats(); }
        bool is_shut_down() const { return p->is_shut_down(); }
        std::size_t workers() const { return 0; }
        crew::worker_state state_of(std::size_t) const { return crew::worker_state::idle; }
      } const view{&pool};
      dog.watch(view);

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
              s.dropped < prev.dropped || s.recycled < prev.recycled || s.failed < prev.failed) {
            fail("a counter went backwards between two snapshots");
          }
          (void)pool.is_shut_down();
          prev = s;
          std::this_thread::sleep_for(100us);
        }
      });
      std::thread idler([&] {
        std::mt19937_64 ir(mix(c_.seed ^ 0x1D1E));
        while (!stop_helpers.load(std::memory_order_relaxed)) {
          const std::uint64_t x = ir() % 16;
          if (x == 0) {
            pool.wait_idle();
          } else if (x < 9) {
            (void)pool.wait_idle_for(std::chrono::microseconds(ir() % 3000));
          } else {
            (void)pool.wait_idle_until(clock_type::now() + std::chrono::microseconds(ir() % 2000));
          }
          std::this_thread::sleep_for(std::chrono::microseconds(ir() % 500));
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
      std::vector<crew::shutdown_report<std::pair<std::string, job>>> raced(
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
            case 2:
              rep = pool.shutdown_for(std::chrono::microseconds(mix(c_.seed + k) % 3000));
              break;
            case 3: rep = pool.shutdown_until(std::chrono::system_clock::now() - 1s); break;
            default: rep = pool.shutdown_for(-1ms); break;
          }
          shut_.store(true, std::memory_order_release);
        });
      }
      for (auto& t : closers) t.join();
      stop_producers = true;
      for (auto& t : threads) t.join();
      stop_helpers = true;
      reader.join();
      idler.join();
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

    // Per-job accounting, and the hand-backs' keys and per-key order (after the executed jobs:
    // every job of a key that ran is ahead of every one handed back).
    for (auto& rep : reports) {
      for (const auto& [name, j] : rep.handed_back) {
        expect(j.canary == canary_live, "handed-back job was moved from", j.id);
        if (j.id >= c_.max_ids || j.key >= c_.keys) {
          fail("handed back an unknown id or key");
          continue;
        }
        if (name != names_[j.key]) {
          fail("job " + std::to_string(j.id) + " of key " + names_[j.key] +
               " handed back under key " + name);
        }
        handed_[j.id].fetch_add(1, std::memory_order_relaxed);
        key_state& k = keys_[j.key];
        for (std::size_t l = 0; l < max_lanes; ++l) {
          if (std::max(k.last_run[l], k.last_back[l]) < j.after[l]) {
            fail("key " + std::to_string(j.key) + ": job " + std::to_string(j.id) +
                 " handed back before job " + std::to_string(j.after[l] - 1) +
                 ", accepted before its submit began, ran or came back");
          }
        }
        if (j.lane != no_lane) {
          if (k.last_run[j.lane] >= j.id + 1) {
            fail("key " + std::to_string(j.key) + ": job " + std::to_string(j.id) +
                 " handed back although the lane's later job " +
                 std::to_string(k.last_run[j.lane] - 1) + " ran");
          }
          if (k.last_back[j.lane] >= j.id + 1) {
            fail("key " + std::to_string(j.key) + ": job " + std::to_string(j.id) +
                 " handed back after the lane's later job " +
                 std::to_string(k.last_back[j.lane] - 1));
          }
          k.last_back[j.lane] = j.id + 1;
        }
      }
    }
    std::uint64_t ran = 0, back = 0, dropped = 0;
    for (std::uint32_t id = 0; id < c_.max_ids; ++id) {
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
    std::uint64_t ran_by_keys = 0;
    for (std::uint32_t key = 0; key < c_.keys; ++key) {
      const key_state& k = keys_[key];
      ran_by_keys += k.ran;
      if (k.max_inside.load() > 1) {
        fail("key " + std::to_string(key) + " ran " + std::to_string(k.max_inside.load()) +
             " jobs at once");
      }
      if (k.inside.load() != 0) fail("a key's in-flight count did not return to 0");
    }
    if (ran_by_keys != ran) fail("the keys' job counts do not add up to the jobs run");
    // The final shutdown left no worker running (checked above): drained means exactly "nothing
    // came back"; no report may claim drained while it hands jobs back or leaves workers running.
    if (reports.back().drained != (back == 0)) fail("final report's drained flag is wrong");
    for (const auto& rep : reports) {
      if (rep.drained && (!rep.handed_back.empty() || rep.still_running != 0)) {
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
    eq("queue_depth after shutdown", final_stats.queue_depth, 0);
    eq("busy after shutdown", final_stats.busy, 0);
    eq("active_keys after shutdown", final_stats.active_keys, 0);
    eq("blocked_producers after shutdown", final_stats.blocked_producers, 0);
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
    sum.child_submits += children_.load();
    sum.ordered_checks += ordered_.load();
    std::printf(
        "keyed chaos run seed=%llu: keys=%u executed=%llu handed_back=%llu dropped=%llu "
        "refused=%llu shutdowns=%d recycled=%llu thrown=%llu\n",
        static_cast<unsigned long long>(c_.seed), c_.keys, static_cast<unsigned long long>(ran),
        static_cast<unsigned long long>(back), static_cast<unsigned long long>(dropped),
        static_cast<unsigned long long>(n_refused_.load()), c_.shutdown_threads,
        static_cast<unsigned long long>(recycled), static_cast<unsigned long long>(thrown_.load()));
    return failures_.load();
  }

  std::string messages() {
    std::lock_guard lock(log_mutex_);
    return messages_;
  }

 private:
  struct key_state {
    std::atomic<int> inside{0};      // jobs of this key inside the handler now
    std::atomic<int> max_inside{0};  // the most ever seen at once
    std::array<std::atomic<std::uint32_t>, max_lanes> acked{};  // per lane: id + 1 of its
                                                                // latest accepted job (0: none)
    // Written by this key's jobs only: plain, ordered by the pool (TSan checks it).
    std::array<std::uint32_t, max_lanes> last_run{};  // per lane: id + 1 of its latest job run
    std::uint64_t ran = 0;
    // Written after the run by the checker, from the hand-backs.
    std::array<std::uint32_t, max_lanes> last_back{};
  };

  config c_;
  std::uint64_t generation_;
  pool_type* pool_ = nullptr;
  std::vector<std::string> names_;
  std::vector<std::atomic<std::uint8_t>> runs_, handed_, dropped_, accepted_;
  std::vector<key_state> keys_;
  std::atomic<std::uint32_t> next_id_{0};
  std::atomic<std::size_t> next_lane_{0};
  std::atomic<bool> shut_{false};  // some shutdown call has returned
  std::atomic<int> all_inside_{0};
  std::atomic<std::uint64_t> invoked_{0}, thrown_{0}, on_error_calls_{0}, n_accepted_{0},
      n_dropped_{0}, n_refused_{0}, short_bulks_{0}, children_{0}, ordered_{0};
  std::atomic<std::uint64_t> failures_{0};
  std::mutex log_mutex_;
  std::string messages_;
};

TEST(KeyedChaos, RandomizedRunsKeepEveryInvariant) {
  crew_test::start_sanitizer_threads();
  const std::uint64_t base = env_u64(
      "CREW_STRESS_SEED", std::random_device{}() ^ (std::uint64_t{std::random_device{}()} << 32));
  const double seconds = env_seconds();
  std::printf("keyed chaos: base seed %llu (CREW_STRESS_SEED), %.1f s (CREW_STRESS_SECONDS)\n",
              static_cast<unsigned long long>(base), seconds);
  const auto end = clock_type::now() + std::chrono::duration<double>(seconds);
  totals sum;
  const auto budget = std::chrono::milliseconds(crew_test::under_tsan ? 180'000 : 90'000);
  for (std::uint64_t i = 0; i == 0 || clock_type::now() < end; ++i) {
    const std::uint64_t seed = i == 0 ? base : mix(base + i);
    const config c = config::draw(seed);
    crew_test::watchdog dog{budget, "keyed chaos run " + c.describe() + "\n  reproduce with " +
                                        "CREW_STRESS_SEED=" + std::to_string(seed)};
    auto h = std::make_unique<harness>(c);
    const std::uint64_t failures = h->run(sum, dog);
    EXPECT_EQ(failures, 0U) << "invariant violations in keyed chaos run " << c.describe() << "\n"
                            << h->messages() << "reproduce with CREW_STRESS_SEED=" << seed
                            << " (configuration and operations repeat; the interleaving does not)";
    if (failures != 0) break;
  }
  std::printf(
      "keyed chaos summary: runs=%llu executed=%llu handed_back=%llu dropped=%llu refused=%llu "
      "shutdown_calls=%llu multi_thread_shutdown_races=%llu recycled=%llu exceptions=%llu "
      "child_submits=%llu order_checked_jobs=%llu\n",
      static_cast<unsigned long long>(sum.runs), static_cast<unsigned long long>(sum.executed),
      static_cast<unsigned long long>(sum.handed_back),
      static_cast<unsigned long long>(sum.dropped), static_cast<unsigned long long>(sum.refused),
      static_cast<unsigned long long>(sum.shutdown_calls),
      static_cast<unsigned long long>(sum.racing_shutdowns),
      static_cast<unsigned long long>(sum.recycled), static_cast<unsigned long long>(sum.thrown),
      static_cast<unsigned long long>(sum.child_submits),
      static_cast<unsigned long long>(sum.ordered_checks));
}

}  // namespace
