// libFuzzer target for crew::worker_pool: the input is decoded into pool options and a sequence
// of operations (every submit form, bulk submits, wait_idle, stats, shutdowns of every mode),
// run from one thread against a live pool, and checked against a sequential model of the counts:
//   - a submit's status is one its form may return, and `closed` after any shutdown;
//   - an accepted (or dropped) job was moved from, any other was not;
//   - each accepted job runs at most once, and after the final shutdown exactly one of: ran,
//     handed back (exactly: ran, when no shutdown but drain was used);
//   - stats() agrees with the model: accepted, executed, handed_back, dropped, failed, rejected.
// Any violation aborts, which libFuzzer reports as a crash with the input that caused it.
//
// Build: cmake --workflow --preset fuzz (clang, -fsanitize=fuzzer,address,undefined), then
//   build/fuzz/tests/fuzz/crew_pool_fuzz tests/fuzz/corpus -max_total_time=60

#include <crew/worker_pool.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

namespace {

constexpr std::uint32_t canary_live = 0xC0FFEE11;
constexpr std::uint32_t canary_moved = 0x0DDBA11;
constexpr std::size_t max_ids = 4096;

struct job {
  explicit job(std::uint32_t i, std::uint8_t k) noexcept : id(i), kind(k) {}
  job(job&& o) noexcept : id(o.id), kind(o.kind), canary(o.canary) { o.canary = canary_moved; }
  job& operator=(job&&) = delete;
  job(const job&) = delete;
  job& operator=(const job&) = delete;
  ~job() = default;
  std::uint32_t id;
  std::uint8_t kind;  // 0-5 trivial, 6 throws std, 7 throws non-std, 8 sleeps briefly
  std::uint32_t canary = canary_live;
};

[[noreturn]] void violated(const char* what, std::uint32_t id) {
  std::fprintf(stderr, "crew_pool_fuzz: invariant violated: %s (job %u)\n", what, id);
  std::abort();
}

void check(bool ok, const char* what, std::uint32_t id = 0) {
  if (!ok) violated(what, id);
}

struct model {
  std::atomic<std::uint8_t> ran[max_ids]{};
  std::uint8_t accepted[max_ids]{};
  std::uint8_t dropped[max_ids]{};
  std::uint8_t handed[max_ids]{};
  std::atomic<std::uint64_t> thrown{0};
  std::uint64_t n_accepted = 0, n_dropped = 0, n_refused = 0, short_bulks = 0;
  std::uint32_t next = 0;
  bool shut = false;
  bool drain_only = true;
};

void record(model& m, crew::submit_status s, const job& j, char form, crew::overflow_policy p) {
  using crew::submit_status;
  bool ok = s == submit_status::accepted || s == submit_status::closed;
  if (form == 'T') ok = ok || s == submit_status::rejected;
  if (form == 'F') ok = ok || s == submit_status::timed_out;
  if (form == 'C') ok = ok || s == submit_status::cancelled;
  if (form == 'S') {
    ok = ok || (p == crew::overflow_policy::reject && s == submit_status::rejected) ||
         (p == crew::overflow_policy::drop && s == submit_status::dropped);
  }
  check(ok, "status the form may not return", j.id);
  if (m.shut) check(s == submit_status::closed, "submit after shutdown not closed", j.id);
  switch (s) {
    case submit_status::accepted:
      check(j.canary == canary_moved, "accepted job not moved from", j.id);
      m.accepted[j.id] = 1;
      m.n_accepted++;
      break;
    case submit_status::dropped:
      check(j.canary == canary_moved, "dropped job not moved from", j.id);
      check(m.dropped[j.id] == 1, "dropped job missed on_drop", j.id);
      break;
    case submit_status::closed:
      check(j.canary == canary_live, "closed job moved from", j.id);
      break;
    default:
      check(j.canary == canary_live, "refused job moved from", j.id);
      m.n_refused++;
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace std::chrono_literals;
  FuzzedDataProvider in(data, size);
  auto m = std::make_unique<model>();
  const auto policy = static_cast<crew::overflow_policy>(in.ConsumeIntegralInRange<int>(0, 2));
  crew::pool_options<job> o{
      .workers = in.ConsumeIntegralInRange<std::size_t>(1, 3),
      .queue_capacity = in.ConsumeIntegralInRange<std::size_t>(1, 64),
      .on_full = policy,
      .recycle_after = in.ConsumeIntegralInRange<std::uint64_t>(0, 4),
      .recycle = in.ConsumeBool() ? crew::recycle_mode::respawn : crew::recycle_mode::trim};
  // Elastic (issue 12) in about half the inputs: growth and idle expiry racing the operations.
  const auto min_workers = in.ConsumeIntegralInRange<std::size_t>(0, 2 * o.workers + 1);
  if (min_workers <= o.workers) {
    o.min_workers = min_workers;
    o.idle_timeout = std::chrono::milliseconds(in.ConsumeIntegralInRange<int>(0, 2));
  }
  model& mm = *m;
  o.on_drop = [&mm](job&& j) {
    check(j.canary == canary_live, "on_drop got a moved-from job", j.id);
    check(mm.dropped[j.id]++ == 0, "dropped twice", j.id);
    mm.n_dropped++;
  };
  crew::worker_pool<job> pool{[&mm](job&& j, std::stop_token token) {
                                check(j.canary == canary_live, "handler got a moved-from job",
                                      j.id);
                                check(mm.ran[j.id].fetch_add(1) == 0, "job ran twice", j.id);
                                if (j.kind == 6) {
                                  mm.thrown++;
                                  throw std::runtime_error("fuzz");
                                }
                                if (j.kind == 7) {
                                  mm.thrown++;
                                  throw j.kind;
                                }
                                if (j.kind == 8 && !token.stop_requested()) {
                                  std::this_thread::sleep_for(20us);
                                }
                              },
                              std::move(o)};
  std::vector<crew::shutdown_report<job>> reports;
  int ops = 0;
  while (in.remaining_bytes() > 0 && ops++ < 96) {
    const int op = in.ConsumeIntegralInRange<int>(0, 11);
    const auto kind = in.ConsumeIntegralInRange<std::uint8_t>(0, 8);
    if (op <= 4) {
      if (m->next >= max_ids) break;
      job j(m->next++, kind);
      crew::submit_status s{};
      char form = 'S';
      switch (op) {
        case 0: s = pool.submit(std::move(j)); break;
        case 1:
          form = 'T';
          s = pool.try_submit(std::move(j));
          break;
        case 2:
          form = 'F';
          s = pool.submit_for(std::move(j),
                              std::chrono::microseconds(in.ConsumeIntegralInRange<int>(-100, 500)));
          break;
        case 3:
          form = 'F';
          s = pool.submit_until(std::move(j), std::chrono::system_clock::now() - 1s);
          break;
        default: {
          form = 'C';
          std::stop_source src;
          if (in.ConsumeBool()) src.request_stop();
          s = pool.submit(std::move(j), src.get_token());
          break;
        }
      }
      record(*m, s, j, form, policy);
    } else if (op <= 6) {
      const auto n = in.ConsumeIntegralInRange<std::uint32_t>(0, 24);
      if (m->next + n > max_ids) break;
      std::vector<job> range;
      range.reserve(n);
      for (std::uint32_t i = 0; i < n; ++i) range.emplace_back(m->next++, kind);
      const bool try_form = op == 6;
      const std::size_t k = try_form ? pool.try_submit_bulk(range) : pool.submit_bulk(range);
      check(k <= n, "bulk accepted more than given");
      if (m->shut) check(k == 0, "bulk accepted after shutdown");
      if (k < n && (try_form || policy == crew::overflow_policy::reject)) m->short_bulks++;
      for (std::size_t i = 0; i < n; ++i) {
        const job& j = range[i];
        if (i < k) {
          check(j.canary == canary_moved, "bulk-accepted job not moved from", j.id);
          m->accepted[j.id] = 1;
          m->n_accepted++;
        } else if (m->dropped[j.id] != 0) {
          check(!try_form && policy == crew::overflow_policy::drop, "bulk drop from wrong form",
                j.id);
          check(j.canary == canary_moved, "bulk-dropped job not moved from", j.id);
        } else {
          check(j.canary == canary_live, "bulk-refused job moved from", j.id);
        }
      }
    } else if (op == 7) {
      pool.wait_idle();
      const auto s = pool.stats();
      check(s.accepted == s.executed + s.handed_back, "not idle after wait_idle");
      check(s.accepted == m->n_accepted, "accepted disagrees with the model after wait_idle");
    } else if (op == 8) {
      const auto s = pool.stats();
      check(s.accepted >= s.executed + s.handed_back,
            "snapshot: accepted < executed + handed_back");
      check(s.accepted == m->n_accepted, "accepted disagrees with the model");
      check(s.dropped == m->n_dropped, "dropped disagrees with the model");
    } else if (op == 9 || op == 10) {
      const int mode = in.ConsumeIntegralInRange<int>(0, 3);
      if (mode != 0) m->drain_only = false;
      switch (mode) {
        case 0: reports.push_back(pool.shutdown(crew::shutdown_mode::drain)); break;
        case 1: reports.push_back(pool.shutdown(crew::shutdown_mode::abort)); break;
        case 2:
          reports.push_back(pool.shutdown_for(
              std::chrono::microseconds(in.ConsumeIntegralInRange<int>(-10, 300))));
          break;
        default: reports.push_back(pool.shutdown_until(std::chrono::steady_clock::now())); break;
      }
      m->shut = true;
      check(pool.is_shut_down(), "is_shut_down false after shutdown");
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(in.ConsumeIntegralInRange<int>(0, 50)));
    }
  }
  reports.push_back(pool.shutdown());
  check(reports.back().still_running == 0, "final shutdown left workers running");
  for (auto& r : reports) {
    for (const job& j : r.handed_back) {
      check(j.canary == canary_live, "handed-back job moved from", j.id);
      check(m->handed[j.id]++ == 0, "handed back twice", j.id);
    }
  }
  std::uint64_t ran = 0, back = 0;
  for (std::uint32_t id = 0; id < m->next; ++id) {
    const unsigned r = m->ran[id].load();
    ran += r;
    back += m->handed[id];
    if (m->accepted[id] != 0) {
      check(r + m->handed[id] == 1, "accepted job not run or handed back exactly once", id);
      if (m->drain_only) check(r == 1, "accepted job did not run under drain", id);
    } else {
      check(r == 0 && m->handed[id] == 0, "job not accepted ran or came back", id);
    }
  }
  const auto s = pool.stats();
  check(s.accepted == m->n_accepted, "final accepted disagrees with the model");
  check(s.executed == ran, "final executed disagrees with the model");
  check(s.handed_back == back, "final handed_back disagrees with the model");
  check(s.accepted == s.executed + s.handed_back, "accepted != executed + handed_back");
  check(s.dropped == m->n_dropped, "final dropped disagrees with the model");
  check(s.failed == m->thrown.load(), "failed disagrees with the model");
  check(s.rejected >= m->n_refused && s.rejected <= m->n_refused + m->short_bulks,
        "rejected disagrees with the model");
  if (m->drain_only) check(reports.back().drained, "drain-only sequence not drained");
  // The final shutdown left no worker running: drained means exactly "nothing came back".
  check(reports.back().drained == (back == 0), "final report's drained flag is wrong");
  for (const auto& r : reports) {
    check(!r.drained || (r.handed_back.empty() && r.still_running == 0),
          "a report claimed drained with jobs handed back or running");
  }
  return 0;
}
