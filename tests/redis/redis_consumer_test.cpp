// crew::redis::consumer against a real redis-server started by the test binary: each command
// path (read, claim of others' stale entries, own-pending recovery, heartbeat, dead letter,
// hand-back), deleted (NIL) entries, each shutdown mode, bad options.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "crew/redis/consumer.hpp"
#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;
using crew::redis::consumer;
using crew::redis::consumer_options;
using crew::redis::message;

using crew_test::server;

std::string unique_stream() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string(info->test_suite_name()) + "." + info->name();
}

consumer_options options_for(const std::string& stream, const std::string& name = "c1") {
  consumer_options o;
  o.connection = server().connection_options();
  o.connection.socket_timeout = 1000ms;
  o.stream = stream;
  o.group = "g";
  o.consumer = name;
  o.block = 50ms;
  o.min_idle = 500ms;
  o.dead_letter_after = 3;
  o.flush_timeout = 2000ms;
  return o;
}

using crew_test::recorder;

void create_group(crew_test::raw_client& raw, const std::string& stream) {
  (void)raw.run({"XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"});
}

// A consumer's own XREADGROUP as a named ghost: leaves `n` entries pending on `name`.
std::vector<message> ghost_read(crew_test::raw_client& raw, const std::string& stream,
                                const std::string& name, std::size_t n) {
  const auto r = raw.run(
      {"XREADGROUP", "GROUP", "g", name, "COUNT", std::to_string(n), "STREAMS", stream, ">"});
  std::vector<message> got;
  std::vector<std::string> deleted;
  crew::redis::parse_read(r.get(), 1, got, deleted);
  return got;
}

TEST(RedisOptions, BadOptionsThrowNamingTheOption) {
  const auto expect_bad = [](consumer_options o, const char* what) {
    try {
      consumer<> c(std::move(o), [](message&) {}, {.workers = 1});
      ADD_FAILURE() << "no exception for " << what;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  auto o = options_for("bad");
  o.stream.clear();
  expect_bad(o, "stream");
  o = options_for("bad");
  o.connection.socket_timeout = o.block;
  expect_bad(o, "socket_timeout");
  o = options_for("bad");
  o.dead_letter_after = 0;
  expect_bad(o, "dead_letter_after");
  o = options_for("bad");
  o.heartbeat_interval = o.min_idle;
  expect_bad(o, "heartbeat_interval");
  o = options_for("bad");
  o.connection.port = 0;
  expect_bad(o, "port");
  EXPECT_THROW((consumer<>(options_for("bad"), [](message&) {}, {.workers = 0})),
               std::invalid_argument);
}

TEST(RedisConsumer, StreamKeyOfTheWrongTypeIsAClearErrorNotAHang) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  (void)raw.run({"SET", stream, "not a stream"});
  consumer<> c(options_for(stream), [](message&) {}, {.workers = 2});
  EXPECT_TRUE(crew_test::eventually([&] { return c.last_error().find("WRONGTYPE") == 0; }, 5s))
      << c.last_error();
  const auto start = std::chrono::steady_clock::now();
  const auto report = c.shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(c.stats().fetched, 0U);
}

TEST(RedisConsumer, RunsEachMessageOnceAndAcknowledgesIt) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  const auto ids = raw.produce(stream, 500);
  recorder rec;
  {
    consumer<> c(options_for(stream), [&](message& m) { rec.add(m); }, {.workers = 4});
    ASSERT_TRUE(crew_test::eventually([&] { return rec.total() >= 500; }));
    const auto report = c.shutdown();
    EXPECT_TRUE(report.drained);
    EXPECT_EQ(report.executed, 500U);
    const auto s = c.stats();
    EXPECT_EQ(s.fetched, 500U);
    EXPECT_EQ(s.acknowledged, 500U);
    EXPECT_EQ(s.in_flight, 0U);
  }
  EXPECT_EQ(rec.distinct(), 500U);
  EXPECT_EQ(rec.total(), 500U);
  for (const auto& id : ids) {
    ASSERT_EQ(rec.runs[id].size(), 1U);
    EXPECT_EQ(rec.runs[id].front(), 1U);
  }
  EXPECT_EQ(raw.pending(stream, "g"), 0);
}

TEST(RedisConsumer, FetchesNoMoreThanFreeWorkers) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  raw.produce(stream, 40);
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  std::atomic<int> done{0};
  consumer<> c(options_for(stream),
               [&](message&) {
                 const int now = running.fetch_add(1) + 1;
                 int seen = most.load();
                 while (now > seen && !most.compare_exchange_weak(seen, now)) {
                 }
                 // While this job runs, the consumer owns at most `workers` entries.
                 std::this_thread::sleep_for(5ms);
                 running.fetch_sub(1);
                 done.fetch_add(1);
               },
               {.workers = 2});
  bool within = true;
  while (done.load() < 40) {
    const auto mine = raw.pending_of(stream, "g", "c1");
    if (mine.size() > 2) within = false;
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(within) << "more entries pending on the consumer than it has workers";
  EXPECT_LE(most.load(), 2);
  (void)c.shutdown();
  EXPECT_EQ(raw.pending(stream, "g"), 0);
}

TEST(RedisConsumer, FailedMessageIsDeliveredAgainWithItsCount) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  raw.produce(stream, 10);
  recorder rec;
  std::atomic<bool> thrown{false};
  consumer<> c(options_for(stream),
               [&](message& m) {
                 rec.add(m);
                 if (*m.find("n") == "m3" && !thrown.exchange(true))
                   throw std::runtime_error("once");
               },
               {.workers = 2});
  ASSERT_TRUE(crew_test::eventually([&] { return rec.total() >= 11; }));
  (void)c.shutdown();
  EXPECT_EQ(rec.total(), 11U);
  std::vector<std::uint64_t> m3;
  for (const auto& [id, v] : rec.runs) {
    if (v.size() == 2) m3 = v;
  }
  EXPECT_EQ(m3, (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(c.stats().failed, 1U);
  EXPECT_EQ(raw.pending(stream, "g"), 0);
  EXPECT_EQ(raw.integer({"XLEN", stream + ":dead"}), 0);
}

TEST(RedisConsumer, PoisonMessageIsDeadLetteredAfterNDeliveriesAndNoOtherIs) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  const auto ids = raw.produce(stream, 20);
  recorder rec;
  consumer<> c(options_for(stream),
               [&](message& m) {
                 rec.add(m);
                 if (*m.find("n") == "m7") throw std::runtime_error("poison: cannot parse m7");
               },
               {.workers = 2});
  ASSERT_TRUE(crew_test::eventually([&] { return c.stats().dead_lettered == 1; }));
  (void)c.shutdown();
  EXPECT_EQ(rec.runs[ids[7]], (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(rec.total(), 22U);
  EXPECT_EQ(raw.pending(stream, "g"), 0);
  const auto dead = raw.range(stream + ":dead");
  ASSERT_EQ(dead.size(), 1U);
  EXPECT_EQ(*dead[0].find("source_id"), ids[7]);
  EXPECT_EQ(*dead[0].find("deliveries"), "3");
  EXPECT_EQ(*dead[0].find("error"), "poison: cannot parse m7");
  EXPECT_EQ(*dead[0].find("consumer"), "c1");
  EXPECT_EQ(*dead[0].find("n"), "m7");
}

TEST(RedisConsumer, EntryDeliveredTooOftenIsDeadLetteredWithoutRunning) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  create_group(raw, stream);
  const auto ids = raw.produce(stream, 2);
  ASSERT_EQ(ghost_read(raw, stream, "ghost", 2).size(), 2U);
  // As if the ghost's process had crashed on it three times.
  (void)raw.run(
      {"XCLAIM", stream, "g", "ghost", "0", ids[0], "IDLE", "600000", "RETRYCOUNT", "3", "JUSTID"});
  (void)raw.run({"XCLAIM", stream, "g", "ghost", "0", ids[1], "IDLE", "600000", "JUSTID"});
  recorder rec;
  consumer<> c(options_for(stream), [&](message& m) { rec.add(m); }, {.workers = 2});
  ASSERT_TRUE(crew_test::eventually([&] { return raw.pending(stream, "g") == 0; }));
  (void)c.shutdown();
  EXPECT_EQ(rec.runs.count(ids[0]), 0U);
  EXPECT_EQ(rec.runs[ids[1]], (std::vector<std::uint64_t>{2}));
  const auto dead = raw.range(stream + ":dead");
  ASSERT_EQ(dead.size(), 1U);
  EXPECT_EQ(*dead[0].find("source_id"), ids[0]);
  EXPECT_EQ(*dead[0].find("deliveries"), "4");
  EXPECT_NE(dead[0].find("error")->find("without an acknowledgement"), std::string::npos);
  EXPECT_EQ(c.stats().reclaimed, 2U);
}

TEST(RedisConsumer, ClaimsOthersStaleEntriesAfterMinIdle) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  create_group(raw, stream);
  raw.produce(stream, 10);
  ASSERT_EQ(ghost_read(raw, stream, "ghost", 10).size(), 10U);
  recorder rec;
  const auto start = std::chrono::steady_clock::now();
  consumer<> c(options_for(stream), [&](message& m) { rec.add(m); }, {.workers = 4});
  ASSERT_TRUE(crew_test::eventually([&] { return rec.total() >= 10; }));
  const auto waited = std::chrono::steady_clock::now() - start;
  (void)c.shutdown();
  EXPECT_GE(waited, 450ms) << "claimed before min_idle";
  for (const auto& [id, v] : rec.runs) EXPECT_EQ(v, (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(c.stats().reclaimed, 10U);
  EXPECT_EQ(raw.pending(stream, "g"), 0);
}

TEST(RedisConsumer, RecoversItsOwnPendingEntriesOneAtATimeAtStart) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  create_group(raw, stream);
  raw.produce(stream, 10);
  // A previous incarnation of "c1" read them and died.
  ASSERT_EQ(ghost_read(raw, stream, "c1", 10).size(), 10U);
  raw.produce(stream, 5, "new");
  recorder rec;
  auto o = options_for(stream);
  o.min_idle = 60s;  // nobody would claim them for a minute: recovery must not wait for it
  consumer<> c(o, [&](message& m) { rec.add(m); }, {.workers = 4});
  ASSERT_TRUE(crew_test::eventually([&] { return rec.total() >= 15; }, 5s));
  (void)c.shutdown();
  EXPECT_EQ(rec.total(), 15U);
  std::size_t redelivered = 0;
  for (const auto& [id, v] : rec.runs) {
    ASSERT_EQ(v.size(), 1U);
    EXPECT_LE(v[0], 2U) << "recovery raised a delivery count twice";
    redelivered += v[0] == 2 ? 1 : 0;
  }
  EXPECT_EQ(redelivered, 10U);
  EXPECT_EQ(c.stats().recovered, 10U);
  EXPECT_EQ(raw.pending(stream, "g"), 0);
}

TEST(RedisConsumer, DeletedPendingEntriesAreAcknowledgedNotRun) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  create_group(raw, stream);
  const auto ids = raw.produce(stream, 6);
  ASSERT_EQ(ghost_read(raw, stream, "ghost", 3).size(), 3U);  // ids 0..2 pending on ghost
  ASSERT_EQ(ghost_read(raw, stream, "c1", 3).size(), 3U);     // ids 3..5 pending on c1
  (void)raw.run({"XDEL", stream, ids[1], ids[4]});
  // The reply shape of a deleted entry in a consumer's history: [id, NIL].
  {
    const auto r = raw.run({"XREADGROUP", "GROUP", "g", "c1", "STREAMS", stream, "0"});
    std::vector<message> got;
    std::vector<std::string> deleted;
    crew::redis::parse_read(r.get(), 1, got, deleted);
    EXPECT_EQ(got.size(), 2U);
    EXPECT_EQ(deleted, (std::vector<std::string>{ids[4]}));
  }
  recorder rec;
  consumer<> c(options_for(stream), [&](message& m) { rec.add(m); }, {.workers = 4});
  ASSERT_TRUE(crew_test::eventually([&] { return raw.pending(stream, "g") == 0; }));
  (void)c.shutdown();
  EXPECT_EQ(rec.total(), 4U);
  EXPECT_EQ(rec.runs.count(ids[1]), 0U);
  EXPECT_EQ(rec.runs.count(ids[4]), 0U);
}

TEST(RedisConsumer, HeartbeatKeepsALongJobFromBeingStolen) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  raw.produce(stream, 1);
  recorder rec;
  auto job = [&](message& m) {
    rec.add(m);
    std::this_thread::sleep_for(1500ms);  // three min_idles
  };
  consumer<> a(options_for(stream, "a"), job, {.workers = 1});
  ASSERT_TRUE(crew_test::eventually([&] { return rec.total() == 1; }));
  consumer<> b(options_for(stream, "b"), job, {.workers = 1});
  ASSERT_TRUE(crew_test::eventually([&] { return raw.pending(stream, "g") == 0; }, 5s));
  (void)a.shutdown();
  (void)b.shutdown();
  EXPECT_EQ(rec.total(), 1U);
  EXPECT_GT(a.stats().heartbeats, 0U);
  EXPECT_EQ(b.stats().reclaimed, 0U);
}

TEST(RedisConsumer, KeyedAdaptorKeepsPerKeyOrder) {
  const std::string stream = unique_stream();
  crew_test::raw_client raw(server());
  for (int i = 0; i < 200; ++i) {
    (void)raw.run({"XADD", stream, "*", "key", std::to_string(i % 4), "seq", std::to_string(i)});
  }
  std::mutex mu;
  std::map<std::string, std::vector<int>> seen;
  std::atomic<int> done{0};
  const auto key_of = [](const message& m) { return *m.find("key"); };
  consumer<crew::redis::keyed_pool_adaptor<std::string, decltype(key_of)>> c(
      options_for(stream),
      [&](message& m) {
        {
          const std::lock_guard lock(mu);
          seen[*m.find("key")].push_back(std::stoi(*m.find("seq")));
        }
        done.fetch_add(1);
      },
      {.workers = 4}, key_of);
  ASSERT_TRUE(crew_test::eventually([&] { return done.load() == 200; }));
  (void)c.shutdown();
  for (const auto& [key, v] : seen) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end())) << "key " << key;
    EXPECT_EQ(v.size(), 50U);
  }
  EXPECT_EQ(raw.pending(stream, "g"), 0);
}

// One key, 4 workers: the consumer holds 4 messages, runs one, 3 wait unstarted in the pool.
using one_key_consumer =
    consumer<crew::redis::keyed_pool_adaptor<int, decltype([](const message&) { return 0; })>>;

void slow(std::stop_token stop, std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until && !stop.stop_requested()) {
    std::this_thread::sleep_for(1ms);
  }
}

// Runs the rest with a second consumer; returns each id's run count across both.
void finish_with_second_consumer(const std::string& stream, recorder& rec, std::size_t total) {
  consumer<> c2(options_for(stream, "c2"), [&](message& m) { rec.add(m); }, {.workers = 4});
  ASSERT_TRUE(crew_test::eventually([&] { return rec.distinct() >= total; }));
  (void)c2.shutdown();
}

// A one-key consumer "c1" over `messages` entries whose jobs take `job` (or stop early).
struct one_key_run {
  std::string stream = unique_stream();
  crew_test::raw_client raw{server()};
  recorder rec;
  std::unique_ptr<one_key_consumer> c;

  one_key_run(std::size_t messages, std::chrono::milliseconds job) {
    raw.produce(stream, messages);
    c = std::make_unique<one_key_consumer>(
        options_for(stream),
        [this, job](message& m, std::stop_token st) {
          slow(st, job);
          rec.add(m);
        },
        crew::pool_options<message>{.workers = 4});
  }
  // c1 holds 4 entries: one running, three unstarted. Waiting for the pending count alone
  // was not enough: the fetch reads all four before a worker starts the first, and an abort
  // in that window hands back four (TSan: 1 of 30 runs).
  bool holds_four() {
    return crew_test::eventually(
        [&] { return c->stats().executed >= 1 && raw.pending_of(stream, "g", "c1").size() == 4; });
  }
  // A second consumer runs the rest; nothing may stay pending.
  void finish(std::size_t total) {
    finish_with_second_consumer(stream, rec, total);
    EXPECT_EQ(raw.pending(stream, "g"), 0);
    EXPECT_EQ(raw.integer({"XLEN", stream + ":dead"}), 0);
  }
};

TEST(RedisShutdown, DrainFinishesAndAcknowledgesWhatItFetched) {
  one_key_run run(100, 5ms);
  ASSERT_TRUE(crew_test::eventually([&] { return run.rec.total() >= 5; }));
  const auto report = run.c->shutdown();
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(report.returned, 0U);
  EXPECT_EQ(report.unacknowledged, 0U);
  EXPECT_TRUE(run.raw.pending_of(run.stream, "g", "c1").empty());
  EXPECT_EQ(run.c->shutdown().returned, 0U);  // idempotent
  run.finish(100);
  EXPECT_EQ(run.rec.total(), 100U) << "a drained message ran twice";
}

// A consumer "c1" on an empty stream whose read blocks long enough for a shutdown to begin
// while the read is under way; `produce()` then gives the read one entry.
struct blocked_read_run {
  std::string stream = unique_stream();
  crew_test::raw_client raw{server()};
  recorder rec;
  std::unique_ptr<consumer<>> c;

  blocked_read_run() {
    create_group(raw, stream);
    auto o = options_for(stream);
    o.block = 1500ms;
    o.connection.socket_timeout = 3000ms;
    c = std::make_unique<consumer<>>(
        o, [this](message& m) { rec.add(m); }, crew::pool_options<message>{.workers = 2});
  }
  // True once a client is blocked in XREADGROUP (the consumer's read, waiting for entries).
  bool read_blocked() {
    return crew_test::eventually([&] {
      const std::string list(crew::redis::text_of(raw.run({"CLIENT", "LIST"}).get()));
      std::size_t at = 0;
      for (std::size_t end = 0; (end = list.find('\n', at)) != std::string::npos; at = end + 1) {
        const std::string_view line(list.data() + at, end - at);
        if (line.find("cmd=xreadgroup") != std::string_view::npos &&
            line.find(" flags=b") != std::string_view::npos) {
          return true;
        }
      }
      return false;
    });
  }
  // Starts `stop` on another thread, gives it time to close the pool (the read stays blocked:
  // its BLOCK is 1.5 s), then adds one entry for the read to return.
  template <class Stop>
  crew::redis::consumer_report stop_during_read(Stop stop) {
    crew::redis::consumer_report report;
    std::thread stopper([&] { report = stop(*c); });
    std::this_thread::sleep_for(100ms);
    (void)raw.produce(stream, 1);
    stopper.join();
    return report;
  }
};

// Regression (CI, stop 17): a drain closed the pool while a read was under way; the entries
// it returned were refused, handed back and left pending on c1, and the report said drained
// with nothing returned. A drain now lets the read hand them to the pool first.
TEST(RedisShutdown, DrainRunsWhatAReadUnderWayReturns) {
  blocked_read_run run;
  ASSERT_TRUE(run.read_blocked());
  const auto report = run.stop_during_read([](consumer<>& c) { return c.shutdown(); });
  EXPECT_TRUE(report.drained);
  EXPECT_EQ(report.returned, 0U);
  EXPECT_EQ(report.unacknowledged, 0U);
  EXPECT_EQ(run.rec.total(), 1U);
  EXPECT_TRUE(run.raw.pending_of(run.stream, "g", "c1").empty());
}

// An abort does not wait for the read; what the read returns after the pool closed goes back
// to the group, and the report counts it.
TEST(RedisShutdown, AbortCountsWhatAReadUnderWayHandsBack) {
  blocked_read_run run;
  ASSERT_TRUE(run.read_blocked());
  const auto report =
      run.stop_during_read([](consumer<>& c) { return c.shutdown(crew::shutdown_mode::abort); });
  const auto left = run.raw.pending_of(run.stream, "g", "c1");
  EXPECT_EQ(report.returned, left.size()) << "every hand-back is in the report";
  EXPECT_EQ(report.drained, report.returned == 0);
  EXPECT_EQ(run.rec.total() + left.size(), 1U);
}

TEST(RedisShutdown, AbortHandsUnstartedMessagesBackWithoutCountingADelivery) {
  one_key_run run(20, 200ms);
  ASSERT_TRUE(run.holds_four());
  const auto report = run.c->shutdown(crew::shutdown_mode::abort);
  EXPECT_FALSE(report.drained);
  EXPECT_EQ(report.returned, 3U);
  EXPECT_EQ(run.c->stats().returned, 3U);
  const auto left = run.raw.pending_of(run.stream, "g", "c1");
  ASSERT_EQ(left.size(), 3U);
  for (const auto& p : left) {
    EXPECT_EQ(p.deliveries, 0U);
    EXPECT_GE(p.idle_ms, 490U) << "claimable at once";
  }
  run.finish(20);
  for (const auto& [id, v] : run.rec.runs) EXPECT_EQ(v, (std::vector<std::uint64_t>{1})) << id;
}

TEST(RedisShutdown, DeadlineDrainsThenAborts) {
  one_key_run run(20, 60ms);
  ASSERT_TRUE(run.holds_four());
  const auto report = run.c->shutdown_for(90ms);
  EXPECT_FALSE(report.drained);
  EXPECT_GE(report.returned, 1U);
  EXPECT_LE(report.returned, 3U);
  run.finish(20);
}

TEST(RedisShutdown, AbortDuringADrainEscalates) {
  one_key_run run(20, 300ms);
  ASSERT_TRUE(run.holds_four());
  std::thread drainer([&] { (void)run.c->shutdown(); });
  std::this_thread::sleep_for(50ms);
  const auto start = std::chrono::steady_clock::now();
  (void)run.c->shutdown(crew::shutdown_mode::abort);
  drainer.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  run.finish(20);
}

TEST(RedisStats, PrometheusExposition) {
  crew::redis::consumer_stats s;
  s.acknowledged = 7;
  s.in_flight = 2;
  const std::string text = crew::redis::to_prometheus(s, "jobs");
  EXPECT_NE(text.find("jobs_redis_acknowledged_total 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE jobs_redis_in_flight gauge\n"), std::string::npos) << text;
  EXPECT_THROW((void)crew::redis::to_prometheus(s, "bad name"), std::invalid_argument);
}

}  // namespace
