// crew::task, crew::task_pool, crew::task_group: every sentence of DESIGN.md's "Tasks, results and
// groups" (allocation counts are in worker_pool_alloc_test.cpp, the chaos run in
// tests/stress/chaos_test.cpp).

#include <crew/task.hpp>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace {

using crew::submit_status;
using crew_test::eventually;
using crew_test::gate;
using crew_test::lifetime_counts;
using crew_test::tracked;

// A callable of (about) N bytes.
template <std::size_t N>
struct sized {
  std::array<unsigned char, N - sizeof(int*)> pad{};
  int* hits = nullptr;
  void operator()() const { ++*hits; }
};

// NOLINTNEXTLINE(cppcoreguidelines-special-member-functions): only the moves matter here
struct throwing_move {
  throwing_move() = default;
  throwing_move(throwing_move&& /*other*/) noexcept(false) {}
  throwing_move(const throwing_move&) = default;
  void operator()() const {}
};

struct alignas(64) over_aligned {
  int* hits;
  void operator()() const { ++*hits; }
};

// A task pool of one worker held in its first task until `release` opens, and a queue of one
// filled behind it: every submit is refused for lack of room until the gate opens.
// NOLINTNEXTLINE(cppcoreguidelines-special-member-functions): neither copied nor moved
struct full_task_pool {
  explicit full_task_pool(crew::overflow_policy policy = crew::overflow_policy::reject,
                          std::function<void(crew::task&&)> on_drop = {}) {
    crew::pool_options<crew::task> o{.workers = 1, .queue_capacity = 1, .on_full = policy};
    o.on_drop = std::move(on_drop);
    pool = std::make_unique<crew::task_pool>(std::move(o));
    EXPECT_EQ(pool->try_submit([this] {
      started.fetch_add(1);
      release.wait();
    }),
              submit_status::accepted);
    EXPECT_TRUE(eventually([&] { return started.load() == 1; }));
    EXPECT_EQ(pool->try_submit([] {}), submit_status::accepted);
  }
  full_task_pool(const full_task_pool&) = delete;
  full_task_pool& operator=(const full_task_pool&) = delete;
  ~full_task_pool() {
    release.open();
    pool.reset();
  }
  gate release;
  std::atomic<int> started{0};
  std::unique_ptr<crew::task_pool> pool;
};

// ---- crew::task ----------------------------------------------------------------------------

TEST(Task, InlineStorageIsAtLeast48BytesAndDocumented) {
  static_assert(crew::task::inline_size >= 48);
  static_assert(crew::task::stored_inline<sized<40>>);
  static_assert(crew::task::stored_inline<sized<48>>);
  static_assert(crew::task::stored_inline<sized<crew::task::inline_size>>);
  static_assert(!crew::task::stored_inline<sized<crew::task::inline_size + 8>>);
  static_assert(!crew::task::stored_inline<sized<200>>);
  static_assert(!crew::task::stored_inline<throwing_move>, "a throwing move goes to the heap");
  static_assert(!crew::task::stored_inline<over_aligned>);
  static_assert(std::is_nothrow_move_constructible_v<crew::task>);
  static_assert(std::is_nothrow_move_assignable_v<crew::task>);
  static_assert(!std::is_copy_constructible_v<crew::task>);
}

TEST(Task, CallsInlineHeapAndOverAlignedCallables) {
  int hits = 0;
  crew::task a{sized<40>{.hits = &hits}};
  crew::task b{sized<200>{.hits = &hits}};
  crew::task c{over_aligned{&hits}};
  crew::task d{throwing_move{}};
  a();
  a();  // a task may be called more than once
  b();
  c();
  d();
  EXPECT_EQ(hits, 4);
}

TEST(Task, EmptyAndMovedFromTasksThrowBadFunctionCall) {
  crew::task empty;
  EXPECT_FALSE(empty);
  EXPECT_THROW(empty(), std::bad_function_call);
  crew::task null = nullptr;
  EXPECT_THROW(null(), std::bad_function_call);
  int hits = 0;
  crew::task full{[&] { ++hits; }};
  EXPECT_TRUE(full);
  crew::task moved{std::move(full)};
  EXPECT_FALSE(full);  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  EXPECT_THROW(full(), std::bad_function_call);
  moved();
  EXPECT_EQ(hits, 1);
}

TEST(Task, ACallablesExceptionReachesTheCaller) {
  crew::task t{[] { throw std::runtime_error("boom"); }};
  EXPECT_THROW(t(), std::runtime_error);
}

TEST(Task, MoveOnlyCapturesWork) {
  auto p = std::make_unique<int>(7);
  int seen = 0;
  crew::task t{[p = std::move(p), &seen] { seen = *p; }};
  crew::task u = std::move(t);
  u();
  EXPECT_EQ(seen, 7);
}

// Captured state is constructed, moved and destroyed exactly once per object, inline or on the
// heap, through moves and move assignments (tracked aborts on a double destroy).
template <std::size_t Pad>
void check_lifetime() {
  lifetime_counts counts;
  {
    auto f = [obj = tracked(counts, 1), pad = std::array<char, Pad>{}] {
      (void)pad;
      EXPECT_EQ(obj.value, 1);
    };
    crew::task t{std::move(f)};
    crew::task u{std::move(t)};
    crew::task v;
    v = std::move(u);
    v();
    crew::task w{[obj = tracked(counts, 2)] { (void)obj; }};
    w = std::move(v);  // destroys w's callable
    w();
    EXPECT_EQ(counts.live(), 2);  // f's moved-from copy, w's callable
  }
  EXPECT_EQ(counts.live(), 0);
  EXPECT_GT(counts.constructed(), 2);
}

TEST(Task, CapturedStateLivesExactlyOnceInline) { check_lifetime<8>(); }
TEST(Task, CapturedStateLivesExactlyOnceOnTheHeap) { check_lifetime<200>(); }

TEST(Task, NonTriviallyCopyableInlineCallablesRelocate) {
  std::string seen;
  crew::task t{[s = std::string(40, 'x'), &seen] { seen = s; }};
  crew::task u{std::move(t)};
  crew::task v;
  swap(u, v);
  v();
  EXPECT_EQ(seen, std::string(40, 'x'));
}

// ---- crew::task_pool -------------------------------------------------------------------------

TEST(TaskPool, BuiltFromOptionsAloneRunsClosures) {
  crew::task_pool pool{{.workers = 2}};
  std::atomic<int> hits{0};
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(pool.submit([&] { hits.fetch_add(1); }), submit_status::accepted);
  }
  int local = 0;
  auto lvalue = [&local] { ++local; };  // copied: the caller keeps its own
  ASSERT_EQ(pool.submit(lvalue), submit_status::accepted);
  ASSERT_EQ(pool.submit(crew::task{[&] { hits.fetch_add(1); }}), submit_status::accepted);
  std::vector<crew::task> bulk;
  bulk.reserve(10);
  for (int i = 0; i < 10; ++i) bulk.emplace_back([&] { hits.fetch_add(1); });
  EXPECT_EQ(pool.submit_bulk(bulk), 10U);
  pool.wait_idle();
  EXPECT_EQ(hits.load(), 1011);
  EXPECT_EQ(local, 1);
  EXPECT_EQ(pool.stats().executed, 1012U);
  const auto report = pool.shutdown();
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(pool.submit([] {}), submit_status::closed);
}

TEST(TaskPool, AClosuresExceptionGoesToOnErrorAndCountsAsFailed) {
  std::atomic<int> errors{0};
  crew::pool_options<crew::task> o{.workers = 1};
  o.on_error = [&](const std::exception_ptr&) { errors.fetch_add(1); };
  crew::task_pool pool{std::move(o)};
  ASSERT_EQ(pool.submit([] { throw std::runtime_error("x"); }), submit_status::accepted);
  pool.wait_idle();
  EXPECT_EQ(errors.load(), 1);
  EXPECT_EQ(pool.stats().failed, 1U);
}

TEST(TaskPool, RefusedClosuresAreNotMovedFrom) {
  full_task_pool full;
  crew::task_pool& pool = *full.pool;
  auto small = [p = std::make_unique<int>(1)] { return p != nullptr; };
  auto large = [p = std::make_unique<int>(2), pad = std::array<char, 200>{}] {
    return p != nullptr && pad.size() == 200;
  };
  // Each submit below is refused, so the closures are never moved from.
  // NOLINTBEGIN(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  EXPECT_EQ(pool.try_submit(std::move(small)), submit_status::rejected);
  EXPECT_EQ(pool.submit(std::move(small)), submit_status::rejected);  // policy: reject
  EXPECT_EQ(pool.submit_for(std::move(small), std::chrono::milliseconds(1)),
            submit_status::timed_out);
  EXPECT_NE(pool.submit_until(std::move(large), std::chrono::steady_clock::now()),
            submit_status::accepted);
  std::stop_source stop;
  stop.request_stop();
  EXPECT_NE(pool.submit(std::move(large), stop.get_token()), submit_status::accepted);
  EXPECT_EQ(pool.try_submit(std::move(large)), submit_status::rejected);
  // The closures still own their captures.
  EXPECT_TRUE(small());  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  EXPECT_TRUE(large());  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  // NOLINTEND(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  EXPECT_EQ(pool.stats().rejected, 6U);
}

TEST(TaskPool, RefusedLvalueWithAThrowingCopyIsUntouched) {
  full_task_pool full;
  // NOLINTNEXTLINE(cppcoreguidelines-special-member-functions): only the copy matters here
  struct throwing_copy {
    std::shared_ptr<int> p = std::make_shared<int>(3);
    throwing_copy() = default;
    // NOLINTNEXTLINE(modernize-use-equals-default): user-provided, so it is not noexcept
    throwing_copy(const throwing_copy& o) noexcept(false) : p(o.p) {}
    void operator()() const {}
  } f;
  EXPECT_EQ(full.pool->try_submit(f), submit_status::rejected);
  ASSERT_TRUE(f.p);
  EXPECT_EQ(f.p.use_count(), 1);  // the built copy was destroyed
}

TEST(TaskPool, DroppedClosuresReachOnDropAsTasks) {
  std::atomic<int> ran{0};
  full_task_pool full(crew::overflow_policy::drop, [](crew::task&& t) { t(); });
  EXPECT_EQ(full.pool->submit([&] { ran.fetch_add(1); }), submit_status::dropped);
  EXPECT_EQ(ran.load(), 1);  // on_drop ran it on this thread
}

TEST(TaskPool, ADroppedSubmitTaskHasAValidFutureWhosePromiseBreaks) {
  full_task_pool full(crew::overflow_policy::drop, [](crew::task&& t) { (void)t; });
  auto [status, result] = full.pool->submit_task([] { return 1; });
  EXPECT_EQ(status, submit_status::dropped);
  ASSERT_TRUE(result.valid());
  try {
    (void)result.get();
    ADD_FAILURE() << "a dropped task destroyed unrun must break its promise";
  } catch (const std::future_error& e) {
    EXPECT_EQ(e.code(), std::future_errc::broken_promise);
  }
}

TEST(TaskPool, SubmitTaskCarriesValuesVoidAndExceptions) {
  crew::task_pool pool{{.workers = 2}};
  auto [s1, r1] = pool.submit_task([] { return 42; });
  ASSERT_EQ(s1, submit_status::accepted);
  EXPECT_EQ(r1.get(), 42);
  int side = 0;
  auto [s2, r2] = pool.submit_task([&] { side = 5; });
  static_assert(std::is_same_v<decltype(r2), std::future<void>>);
  ASSERT_EQ(s2, submit_status::accepted);
  r2.get();
  EXPECT_EQ(side, 5);
  auto [s3, r3] = pool.submit_task([]() -> std::string { throw std::runtime_error("bad"); });
  ASSERT_EQ(s3, submit_status::accepted);
  EXPECT_THROW((void)r3.get(), std::runtime_error);
  EXPECT_EQ(pool.stats().failed, 0U);  // the exception went to the future
  auto big = [pad = std::array<char, 200>{}] { return static_cast<int>(pad.size()); };
  EXPECT_EQ(pool.submit_task(big).result.get(), 200);
  auto [s4, r4] = pool.submit_task([p = std::make_unique<int>(9)] { return *p; });
  EXPECT_EQ(r4.get(), 9);
}

TEST(TaskPool, RefusedSubmitTaskLeavesTheCallableIntactAndTheFutureInvalid) {
  full_task_pool full;
  auto f = [p = std::make_unique<int>(11)] { return *p; };
  auto [status, result] = full.pool->submit_task(std::move(f));
  EXPECT_EQ(status, submit_status::rejected);
  EXPECT_FALSE(result.valid());
  EXPECT_EQ(f(), 11);  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  full.release.open();
  full.pool->shutdown();
  auto [closed, none] = full.pool->submit_task(std::move(f));
  EXPECT_EQ(closed, submit_status::closed);
  EXPECT_FALSE(none.valid());
  EXPECT_EQ(f(), 11);  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
}

// One worker held in a task until the returned gate opens (20 ms after the abort begins).
struct held_pool {
  crew::task_pool pool{{.workers = 1}};
  gate hold;
  std::atomic<bool> holding{false};
  held_pool() {
    EXPECT_EQ(pool.submit([this] {
      holding = true;
      hold.wait();
    }),
              submit_status::accepted);
    EXPECT_TRUE(eventually([&] { return holding.load(); }));
  }
  crew::shutdown_report<crew::task> abort() {
    std::thread opener([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      hold.open();
    });
    auto report = pool.shutdown(crew::shutdown_mode::abort);
    opener.join();
    return report;
  }
};

TEST(TaskPool, HandedBackTasksBreakTheirPromiseAndReleaseTheirCapturesOnce) {
  lifetime_counts counts;
  held_pool held;
  auto [s, promised] = held.pool.submit_task([obj = tracked(counts, 4)] { return obj.value; });
  ASSERT_EQ(s, submit_status::accepted);
  {
    auto report = held.abort();
    ASSERT_EQ(report.handed_back.size(), 1U);
    EXPECT_EQ(counts.live(), 1);  // the capture, inside the handed-back task
  }
  EXPECT_EQ(counts.live(), 0);
  try {
    (void)promised.get();
    ADD_FAILURE() << "a destroyed handed-back task must break its promise";
  } catch (const std::future_error& e) {
    EXPECT_EQ(e.code(), std::future_errc::broken_promise);
  }
}

TEST(TaskPool, AHandedBackTaskCanStillBeRun) {
  held_pool held;
  auto [s, r] = held.pool.submit_task([] { return 3; });
  ASSERT_EQ(s, submit_status::accepted);
  auto report = held.abort();
  ASSERT_EQ(report.handed_back.size(), 1U);
  report.handed_back[0]();
  EXPECT_EQ(r.get(), 3);
}

TEST(TaskPool, KnowsItsOwnWorkersAndRefusesToWaitFromThem) {
  crew::task_pool pool{{.workers = 1}};
  EXPECT_FALSE(pool.in_worker());
  auto [s, r] = pool.submit_task([&] {
    EXPECT_TRUE(pool.in_worker());
    EXPECT_THROW(pool.wait_idle(), std::logic_error);
    return true;
  });
  ASSERT_EQ(s, submit_status::accepted);
  EXPECT_TRUE(r.get());
  crew::task_pool other{{.workers = 1}};
  EXPECT_FALSE(other.submit_task([&] { return pool.in_worker(); }).result.get());
}

// ---- crew::task_group ------------------------------------------------------------------------

TEST(TaskGroup, ClosuresOf40BytesAreStoredInline) {
  static_assert(crew::task_group::stored_inline<sized<40>>);
  static_assert(!crew::task_group::stored_inline<sized<48>>);
  static_assert(!crew::task_group::stored_inline<throwing_move>);
}

TEST(TaskGroup, RunsEveryTaskAndWaits) {
  crew::task_pool pool{{.workers = 2}};
  crew::task_group group{pool};
  std::atomic<int> hits{0};
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(group.run([&] { hits.fetch_add(1); }), submit_status::accepted);
    ASSERT_EQ(group.run([&](const std::stop_token&) { hits.fetch_add(1); }),
              submit_status::accepted);
  }
  group.wait();
  EXPECT_EQ(hits.load(), 2000);
  EXPECT_EQ(group.failed(), 0U);
  EXPECT_EQ(group.skipped(), 0U);
  group.wait();  // nothing outstanding: returns at once
}

TEST(TaskGroup, TheFirstThrowStopsTheGroupSkipsUnstartedTasksAndCancelsLaterRuns) {
  crew::task_pool pool{{.workers = 1}};
  crew::task_group group{pool};
  gate go;
  std::atomic<int> ran{0};
  ASSERT_EQ(group.run([&] {
    go.wait();
    throw std::runtime_error("first");
  }),
            submit_status::accepted);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(group.run([&] { ran.fetch_add(1); }), submit_status::accepted);
  }
  go.open();
  try {
    group.wait();
    ADD_FAILURE() << "wait() must rethrow";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "first");
  }
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(group.failed(), 1U);
  EXPECT_EQ(group.skipped(), 5U);
  EXPECT_TRUE(group.get_token().stop_possible());
}

TEST(TaskGroup, LaterRunsAreCancelledUntilWaitEndsTheRound) {
  crew::task_pool pool{{.workers = 1}};
  crew::task_group group{pool};
  ASSERT_EQ(group.run([] { throw std::logic_error("x"); }), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return group.get_token().stop_requested(); }));
  auto f = [p = std::make_unique<int>(1)] { return p != nullptr; };
  EXPECT_EQ(group.run(std::move(f)), submit_status::cancelled);
  EXPECT_TRUE(f());  // not moved from NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  EXPECT_THROW(group.wait(), std::logic_error);
  // Re-use: a fresh round.
  const std::stop_token old = group.get_token();
  std::atomic<int> ran{0};
  EXPECT_EQ(group.run([&] { ran.fetch_add(1); }), submit_status::accepted);
  group.wait();  // no exception: the first one was consumed
  EXPECT_EQ(ran.load(), 1);
  EXPECT_FALSE(group.get_token().stop_requested());
  EXPECT_EQ(group.failed(), 1U);  // over the group's life
  (void)old;
}

TEST(TaskGroup, FailedCountsEveryThrowAndWaitRethrowsOne) {
  crew::task_pool pool{{.workers = 2}};
  crew::task_group group{pool};
  std::atomic<int> arrived{0};
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(group.run([&, i] {
      arrived.fetch_add(1);
      while (arrived.load() < 2) std::this_thread::yield();
      throw std::runtime_error(std::to_string(i));
    }),
              submit_status::accepted);
  }
  EXPECT_THROW(group.wait(), std::runtime_error);
  EXPECT_EQ(group.failed(), 2U);
}

TEST(TaskGroup, RunningTasksSeeTheStopThroughTheirToken) {
  crew::task_pool pool{{.workers = 2}};
  crew::task_group group{pool};
  std::atomic<bool> started{false};
  std::atomic<bool> saw_stop{false};
  ASSERT_EQ(group.run([&](const std::stop_token& stop) {
    started = true;
    while (!stop.stop_requested()) std::this_thread::yield();
    saw_stop = true;
  }),
            submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  ASSERT_EQ(group.run([] { throw std::runtime_error("stop them"); }), submit_status::accepted);
  EXPECT_THROW(group.wait(), std::runtime_error);
  EXPECT_TRUE(saw_stop.load());
  EXPECT_EQ(group.skipped(), 0U);
}

TEST(TaskGroup, RequestStopCancelsAndSkips) {
  crew::task_pool pool{{.workers = 1}};
  crew::task_group group{pool};
  gate go;
  std::atomic<bool> started{false};
  ASSERT_EQ(group.run([&] {
    started = true;
    go.wait();
  }),
            submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  ASSERT_EQ(group.run([] { ADD_FAILURE() << "skipped task ran"; }), submit_status::accepted);
  group.request_stop();
  EXPECT_TRUE(group.get_token().stop_requested());
  EXPECT_EQ(group.run([] {}), submit_status::cancelled);
  go.open();
  group.wait();  // a stop without an exception: wait() returns normally
  EXPECT_EQ(group.skipped(), 1U);
  EXPECT_EQ(group.failed(), 0U);
  EXPECT_EQ(group.run([] {}), submit_status::accepted);
  group.wait();
}

TEST(TaskGroup, TwoGroupsOnOnePoolAreIndependent) {
  crew::task_pool pool{{.workers = 2}};
  crew::task_group failing{pool};
  crew::task_group healthy{pool};
  std::atomic<int> ran{0};
  ASSERT_EQ(failing.run([] { throw std::runtime_error("one"); }), submit_status::accepted);
  ASSERT_TRUE(eventually([&] { return failing.get_token().stop_requested(); }));
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(healthy.run([&] { ran.fetch_add(1); }), submit_status::accepted);
  }
  healthy.wait();
  EXPECT_EQ(ran.load(), 100);
  EXPECT_FALSE(healthy.get_token().stop_requested());
  EXPECT_EQ(healthy.failed(), 0U);
  EXPECT_THROW(failing.wait(), std::runtime_error);
}

TEST(TaskGroup, WaitFromAWorkerOfThePoolThrowsLogicError) {
  crew::task_pool pool{{.workers = 1}};
  crew::task_group group{pool};
  std::atomic<bool> threw{false};
  ASSERT_EQ(pool.submit([&] {
    try {
      group.wait();
    } catch (const std::logic_error&) {
      threw = true;
    }
  }),
            submit_status::accepted);
  pool.wait_idle();
  EXPECT_TRUE(threw.load());
  // From a worker of another pool it is an ordinary wait.
  crew::task_pool other{{.workers = 1}};
  std::atomic<int> ran{0};
  ASSERT_EQ(group.run([&] { ran.fetch_add(1); }), submit_status::accepted);
  other.submit_task([&] { group.wait(); }).result.get();
  EXPECT_EQ(ran.load(), 1);
}

TEST(TaskGroup, TasksMayRunMoreTasksOfTheGroup) {
  crew::task_pool pool{{.workers = 2, .queue_capacity = 4096}};
  crew::task_group group{pool};
  std::atomic<int> leaves{0};
  std::function<void(int)> spawn = [&](int depth) {
    if (depth == 0) {
      leaves.fetch_add(1);
      return;
    }
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(group.run([&spawn, depth] { spawn(depth - 1); }), submit_status::accepted);
    }
  };
  ASSERT_EQ(group.run([&] { spawn(8); }), submit_status::accepted);
  group.wait();
  EXPECT_EQ(leaves.load(), 256);
}

TEST(TaskGroup, CapturedStateIsGoneWhenWaitReturns) {
  lifetime_counts counts;
  crew::task_pool pool{{.workers = 2}};
  crew::task_group group{pool};
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(group.run([obj = tracked(counts, i)] { EXPECT_GE(obj.value, 0); }),
              submit_status::accepted);
    ASSERT_EQ(group.run([obj = tracked(counts, i), pad = std::array<char, 200>{}] { (void)pad; }),
              submit_status::accepted);
  }
  group.wait();
  EXPECT_EQ(counts.live(), 0);  // at once, not eventually
}

TEST(TaskGroup, RefusedRunsAreNotMovedFromAndDoNotHoldWait) {
  full_task_pool full;
  crew::task_group group{*full.pool};
  auto f = [p = std::make_unique<int>(5)] { return p != nullptr; };
  EXPECT_EQ(group.run(std::move(f)), submit_status::rejected);
  EXPECT_TRUE(f());  // not moved from NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  group.wait();      // nothing outstanding
  full.release.open();
  full.pool->shutdown();
  EXPECT_EQ(group.run([] {}), submit_status::closed);
  group.wait();
}

TEST(TaskGroup, HandedBackTasksCountAsSkippedOnceDestroyed) {
  lifetime_counts counts;
  held_pool held;
  crew::task_group group{held.pool};
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(group.run([obj = tracked(counts, i)] { ADD_FAILURE() << "handed back, not run"; }),
              submit_status::accepted);
  }
  {
    auto report = held.abort();
    EXPECT_EQ(report.handed_back.size(), 3U);
    EXPECT_EQ(counts.live(), 3);
  }
  group.wait();  // returns: the destroyed tasks counted themselves out
  EXPECT_EQ(group.skipped(), 3U);
  EXPECT_EQ(counts.live(), 0);
}

TEST(TaskGroup, ManyThreadsRunIntoOneGroup) {
  crew::task_pool pool{{.workers = 2}};
  crew::task_group group{pool};
  std::atomic<long> sum{0};
  const int per_thread = static_cast<int>(crew_test::scaled(20000));
  std::vector<std::thread> producers;
  producers.reserve(3);
  for (int t = 0; t < 3; ++t) {
    producers.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        EXPECT_EQ(group.run([&sum, i] { sum.fetch_add(i); }), submit_status::accepted);
      }
    });
  }
  for (auto& p : producers) p.join();
  group.wait();
  const long expected = 3L * per_thread * (per_thread - 1) / 2;
  EXPECT_EQ(sum.load(), expected);
}

}  // namespace
