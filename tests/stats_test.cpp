#include <crew/stats.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using crew::latency_histogram;
using crew::pool_stats;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

// ---------------------------------------------------------------------------- latency_histogram

static_assert(latency_histogram::bucket_count == 24);
static_assert(latency_histogram::bucket_index(0) == 0);
static_assert(latency_histogram::bucket_index(256) == 0);
static_assert(latency_histogram::bucket_index(257) == 1);
static_assert(latency_histogram::upper_bound_ns(0) == 256);

TEST(LatencyHistogram, BucketIndexBoundaries) {
  EXPECT_EQ(latency_histogram::bucket_index(0), 0u);
  EXPECT_EQ(latency_histogram::bucket_index(1), 0u);
  EXPECT_EQ(latency_histogram::bucket_index(255), 0u);
  EXPECT_EQ(latency_histogram::bucket_index(256), 0u);
  EXPECT_EQ(latency_histogram::bucket_index(257), 1u);
  EXPECT_EQ(latency_histogram::bucket_index(511), 1u);
  EXPECT_EQ(latency_histogram::bucket_index(512), 1u);
  EXPECT_EQ(latency_histogram::bucket_index(513), 2u);
  EXPECT_EQ(latency_histogram::bucket_index(1024), 2u);
  EXPECT_EQ(latency_histogram::bucket_index(1025), 3u);
  EXPECT_EQ(latency_histogram::bucket_index(std::uint64_t{1} << 30), 22u);
  EXPECT_EQ(latency_histogram::bucket_index((std::uint64_t{1} << 30) + 1), 23u);
  EXPECT_EQ(latency_histogram::bucket_index(std::uint64_t{1} << 31), 23u);
  EXPECT_EQ(latency_histogram::bucket_index(std::uint64_t{1} << 63), 23u);
  EXPECT_EQ(latency_histogram::bucket_index(kMax), 23u);
}

TEST(LatencyHistogram, EveryBoundaryLandsInItsOwnBucket) {
  for (std::size_t i = 0; i + 1 < latency_histogram::bucket_count; ++i) {
    const std::uint64_t bound = latency_histogram::upper_bound_ns(i);
    EXPECT_EQ(latency_histogram::bucket_index(bound), i) << bound;
    EXPECT_EQ(latency_histogram::bucket_index(bound + 1), i + 1) << bound;
    if (i > 0) {
      EXPECT_EQ(latency_histogram::bucket_index(bound - 1), i) << bound;
    }
  }
}

TEST(LatencyHistogram, UpperBounds) {
  EXPECT_EQ(latency_histogram::upper_bound_ns(0), 256u);
  EXPECT_EQ(latency_histogram::upper_bound_ns(1), 512u);
  EXPECT_EQ(latency_histogram::upper_bound_ns(2), 1024u);
  EXPECT_EQ(latency_histogram::upper_bound_ns(12), 1048576u);
  EXPECT_EQ(latency_histogram::upper_bound_ns(22), 1073741824u);  // about 1.07 s
  EXPECT_EQ(latency_histogram::upper_bound_ns(23), kMax);         // +Inf
  EXPECT_EQ(latency_histogram::upper_bound_ns(1000), kMax);
  for (std::size_t i = 1; i + 1 < latency_histogram::bucket_count; ++i) {
    EXPECT_EQ(latency_histogram::upper_bound_ns(i), 2 * latency_histogram::upper_bound_ns(i - 1));
  }
}

latency_histogram make_known() {
  // 100 samples: 50 x 100 ns (bucket 0), 40 x 1000 ns (bucket 2, <= 1024),
  // 9 x 100 us (bucket 9, <= 131072), 1 x 10 s (+Inf).
  latency_histogram h;
  const auto add = [&h](std::uint64_t ns, int times) {
    for (int i = 0; i < times; ++i) {
      ++h.counts[latency_histogram::bucket_index(ns)];
      ++h.count;
      h.sum_ns += ns;
    }
  };
  add(100, 50);
  add(1000, 40);
  add(100000, 9);
  add(10000000000, 1);
  return h;
}

TEST(LatencyHistogram, QuantileOnKnownData) {
  const latency_histogram h = make_known();
  ASSERT_EQ(h.counts[0], 50u);
  ASSERT_EQ(h.counts[2], 40u);
  ASSERT_EQ(h.counts[9], 9u);
  ASSERT_EQ(h.counts[23], 1u);
  EXPECT_EQ(h.quantile_ns(0.0), 256u);
  EXPECT_EQ(h.quantile_ns(0.5), 256u);
  EXPECT_EQ(h.quantile_ns(0.51), 1024u);
  EXPECT_EQ(h.quantile_ns(0.9), 1024u);
  EXPECT_EQ(h.quantile_ns(0.91), 131072u);
  EXPECT_EQ(h.quantile_ns(0.99), 131072u);
  EXPECT_EQ(h.quantile_ns(0.995), kMax);
  EXPECT_EQ(h.quantile_ns(1.0), kMax);
  // Out-of-range q is clamped; NaN counts as 0.
  EXPECT_EQ(h.quantile_ns(-1.0), 256u);
  EXPECT_EQ(h.quantile_ns(7.0), kMax);
  EXPECT_EQ(h.quantile_ns(std::nan("")), 256u);
}

TEST(LatencyHistogram, QuantileOfEmptyIsZero) {
  const latency_histogram h;
  EXPECT_EQ(h.quantile_ns(0.0), 0u);
  EXPECT_EQ(h.quantile_ns(0.5), 0u);
  EXPECT_EQ(h.quantile_ns(1.0), 0u);
}

TEST(LatencyHistogram, QuantileSkipsEmptyLeadingBuckets) {
  latency_histogram h;
  h.counts[5] = 3;
  h.count = 3;
  EXPECT_EQ(h.quantile_ns(0.0), 8192u);
  EXPECT_EQ(h.quantile_ns(1.0), 8192u);
}

TEST(LatencyHistogram, PlusEqualsAddsEverything) {
  latency_histogram a = make_known();
  latency_histogram b;
  b.counts[0] = 1;
  b.counts[23] = 2;
  b.count = 3;
  b.sum_ns = 77;
  latency_histogram& ref = (a += b);
  EXPECT_EQ(&ref, &a);
  EXPECT_EQ(a.counts[0], 51u);
  EXPECT_EQ(a.counts[2], 40u);
  EXPECT_EQ(a.counts[9], 9u);
  EXPECT_EQ(a.counts[23], 3u);
  EXPECT_EQ(a.count, 103u);
  EXPECT_EQ(a.sum_ns, 50u * 100 + 40u * 1000 + 9u * 100000 + 10000000000u + 77);
  a += latency_histogram{};
  EXPECT_EQ(a.count, 103u);
}

// ---------------------------------------------------------------------------- histogram_recorder

TEST(HistogramRecorder, LayoutIsCacheLineSized) {
  EXPECT_EQ(alignof(crew::detail::histogram_recorder), 64u);
  EXPECT_EQ(sizeof(crew::detail::histogram_recorder) % 64, 0u);
}

TEST(HistogramRecorder, RecordThenAddTo) {
  crew::detail::histogram_recorder recorder;
  latency_histogram empty;
  recorder.add_to(empty);
  EXPECT_EQ(empty.count, 0u);

  recorder.record(0);
  recorder.record(256);
  recorder.record(257);
  recorder.record(5000);
  recorder.record(kMax / 4);
  latency_histogram h;
  h.counts[1] = 10;  // add_to adds, it does not overwrite
  h.count = 10;
  h.sum_ns = 1;
  recorder.add_to(h);
  EXPECT_EQ(h.counts[0], 2u);
  EXPECT_EQ(h.counts[1], 11u);
  EXPECT_EQ(h.counts[latency_histogram::bucket_index(5000)], 1u);
  EXPECT_EQ(latency_histogram::bucket_index(5000), 5u);
  EXPECT_EQ(h.counts[23], 1u);
  EXPECT_EQ(h.count, 15u);
  EXPECT_EQ(h.sum_ns, 1 + 0 + 256 + 257 + 5000 + kMax / 4);
}

TEST(HistogramRecorder, ReadFromAnotherThreadWhileRecording) {
  constexpr std::uint64_t kSamples = 200000;
  crew::detail::histogram_recorder recorder;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (std::uint64_t i = 0; i < kSamples; ++i) recorder.record(i % 2 == 0 ? 100 : 300);
    done.store(true, std::memory_order_release);
  });
  std::uint64_t last = 0;
  bool monotonic = true;
  bool bounded = true;
  while (!done.load(std::memory_order_acquire)) {
    latency_histogram h;
    recorder.add_to(h);
    if (h.count < last) monotonic = false;
    if (h.count > kSamples || h.counts[0] > kSamples / 2 || h.counts[1] > kSamples / 2) {
      bounded = false;
    }
    last = h.count;
  }
  writer.join();
  EXPECT_TRUE(monotonic);
  EXPECT_TRUE(bounded);
  latency_histogram h;
  recorder.add_to(h);
  EXPECT_EQ(h.count, kSamples);
  EXPECT_EQ(h.counts[0], kSamples / 2);
  EXPECT_EQ(h.counts[1], kSamples / 2);
  EXPECT_EQ(h.sum_ns, kSamples / 2 * 100 + kSamples / 2 * 300);
}

TEST(HistogramRecorder, PerWorkerRecordersSumOnRead) {
  std::vector<crew::detail::histogram_recorder> recorders(4);
  std::vector<std::thread> threads;
  for (std::size_t w = 0; w < recorders.size(); ++w) {
    threads.emplace_back([&recorders, w] {
      for (int i = 0; i < 1000; ++i) recorders[w].record(1000 * (w + 1));
    });
  }
  for (auto& t : threads) t.join();
  latency_histogram total;
  for (const auto& r : recorders) r.add_to(total);
  EXPECT_EQ(total.count, 4000u);
  EXPECT_EQ(total.sum_ns, 1000u * (1000 + 2000 + 3000 + 4000));
  EXPECT_EQ(total.counts[2], 1000u);  // 1000 ns
  EXPECT_EQ(total.counts[3], 1000u);  // 2000 ns
  EXPECT_EQ(total.counts[4], 2000u);  // 3000 and 4000 ns
}

// ---------------------------------------------------------------------------- to_prometheus

pool_stats sample_stats() {
  pool_stats s;
  s.workers = 8;
  s.busy = 3;
  s.queue_depth = 17;
  s.capacity = 1024;
  s.blocked_producers = 2;
  s.accepted = 1000;
  s.rejected = 5;
  s.dropped = 6;
  s.executed = 970;
  s.failed = 7;
  s.handed_back = 8;
  s.recycled = 9;
  s.active_keys = 11;
  s.worker_limit = 12;
  s.expired = 4;
  return s;
}

TEST(ToPrometheus, GoldenWithoutLatency) {
  const std::string expected =
      "# HELP crew_workers Live worker threads in the pool.\n"
      "# TYPE crew_workers gauge\n"
      "crew_workers 8\n"
      "# HELP crew_busy_workers Workers running a job.\n"
      "# TYPE crew_busy_workers gauge\n"
      "crew_busy_workers 3\n"
      "# HELP crew_queue_depth Jobs waiting in the queue.\n"
      "# TYPE crew_queue_depth gauge\n"
      "crew_queue_depth 17\n"
      "# HELP crew_queue_capacity Capacity of the queue.\n"
      "# TYPE crew_queue_capacity gauge\n"
      "crew_queue_capacity 1024\n"
      "# HELP crew_blocked_producers Producers waiting for room in the queue.\n"
      "# TYPE crew_blocked_producers gauge\n"
      "crew_blocked_producers 2\n"
      "# HELP crew_accepted_total Jobs accepted into the queue.\n"
      "# TYPE crew_accepted_total counter\n"
      "crew_accepted_total 1000\n"
      "# HELP crew_rejected_total Submits refused for lack of room (rejected, timed out, "
      "cancelled).\n"
      "# TYPE crew_rejected_total counter\n"
      "crew_rejected_total 5\n"
      "# HELP crew_dropped_total Jobs dropped because the queue was full.\n"
      "# TYPE crew_dropped_total counter\n"
      "crew_dropped_total 6\n"
      "# HELP crew_executed_total Jobs whose handler was invoked, thrown or not.\n"
      "# TYPE crew_executed_total counter\n"
      "crew_executed_total 970\n"
      "# HELP crew_failed_total Jobs whose handler threw.\n"
      "# TYPE crew_failed_total counter\n"
      "crew_failed_total 7\n"
      "# HELP crew_handed_back_total Accepted jobs handed back unstarted by a shutdown.\n"
      "# TYPE crew_handed_back_total counter\n"
      "crew_handed_back_total 8\n"
      "# HELP crew_recycled_total Worker recycles (respawns and stack trims).\n"
      "# TYPE crew_recycled_total counter\n"
      "crew_recycled_total 9\n"
      "# HELP crew_active_keys Keys with a queued or running job (keyed pools; 0 otherwise).\n"
      "# TYPE crew_active_keys gauge\n"
      "crew_active_keys 11\n"
      "# HELP crew_worker_limit Most worker threads the pool may run (elastic pools grow up to "
      "it).\n"
      "# TYPE crew_worker_limit gauge\n"
      "crew_worker_limit 12\n"
      "# HELP crew_expired_total Jobs not run because they waited longer than max_queue_wait.\n"
      "# TYPE crew_expired_total counter\n"
      "crew_expired_total 4\n";
  EXPECT_EQ(crew::to_prometheus(sample_stats(), "crew"), expected);
}

TEST(ToPrometheus, NoHistogramsUnlessEnabled) {
  pool_stats s = sample_stats();
  s.queue_wait = make_known();  // filled but not enabled: not exposed
  const std::string text = crew::to_prometheus(s, "crew");
  EXPECT_EQ(text.find("histogram"), std::string::npos);
  EXPECT_EQ(text.find("_bucket"), std::string::npos);
  EXPECT_EQ(text.find("seconds"), std::string::npos);
}

TEST(ToPrometheus, PrefixIsUsedEverywhere) {
  const std::string text = crew::to_prometheus(sample_stats(), "image_pool");
  EXPECT_NE(text.find("# TYPE image_pool_accepted_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("\nimage_pool_workers 8\n"), std::string::npos);
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const std::string name = line.rfind("# ", 0) == 0 ? line.substr(7) : line;
    EXPECT_EQ(name.rfind("image_pool_", 0), 0u) << line;
  }
}

TEST(ToPrometheus, LargeCounterValuesAreExact) {
  pool_stats s;
  s.accepted = kMax;
  s.executed = 12345678901234567890u;
  const std::string text = crew::to_prometheus(s, "p");
  EXPECT_NE(text.find("\np_accepted_total 18446744073709551615\n"), std::string::npos);
  EXPECT_NE(text.find("\np_executed_total 12345678901234567890\n"), std::string::npos);
  EXPECT_NE(text.find("\np_workers 0\n"), std::string::npos);
}

// Splits the exposition into lines, requiring every line to end in '\n'.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) {
      ADD_FAILURE() << "last line does not end in a newline: " << text.substr(pos);
      break;
    }
    out.push_back(text.substr(pos, eol - pos));
    pos = eol + 1;
  }
  return out;
}

// Extracts the samples of one histogram family: le -> cumulative count, plus _sum and _count.
struct parsed_histogram {
  std::vector<std::pair<std::string, std::uint64_t>> buckets;
  std::string sum;
  std::uint64_t count = 0;
  bool has_count = false;
};

// One parsed sample line: `name{label="value",...} value`.
struct sample_line {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
  bool has_braces = false;
  std::string value;
};

bool is_name_start(char c, bool colon_ok) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
}
bool is_name_char(char c, bool colon_ok) {
  return is_name_start(c, colon_ok) || (c >= '0' && c <= '9');
}

// Reads a metric name (colon_ok) or label name at `pos`; empty when there is none.
std::string read_name(const std::string& line, std::size_t& pos, bool colon_ok) {
  const std::size_t begin = pos;
  if (pos < line.size() && is_name_start(line[pos], colon_ok)) {
    ++pos;
    while (pos < line.size() && is_name_char(line[pos], colon_ok)) ++pos;
  }
  return line.substr(begin, pos - begin);
}

// Parses a sample line of the text format 0.0.4 (without the optional timestamp, which crew
// never writes); nullopt when the line does not have that syntax.
std::optional<sample_line> parse_sample(const std::string& line) {
  sample_line out;
  std::size_t pos = 0;
  out.name = read_name(line, pos, true);
  if (out.name.empty()) return std::nullopt;
  if (pos < line.size() && line[pos] == '{') {
    out.has_braces = true;
    ++pos;
    while (pos < line.size() && line[pos] != '}') {
      if (!out.labels.empty()) {
        if (line[pos] != ',') return std::nullopt;
        ++pos;
      }
      std::string label = read_name(line, pos, false);
      if (label.empty() || line.compare(pos, 2, "=\"") != 0) return std::nullopt;
      pos += 2;
      std::string value;
      for (;;) {
        if (pos >= line.size()) return std::nullopt;
        const char c = line[pos++];
        if (c == '"') break;
        if (c == '\\') {
          if (pos >= line.size()) return std::nullopt;
          const char e = line[pos++];
          if (e != '\\' && e != '"' && e != 'n') return std::nullopt;
          value += e == 'n' ? '\n' : e;
        } else {
          value += c;
        }
      }
      out.labels.emplace_back(std::move(label), std::move(value));
    }
    if (pos >= line.size()) return std::nullopt;
    ++pos;  // '}'
  }
  if (pos >= line.size() || line[pos] != ' ') return std::nullopt;
  out.value = line.substr(pos + 1);
  if (out.value.empty() || out.value.find_first_of(" \t") != std::string::npos) return std::nullopt;
  if (out.value != "+Inf" && out.value != "-Inf" && out.value != "NaN") {
    char* end = nullptr;
    (void)std::strtod(out.value.c_str(), &end);
    if (end == out.value.c_str() || *end != '\0') return std::nullopt;
  }
  return out;
}

// Parses `# HELP name text` or `# TYPE name type`: returns {name, text-or-type}.
std::optional<std::pair<std::string, std::string>> parse_comment(const std::string& line,
                                                                 const std::string& keyword) {
  const std::string head = "# " + keyword + " ";
  if (line.rfind(head, 0) != 0) return std::nullopt;
  std::size_t pos = head.size();
  std::string name = read_name(line, pos, true);
  if (name.empty() || pos >= line.size() || line[pos] != ' ' || pos + 1 >= line.size()) {
    return std::nullopt;
  }
  return std::pair{std::move(name), line.substr(pos + 1)};
}

parsed_histogram parse_histogram(const std::string& text, const std::string& family) {
  parsed_histogram h;
  for (const std::string& line : lines_of(text)) {
    const auto s = parse_sample(line);
    if (!s) continue;
    if (s->name == family + "_bucket") {
      EXPECT_EQ(s->labels.size(), 1u) << line;
      if (s->labels.size() != 1 || s->labels[0].first != "le") continue;
      h.buckets.emplace_back(s->labels[0].second, std::stoull(s->value));
    } else if (s->name == family + "_sum") {
      h.sum = s->value;
    } else if (s->name == family + "_count") {
      h.count = std::stoull(s->value);
      h.has_count = true;
    }
  }
  return h;
}

TEST(ToPrometheus, HistogramsAreCumulativeInSecondsAndEndInInf) {
  pool_stats s = sample_stats();
  s.latency_enabled = true;
  s.queue_wait = make_known();
  s.run_time.counts[0] = 2;
  s.run_time.counts[1] = 3;
  s.run_time.count = 5;
  s.run_time.sum_ns = 1500;
  const std::string text = crew::to_prometheus(s, "crew");

  EXPECT_NE(text.find("# HELP crew_queue_wait_seconds Time from submit to the start of the job.\n"
                      "# TYPE crew_queue_wait_seconds histogram\n"),
            std::string::npos);
  EXPECT_NE(text.find("# HELP crew_run_time_seconds Time the handler ran.\n"
                      "# TYPE crew_run_time_seconds histogram\n"),
            std::string::npos);

  const parsed_histogram q = parse_histogram(text, "crew_queue_wait_seconds");
  ASSERT_EQ(q.buckets.size(), latency_histogram::bucket_count);
  EXPECT_EQ(q.buckets[0], (std::pair<std::string, std::uint64_t>{"2.56e-07", 50}));
  EXPECT_EQ(q.buckets[1], (std::pair<std::string, std::uint64_t>{"5.12e-07", 50}));
  EXPECT_EQ(q.buckets[2], (std::pair<std::string, std::uint64_t>{"1.024e-06", 90}));
  EXPECT_EQ(q.buckets[9], (std::pair<std::string, std::uint64_t>{"0.000131072", 99}));
  EXPECT_EQ(q.buckets[22], (std::pair<std::string, std::uint64_t>{"1.073741824", 99}));
  EXPECT_EQ(q.buckets[23], (std::pair<std::string, std::uint64_t>{"+Inf", 100}));
  for (std::size_t i = 0; i + 1 < q.buckets.size(); ++i) {
    // le values are the bucket bounds in seconds, strictly increasing; counts never decrease.
    const double le = std::strtod(q.buckets[i].first.c_str(), nullptr);
    EXPECT_DOUBLE_EQ(le, static_cast<double>(latency_histogram::upper_bound_ns(i)) / 1e9);
    EXPECT_LE(q.buckets[i].second, q.buckets[i + 1].second);
  }
  ASSERT_TRUE(q.has_count);
  EXPECT_EQ(q.count, 100u);
  EXPECT_EQ(q.buckets.back().second, q.count);
  EXPECT_DOUBLE_EQ(std::strtod(q.sum.c_str(), nullptr), 10.000945);  // 10 s + 900 us + 45 us

  const parsed_histogram r = parse_histogram(text, "crew_run_time_seconds");
  ASSERT_EQ(r.buckets.size(), latency_histogram::bucket_count);
  EXPECT_EQ(r.buckets[0].second, 2u);
  EXPECT_EQ(r.buckets[1].second, 5u);
  EXPECT_EQ(r.buckets.back(), (std::pair<std::string, std::uint64_t>{"+Inf", 5}));
  EXPECT_EQ(r.count, 5u);
  EXPECT_EQ(r.sum, "1.5e-06");
}

TEST(ToPrometheus, CountEqualsInfBucketEvenForASkewedSnapshot) {
  pool_stats s;
  s.latency_enabled = true;
  s.run_time.counts[3] = 4;
  s.run_time.count = 3;  // read a moment earlier than the bucket
  const parsed_histogram r = parse_histogram(crew::to_prometheus(s, "x"), "x_run_time_seconds");
  ASSERT_FALSE(r.buckets.empty());
  EXPECT_EQ(r.buckets.back().second, 4u);
  EXPECT_EQ(r.count, 4u);
}

TEST(ToPrometheus, InvalidNamesAreRejected) {
  for (const std::string_view bad : {"", "1crew", "crew-pool", "crew pool", "crew.pool", "crew\n",
                                     "crew{}", "cr\"ew", "é", "crew/x"}) {
    EXPECT_THROW((void)crew::to_prometheus(pool_stats{}, bad), std::invalid_argument)
        << '"' << bad << '"';
  }
  EXPECT_THROW((void)crew::to_prometheus(pool_stats{}, std::string_view("a\0b", 3)),
               std::invalid_argument);
  for (const std::string_view good : {"crew", "_", ":", "a:b", "image_pool9", "A_Z:0"}) {
    EXPECT_NO_THROW((void)crew::to_prometheus(pool_stats{}, good)) << good;
  }
}

// A small validator for the Prometheus text format 0.0.4. Returns the problems found, empty for a
// valid exposition: every line ends in '\n'; every line is a HELP comment, a TYPE comment or a
// sample `name{labels} value`; each family has exactly one HELP and one TYPE, HELP first, both
// before its samples; sample names belong to the family announced (histograms: _bucket with
// labels, _sum, _count); counters end in _total.
std::vector<std::string> exposition_problems(const std::string& text) {
  static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                               "untyped"};
  std::vector<std::string> problems;
  if (!text.empty() && text.back() != '\n') problems.push_back("no final newline");
  std::set<std::string> helped;
  std::map<std::string, std::string> typed;
  std::string current;  // the family whose TYPE came last
  std::size_t samples = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (const auto h = parse_comment(line, "HELP")) {
      if (!helped.insert(h->first).second) problems.push_back("second HELP: " + line);
    } else if (const auto t = parse_comment(line, "TYPE")) {
      if (!kTypes.count(t->second)) problems.push_back("unknown type: " + line);
      if (!helped.count(t->first)) problems.push_back("TYPE without HELP before it: " + line);
      if (!typed.emplace(t->first, t->second).second) problems.push_back("second TYPE: " + line);
      current = t->first;
    } else if (const auto smp = parse_sample(line)) {
      ++samples;
      if (current.empty()) {
        problems.push_back("sample before any TYPE: " + line);
        continue;
      }
      const std::string& kind = typed[current];
      if (kind == "histogram") {
        const bool bucket = smp->name == current + "_bucket";
        if (!bucket && smp->name != current + "_sum" && smp->name != current + "_count") {
          problems.push_back("not in family " + current + ": " + line);
        }
        if (bucket != smp->has_braces) problems.push_back("labels: " + line);
      } else {
        if (smp->name != current) problems.push_back("not in family " + current + ": " + line);
        if (smp->has_braces) problems.push_back("labels: " + line);
      }
      if (kind == "counter" && !smp->name.ends_with("_total")) {
        problems.push_back("counter without _total: " + line);
      }
    } else {
      problems.push_back("neither HELP, TYPE nor a sample: " + line);
    }
  }
  if (samples == 0) problems.push_back("no samples");
  if (helped.size() != typed.size()) problems.push_back("HELP without TYPE");
  return problems;
}

// "problems" contains one mentioning `what`.
bool mentions(const std::vector<std::string>& problems, const std::string& what) {
  for (const std::string& p : problems) {
    if (p.find(what) != std::string::npos) return true;
  }
  return false;
}

TEST(ToPrometheus, EveryLineIsValidExposition) {
  pool_stats s = sample_stats();
  EXPECT_EQ(exposition_problems(crew::to_prometheus(s, "crew")), std::vector<std::string>{});
  s.latency_enabled = true;
  s.queue_wait = make_known();
  s.run_time = make_known();
  const std::string text = crew::to_prometheus(s, "svc:image_pool");
  EXPECT_EQ(exposition_problems(text), std::vector<std::string>{});
  // 7 gauges + 8 counters + 2 histograms, each with HELP and TYPE; 15 + 2 * (24 + 2) samples.
  std::size_t helps = 0;
  std::size_t types = 0;
  std::size_t samples = 0;
  for (const std::string& line : lines_of(text)) {
    helps += line.rfind("# HELP ", 0) == 0;
    types += line.rfind("# TYPE ", 0) == 0;
    samples += line.rfind("svc:image_pool_", 0) == 0;
  }
  EXPECT_EQ(helps, 17u);
  EXPECT_EQ(types, 17u);
  EXPECT_EQ(samples, 15u + 2 * (latency_histogram::bucket_count + 2));
}

TEST(ToPrometheus, ValidatorCatchesBadLines) {
  // The validator above must be able to fail, or the test that uses it proves nothing.
  const std::string head = "# HELP a x\n# TYPE a gauge\n";
  EXPECT_TRUE(mentions(exposition_problems(head + "a 1 2\n"), "neither"));
  EXPECT_TRUE(mentions(exposition_problems(head + "a{b=c} 1\n"), "neither"));
  EXPECT_TRUE(mentions(exposition_problems(head + "a{le=\"1} 1\n"), "neither"));
  EXPECT_TRUE(mentions(exposition_problems(head + "a abc\n"), "neither"));
  EXPECT_TRUE(mentions(exposition_problems(head + "a  1\n"), "neither"));
  EXPECT_TRUE(mentions(exposition_problems(head + "1a 1\n"), "neither"));
  EXPECT_TRUE(mentions(exposition_problems(head + "a 1"), "no final newline"));
  EXPECT_TRUE(mentions(exposition_problems(head + "b 1\n"), "not in family"));
  EXPECT_TRUE(mentions(exposition_problems(head + "a{x=\"1\"} 1\n"), "labels"));
  EXPECT_TRUE(mentions(exposition_problems(head + "# TYPE a gauge\na 1\n"), "second TYPE"));
  EXPECT_TRUE(mentions(exposition_problems("# TYPE a gauge\na 1\n"), "without HELP"));
  EXPECT_TRUE(mentions(exposition_problems("# HELP a x\n# TYPE a counter\na 1\n"), "_total"));
  EXPECT_TRUE(mentions(exposition_problems("# HELP a x\n# TYPE a kind\na 1\n"), "unknown type"));
  EXPECT_TRUE(mentions(exposition_problems("a 1\n"), "before any TYPE"));
  // And accepts what the format allows.
  EXPECT_EQ(exposition_problems("# HELP a_total x y\n# TYPE a_total counter\na_total 1.5e+03\n"
                                "# HELP h x\n# TYPE h histogram\n"
                                "h_bucket{le=\"0.5\",k=\"a\\\"b\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
                                "h_sum 0.7\nh_count 2\n"),
            std::vector<std::string>{});
}

}  // namespace
