// Proves that the pools allocate nothing per job in steady state: every operator new in this
// binary is counted, and 100k submits (single, bulk, with latency tracking, with a concrete
// handler; a keyed pool over many keys, with std::string keys too) must add none. Tasks: a
// closure of 40 bytes costs nothing (submit, or run in a task_group), one of 200 bytes at most one
// allocation, submit_task only what std::promise allocates.

#include <crew/keyed_pool.hpp>
#include <crew/task.hpp>
#include <crew/worker_pool.hpp>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <new>
#include <string>
#include <vector>

namespace {
std::atomic<std::uint64_t> g_allocations{0};

void* counted_alloc(std::size_t n, std::size_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n);
  } else {
    p = std::aligned_alloc(align, (n + align - 1) / align * align);
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, 0); }
void* operator new[](std::size_t n) { return counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n, 0);
  } catch (...) {
    return nullptr;
  }
}
// GCC cannot see that these deletes only ever receive pointers from the news above.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

struct small_job {
  int a;
  int b;
};

struct sum_handler {
  std::atomic<long>* sum;
  void operator()(small_job&& j) const { sum->fetch_add(j.a + j.b, std::memory_order_relaxed); }
};

constexpr int jobs = 100'000;
// Recycling is off: a respawn starts a thread, which allocates (about once per 2^16 jobs per
// worker by default); steady state means between recycles.

template <class Pool>
std::uint64_t allocations_for_submits(Pool& pool, bool bulk) {
  std::vector<small_job> batch(1000, small_job{1, 2});  // allocated before counting
  for (int i = 0; i < 1000; ++i)
    EXPECT_EQ(pool.submit(small_job{1, 1}), crew::submit_status::accepted);
  pool.wait_idle();  // warm-up: first parks, first wake-ups
  const std::uint64_t before = g_allocations.load();
  if (bulk) {
    for (int i = 0; i < jobs / 1000; ++i) EXPECT_EQ(pool.submit_bulk(batch), batch.size());
  } else {
    for (int i = 0; i < jobs; ++i) {
      EXPECT_EQ(pool.submit(small_job{i, 1}), crew::submit_status::accepted);
    }
  }
  pool.wait_idle();
  return g_allocations.load() - before;
}

TEST(WorkerPoolAllocations, NoAllocationPerJobWithTheDefaultHandler) {
  std::atomic<long> sum{0};
  crew::worker_pool<small_job> pool{sum_handler{&sum},
                                    {.workers = 2, .queue_capacity = 1024, .recycle_after = 0}};
  const std::uint64_t allocs = allocations_for_submits(pool, false);
  std::printf("[ allocs   ] %llu allocations for %d submits (default handler)\n",
              static_cast<unsigned long long>(allocs), jobs);
  EXPECT_EQ(allocs, 0U);
  EXPECT_EQ(pool.stats().executed, static_cast<std::uint64_t>(jobs + 1000));
}

TEST(WorkerPoolAllocations, NoAllocationPerJobWithBulkSubmit) {
  std::atomic<long> sum{0};
  crew::worker_pool<small_job> pool{sum_handler{&sum},
                                    {.workers = 2, .queue_capacity = 1024, .recycle_after = 0}};
  EXPECT_EQ(allocations_for_submits(pool, true), 0U);
}

TEST(WorkerPoolAllocations, NoAllocationPerJobWithLatencyTracking) {
  std::atomic<long> sum{0};
  crew::pool_options<small_job> o{.workers = 2, .queue_capacity = 256, .recycle_after = 0};
  o.track_latency = true;
  crew::worker_pool<small_job> pool{sum_handler{&sum}, std::move(o)};
  EXPECT_EQ(allocations_for_submits(pool, false), 0U);
}

TEST(WorkerPoolAllocations, NoAllocationPerJobWithAConcreteHandler) {
  std::atomic<long> sum{0};
  crew::worker_pool<small_job, sum_handler> pool{
      sum_handler{&sum}, {.workers = 2, .queue_capacity = 64, .recycle_after = 0}};
  EXPECT_EQ(allocations_for_submits(pool, false), 0U);
}

// A keyed pool: 100k jobs over 1,000 keys (each key created and removed many times over), single
// and bulk submits: the key table and the FIFOs live in storage sized at construction.
TEST(KeyedPoolAllocations, NoAllocationPerJobOrPerKey) {
  std::atomic<long> sum{0};
  crew::keyed_pool<std::uint32_t, small_job, sum_handler> pool{
      sum_handler{&sum}, {.workers = 2, .queue_capacity = 1024, .recycle_after = 0}};
  std::vector<small_job> batch(10, small_job{1, 2});
  const auto run = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const auto key = static_cast<std::uint32_t>((i * 7919) % 1000);
      EXPECT_EQ(pool.submit(key, small_job{i, 1}), crew::submit_status::accepted);
      if (i % 100 == 0) {
        EXPECT_EQ(pool.submit_bulk(key, batch), batch.size());
      }
    }
    pool.wait_idle();
  };
  run(1000);  // warm-up
  const std::uint64_t before = g_allocations.load();
  run(jobs);
  const std::uint64_t allocs = g_allocations.load() - before;
  std::printf("[ allocs   ] %llu allocations for %d keyed submits over 1000 keys\n",
              static_cast<unsigned long long>(allocs), jobs + jobs / 10);
  EXPECT_EQ(allocs, 0U);
  EXPECT_GT(pool.stats().executed, static_cast<std::uint64_t>(jobs));
}

// Keys whose copy may allocate (std::string beyond the small-string buffer) still cost nothing
// per job when the key's entry already exists; a new entry copies the key (one allocation for a
// long string, none for a short one).
TEST(KeyedPoolAllocations, ShortStringKeysAllocateNothing) {
  std::atomic<long> sum{0};
  crew::keyed_pool<std::string, small_job, sum_handler> pool{
      sum_handler{&sum}, {.workers = 2, .queue_capacity = 256, .recycle_after = 0}};
  const std::vector<std::string> keys = {"alpha", "beta", "gamma", "delta"};  // SSO-sized
  for (int i = 0; i < 1000; ++i) (void)pool.submit(keys[static_cast<std::size_t>(i) % 4], {i, 1});
  pool.wait_idle();
  const std::uint64_t before = g_allocations.load();
  for (int i = 0; i < jobs; ++i) {
    EXPECT_EQ(pool.submit(keys[static_cast<std::size_t>(i) % 4], small_job{i, 1}),
              crew::submit_status::accepted);
  }
  pool.wait_idle();
  EXPECT_EQ(g_allocations.load() - before, 0U);
}

// ---- tasks -----------------------------------------------------------------------------------

// A closure of exactly N bytes (a pointer and padding).
template <std::size_t N>
struct closure_of {
  std::atomic<long>* sum;
  std::array<unsigned char, N - sizeof(void*)> pad{};
  void operator()() const { sum->fetch_add(1 + pad[0], std::memory_order_relaxed); }
};

// Allocations made by `jobs` calls of submit_one(i), after a warm-up, on a 2-worker task pool.
template <class SubmitOne>
std::uint64_t task_allocations(crew::task_pool& pool, SubmitOne submit_one, bool group) {
  crew::task_group g{pool};
  auto drain = [&] {
    if (group) {
      g.wait();
    } else {
      pool.wait_idle();
    }
  };
  for (int i = 0; i < 1000; ++i) submit_one(g);
  drain();
  const std::uint64_t before = g_allocations.load();
  for (int i = 0; i < jobs; ++i) submit_one(g);
  drain();
  return g_allocations.load() - before;
}

crew::pool_options<crew::task> task_options() {
  return {.workers = 2, .queue_capacity = 1024, .recycle_after = 0};
}

TEST(TaskAllocations, A40ByteClosureAllocatesNothing) {
  static_assert(sizeof(closure_of<40>) == 40);
  std::atomic<long> sum{0};
  crew::task_pool pool{task_options()};
  const std::uint64_t allocs = task_allocations(
      pool,
      [&](crew::task_group&) {
        EXPECT_EQ(pool.submit(closure_of<40>{&sum}), crew::submit_status::accepted);
      },
      false);
  std::printf("[ allocs   ] %llu allocations for %d task submits of 40-byte closures\n",
              static_cast<unsigned long long>(allocs), jobs);
  EXPECT_EQ(allocs, 0U);
  EXPECT_EQ(sum.load(), jobs + 1000);
}

TEST(TaskAllocations, A200ByteClosureAllocatesAtMostOnce) {
  static_assert(sizeof(closure_of<200>) == 200);
  std::atomic<long> sum{0};
  crew::task_pool pool{task_options()};
  const std::uint64_t allocs = task_allocations(
      pool,
      [&](crew::task_group&) {
        EXPECT_EQ(pool.submit(closure_of<200>{&sum}), crew::submit_status::accepted);
      },
      false);
  EXPECT_LE(allocs, static_cast<std::uint64_t>(jobs));
  EXPECT_GE(allocs, static_cast<std::uint64_t>(jobs));  // and it is stored on the heap
}

TEST(TaskAllocations, A40ByteGroupTaskAllocatesNothing) {
  std::atomic<long> sum{0};
  crew::task_pool pool{task_options()};
  const std::uint64_t allocs = task_allocations(
      pool,
      [&](crew::task_group& g) {
        EXPECT_EQ(g.run(closure_of<40>{&sum}), crew::submit_status::accepted);
      },
      true);
  EXPECT_EQ(allocs, 0U);
  EXPECT_EQ(sum.load(), jobs + 1000);
}

TEST(TaskAllocations, SubmitTaskAllocatesOnlyThePromisesState) {
  std::atomic<long> sum{0};
  crew::task_pool pool{task_options()};
  std::uint64_t allocs = 0;
  {
    std::vector<std::future<void>> results;
    results.reserve(static_cast<std::size_t>(jobs) + 1000);  // before counting
    allocs = task_allocations(
        pool,
        [&](crew::task_group&) {
          auto r = pool.submit_task(closure_of<16>{&sum});
          EXPECT_EQ(r.status, crew::submit_status::accepted);
          results.push_back(std::move(r.result));
        },
        false);
  }
  // std::promise allocates its shared state and, in libstdc++, its result apart: two per task;
  // the 16-byte closure and the promise are stored inline in the task.
  std::printf("[ allocs   ] %llu allocations for %d submit_task calls\n",
              static_cast<unsigned long long>(allocs), jobs);
  EXPECT_LE(allocs, 2U * static_cast<std::uint64_t>(jobs));
}

TEST(WorkerPoolAllocations, TheCounterSeesAllocations) {
  // The proof above is only worth something if this counter counts.
  const std::uint64_t before = g_allocations.load();
  auto* p = new std::vector<int>(10);
  asm volatile("" : : "g"(p) : "memory");  // keep the compiler from eliding the pair
  delete p;
  EXPECT_GE(g_allocations.load() - before, 1U);
}

}  // namespace
