// The kill test and its relatives: consumer processes (redis_test_worker) on one group, one of
// them killed with SIGKILL at a random moment (with and without a restart under the same
// name), a poison message whose handler aborts its process, and SIGTERM in each shutdown mode.
// Figures (messages, kills, in flight at the kill, duplicates, redelivery delay, dead letters)
// are printed and appended to kill-figures.txt in the working directory.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "process_harness.hpp"
#include "redis_server.hpp"

namespace {

using namespace std::chrono_literals;
using crew_test::raw_client;
using crew_test::redis_server;

constexpr int min_idle_ms = 500;
constexpr int claim_interval_ms = min_idle_ms / 2;

using crew_test::server;

struct worker_spec {
  std::string name;
  std::string log;
  std::vector<std::string> extra;
};

pid_t start(const worker_spec& w, const std::string& stream) {
  std::vector<std::string> kv{"port=" + std::to_string(server().port()),
                              "stream=" + stream,
                              "name=" + w.name,
                              "log=" + w.log,
                              "workers=4",
                              "min_idle_ms=" + std::to_string(min_idle_ms),
                              "dead_after=3"};
  kv.insert(kv.end(), w.extra.begin(), w.extra.end());
  return crew_test::spawn_worker(kv);
}

void append_figures(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::ofstream("kill-figures.txt", std::ios::app) << line << '\n';
}

void stop_all(std::vector<pid_t>& pids) {
  for (const pid_t p : pids) ::kill(p, SIGTERM);
  for (const pid_t p : pids) {
    const int status = crew_test::wait_for_exit(p, 20s);
    EXPECT_NE(status, -1) << "a consumer did not exit after SIGTERM";
    if (status == -1) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    } else {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    }
  }
  pids.clear();
}

class KillTest : public ::testing::TestWithParam<int> {};

void run_kill_seed(int seed) {
  const bool restart = seed % 2 == 1;
  std::mt19937 rng(static_cast<std::uint32_t>(seed) * 7919U + 17U);
  const std::string stream = "kill." + std::to_string(seed);
  const std::string dir = crew_test::make_temp_dir("kill");
  raw_client raw(server());
  (void)raw.run({"XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"});
  constexpr std::size_t messages = 20000;
  const auto ids = raw.produce(stream, messages);

  std::vector<worker_spec> specs;
  for (int i = 0; i < 3; ++i) {
    specs.push_back(
        {"c" + std::to_string(i), dir + "/c" + std::to_string(i) + ".log", {"job_us=200"}});
  }
  std::vector<pid_t> pids;
  for (const auto& w : specs) pids.push_back(start(w, stream));

  // Kill the victim once it has logged a random number of lines (a random moment of its run).
  const std::size_t victim = rng() % 3;
  const std::size_t target = 200 + rng() % 6000;
  ASSERT_TRUE(crew_test::eventually(
      [&] { return crew_test::count_lines(specs[victim].log) >= target; }, 60s))
      << "the victim never got going";
  ::kill(pids[victim], SIGKILL);
  ::waitpid(pids[victim], nullptr, 0);
  const std::int64_t kill_ns = crew_test::monotonic_ns();
  // Its pending list is frozen until someone claims it (min_idle later): what was in flight.
  const auto in_flight = raw.pending_of(stream, "g", specs[victim].name);
  std::set<std::string> in_flight_ids;
  for (const auto& p : in_flight) in_flight_ids.insert(p.id);
  pids.erase(pids.begin() + static_cast<std::ptrdiff_t>(victim));

  if (restart) {
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
    worker_spec again = specs[victim];
    again.log = dir + "/restarted.log";
    specs.push_back(again);
    pids.push_back(start(again, stream));
  }

  ASSERT_TRUE(crew_test::eventually(
      [&] { return crew_test::all_acknowledged(raw, stream, ids.back()); }, 120s))
      << "not everything was delivered and acknowledged";
  stop_all(pids);

  crew_test::run_log log;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    crew_test::read_log(specs[i].log, static_cast<int>(i), log);
  }
  std::map<std::string, int> starts;
  std::map<std::string, std::int64_t> first_start_after_kill;
  for (const auto& e : log.events) {
    if (e.what != 'S') continue;
    ++starts[e.id];
    if (e.ns > kill_ns && static_cast<std::size_t>(e.source) != victim) {
      auto [it, fresh] = first_start_after_kill.emplace(e.id, e.ns);
      if (!fresh) it->second = std::min(it->second, e.ns);
    }
  }
  const auto done = crew_test::done_ids(log);
  const auto dead = raw.integer({"XLEN", stream + ":dead"});
  std::size_t missing = 0;
  for (const auto& id : ids) missing += done.count(id) == 0 ? 1 : 0;
  std::size_t duplicates = 0;
  std::size_t stray = 0;
  for (const auto& [id, n] : starts) {
    if (n > 1) {
      duplicates += static_cast<std::size_t>(n - 1);
      if (in_flight_ids.count(id) == 0) ++stray;
    }
  }
  std::int64_t max_delay_ms = 0;
  std::size_t not_redelivered = 0;
  for (const auto& id : in_flight_ids) {
    const auto it = first_start_after_kill.find(id);
    if (it == first_start_after_kill.end()) {
      ++not_redelivered;
      continue;
    }
    max_delay_ms = std::max(max_delay_ms, (it->second - kill_ns) / 1000000);
  }

  char line[256];
  std::snprintf(line, sizeof line,
                "kill seed=%d restart=%d messages=%zu kills=1 in_flight_at_kill=%zu "
                "duplicates=%zu max_redelivery_ms=%lld dead_letters=%lld missing=%zu",
                seed, restart ? 1 : 0, messages, in_flight_ids.size(), duplicates,
                static_cast<long long>(max_delay_ms), static_cast<long long>(dead), missing);
  append_figures(line);

  EXPECT_EQ(missing, 0U) << "messages never completed";
  EXPECT_EQ(dead, 0) << "no message here should be dead-lettered";
  EXPECT_EQ(raw.pending(stream, "g"), 0);
  EXPECT_LE(duplicates, in_flight_ids.size()) << "more duplicates than were in flight at the kill";
  EXPECT_EQ(stray, 0U) << "an entry not in flight at the kill ran twice";
  EXPECT_EQ(not_redelivered, 0U) << "an entry of the killed consumer was never run again";
  // Redelivery comes within min_idle + the scan interval (plus scheduling slack on a loaded
  // 2-core machine, where three consumers, the server and the test share the cores).
  EXPECT_LE(max_delay_ms, min_idle_ms + claim_interval_ms + 750);
  (void)raw.run({"DEL", stream, stream + ":dead"});
}

TEST_P(KillTest, SigkillLosesNothingAndDuplicatesOnlyWhatWasInFlight) { run_kill_seed(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Seeds, KillTest, ::testing::Range(0, 10));

// More seeds for the soak preset: CREW_REDIS_KILL_SEEDS=<n>.
TEST(KillSoak, ManySeeds) {
  const char* env = std::getenv("CREW_REDIS_KILL_SEEDS");
  if (env == nullptr) GTEST_SKIP() << "set CREW_REDIS_KILL_SEEDS to run";
  const int n = std::atoi(env);
  for (int seed = 100; seed < 100 + n && !HasFailure(); ++seed) run_kill_seed(seed);
}

// A poison message whose handler aborts its process: the supervisor (this test, as systemd
// would) restarts the consumer under the same name; after dead_after = 3 deliveries the
// message is dead-lettered (on its 4th delivery, unrun) and no other message is.
TEST(PoisonProcess, AbortingHandlerIsDeadLetteredAfterNDeliveries) {
  const std::string stream = "poison.abort";
  const std::string dir = crew_test::make_temp_dir("poison");
  raw_client raw(server());
  (void)raw.run({"XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"});
  const auto ids = raw.produce(stream, 2000);
  std::vector<worker_spec> specs;
  for (int i = 0; i < 2; ++i) {
    specs.push_back({"c" + std::to_string(i),
                     dir + "/c" + std::to_string(i) + ".log",
                     {"job_us=200", "poison=m777", "poison_mode=abort"}});
  }
  std::vector<pid_t> pids;
  for (const auto& w : specs) pids.push_back(start(w, stream));
  int aborts = 0;
  ASSERT_TRUE(crew_test::eventually(
      [&] {
        for (std::size_t i = 0; i < pids.size(); ++i) {
          int status = 0;
          if (::waitpid(pids[i], &status, WNOHANG) == pids[i]) {
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) ++aborts;
            pids[i] = start(specs[i], stream);
          }
        }
        return aborts <= 10 && crew_test::all_acknowledged(raw, stream, ids.back());
      },
      60s));
  stop_all(pids);
  crew_test::run_log log;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    crew_test::read_log(specs[i].log, static_cast<int>(i), log);
  }
  const auto done = crew_test::done_ids(log);
  int poison_starts = 0;
  for (const auto& e : log.events) poison_starts += e.what == 'S' && e.id == ids[777] ? 1 : 0;
  std::size_t missing = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i != 777 && done.count(ids[i]) == 0) ++missing;
  }
  const auto dead = raw.range(stream + ":dead");
  append_figures("poison-abort messages=2000 aborts=" + std::to_string(aborts) + " poison_runs=" +
                 std::to_string(poison_starts) + " dead_letters=" + std::to_string(dead.size()) +
                 " missing=" + std::to_string(missing));
  EXPECT_EQ(aborts, 3);
  EXPECT_EQ(poison_starts, 3);
  EXPECT_EQ(missing, 0U);
  ASSERT_EQ(dead.size(), 1U) << "exactly the poison message is dead-lettered";
  EXPECT_EQ(*dead[0].find("source_id"), ids[777]);
  EXPECT_EQ(*dead[0].find("deliveries"), "4");
  EXPECT_EQ(raw.pending(stream, "g"), 0);
}

// SIGTERM in each shutdown mode (the worker's `shutdown=` argument): the terminated consumer
// exits 0, loses nothing, and leaves nothing that waits for min_idle: drain leaves nothing
// pending; abort and deadline leave only hand-backs (delivery count not raised, idle >=
// min_idle), which the other consumer takes within one scan.
class SigtermTest : public ::testing::TestWithParam<const char*> {};

TEST_P(SigtermTest, NothingLostAndNothingLeftWaiting) {
  const std::string mode = GetParam();
  const std::string stream = "sigterm." + mode;
  const std::string dir = crew_test::make_temp_dir("sigterm");
  raw_client raw(server());
  (void)raw.run({"XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"});
  const auto ids = raw.produce(stream, 600);
  // c0 runs one key at a time with 40 ms jobs: it holds 4 messages, 3 of them unstarted.
  const worker_spec c0{
      "c0", dir + "/c0.log", {"job_us=40000", "keys=1", "shutdown=" + mode, "deadline_ms=50"}};
  const worker_spec c1{"c1", dir + "/c1.log", {"job_us=2000"}};
  const pid_t p0 = start(c0, stream);
  ASSERT_TRUE(crew_test::eventually([&] { return crew_test::count_lines(c0.log) >= 6; }));
  std::vector<pid_t> rest{start(c1, stream)};
  ::kill(p0, SIGTERM);
  const int status = crew_test::wait_for_exit(p0, 20s);
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  const auto left = raw.pending_of(stream, "g", "c0");
  if (mode == "drain") {
    EXPECT_TRUE(left.empty()) << left.size() << " entries left pending by a drain";
  }
  for (const auto& p : left) {
    EXPECT_EQ(p.deliveries, 0U) << "a hand-back counted a delivery";
    EXPECT_GE(p.idle_ms + 20, static_cast<std::uint64_t>(min_idle_ms)) << "not claimable at once";
  }
  EXPECT_TRUE(crew_test::eventually([&] { return raw.pending_of(stream, "g", "c0").empty(); },
                                    std::chrono::milliseconds(claim_interval_ms + 750)))
      << "the other consumer did not take the hand-backs within one scan";
  ASSERT_TRUE(crew_test::eventually(
      [&] { return crew_test::all_acknowledged(raw, stream, ids.back()); }, 60s));
  stop_all(rest);
  crew_test::run_log log;
  crew_test::read_log(c0.log, 0, log);
  const std::vector<std::string> c0_reports = log.reports;
  crew_test::read_log(c1.log, 1, log);
  const auto done = crew_test::done_ids(log);
  std::map<std::string, int> starts;
  for (const auto& e : log.events) starts[e.id] += e.what == 'S' ? 1 : 0;
  std::size_t missing = 0;
  std::size_t duplicates = 0;
  for (const auto& id : ids) {
    missing += done.count(id) == 0 ? 1 : 0;
    duplicates += starts[id] > 1 ? static_cast<std::size_t>(starts[id] - 1) : 0;
  }
  ASSERT_EQ(c0_reports.size(), 1U);
  append_figures("sigterm mode=" + mode +
                 " messages=600 left_on_c0=" + std::to_string(left.size()) +
                 " duplicates=" + std::to_string(duplicates) + " report=\"" + c0_reports[0] + "\"");
  EXPECT_EQ(missing, 0U);
  EXPECT_EQ(duplicates, 0U);
  EXPECT_EQ(raw.integer({"XLEN", stream + ":dead"}), 0);
  // R <executed> <returned> <still_running> <unacked> <drained>
  unsigned long long executed = 0;
  std::size_t returned = 0;
  std::size_t still_running = 0;
  std::size_t unacked = 0;
  int drained = 0;
  ASSERT_EQ(std::sscanf(c0_reports[0].c_str(), "R %llu %zu %zu %zu %d", &executed, &returned,
                        &still_running, &unacked, &drained),
            5);
  EXPECT_EQ(unacked, 0U);
  if (mode == "drain") {
    EXPECT_EQ(returned, 0U);
    EXPECT_EQ(drained, 1);
  } else {
    EXPECT_GT(returned, 0U) << "a consumer holding unstarted messages handed none back";
    EXPECT_EQ(drained, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, SigtermTest, ::testing::Values("drain", "abort", "deadline"));

}  // namespace
