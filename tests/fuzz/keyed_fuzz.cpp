// libFuzzer target for crew::keyed_pool: the input is decoded into pool options (workers,
// capacity, key_budget, max_per_key, policy, recycling, a hash that may collide) and a sequence
// of operations on a few keys (every submit form, bulk submits, handlers that submit, wait_idle,
// stats, holding every worker, shutdowns of every mode), run from one thread against a live
// pool, and checked against a sequential reference model:
//   - per key, the driver's accepted jobs in acceptance order: the jobs that ran, then the jobs
//     handed back, are exactly that sequence (jobs submitted by handlers, whose place among the
//     driver's is not known, must each run or come back exactly once); no two jobs of a key
//     overlap;
//   - a submit's status is one its form may return, `closed` after any shutdown; an accepted
//     (or dropped) job was moved from, any other was not;
//   - "held" phases: every worker is made to wait inside a job of its own key, so nothing
//     starts; the model then knows every key's queue and predicts each submit's answer exactly
//     (accepted while the pool has a free slot and the key is below max_per_key; otherwise the
//     form's or the policy's refusal), stats() exactly (queue_depth, active_keys, busy), and an
//     abort's or a deadline's hand-back exactly (every queued job, each key's in order);
//   - accounting: every accepted job runs at most once, and after the final shutdown exactly
//     one of: ran, handed back (ran, when only drains were used); stats() agrees with the model
//     exactly (accepted, executed, handed_back, dropped, failed, rejected), and shows no queued
//     job, no busy worker, no active key.
// Any violation aborts, which libFuzzer reports as a crash with the input that caused it (a
// hang, as a timeout).
//
// Build: cmake --workflow --preset fuzz (clang, -fsanitize=fuzzer,address,undefined), then
//   build/fuzz/tests/fuzz/crew_keyed_fuzz tests/fuzz/corpus-keyed -max_total_time=60
// Replay one input with a trace of the decoded operations (to stderr):
//   CREW_FUZZ_TRACE=1 build/fuzz/tests/fuzz/crew_keyed_fuzz <input>

#include <crew/keyed_pool.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using crew::overflow_policy;
using crew::submit_status;

constexpr std::uint32_t canary_live = 0xC0FFEE11;
constexpr std::uint32_t canary_moved = 0x0DDBA11;
constexpr std::uint32_t max_ids =
    2048;  // the driver's ids; a handler's child of job i is i + max_ids
constexpr std::uint32_t max_keys = 4 + 3;  // up to 4 keys, and one gate key per worker (<= 3)
constexpr std::uint8_t kind_gate = 100;

// Job kinds: 0-4 trivial, 5 throws std, 6 throws non-std, 7 sleeps briefly, 8 submits a child,
// 9 sleeps until stopped (up to 200 us); kind_gate waits for the driver (or a stop).
struct job {
  job(std::uint32_t i, std::uint32_t k, std::uint8_t kd, std::uint32_t g = 0) noexcept
      : id(i), key(k), gen(g), kind(kd) {}
  job(job&& o) noexcept : id(o.id), key(o.key), gen(o.gen), kind(o.kind), canary(o.canary) {
    o.canary = canary_moved;
  }
  // keyed_pool::shutdown() needs a move-assignable Job (its collect() erases from a vector),
  // although its static_asserts ask only for a nothrow move constructor.
  job& operator=(job&& o) noexcept {
    id = o.id;
    key = o.key;
    gen = o.gen;
    kind = o.kind;
    canary = o.canary;
    o.canary = canary_moved;
    return *this;
  }
  job(const job&) = delete;
  job& operator=(const job&) = delete;
  ~job() = default;
  std::uint32_t id;
  std::uint32_t key;
  std::uint32_t gen;  // kind_gate: the hold it belongs to
  std::uint8_t kind;
  std::uint32_t canary = canary_live;
};

[[noreturn]] void violated(const char* what, std::uint32_t id) {
  std::fprintf(stderr, "crew_keyed_fuzz: invariant violated: %s (job/key %u)\n", what, id);
  std::abort();
}

void check(bool ok, const char* what, std::uint32_t id = 0) {
  if (!ok) violated(what, id);
}

// CREW_FUZZ_TRACE set: each decoded operation and its outcome go to stderr.
const bool tracing = std::getenv("CREW_FUZZ_TRACE") != nullptr;

[[gnu::format(printf, 1, 2)]] void trace(const char* format, ...) {
  if (!tracing) return;
  std::va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
}

template <class Pred>
bool spin_until(Pred pred, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return pred();
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return true;
}

// Hash modes: std::hash, every key in one bucket, two buckets.
struct fuzz_hash {
  int mode = 0;
  std::size_t operator()(const std::string& k) const noexcept {
    const std::size_t h = std::hash<std::string>{}(k);
    return mode == 1 ? 7 : mode == 2 ? (h & 1U) : h;
  }
};

std::string key_name(std::uint32_t k) {
  // Odd keys are long enough to live on the heap: ASan sees the table's copies of them.
  return k % 2 == 0 ? "k" + std::to_string(k)
                    : "key-" + std::to_string(k) + "-with-a-name-longer-than-the-sso-buffer";
}

using handler_type = std::function<void(job&&, std::stop_token)>;
using pool_type = crew::keyed_pool<std::string, job, handler_type, fuzz_hash>;

struct model {
  // Written by handlers (any worker) or by on_drop.
  std::atomic<std::uint8_t> ran[2 * max_ids]{};
  std::atomic<std::uint8_t> dropped[2 * max_ids]{};
  std::atomic<int> child_status[max_ids]{};  // 0: none; 1 + submit_status of job i's child
  std::atomic<int> inside[max_keys]{};
  std::atomic<std::uint64_t> thrown{0}, drops{0};
  std::atomic<std::uint32_t> gates_started{0};
  std::atomic<std::uint32_t> gate_open{0};   // gates of holds <= this may leave
  std::vector<std::uint32_t> log[max_keys];  // per key, ids as they ran: plain, the pool orders
                                             // one key's jobs
  // The driver's.
  std::uint8_t accepted[2 * max_ids]{};
  std::uint8_t handed[2 * max_ids]{};
  bool child_folded[max_ids]{};
  std::vector<std::uint32_t> order[max_keys];   // per key, the driver's accepted ids in order
  std::vector<std::uint32_t> queued[max_keys];  // held: per key, the jobs waiting
  std::size_t queued_total = 0;
  std::uint64_t n_accepted = 0, n_refused = 0, n_dropped = 0;
  std::uint32_t next = 0;
  std::uint32_t holds = 0;
  bool held = false;
  bool shut = false;
  bool drain_only = true;
  bool any_child = false;
};

bool status_allowed(submit_status s, char form, overflow_policy p, bool in_worker) {
  bool ok = s == submit_status::accepted || s == submit_status::closed;
  if (form == 'T') ok = ok || s == submit_status::rejected;
  if (form == 'F') ok = ok || s == submit_status::timed_out;
  if (form == 'C') ok = ok || s == submit_status::cancelled;
  if (form == 'S') {
    ok = ok || (p == overflow_policy::reject && s == submit_status::rejected) ||
         (p == overflow_policy::drop && s == submit_status::dropped);
  }
  if (in_worker && form != 'T') ok = ok || s == submit_status::rejected;
  return ok;
}

// A handler's submit of job `parent`'s child (never waits: from a worker of the pool).
void submit_child(model& m, pool_type& pool, const job& parent, std::uint32_t user_keys,
                  overflow_policy p) {
  const std::uint32_t key = (parent.id * 7 + 3) % user_keys;
  job child(parent.id + max_ids, key, static_cast<std::uint8_t>(parent.id % 5));
  const std::string name = key_name(key);
  submit_status s{};
  char form = 'T';
  switch (parent.id % 4) {
    case 0: s = pool.try_submit(name, std::move(child)); break;
    case 1:
      form = 'S';
      s = pool.submit(name, std::move(child));
      break;
    case 2:
      form = 'F';
      s = pool.submit_for(name, std::move(child), std::chrono::milliseconds(1));
      break;
    default: {
      form = 'C';
      std::stop_source never;
      s = pool.submit(name, std::move(child), never.get_token());
      break;
    }
  }
  check(status_allowed(s, form, p, true), "child submit: status the form may not return",
        parent.id + max_ids);
  check(s != submit_status::timed_out && s != submit_status::cancelled,
        "a waiting form waited in a worker", parent.id + max_ids);
  const bool moved = s == submit_status::accepted || s == submit_status::dropped;
  check(child.canary == (moved ? canary_moved : canary_live), "child: wrong moved-from state",
        parent.id + max_ids);
  m.child_status[parent.id].store(1 + static_cast<int>(s), std::memory_order_release);
}

// Takes in the children's outcomes once no handler runs (after wait_idle or the last shutdown).
void fold_children(model& m) {
  for (std::uint32_t id = 0; id < m.next; ++id) {
    const int cs = m.child_status[id].load(std::memory_order_acquire);
    if (cs == 0 || m.child_folded[id]) continue;
    m.child_folded[id] = true;
    const std::uint32_t c = id + max_ids;
    switch (static_cast<submit_status>(cs - 1)) {
      case submit_status::accepted:
        m.accepted[c] = 1;
        m.n_accepted++;
        break;
      case submit_status::dropped:
        check(m.dropped[c].load() == 1, "dropped child missed on_drop", c);
        m.n_dropped++;
        break;
      case submit_status::rejected: m.n_refused++; break;
      default: break;  // closed
    }
  }
}

// Per key: the driver's jobs among `ran` then `back` are exactly `order`; children appear as
// accepted (checked per id elsewhere).
void check_key_order(const model& m, std::uint32_t key, const std::vector<std::uint32_t>& back) {
  std::size_t at = 0;
  const std::vector<std::uint32_t>& want = m.order[key];
  for (const std::vector<std::uint32_t>* part : {&m.log[key], &back}) {
    for (const std::uint32_t id : *part) {
      if (id >= max_ids) continue;  // a child
      check(at < want.size() && want[at] == id,
            "per-key order: the jobs that ran, then those handed back, are not the key's "
            "accepted jobs in order",
            key);
      ++at;
    }
  }
  check(at == want.size(), "per-key order: an accepted job of the key neither ran nor came back",
        key);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace std::chrono_literals;
  FuzzedDataProvider in(data, size);
  auto mp = std::make_unique<model>();
  model& m = *mp;
  const auto policy = static_cast<overflow_policy>(in.ConsumeIntegralInRange<int>(0, 2));
  const auto workers = in.ConsumeIntegralInRange<std::uint32_t>(1, 3);
  const auto user_keys = in.ConsumeIntegralInRange<std::uint32_t>(1, 4);
  const std::uint32_t all_keys = user_keys + workers;  // keys user_keys.. are the gate keys
  crew::pool_options<job> o{
      .workers = workers,
      .queue_capacity = in.ConsumeIntegralInRange<std::size_t>(1, 16),
      .on_full = policy,
      .recycle_after = in.ConsumeIntegralInRange<std::uint64_t>(0, 4),
      .recycle = in.ConsumeBool() ? crew::recycle_mode::respawn : crew::recycle_mode::trim};
  // Elastic (issue 12) in about half the inputs: growth and idle expiry racing the operations.
  const auto min_workers = in.ConsumeIntegralInRange<std::size_t>(0, 2 * o.workers + 1);
  if (min_workers <= o.workers) {
    o.min_workers = min_workers;
    o.idle_timeout = std::chrono::milliseconds(in.ConsumeIntegralInRange<int>(0, 2));
  }
  o.key_budget = in.ConsumeIntegralInRange<std::size_t>(1, 4);
  const std::size_t max_per_key = in.ConsumeIntegralInRange<std::size_t>(0, 4);
  o.max_per_key = max_per_key;
  const int hash_mode = in.ConsumeIntegralInRange<int>(0, 2);
  o.on_drop = [&m](job&& j) {
    check(j.canary == canary_live, "on_drop got a moved-from job", j.id);
    check(m.dropped[j.id].fetch_add(1) == 0, "dropped twice", j.id);
    m.drops++;
  };
  pool_type* self = nullptr;
  std::vector<std::string> names;
  for (std::uint32_t k = 0; k < all_keys; ++k) names.push_back(key_name(k));
  pool_type pool{
      [&m, &self, user_keys, policy](job&& j, std::stop_token token) {
        check(j.canary == canary_live, "handler got a moved-from job", j.id);
        check(j.id < 2 * max_ids && j.key < max_keys, "handler got an unknown job", j.id);
        check(m.ran[j.id].fetch_add(1) == 0, "job ran twice", j.id);
        check(m.inside[j.key].fetch_add(1) == 0, "two jobs of one key ran at once", j.key);
        m.log[j.key].push_back(j.id);
        struct leave {
          std::atomic<int>& n;
          ~leave() { n.fetch_sub(1); }
        } const guard{m.inside[j.key]};
        switch (j.kind) {
          case 5: m.thrown++; throw std::runtime_error("fuzz");
          case 6: m.thrown++; throw j.kind;
          case 7: std::this_thread::sleep_for(20us); break;
          case 8: submit_child(m, *self, j, user_keys, policy); break;
          case 9:
            for (int i = 0; i < 10 && !token.stop_requested(); ++i) {
              std::this_thread::sleep_for(20us);
            }
            break;
          case kind_gate:
            m.gates_started++;
            while (m.gate_open.load() < j.gen && !token.stop_requested()) {
              std::this_thread::sleep_for(20us);
            }
            break;
          default: break;
        }
      },
      std::move(o), fuzz_hash{hash_mode}};
  self = &pool;
  const std::size_t cap = pool.capacity();
  trace(
      "pool: policy=%d workers=%u keys=%u(+%u gate) capacity=%zu key_budget=%zu "
      "max_per_key=%zu hash=%d min_workers=%lld idle_timeout=%lldms\n",
      static_cast<int>(policy), workers, user_keys, workers, cap, pool.options().key_budget,
      max_per_key, hash_mode,
      pool.options().min_workers ? static_cast<long long>(*pool.options().min_workers) : -1LL,
      static_cast<long long>(pool.options().idle_timeout.count()));

  // Whether a submit of n jobs under `key` fits now (held: the model knows), and how many.
  auto fitting = [&](std::uint32_t key, std::size_t n) {
    std::size_t f = std::min(n, cap - m.queued_total);
    if (max_per_key != 0) {
      f = std::min(f, max_per_key > m.queued[key].size() ? max_per_key - m.queued[key].size() : 0);
    }
    return f;
  };
  auto accept = [&](std::uint32_t id, std::uint32_t key) {
    m.accepted[id] = 1;
    m.n_accepted++;
    m.order[key].push_back(id);
    if (m.held) {
      m.queued[key].push_back(id);
      m.queued_total++;
    }
  };
  // Exact stats while every worker is held (nothing starts, nothing ends).
  auto check_held_stats = [&] {
    const crew::pool_stats s = pool.stats();
    check(s.queue_depth == m.queued_total, "held: queue_depth is not the queued jobs");
    check(s.busy == workers, "held: busy is not every worker");
    std::size_t active = workers;  // the gate keys, held
    for (std::uint32_t k = 0; k < user_keys; ++k) active += m.queued[k].empty() ? 0 : 1;
    check(s.active_keys == active, "held: active_keys is not the keys with queued or running jobs");
    check(s.accepted == m.n_accepted, "held: accepted disagrees with the model");
    check(s.rejected == m.n_refused, "held: rejected disagrees with the model");
    check(s.dropped == m.n_dropped, "held: dropped disagrees with the model");
    check(s.blocked_producers == 0, "held: a producer counted as blocked");
  };
  auto release = [&] {
    if (!m.held) return;
    m.gate_open.store(m.holds);
    m.held = false;
    for (auto& q : m.queued) q.clear();
    m.queued_total = 0;
  };
  // wait_idle, then exact checks: every accepted job ran, in each key's order.
  auto idle_and_check = [&] {
    release();
    pool.wait_idle();
    fold_children(m);
    const crew::pool_stats s = pool.stats();
    check(s.accepted == s.executed + s.handed_back, "not idle after wait_idle");
    check(s.accepted == m.n_accepted, "accepted disagrees with the model after wait_idle");
    check(s.queue_depth == 0, "queue_depth not 0 after wait_idle");
    check(s.rejected == m.n_refused, "rejected disagrees with the model after wait_idle");
    check(s.dropped == m.n_dropped && m.drops.load() == m.n_dropped,
          "dropped disagrees with the model after wait_idle");
    if (!m.shut) {
      for (std::uint32_t k = 0; k < all_keys; ++k) check_key_order(m, k, {});
      for (std::uint32_t id = 0; id < m.next; ++id) {
        for (const std::uint32_t j : {id, id + max_ids}) {
          check(m.ran[j].load() == m.accepted[j], "after wait_idle: ran != accepted", j);
        }
      }
      // The holders give their keys up right after their last job.
      check(spin_until(
                [&] {
                  const crew::pool_stats t = pool.stats();
                  return t.active_keys == 0 && t.busy == 0;
                },
                5s),
            "active_keys or busy not 0 once idle");
    }
  };
  auto hold = [&] {
    idle_and_check();
    m.holds++;
    for (std::uint32_t w = 0; w < workers; ++w) {
      const std::uint32_t key = user_keys + w;
      job g(m.next++, key, kind_gate, m.holds);
      const std::uint32_t id = g.id;
      check(pool.submit_for(names[key], std::move(g), 10s) == submit_status::accepted,
            "a gate job was not accepted", id);
      accept(id, key);
    }
    // Work conservation: one job on each of `workers` keys: every worker takes one.
    if (!spin_until([&] { return m.gates_started.load() == workers * m.holds; }, 10s)) {
      const crew::pool_stats t = pool.stats();
      std::fprintf(stderr, "live %zu of %zu, busy %zu, queue %zu, gates %u of %u\n", t.workers,
                   t.worker_limit, t.busy, t.queue_depth, m.gates_started.load(),
                   workers * m.holds);
      check(false, "work conservation: a job of an idle key did not start while a worker was free");
    }
    m.held = true;
    check_held_stats();
  };

  std::vector<crew::shutdown_report<std::pair<std::string, job>>> reports;
  int ops = 0;
  while (in.remaining_bytes() > 0 && ops++ < 128) {
    const int op = in.ConsumeIntegralInRange<int>(0, 11);
    const auto key = in.ConsumeIntegralInRange<std::uint32_t>(0, all_keys - 1);
    const auto kind = static_cast<std::uint8_t>(in.ConsumeIntegralInRange<int>(0, 9));
    if (op <= 4) {
      if (m.next >= max_ids) break;
      const std::uint32_t id = m.next;
      const std::size_t fits = m.held ? fitting(key, 1) : 1;
      char form = 'S';
      submit_status want = submit_status::accepted;  // held: the answer the model expects
      int variant = 0;
      switch (op) {
        case 0:
          want =
              policy == overflow_policy::reject ? submit_status::rejected : submit_status::dropped;
          if (m.held && fits == 0 && policy == overflow_policy::block) continue;  // would wait
          break;
        case 1:
          form = 'T';
          want = submit_status::rejected;
          break;
        case 2:
        case 3:
          form = 'F';
          want = submit_status::timed_out;
          variant = in.ConsumeIntegralInRange<int>(-100, 400);
          break;
        default:
          form = 'C';
          want = submit_status::cancelled;
          variant = in.ConsumeBool() ? 1 : 0;                 // 1: an already stopped token
          if (m.held && fits == 0 && variant == 0) continue;  // would wait for ever
          break;
      }
      if (fits != 0) want = submit_status::accepted;
      if (m.shut) want = submit_status::closed;
      job j(m.next++, key, kind);
      m.any_child = m.any_child || j.kind == 8;
      const std::string& name = names[key];
      submit_status s{};
      switch (op) {
        case 0: s = pool.submit(name, std::move(j)); break;
        case 1: s = pool.try_submit(name, std::move(j)); break;
        case 2: s = pool.submit_for(name, std::move(j), std::chrono::microseconds(variant)); break;
        case 3:
          s = variant < 0
                  ? pool.submit_until(name, std::move(j),
                                      std::chrono::system_clock::now() - std::chrono::seconds(1))
                  : pool.submit_until(
                        name, std::move(j),
                        std::chrono::steady_clock::now() + std::chrono::microseconds(variant));
          break;
        default: {
          std::stop_source src;
          if (variant == 1) src.request_stop();
          s = pool.submit(name, std::move(j), src.get_token());
          break;
        }
      }
      trace("submit form=%c op=%d key=%u kind=%d held=%d -> %s\n", form, op, key, kind,
            m.held ? 1 : 0, std::string(crew::to_string(s)).c_str());
      check(status_allowed(s, form, policy, false), "status the form may not return", id);
      if (m.shut) check(s == submit_status::closed, "submit after shutdown not closed", id);
      if (m.held) check(s == want, "held: the submit's answer is not the model's", id);
      switch (s) {
        case submit_status::accepted:
          check(j.canary == canary_moved, "accepted job not moved from", id);
          accept(id, key);
          break;
        case submit_status::dropped:
          check(j.canary == canary_moved, "dropped job not moved from", id);
          check(m.dropped[id].load() == 1, "dropped job missed on_drop", id);
          m.n_dropped++;
          break;
        case submit_status::closed:
          check(j.canary == canary_live, "closed job moved from", id);
          break;
        default:
          check(j.canary == canary_live, "refused job moved from", id);
          m.n_refused++;
          break;
      }
      if (m.held) check_held_stats();
    } else if (op <= 6) {
      auto n = in.ConsumeIntegralInRange<std::uint32_t>(0, 12);
      const bool try_form = op == 6;
      std::size_t want = n;
      if (m.held) {
        want = fitting(key, n);
        // A blocking bulk would wait for room that never comes: ask for what fits.
        if (!try_form && policy == overflow_policy::block) n = static_cast<std::uint32_t>(want);
      }
      if (m.shut) want = 0;
      if (m.next + n > max_ids) break;
      std::vector<job> range;
      range.reserve(n);
      for (std::uint32_t i = 0; i < n; ++i) {
        range.emplace_back(m.next++, key, kind);
        m.any_child = m.any_child || range.back().kind == 8;
      }
      const std::size_t k =
          try_form ? pool.try_submit_bulk(names[key], range) : pool.submit_bulk(names[key], range);
      trace("%s key=%u n=%u held=%d -> %zu\n", try_form ? "try_submit_bulk" : "submit_bulk", key, n,
            m.held ? 1 : 0, k);
      check(k <= n, "bulk accepted more than given");
      if (m.shut) check(k == 0, "bulk accepted after shutdown");
      if (m.held) check(k == want, "held: the bulk's accepted prefix is not the model's");
      const bool drops = !try_form && policy == overflow_policy::drop && !m.shut;
      if (k < n && !m.shut && !drops) {
        check(try_form || policy == overflow_policy::reject,
              "a blocking bulk stopped short of its range while the pool was open");
        m.n_refused++;  // one refusal per bulk that stopped short
      }
      for (std::size_t i = 0; i < n; ++i) {
        const job& j = range[i];
        if (i < k) {
          check(j.canary == canary_moved, "bulk-accepted job not moved from", j.id);
          accept(j.id, key);
        } else if (drops) {
          check(m.dropped[j.id].load() == 1, "bulk under drop did not drop its tail", j.id);
          check(j.canary == canary_moved, "bulk-dropped job not moved from", j.id);
          m.n_dropped++;
        } else {
          check(m.dropped[j.id].load() == 0, "bulk dropped under a form that does not drop", j.id);
          check(j.canary == canary_live, "bulk-refused job moved from", j.id);
        }
      }
      if (m.held) check_held_stats();
    } else if (op == 7) {
      trace("wait_idle\n");
      idle_and_check();
    } else if (op == 8) {
      const crew::pool_stats s = pool.stats();
      trace("stats: accepted=%llu executed=%llu queue_depth=%zu active_keys=%zu busy=%zu\n",
            static_cast<unsigned long long>(s.accepted),
            static_cast<unsigned long long>(s.executed), s.queue_depth, s.active_keys, s.busy);
      check(s.accepted >= s.executed + s.handed_back,
            "snapshot: accepted < executed + handed_back");
      check(s.busy <= workers, "snapshot: busy > workers");
      check(s.active_keys <= all_keys, "snapshot: more active keys than keys");
      if (!m.any_child) check(s.accepted == m.n_accepted, "accepted disagrees with the model");
      if (m.held) check_held_stats();
    } else if (op == 9) {
      trace("%s\n", m.held ? "release" : m.shut ? "hold (skipped: shut down)" : "hold");
      if (m.held) {
        release();
      } else if (!m.shut && m.next + workers <= max_ids) {
        hold();
      }
    } else if (op == 10) {
      const int mode = in.ConsumeIntegralInRange<int>(0, 3);
      const int us = in.ConsumeIntegralInRange<int>(-10, 300);
      if (mode == 0) release();  // a drain would wait for the held workers for ever
      if (mode != 0) m.drain_only = false;
      const bool was_held = m.held;
      const bool first = reports.empty();
      switch (mode) {
        case 0: reports.push_back(pool.shutdown(crew::shutdown_mode::drain)); break;
        case 1: reports.push_back(pool.shutdown(crew::shutdown_mode::abort)); break;
        case 2: reports.push_back(pool.shutdown_for(std::chrono::microseconds(us))); break;
        default: reports.push_back(pool.shutdown_until(std::chrono::steady_clock::now())); break;
      }
      const auto& r = reports.back();
      trace("shutdown mode=%d us=%d held=%d -> handed_back=%zu still_running=%zu drained=%d\n",
            mode, us, was_held ? 1 : 0, r.handed_back.size(), r.still_running, r.drained ? 1 : 0);
      check(pool.is_shut_down(), "is_shut_down false after shutdown");
      if (!first) check(r.handed_back.empty(), "a later shutdown handed jobs back again");
      if (mode == 0) check(r.still_running == 0, "a drain returned with workers running");
      if (was_held && !m.shut) {
        // Nothing could start: exactly the queued jobs come back, each key's in order.
        std::vector<std::uint32_t> back[max_keys];
        for (const auto& [name, j] : r.handed_back) {
          check(j.key < max_keys && name == names[j.key], "held: handed back under a wrong key",
                j.id);
          back[j.key].push_back(j.id);
        }
        for (std::uint32_t k = 0; k < all_keys; ++k) {
          check(back[k] == m.queued[k], "held: the hand-back is not the key's queued jobs", k);
        }
        m.held = false;  // the gate jobs were asked to stop
        for (auto& q : m.queued) q.clear();
        m.queued_total = 0;
      }
      m.shut = true;
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(in.ConsumeIntegralInRange<int>(0, 50)));
    }
  }
  release();
  reports.push_back(pool.shutdown());
  trace("final shutdown -> handed_back=%zu\n", reports.back().handed_back.size());
  check(reports.back().still_running == 0, "final shutdown left workers running");
  fold_children(m);

  // Hand-backs: keys, canaries, once each; then each key's order, and every job's fate.
  std::vector<std::uint32_t> back[max_keys];
  for (std::size_t ri = 0; ri < reports.size(); ++ri) {
    for (const auto& [name, j] : reports[ri].handed_back) {
      check(j.canary == canary_live, "handed-back job moved from", j.id);
      check(j.id < 2 * max_ids && j.key < all_keys, "handed back an unknown job", j.id);
      check(name == names[j.key], "handed back under a wrong key", j.id);
      check(m.handed[j.id]++ == 0, "handed back twice", j.id);
      back[j.key].push_back(j.id);
    }
  }
  for (std::uint32_t k = 0; k < all_keys; ++k) check_key_order(m, k, back[k]);
  std::uint64_t ran = 0, handed = 0, logged = 0;
  for (std::uint32_t k = 0; k < all_keys; ++k) logged += m.log[k].size();
  for (std::uint32_t id = 0; id < m.next; ++id) {
    for (const std::uint32_t j : {id, id + max_ids}) {
      const unsigned r = m.ran[j].load();
      ran += r;
      handed += m.handed[j];
      if (m.accepted[j] != 0) {
        check(r + m.handed[j] == 1, "accepted job not run or handed back exactly once", j);
        if (m.drain_only) check(r == 1, "accepted job did not run under drain", j);
      } else {
        check(r == 0 && m.handed[j] == 0, "job not accepted ran or came back", j);
      }
    }
  }
  check(logged == ran, "the keys' logs do not add up to the jobs run");
  const auto s = pool.stats();
  check(s.accepted == m.n_accepted, "final accepted disagrees with the model");
  check(s.executed == ran, "final executed disagrees with the model");
  check(s.handed_back == handed, "final handed_back disagrees with the model");
  check(s.accepted == s.executed + s.handed_back, "accepted != executed + handed_back");
  check(s.dropped == m.n_dropped && m.drops.load() == m.n_dropped,
        "final dropped disagrees with the model");
  check(s.failed == m.thrown.load(), "failed disagrees with the model");
  check(s.rejected == m.n_refused, "final rejected disagrees with the model");
  check(s.queue_depth == 0 && s.busy == 0, "work left after the final shutdown");
  check(s.active_keys == 0, "active keys left after the final shutdown");
  check(s.blocked_producers == 0, "blocked producers after the final shutdown");
  if (m.drain_only) check(reports.back().drained, "drain-only sequence not drained");
  check(reports.back().drained == (handed == 0), "final report's drained flag is wrong");
  for (const auto& r : reports) {
    check(!r.drained || (r.handed_back.empty() && r.still_running == 0),
          "a report claimed drained with jobs handed back or running");
  }
  return 0;
}
