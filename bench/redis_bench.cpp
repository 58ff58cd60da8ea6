// crew::redis throughput on loopback, against the broker's own ceiling. Not a Google Benchmark
// program (it runs consumer processes and redis-benchmark): a driver that writes its own JSON.
//
//   redis_bench [--out=<file.json>] [--messages=N] [--repetitions=R]
//
// Per repetition, each on a fresh stream of N trivial messages (handler does nothing):
//   xadd_ceiling   redis-benchmark's XADD rate (50 clients, no pipelining): what the server
//                  takes in when it does nothing else
//   raw_loop       one thread, one hiredis context, the bridge's protocol by hand (XREADGROUP
//                  COUNT 4, the XACKs pipelined with the next read), no pool: the baseline
//   bridge_1       one process running crew::redis::consumer<> with 4 workers
//   bridge_3       three such processes on the same group
// Reported: medians of messages/s, ratios to the ceiling and to raw_loop, and the bridge's cost
// per message (1/bridge_1 - 1/raw_loop). On a shared 2-core machine the consumers, the server
// and redis-benchmark compete for the same cores: treat the numbers as noisy.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "crew/redis/consumer.hpp"

#ifndef CREW_REDIS_SERVER
#define CREW_REDIS_SERVER "redis-server"
#endif
#ifndef CREW_REDIS_BENCHMARK
#define CREW_REDIS_BENCHMARK "redis-benchmark"
#endif

namespace {

using clock_type = std::chrono::steady_clock;
constexpr int port = 6399;  // overridable with --port=

pid_t spawn(std::vector<std::string> args, bool quiet) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (quiet) {
      std::FILE* null = std::fopen("/dev/null", "w");
      if (null != nullptr) ::dup2(::fileno(null), 1);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

crew::redis::connection_options conn_opts(int p) {
  crew::redis::connection_options o;
  o.port = p;
  return o;
}

void fill(crew::redis::connection& c, const std::string& stream, std::size_t n) {
  (void)c.run({"DEL", stream});
  (void)c.run({"XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"});
  std::vector<crew::redis::command> batch;
  for (std::size_t i = 0; i < n; ++i) {
    batch.push_back({"XADD", stream, "*", "n", std::to_string(i)});
    if (batch.size() == 1000 || i + 1 == n) {
      (void)c.pipeline(batch);
      batch.clear();
    }
  }
}

bool all_acked(crew::redis::connection& c, const std::string& stream, std::size_t n) {
  const auto r = c.run({"XINFO", "GROUPS", stream});
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 1) return false;
  const redisReply* g = r->element[0];
  std::uint64_t pending = 1;
  std::uint64_t read = 0;
  for (std::size_t i = 0; i + 1 < g->elements; i += 2) {
    const auto key = crew::redis::text_of(g->element[i]);
    if (key == "pending") pending = static_cast<std::uint64_t>(g->element[i + 1]->integer);
    if (key == "entries-read") read = static_cast<std::uint64_t>(g->element[i + 1]->integer);
  }
  return pending == 0 && read >= n;
}

// The consumer child: runs until SIGTERM.
int consume(int p, const std::string& stream, const std::string& name) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  crew::redis::consumer_options o;
  o.connection = conn_opts(p);
  o.stream = stream;
  o.group = "g";
  o.consumer = name;
  o.block = std::chrono::milliseconds(20);
  std::atomic<std::uint64_t> ran{0};
  crew::redis::consumer<> c(
      o, [&](crew::redis::message&) { ran.fetch_add(1, std::memory_order_relaxed); },
      {.workers = 4});
  int sig = 0;
  sigwait(&set, &sig);
  (void)c.shutdown();
  return 0;
}

double bridge_rate(const char* self, int p, const std::string& stream, std::size_t n, int procs) {
  crew::redis::connection c(conn_opts(p));
  fill(c, stream, n);
  const auto start = clock_type::now();
  std::vector<pid_t> kids;
  for (int i = 0; i < procs; ++i) {
    kids.push_back(
        spawn({self, "consume", std::to_string(p), stream, "c" + std::to_string(i)}, false));
  }
  while (!all_acked(c, stream, n)) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
  for (const pid_t k : kids) ::kill(k, SIGTERM);
  for (const pid_t k : kids) ::waitpid(k, nullptr, 0);
  return static_cast<double>(n) / secs;
}

double raw_rate(int p, const std::string& stream, std::size_t n) {
  crew::redis::connection c(conn_opts(p));
  fill(c, stream, n);
  const auto start = clock_type::now();
  std::vector<std::string> acks;
  std::size_t done = 0;
  while (done < n) {
    std::vector<crew::redis::command> cmds;
    if (!acks.empty()) {
      crew::redis::command ack{"XACK", stream, "g"};
      ack.insert(ack.end(), acks.begin(), acks.end());
      cmds.push_back(std::move(ack));
      acks.clear();
    }
    cmds.push_back(
        {"XREADGROUP", "GROUP", "g", "raw", "COUNT", "4", "BLOCK", "20", "STREAMS", stream, ">"});
    const auto replies = c.pipeline(cmds);
    if (replies.empty()) return 0;
    std::vector<crew::redis::message> got;
    std::vector<std::string> deleted;
    crew::redis::parse_read(replies.back().get(), 1, got, deleted);
    for (auto& m : got) acks.push_back(std::move(m.id));
    done += got.size();
  }
  crew::redis::command ack{"XACK", stream, "g"};
  ack.insert(ack.end(), acks.begin(), acks.end());
  (void)c.run(ack);
  return static_cast<double>(n) / std::chrono::duration<double>(clock_type::now() - start).count();
}

double xadd_ceiling(int p) {
  const std::string cmd = std::string(CREW_REDIS_BENCHMARK) + " -p " + std::to_string(p) +
                          " -n 100000 -q XADD ceiling '*' n 1 2>/dev/null";
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return 0;
  std::array<char, 512> buf{};
  std::string out;
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  ::pclose(pipe);
  // "XADD ceiling * n 1: 81234.57 requests per second, p50=..." (the last \r-separated part)
  const auto colon = out.rfind(": ");
  return colon == std::string::npos ? 0 : std::atof(out.c_str() + colon + 2);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 5 && std::string(argv[1]) == "consume") {
    return consume(std::atoi(argv[2]), argv[3], argv[4]);
  }
  std::string out_path = "redis_bench.json";
  std::size_t n = 30000;
  int reps = 5;
  int p = port;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--out=", 0) == 0) out_path = a.substr(6);
    if (a.rfind("--messages=", 0) == 0) n = std::stoul(a.substr(11));
    if (a.rfind("--repetitions=", 0) == 0) reps = std::stoi(a.substr(14));
    if (a.rfind("--port=", 0) == 0) p = std::stoi(a.substr(7));
  }
  const pid_t server = spawn({CREW_REDIS_SERVER, "--port", std::to_string(p), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"},
                             true);
  crew::redis::connection probe(conn_opts(p));
  for (int i = 0; i < 500 && probe.run({"PING"}) == nullptr; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::vector<double> ceiling, raw, one, three;
  for (int r = 0; r < reps; ++r) {
    ceiling.push_back(xadd_ceiling(p));
    raw.push_back(raw_rate(p, "bench.raw", n));
    one.push_back(bridge_rate(argv[0], p, "bench.one", n, 1));
    three.push_back(bridge_rate(argv[0], p, "bench.three", n, 3));
    std::fprintf(stderr, "rep %d: ceiling %.0f raw %.0f bridge_1 %.0f bridge_3 %.0f msg/s\n", r,
                 ceiling.back(), raw.back(), one.back(), three.back());
  }
  ::kill(server, SIGTERM);
  ::waitpid(server, nullptr, 0);
  const double c = median(ceiling), rl = median(raw), b1 = median(one), b3 = median(three);
  const double cost_us = (b1 > 0 && rl > 0) ? (1e6 / b1 - 1e6 / rl) : 0;
  char json[1024];
  std::snprintf(json, sizeof json,
                "{\n  \"messages\": %zu, \"repetitions\": %d, \"statistic\": \"median\",\n"
                "  \"xadd_ceiling_per_s\": %.0f,\n  \"raw_loop_per_s\": %.0f,\n"
                "  \"bridge_1_process_per_s\": %.0f,\n  \"bridge_3_processes_per_s\": %.0f,\n"
                "  \"bridge_1_over_ceiling\": %.3f,\n  \"bridge_3_over_ceiling\": %.3f,\n"
                "  \"bridge_1_over_raw_loop\": %.3f,\n  \"bridge_cost_per_message_us\": %.2f\n}\n",
                n, reps, c, rl, b1, b3, c > 0 ? b1 / c : 0, c > 0 ? b3 / c : 0,
                rl > 0 ? b1 / rl : 0, cost_us);
  std::ofstream(out_path) << json;
  std::cout << json;
  return 0;
}
