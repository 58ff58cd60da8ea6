// Tests for crew::bounded_queue<T>: single-thread semantics, element lifetimes, closing, and
// multi-threaded stress sized for a 2-core machine.

#include <crew/bounded_queue.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using crew::bounded_queue;

TEST(BoundedQueue, CapacityIsRoundedUpToAPowerOfTwo) {
  EXPECT_EQ(bounded_queue<int>(1).capacity(), 1U);
  EXPECT_EQ(bounded_queue<int>(2).capacity(), 2U);
  EXPECT_EQ(bounded_queue<int>(3).capacity(), 4U);
  EXPECT_EQ(bounded_queue<int>(1000).capacity(), 1024U);
  EXPECT_EQ(bounded_queue<int>(1024).capacity(), 1024U);
}

TEST(BoundedQueue, ZeroCapacityIsRejectedWithAMessage) {
  try {
    bounded_queue<int> q(0);
    FAIL() << "capacity 0 was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("capacity"), std::string::npos) << e.what();
  }
}

TEST(BoundedQueue, HugeCapacityIsRejectedWithAMessage) {
  // 2^40 slots of 64 bytes is 64 TiB: more than any test machine has.
  try {
    bounded_queue<int> q(std::size_t{1} << 40);
    FAIL() << "2^40 slots were accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("capacity"), std::string::npos) << e.what();
  }
  EXPECT_THROW(bounded_queue<int>(bounded_queue<int>::max_capacity() + 1), std::invalid_argument);
  EXPECT_THROW(bounded_queue<int>(std::numeric_limits<std::size_t>::max()), std::invalid_argument);
}

TEST(BoundedQueue, FifoAndFullAndEmptyEdges) {
  bounded_queue<int> q(4);
  EXPECT_FALSE(q.try_pop().has_value());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(q.try_push(int{i}));
  EXPECT_EQ(q.size_approx(), 4U);
  EXPECT_FALSE(q.try_push(99));
  for (int i = 0; i < 4; ++i) {
    auto v = q.try_pop();
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v, i);
  }
  EXPECT_FALSE(q.try_pop().has_value());
  int out = -1;
  EXPECT_FALSE(q.try_pop(out));
  EXPECT_EQ(out, -1);
  EXPECT_EQ(q.size_approx(), 0U);
}

TEST(BoundedQueue, CapacityOneWrapsManyLaps) {
  bounded_queue<std::uint64_t> q(1);
  for (std::uint64_t i = 0; i < 10'000; ++i) {
    ASSERT_TRUE(q.try_push(std::uint64_t{i}));
    ASSERT_FALSE(q.try_push(std::uint64_t{i + 1})) << "a capacity-1 queue took a second element";
    std::uint64_t out = 0;
    ASSERT_TRUE(q.try_pop(out));
    ASSERT_EQ(out, i);
    ASSERT_FALSE(q.try_pop(out));
  }
  EXPECT_EQ(q.pushed_count(), 10'000U);
  EXPECT_EQ(q.popped_count(), 10'000U);
}

// front_ready() must follow the head through every lap, at every capacity: a wrong lap
// computation (the slot of the previous or the next lap) shows as a wrong answer here.
TEST(BoundedQueue, FrontReadyFollowsTheHeadAcrossLaps) {
  for (std::size_t capacity : {1U, 2U, 8U}) {
    bounded_queue<int> q(capacity);
    for (int lap = 0; lap < 50; ++lap) {
      ASSERT_FALSE(q.front_ready()) << "capacity " << capacity << ", lap " << lap;
      for (std::size_t i = 0; i < capacity; ++i) {
        ASSERT_TRUE(q.try_push(lap));
        ASSERT_TRUE(q.front_ready());
      }
      for (std::size_t i = 0; i < capacity; ++i) {
        ASSERT_TRUE(q.front_ready()) << "capacity " << capacity << ", lap " << lap;
        ASSERT_TRUE(q.try_pop().has_value());
      }
    }
    ASSERT_FALSE(q.front_ready());
    q.close();
    EXPECT_FALSE(q.front_ready()) << "a closed, empty queue has nothing ready";
  }
}

TEST(BoundedQueue, FailedPushDoesNotMoveFromTheArgument) {
  bounded_queue<std::unique_ptr<int>> q(1);
  ASSERT_TRUE(q.try_push(std::make_unique<int>(1)));
  auto second = std::make_unique<int>(2);
  EXPECT_FALSE(q.try_push(std::move(second)));
  ASSERT_NE(second, nullptr) << "a refused push moved from its argument";
  EXPECT_EQ(*second, 2);
  q.close();
  auto third = std::make_unique<int>(3);
  auto first = q.try_pop();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(**first, 1);
  EXPECT_FALSE(q.try_push(std::move(third))) << "a push succeeded after close()";
  ASSERT_NE(third, nullptr) << "a push refused by close() moved from its argument";
}

struct move_only_no_default {
  explicit move_only_no_default(int v) : value(std::make_unique<int>(v)) {}
  move_only_no_default(move_only_no_default&&) noexcept = default;
  move_only_no_default& operator=(move_only_no_default&&) noexcept = default;
  std::unique_ptr<int> value;
};
static_assert(!std::is_default_constructible_v<move_only_no_default>);
static_assert(!std::is_copy_constructible_v<move_only_no_default>);

TEST(BoundedQueue, MoveOnlyNonDefaultConstructibleElements) {
  bounded_queue<move_only_no_default> q(8);
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(q.try_emplace(i));
  EXPECT_FALSE(q.try_emplace(8));
  for (int i = 0; i < 8; ++i) {
    auto v = q.try_pop();
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v->value, i);
  }
}

struct throws_on_negative {
  explicit throws_on_negative(int v) : value(v) {
    if (v < 0) throw std::runtime_error("negative");
  }
  throws_on_negative(throws_on_negative&&) noexcept = default;
  throws_on_negative& operator=(throws_on_negative&&) noexcept = default;
  int value;
};

TEST(BoundedQueue, ThrowingConstructorLeavesTheQueueUnchanged) {
  bounded_queue<throws_on_negative> q(2);
  ASSERT_TRUE(q.try_emplace(1));
  EXPECT_THROW((void)q.try_emplace(-1), std::runtime_error);
  EXPECT_EQ(q.size_approx(), 1U);
  EXPECT_EQ(q.pushed_count(), 1U);
  ASSERT_TRUE(q.try_emplace(2));
  EXPECT_FALSE(q.try_emplace(3));
  EXPECT_EQ(q.try_pop()->value, 1);
  EXPECT_EQ(q.try_pop()->value, 2);
  EXPECT_FALSE(q.try_pop().has_value());
}

TEST(BoundedQueue, CopyPushCopies) {
  bounded_queue<std::string> q(2);
  const std::string s = "hello";
  ASSERT_TRUE(q.try_push(s));
  EXPECT_EQ(s, "hello");
  EXPECT_EQ(*q.try_pop(), "hello");
}

TEST(BoundedQueue, LifetimesNoLeakNoDoubleDestroy) {
  crew_test::lifetime_counts counts;
  {
    bounded_queue<crew_test::tracked> q(8);
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(q.try_emplace(counts, i));
    EXPECT_EQ(counts.live(), 8);
    {
      auto a = q.try_pop();  // moved out: the slot's copy is destroyed
      ASSERT_TRUE(a.has_value());
      EXPECT_EQ(a->value, 0);
      EXPECT_EQ(counts.live(), 8);
    }
    EXPECT_EQ(counts.live(), 7);
    {
      auto b = q.try_pop_batch(3);
      ASSERT_EQ(b.size(), 3U);
      crew_test::tracked first = b.pop();
      EXPECT_EQ(first.value, 1);
      // Two left untaken in the batch: its destructor must destroy them.
    }
    EXPECT_EQ(counts.live(), 4);
    // Four remain inside; the queue's destructor destroys them.
  }
  EXPECT_EQ(counts.live(), 0);
  EXPECT_EQ(counts.constructed(), counts.destroyed());
}

TEST(BoundedQueue, DestructorDestroysRemainingAfterWrapAround) {
  crew_test::lifetime_counts counts;
  {
    bounded_queue<crew_test::tracked> q(4);
    // Six pushes through four slots: the remaining three straddle the wrap-around.
    for (int lap = 0; lap < 3; ++lap) {
      for (int i = 0; i < 2; ++i) ASSERT_TRUE(q.try_emplace(counts, i));
      ASSERT_TRUE(q.try_pop().has_value());
    }
    EXPECT_EQ(q.size_approx(), 3U);
    EXPECT_EQ(counts.live(), 3);
  }
  EXPECT_EQ(counts.live(), 0);
}

TEST(BoundedQueue, BulkPushTakesAPrefixAndLeavesTheRestUntouched) {
  bounded_queue<std::unique_ptr<int>> q(4);
  std::vector<std::unique_ptr<int>> in;
  for (int i = 0; i < 6; ++i) in.push_back(std::make_unique<int>(i));
  EXPECT_EQ(q.try_push_bulk(in.begin(), in.size()), 4U);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(in[static_cast<std::size_t>(i)], nullptr);
  EXPECT_NE(in[4], nullptr);
  EXPECT_NE(in[5], nullptr);
  EXPECT_EQ(q.try_push_bulk(in.begin() + 4, 2), 0U);
  EXPECT_NE(in[4], nullptr);

  // try_pop_bulk takes only outputs whose write cannot throw: an array of unique_ptr here.
  std::vector<std::unique_ptr<int>> out(8);
  EXPECT_EQ(q.try_pop_bulk(out.data(), 3), 3U);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*out[static_cast<std::size_t>(i)], i);
  EXPECT_EQ(q.try_push_bulk(in.begin() + 4, 2), 2U);
  EXPECT_EQ(q.try_pop_bulk(out.data() + 3, 5), 3U);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(*out[static_cast<std::size_t>(i)], i);
  EXPECT_EQ(q.try_push_bulk(in.begin(), 0), 0U);
  EXPECT_EQ(q.try_pop_bulk(out.data(), 0), 0U);
}

TEST(BoundedQueue, CloseStopsPushesButNotPops) {
  bounded_queue<int> q(8);
  ASSERT_TRUE(q.try_push(1));
  ASSERT_TRUE(q.try_push(2));
  EXPECT_FALSE(q.is_closed());
  EXPECT_FALSE(q.is_drained());
  EXPECT_EQ(q.close(), 2U);
  EXPECT_EQ(q.close(), 2U) << "close() is idempotent";
  EXPECT_TRUE(q.is_closed());
  EXPECT_FALSE(q.try_push(3));
  std::vector<int> v{4, 5};
  EXPECT_EQ(q.try_push_bulk(v.begin(), v.size()), 0U);
  EXPECT_FALSE(q.is_drained());
  EXPECT_EQ(*q.try_pop(), 1);
  EXPECT_EQ(*q.try_pop(), 2);
  EXPECT_TRUE(q.is_drained());
  EXPECT_EQ(q.size_approx(), 0U);
}

// ---------------------------------------------------------------------------------------------
// Multi-threaded stress. Each value carries its producer and sequence number; the test checks
// that every value is popped exactly once (count per value), that the sum matches, and that each
// consumer sees every producer's values in increasing order (FIFO per producer).

struct stress_config {
  int producers;
  int consumers;
  std::size_t capacity;
  bool bulk;
};

void run_stress(const stress_config& cfg) {
  const std::uint64_t per_producer = crew_test::scaled(200'000);
  bounded_queue<std::uint64_t> q(cfg.capacity);
  std::vector<std::atomic<std::uint8_t>> seen(per_producer *
                                              static_cast<std::uint64_t>(cfg.producers));
  std::atomic<std::uint64_t> popped_sum{0};
  std::atomic<std::uint64_t> popped_total{0};
  std::atomic<int> order_violations{0};
  const std::uint64_t total = per_producer * static_cast<std::uint64_t>(cfg.producers);

  std::vector<std::thread> threads;
  for (int p = 0; p < cfg.producers; ++p) {
    threads.emplace_back([&, p] {
      const std::uint64_t base = static_cast<std::uint64_t>(p) << 40;
      std::uint64_t i = 0;
      std::vector<std::uint64_t> chunk;
      while (i < per_producer) {
        if (cfg.bulk) {
          chunk.clear();
          for (std::uint64_t k = i; k < std::min(per_producer, i + 7); ++k)
            chunk.push_back(base | k);
          const std::size_t n = q.try_push_bulk(chunk.begin(), chunk.size());
          i += n;
          if (n == 0) std::this_thread::yield();
        } else if (q.try_push(base | i)) {
          ++i;
        } else {
          std::this_thread::yield();
        }
      }
    });
  }
  for (int c = 0; c < cfg.consumers; ++c) {
    threads.emplace_back([&] {
      std::vector<std::uint64_t> last(static_cast<std::size_t>(cfg.producers), 0);
      std::vector<bool> any(static_cast<std::size_t>(cfg.producers), false);
      std::uint64_t local_sum = 0;
      auto take = [&](std::uint64_t v) {
        const auto p = static_cast<std::size_t>(v >> 40);
        const std::uint64_t seq = v & ((std::uint64_t{1} << 40) - 1);
        if (any[p] && seq <= last[p]) order_violations.fetch_add(1, std::memory_order_relaxed);
        any[p] = true;
        last[p] = seq;
        seen[p * per_producer + seq].fetch_add(1, std::memory_order_relaxed);
        local_sum += v;
      };
      while (popped_total.load(std::memory_order_relaxed) < total) {
        std::size_t n = 0;
        if (cfg.bulk) {
          auto b = q.try_pop_batch(5);
          n = b.size();
          while (!b.empty()) take(b.pop());
        } else if (auto v = q.try_pop()) {
          take(*v);
          n = 1;
        }
        if (n == 0) {
          std::this_thread::yield();
        } else {
          popped_total.fetch_add(n, std::memory_order_relaxed);
        }
      }
      popped_sum.fetch_add(local_sum, std::memory_order_relaxed);
    });
  }
  for (auto& t : threads) t.join();

  std::uint64_t expected_sum = 0;
  for (int p = 0; p < cfg.producers; ++p) {
    const std::uint64_t base = static_cast<std::uint64_t>(p) << 40;
    expected_sum += base * per_producer + per_producer * (per_producer - 1) / 2;
  }
  EXPECT_EQ(popped_total.load(), total);
  EXPECT_EQ(popped_sum.load(), expected_sum);
  EXPECT_EQ(order_violations.load(), 0);
  std::uint64_t not_once = 0;
  for (auto& s : seen) not_once += (s.load() != 1);
  EXPECT_EQ(not_once, 0U) << "values popped zero or several times";
  EXPECT_FALSE(q.try_pop().has_value());
}

TEST(BoundedQueueStress, OneProducerOneConsumer) { run_stress({1, 1, 64, false}); }
TEST(BoundedQueueStress, TwoProducersTwoConsumers) { run_stress({2, 2, 64, false}); }
TEST(BoundedQueueStress, FourProducersThreeConsumersTinyCapacity) { run_stress({4, 3, 2, false}); }
TEST(BoundedQueueStress, BulkTwoByTwo) { run_stress({2, 2, 32, true}); }
TEST(BoundedQueueStress, BulkThreeByTwoCapacityFour) { run_stress({3, 2, 4, true}); }

// Producers push until the queue is closed under them; consumers drain until is_drained().
// Everything that any push reported as accepted must come out, exactly once.
TEST(BoundedQueueStress, CloseRacingWithPushesLosesNothing) {
  for (int round = 0; round < static_cast<int>(crew_test::scaled(20)) + 1; ++round) {
    bounded_queue<std::uint64_t> q(16);
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> accepted_sum{0};
    std::atomic<std::uint64_t> popped{0};
    std::atomic<std::uint64_t> popped_sum{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int p = 0; p < 3; ++p) {
      threads.emplace_back([&, p] {
        while (!go.load()) std::this_thread::yield();
        std::uint64_t n = 0;
        std::uint64_t sum = 0;
        for (std::uint64_t i = 1; !q.is_closed(); ++i) {
          const std::uint64_t v = (static_cast<std::uint64_t>(p) << 32) | i;
          if (q.try_push(std::uint64_t{v})) {
            ++n;
            sum += v;
          }
        }
        accepted.fetch_add(n);
        accepted_sum.fetch_add(sum);
      });
    }
    for (int c = 0; c < 2; ++c) {
      threads.emplace_back([&] {
        while (!go.load()) std::this_thread::yield();
        std::uint64_t n = 0;
        std::uint64_t sum = 0;
        while (!q.is_drained()) {
          if (auto v = q.try_pop()) {
            ++n;
            sum += *v;
          }
        }
        popped.fetch_add(n);
        popped_sum.fetch_add(sum);
      });
    }
    go.store(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const std::uint64_t final_count = q.close();
    for (auto& t : threads) t.join();
    EXPECT_EQ(final_count, accepted.load());
    EXPECT_EQ(popped.load(), accepted.load());
    EXPECT_EQ(popped_sum.load(), accepted_sum.load());
  }
}

}  // namespace
