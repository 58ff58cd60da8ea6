// crew memory story (GitHub issue 6): what a pool costs in memory, compared with its peers and
// with one thread per job, and what worker recycling ("stack reset") gives back and costs.
//
// Not a Google Benchmark program. The parent process runs every (scenario, contender) pair in
// its own child process (posix_spawn of /proc/self/exe with `--child <scenario> <contender>`),
// so each peak RSS (the child's VmHWM from /proc/self/status, or a larger sampled VmRSS)
// belongs to one contender alone.
// A child prints `key value` lines on its stdout; the parent checks them, writes one JSON file
// (--out=FILE, default memory_story.json) and prints a markdown summary. RSS is the whole
// child process (binary, libraries and all), in KiB.
//
//  1. burst: 50,000 I/O-like jobs (each sleeps 1 ms) submitted as fast as one thread can, to
//     crew (64 workers, its default queue of 1024 with the block policy: submit waits for
//     room), to every peer of bench/peers.hpp with 64 workers, and to thread_per_job (one
//     std::thread per job). start_rss is VmRSS once the pool is built, before the first
//     submit; seconds runs from the first submit to the end of the last job (the job that
//     completes the count takes the time); peak_rss is the larger of VmHWM once the contender
//     is destroyed and the largest VmRSS a 1 ms sampler thread saw (see rss_sampler for why).
//     The summary also shows the most jobs that slept at once (for thread_per_job: how many
//     threads the producer managed to keep alive). oneTBB runs with 64 worker threads of its own
//     (bench/peers.hpp raises TBB's default limit, the CPU count, with a global_control). Claim
//     tested: a pool's peak RSS is at most 15% of thread-per-job's.
//  2. stack: 8 workers with 16 MiB stacks (crew: pool_options::stack_size; everybody else:
//     pthread_setattr_default_np, so std::thread and Boost.Asio get the same). A warm-up of
//     50,000 light jobs, then rss_before; then `jobs` = 2,000,000 light jobs (~2 us of
//     arithmetic each), where during the first 1,500,000 one job in 10,000 recurses through
//     4 MiB of stack (1,024 noinline frames of a 4 KiB volatile buffer, each page written), and
//     the last 500,000 are light only: the spike is over, what is still resident at the end is
//     what the pool kept. The producer keeps at most 1,024 jobs in flight (unbounded peer
//     queues would otherwise fill memory with queued jobs, not stacks). A sampler thread reads
//     VmRSS (/proc/self/statm) every 10 ms; it starts before the warm-up, so its own stack and
//     buffer are in rss_before, and records from the first main-phase submit; rss_end is VmRSS
//     100 ms after the last job, with the pool still alive (destroying it would free every
//     stack); rss_peak is the larger of VmHWM and the largest sample. Contenders: crew_off
//     (recycle_after 0), crew_respawn and crew_trim (recycle_after 2^10: each worker recycles after
//     [1024, 2048) of its jobs, many times per run), and one peer (asio_thread_pool when Boost is
//     compiled in, else mutex_condvar). Goal tested: with recycling, rss_end is within 10% of
//     rss_before.
//  3. recycle_cost: trivial jobs (one relaxed fetch_add) through crew with hardware_workers()
//     workers, submit_bulk in chunks of 256, 2^24 jobs per run, timed from the first submit to
//     wait_idle(); recycling off and recycle_after 2^10, 2^13, 2^16 in each mode. All in one
//     child: 5 rounds, each round runs every configuration once (interleaved, so drift on a
//     shared machine hits all alike); jobs_per_s is the median of the 5 runs, recycles the
//     median of the recycles per run. Goal tested: 2^16 costs < 1% against off.
//
// The program exits non-zero when a child fails, a job is lost or run twice (every scenario
// counts completions), or a result is implausible (zero RSS, a burst faster than 50,000 x 1 ms
// over 64 workers allows, no recycles where recycling is on, ...). Missed goals are reported,
// not failures: they are measurements.
//
// Run:  build/bench/memory_story [--out=FILE] [--only=burst,stack,recycle_cost]
// It takes about a minute on a 2-core machine (see the runtime it prints at the end).

#include <crew/worker_pool.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "peers.hpp"

extern char** environ;  // NOLINT: POSIX, for posix_spawn

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// ---- scenario parameters ------------------------------------------------------------------

namespace burst {
constexpr std::int64_t jobs = 50'000;
constexpr std::size_t workers = 64;
constexpr auto job_sleep = 1ms;
constexpr std::chrono::microseconds sample_period = 1ms;  // for the peak only
}  // namespace burst

namespace stack {
constexpr std::size_t workers = 8;
constexpr std::size_t stack_size = std::size_t{16} << 20;  // room for the deep jobs
constexpr std::int64_t deep_every = 10'000;
constexpr std::size_t deep_bytes = std::size_t{4} << 20;
constexpr std::size_t frame_bytes = 4096;
constexpr std::size_t deep_levels = deep_bytes / frame_bytes;
constexpr std::uint64_t recycle_after = 1024;  // 2^10
constexpr std::int64_t warmup_jobs = 50'000;
constexpr std::int64_t jobs = 2'000'000;             // the main phase
constexpr std::int64_t deep_phase_jobs = 1'500'000;  // deep jobs only among these
constexpr int light_iterations = 2000;               // ~2 us of dependent multiply-adds
constexpr std::int64_t in_flight = 1024;
constexpr std::chrono::microseconds sample_period = 10ms;
}  // namespace stack

namespace cost {
constexpr std::size_t chunk = 256;
constexpr std::int64_t jobs_per_run = std::int64_t{1} << 24;
constexpr int runs = 5;
}  // namespace cost

// ---- small helpers ------------------------------------------------------------------------

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
      .count();
}

// Keeps `value` alive for the optimiser without a memory access.
template <class T>
void keep(const T& value) {
  __asm__ __volatile__("" : : "r"(value) : "memory");
}

// Reads a small /proc file with read(2) into `buf` (no allocation: the sampler calls this
// while the pool runs). Returns the number of bytes read, 0 on failure.
std::size_t read_proc(const char* path, char* buf, std::size_t size) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::size_t used = 0;
  while (used + 1 < size) {
    const ssize_t n = ::read(fd, buf + used, size - 1 - used);
    if (n <= 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  buf[used] = '\0';
  return used;
}

// Resident set size in KiB from /proc/self/statm (second field, in pages); 0 when unknown.
std::int64_t rss_kib() {
  char buf[256];
  if (read_proc("/proc/self/statm", buf, sizeof buf) == 0) return 0;
  unsigned long long size = 0;
  unsigned long long resident = 0;
  if (std::sscanf(buf, "%llu %llu", &size, &resident) != 2) return 0;
  const long page = ::sysconf(_SC_PAGESIZE);
  return static_cast<std::int64_t>(resident) * (page > 0 ? page : 4096) / 1024;
}

// A "Key:  <n> kB" field of /proc/self/status (VmRSS, VmHWM); 0 when unknown.
std::int64_t status_kib(const char* key) {
  char buf[8192];
  if (read_proc("/proc/self/status", buf, sizeof buf) == 0) return 0;
  const std::size_t key_len = std::strlen(key);
  for (const char* line = buf; line != nullptr && *line != '\0';) {
    if (std::strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
      return std::strtoll(line + key_len + 1, nullptr, 10);
    }
    line = std::strchr(line, '\n');
    if (line != nullptr) ++line;
  }
  return 0;
}

void emit(const char* key, std::int64_t value) { std::printf("%s %" PRId64 "\n", key, value); }
void emit(const char* key, double value) { std::printf("%s %.9g\n", key, value); }

// ---- RSS sampling ----------------------------------------------------------------------

struct sample {
  double t_ms;
  std::int64_t rss_kib;
};

// Reads VmRSS every `period` from construction until stop(), keeps the largest reading, and
// records the readings taken after begin(). It runs (and touches its stack and its
// preallocated, zero-filled buffer) before begin() exactly as after it, so an RSS taken before
// begin() already contains the sampler's own memory.
//
// Why a sampled maximum next to VmHWM: the kernel's high-water mark is updated at particular
// moments (unmaps, zaps) from an approximate counter, and MADV_DONTNEED (trim; glibc's release
// of an exiting thread's stack) can drop pages without it seeing their peak: on this project's
// machine a 10 ms sample once exceeded VmHWM by 224 KiB. Peaks below are max(VmHWM, sampled).
class rss_sampler {
 public:
  // Keeps at most `capacity` samples (0: only the maximum).
  rss_sampler(std::chrono::microseconds period, std::size_t capacity)
      : period_(period), samples_(capacity) {
    thread_ = std::thread([this] {
      auto next = clock_type::now();
      while (!stop_.load()) {
        const std::int64_t rss = rss_kib();
        max_ = std::max(max_, rss);
        const std::int64_t begun = begin_ns_.load();  // (1) pairs with (1) in begin()
        if (begun != 0 && count_ < samples_.size()) {
          samples_[count_++] = {static_cast<double>(now_ns() - begun) * 1e-6, rss};
        }
        next += period_;
        std::this_thread::sleep_until(next);
      }
    });
  }
  rss_sampler(const rss_sampler&) = delete;
  rss_sampler& operator=(const rss_sampler&) = delete;
  rss_sampler(rss_sampler&&) = delete;
  rss_sampler& operator=(rss_sampler&&) = delete;
  ~rss_sampler() { (void)stop(); }
  // Starts recording; t_ms counts from this call.
  void begin() { begin_ns_.store(now_ns()); }  // (1) seq_cst, one store per run
  // Stops the sampler; the join makes its samples visible to the caller.
  std::vector<sample> stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return {samples_.begin(), samples_.begin() + static_cast<std::ptrdiff_t>(count_)};
  }
  // The largest reading, including those before begin(); call after stop().
  std::int64_t max_rss_kib() const { return max_; }

 private:
  std::chrono::microseconds period_;
  std::vector<sample> samples_;
  std::size_t count_ = 0;  // written by the sampler thread only; read after the join
  std::int64_t max_ = 0;   // likewise
  std::atomic<std::int64_t> begin_ns_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// ---- 1. burst (child) ---------------------------------------------------------------------

std::atomic<std::int64_t> burst_done{0};
std::atomic<std::int64_t> burst_end_ns{0};
std::atomic<std::int64_t> burst_running{0};
std::atomic<std::int64_t> burst_max_running{0};

// seq_cst throughout (the defaults): a few atomic operations per 1 ms job cost nothing here.
void burst_job(std::int64_t /*payload*/) {
  // How many jobs sleep at once: 64 at most for the pools; for thread_per_job, how many
  // threads the producer managed to have alive together.
  const std::int64_t running = burst_running.fetch_add(1) + 1;
  std::int64_t max = burst_max_running.load();
  while (running > max && !burst_max_running.compare_exchange_weak(max, running)) {
  }
  std::this_thread::sleep_for(burst::job_sleep);
  burst_running.fetch_sub(1);
  if (burst_done.fetch_add(1) + 1 == burst::jobs) burst_end_ns.store(now_ns());
}

template <class C>
int burst_child() {
  constexpr bool per_job = std::is_same_v<C, crew_bench::thread_per_job_contender>;
  const std::size_t workers = per_job ? 0 : burst::workers;
  std::int64_t start_rss = 0;
  std::int64_t start_ns = 0;
  rss_sampler sampler(burst::sample_period, 0);
  {
    C contender(workers, &burst_job);
    start_rss = rss_kib();
    start_ns = now_ns();
    for (std::int64_t i = 0; i < burst::jobs; ++i) contender.submit(i);
  }  // the destructor runs every job and joins
  (void)sampler.stop();
  const std::int64_t peak = std::max(status_kib("VmHWM"), sampler.max_rss_kib());
  emit("workers", static_cast<std::int64_t>(workers));
  emit("jobs", burst::jobs);
  emit("done", burst_done.load());
  emit("max_running", burst_max_running.load());
  emit("seconds", static_cast<double>(burst_end_ns.load() - start_ns) * 1e-9);
  emit("start_rss_kib", start_rss);
  emit("peak_rss_kib", peak);
  return 0;
}

// ---- 2. stack (child) ---------------------------------------------------------------------

std::atomic<std::int64_t> stack_done{0};
std::atomic<std::uint64_t> sink{0};

// Recurses `levels` deep with a 4 KiB frame each, writing every page of it so the pages become
// resident. The volatile buffer, noinline and the use of the result after the call keep the
// compiler from turning the recursion into a loop or shrinking the frame.
[[gnu::noinline]] std::uint64_t recurse(std::size_t levels) {
  volatile unsigned char frame[stack::frame_bytes];
  for (std::size_t i = 0; i < stack::frame_bytes; i += 512) {
    frame[i] = static_cast<unsigned char>(levels);
  }
  frame[stack::frame_bytes - 1] = 1;
  if (levels == 0) return frame[0];
  return recurse(levels - 1) + frame[stack::frame_bytes - 1];
}

// Payload: (index << 1) | deep.
void stack_job(std::int64_t payload) {
  if ((payload & 1) != 0) {
    // relaxed: only keeps the result alive; nobody reads it for synchronisation.
    sink.fetch_add(recurse(stack::deep_levels), std::memory_order_relaxed);
  } else {
    auto h = static_cast<std::uint64_t>(payload);
    for (int i = 0; i < stack::light_iterations; ++i) {
      h = h * 6364136223846793005ULL + 1442695040888963407ULL;
    }
    keep(h);
  }
  // relaxed: a count; the producer only paces on it and the final check reads it after the
  // pool is destroyed (joined), which orders every increment before it.
  stack_done.fetch_add(1, std::memory_order_relaxed);
}

// Waits until `target` jobs have completed; false after a minute (a lost job).
bool wait_done(std::int64_t target) {
  const auto deadline = clock_type::now() + 60s;
  // relaxed: a count; nothing the jobs wrote is read after this.
  while (stack_done.load(std::memory_order_relaxed) < target) {
    if (clock_type::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Submits `count` jobs; main-phase job j (main = true) is deep when it is among the first
// deep_phase_jobs and j % deep_every == deep_every - 1. Keeps at most in_flight jobs queued or
// running, for every contender alike.
template <class C>
void feed(C& contender, std::int64_t count, bool main, std::int64_t already_done) {
  for (std::int64_t j = 0; j < count; ++j) {
    if ((j & 63) == 0) {
      // relaxed: pacing only.
      while (already_done + j - stack_done.load(std::memory_order_relaxed) > stack::in_flight) {
        std::this_thread::sleep_for(50us);
      }
    }
    const bool deep =
        main && j < stack::deep_phase_jobs && j % stack::deep_every == stack::deep_every - 1;
    contender.submit((j << 1) | (deep ? 1 : 0));
  }
}

template <class C>
int stack_child(std::unique_ptr<C> contender, std::uint64_t recycle_after) {
  // Runs from here on; records from begin(). 16,384 samples: 160 s at 10 ms.
  rss_sampler sampler(stack::sample_period, 16384);
  feed(*contender, stack::warmup_jobs, false, 0);
  if (!wait_done(stack::warmup_jobs)) {
    std::fprintf(stderr, "stack: warm-up jobs lost\n");
    return 1;
  }
  std::this_thread::sleep_for(100ms);
  const std::int64_t before = rss_kib();
  sampler.begin();
  const auto start = clock_type::now();
  feed(*contender, stack::jobs, true, stack::warmup_jobs);
  if (!wait_done(stack::warmup_jobs + stack::jobs)) {
    std::fprintf(stderr, "stack: main-phase jobs lost\n");
    return 1;
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  std::this_thread::sleep_for(100ms);
  const std::int64_t end = rss_kib();
  const std::vector<sample> samples = sampler.stop();
  const std::int64_t peak = std::max(status_kib("VmHWM"), sampler.max_rss_kib());
  std::int64_t recycled = 0;
  if constexpr (std::is_same_v<C, crew_bench::crew_contender>) {
    recycled = static_cast<std::int64_t>(contender->pool.stats().recycled);
  }
  contender.reset();  // joins: every increment of stack_done happened before this
  emit("workers", static_cast<std::int64_t>(stack::workers));
  emit("recycle_after", static_cast<std::int64_t>(recycle_after));
  emit("jobs", stack::jobs);
  emit("done", stack_done.load() - stack::warmup_jobs);
  emit("seconds", seconds);
  emit("recycled", recycled);
  emit("rss_before_kib", before);
  emit("rss_peak_kib", peak);
  emit("rss_end_kib", end);
  for (const sample& s : samples) std::printf("sample %.3f %" PRId64 "\n", s.t_ms, s.rss_kib);
  return 0;
}

int stack_child_dispatch(std::string_view name) {
  // Every thread this process starts (std::thread, Boost.Asio's) gets 16 MiB of stack, like
  // crew's workers below: the deep jobs fit whatever `ulimit -s` says.
  pthread_attr_t attr;
  if (::pthread_attr_init(&attr) != 0 ||
      ::pthread_attr_setstacksize(&attr, stack::stack_size) != 0 ||
      ::pthread_setattr_default_np(&attr) != 0) {
    std::fprintf(stderr, "stack: cannot set the default thread stack size\n");
    return 1;
  }
  ::pthread_attr_destroy(&attr);
  const auto crew_with = [](std::uint64_t recycle_after, crew::recycle_mode mode) {
    return std::make_unique<crew_bench::crew_contender>(
        &stack_job, crew::pool_options<std::int64_t>{.workers = stack::workers,
                                                     .queue_capacity = 1024,
                                                     .recycle_after = recycle_after,
                                                     .recycle = mode,
                                                     .stack_size = stack::stack_size,
                                                     .name = "story"});
  };
  if (name == "crew_off") return stack_child(crew_with(0, crew::recycle_mode::respawn), 0);
  if (name == "crew_respawn") {
    return stack_child(crew_with(stack::recycle_after, crew::recycle_mode::respawn),
                       stack::recycle_after);
  }
  if (name == "crew_trim") {
    return stack_child(crew_with(stack::recycle_after, crew::recycle_mode::trim),
                       stack::recycle_after);
  }
#if CREW_HAVE_BOOST
  using peer = crew_bench::asio_contender;
#else
  using peer = crew_bench::mutex_contender;
#endif
  if (name == peer::name) return stack_child(std::make_unique<peer>(stack::workers, &stack_job), 0);
  std::fprintf(stderr, "stack: unknown contender %.*s\n", static_cast<int>(name.size()),
               name.data());
  return 2;
}

std::string stack_peer_name() {
#if CREW_HAVE_BOOST
  return crew_bench::asio_contender::name;
#else
  return crew_bench::mutex_contender::name;
#endif
}

// ---- 3. recycle_cost (child) --------------------------------------------------------------

std::atomic<std::int64_t> cost_done{0};

void trivial_job(std::int64_t v) {
  // relaxed: a count, read after wait_idle(), which makes every handler's effects visible.
  cost_done.fetch_add(v, std::memory_order_relaxed);
}

struct cost_config {
  const char* mode;
  std::uint64_t recycle_after;
  crew::recycle_mode recycle;
};

int recycle_cost_child() {
  const std::size_t workers = crew::hardware_workers();
  const cost_config configs[] = {
      {"off", 0, crew::recycle_mode::respawn},
      {"respawn", std::uint64_t{1} << 10, crew::recycle_mode::respawn},
      {"respawn", std::uint64_t{1} << 13, crew::recycle_mode::respawn},
      {"respawn", std::uint64_t{1} << 16, crew::recycle_mode::respawn},
      {"trim", std::uint64_t{1} << 10, crew::recycle_mode::trim},
      {"trim", std::uint64_t{1} << 13, crew::recycle_mode::trim},
      {"trim", std::uint64_t{1} << 16, crew::recycle_mode::trim},
  };
  constexpr std::size_t n = std::size(configs);
  std::vector<std::vector<double>> rates(n);
  std::vector<std::vector<std::int64_t>> recycles(n);
  std::vector<std::int64_t> chunk(cost::chunk, 1);
  for (int round = 0; round < cost::runs; ++round) {
    for (std::size_t c = 0; c < n; ++c) {
      cost_done.store(0);
      crew_bench::crew_contender contender(&trivial_job, {.workers = workers,
                                                          .queue_capacity = 1024,
                                                          .recycle_after = configs[c].recycle_after,
                                                          .recycle = configs[c].recycle});
      const auto start = clock_type::now();
      for (std::int64_t sent = 0; sent < cost::jobs_per_run;
           sent += static_cast<std::int64_t>(chunk.size())) {
        if (contender.pool.submit_bulk(chunk) != chunk.size()) {
          std::fprintf(stderr, "recycle_cost: submit_bulk refused jobs\n");
          return 1;
        }
      }
      contender.pool.wait_idle();
      const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
      const auto recycled = static_cast<std::int64_t>(contender.pool.stats().recycled);
      // relaxed: after wait_idle() (see trivial_job).
      if (cost_done.load(std::memory_order_relaxed) != cost::jobs_per_run) {
        std::fprintf(stderr, "recycle_cost: %s 2^%d ran %" PRId64 " of %" PRId64 " jobs\n",
                     configs[c].mode, std::countr_zero(configs[c].recycle_after),
                     cost_done.load(std::memory_order_relaxed), cost::jobs_per_run);
        return 1;
      }
      rates[c].push_back(static_cast<double>(cost::jobs_per_run) / seconds);
      recycles[c].push_back(recycled);
    }
  }
  emit("workers", static_cast<std::int64_t>(workers));
  emit("jobs_per_run", cost::jobs_per_run);
  for (std::size_t c = 0; c < n; ++c) {
    std::sort(rates[c].begin(), rates[c].end());
    std::sort(recycles[c].begin(), recycles[c].end());
    // mode, recycle_after, median jobs/s, median recycles, slowest and fastest run's jobs/s
    std::printf("row %s %" PRIu64 " %.6g %" PRId64 " %.6g %.6g\n", configs[c].mode,
                configs[c].recycle_after, rates[c][rates[c].size() / 2],
                recycles[c][recycles[c].size() / 2], rates[c].front(), rates[c].back());
  }
  return 0;
}

// ---- child dispatch -----------------------------------------------------------------------

int child_main(std::string_view scenario, std::string_view name) {
  int rc = 2;
  if (scenario == "burst") {
    bool found = false;
    crew_bench::for_each_contender([&]<class C>() {
      if (!found && name == C::name) {
        found = true;
        rc = burst_child<C>();
      }
    });
    if (!found) std::fprintf(stderr, "burst: unknown contender\n");
  } else if (scenario == "stack") {
    rc = stack_child_dispatch(name);
  } else if (scenario == "recycle_cost") {
    rc = recycle_cost_child();
  } else {
    std::fprintf(stderr, "unknown scenario\n");
  }
  std::fflush(stdout);
  return rc;
}

// ---- parent -------------------------------------------------------------------------------

struct child_result {
  bool ok = false;
  std::map<std::string, std::string, std::less<>> values;
  std::vector<sample> samples;
  std::vector<std::string> rows;

  std::int64_t integer(std::string_view key) const {
    const auto it = values.find(key);
    return it == values.end() ? 0 : std::strtoll(it->second.c_str(), nullptr, 10);
  }
  double real(std::string_view key) const {
    const auto it = values.find(key);
    return it == values.end() ? 0.0 : std::strtod(it->second.c_str(), nullptr);
  }
};

// Runs this executable as `--child <scenario> <name>`, collecting its stdout.
child_result run_child(const std::string& scenario, const std::string& name) {
  child_result result;
  std::fprintf(stderr, "memory_story: %s %s ...\n", scenario.c_str(), name.c_str());
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return result;
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::string arg0 = "memory_story";
  std::string arg1 = "--child";
  std::string arg2 = scenario;
  std::string arg3 = name;
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), arg3.data(), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv, environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    std::fprintf(stderr, "memory_story: posix_spawn failed: %s\n", std::strerror(rc));
    return result;
  }
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return result;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "memory_story: child %s %s failed (status %d)\n", scenario.c_str(),
                 name.c_str(), status);
    return result;
  }
  std::size_t pos = 0;
  while (pos < out.size()) {
    std::size_t eol = out.find('\n', pos);
    if (eol == std::string::npos) eol = out.size();
    const std::string line = out.substr(pos, eol - pos);
    pos = eol + 1;
    const std::size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    const std::string key = line.substr(0, space);
    const std::string value = line.substr(space + 1);
    if (key == "sample") {
      sample s{};
      if (std::sscanf(value.c_str(), "%lf %" SCNd64, &s.t_ms, &s.rss_kib) == 2) {
        result.samples.push_back(s);
      }
    } else if (key == "row") {
      result.rows.push_back(value);
    } else {
      result.values[key] = value;
    }
  }
  result.ok = true;
  return result;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned>(c));
      out += esc;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

[[gnu::format(printf, 1, 2)]] std::string fmt(const char* format, ...) {
  std::va_list args;
  va_start(args, format);
  std::va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string out(n > 0 ? static_cast<std::size_t>(n) : 0, '\0');
  std::vsnprintf(out.data(), out.size() + 1, format, again);
  va_end(again);
  return out;
}

std::string cpu_model() {
  char buf[16384];
  if (read_proc("/proc/cpuinfo", buf, sizeof buf) == 0) return "unknown";
  const char* line = std::strstr(buf, "model name");
  if (line == nullptr) return "unknown";
  const char* colon = std::strchr(line, ':');
  const char* eol = std::strchr(line, '\n');
  if (colon == nullptr || eol == nullptr || colon > eol) return "unknown";
  std::string model(colon + 1, eol);
  model.erase(0, model.find_first_not_of(' '));
  return model;
}

std::string context_json() {
  char date[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
  utsname u{};
  ::uname(&u);
  return fmt(
      "{\"date\": %s, \"host\": %s, \"cpus\": %ld, \"cpu_model\": %s, \"kernel\": %s, "
      "\"compiler\": %s}",
      json_string(date).c_str(), json_string(u.nodename).c_str(), ::sysconf(_SC_NPROCESSORS_ONLN),
      json_string(cpu_model()).c_str(), json_string(u.release).c_str(),
      json_string(__VERSION__).c_str());
}

double mib(std::int64_t kib) { return static_cast<double>(kib) / 1024.0; }

struct story {
  bool ok = true;
  std::vector<std::string> burst_json, stack_json, cost_json;
  std::vector<std::string> burst_table, stack_table, cost_table, verdicts;

  void fail(const std::string& why) {
    std::fprintf(stderr, "memory_story: FAIL: %s\n", why.c_str());
    ok = false;
  }
  // Records a failed plausibility check and returns its outcome.
  bool check(bool good, const std::string& what) {
    if (!good) fail(what);
    return good;
  }
};

void run_burst(story& s) {
  std::vector<std::string> names;
  crew_bench::for_each_contender([&]<class C>() { names.emplace_back(C::name); });
  struct row {
    std::string name;
    std::int64_t workers, peak, start, max_running;
    double seconds;
  };
  std::vector<row> rows;
  for (const std::string& name : names) {
    const child_result r = run_child("burst", name);
    if (!s.check(r.ok, "burst " + name + ": child failed")) continue;
    const row x{name,
                r.integer("workers"),
                r.integer("peak_rss_kib"),
                r.integer("start_rss_kib"),
                r.integer("max_running"),
                r.real("seconds")};
    const std::string tag = "burst " + name + ": ";
    s.check(r.integer("done") == burst::jobs,
            tag + fmt("%" PRId64 " of %" PRId64 " jobs completed", r.integer("done"), burst::jobs));
    s.check(x.start > 0 && x.peak >= x.start, tag + "implausible RSS");
    s.check(x.max_running >= 1 && (x.workers == 0 || x.max_running <= x.workers),
            tag + fmt("%" PRId64 " jobs ran at once", x.max_running));
    // Each worker runs its jobs one after another, each at least 1 ms long.
    const double floor_s =
        x.workers > 0 ? 1e-3 * static_cast<double>(burst::jobs) / static_cast<double>(x.workers)
                      : 1e-3;
    s.check(x.seconds >= floor_s && x.seconds < 600,
            tag + fmt("implausible time %.3f s", x.seconds));
    s.burst_json.push_back(
        fmt("{\"contender\": %s, \"jobs\": %" PRId64 ", \"workers\": %" PRId64
            ", \"seconds\": %.6f, \"peak_rss_kib\": %" PRId64 ", \"start_rss_kib\": %" PRId64 "}",
            json_string(name).c_str(), burst::jobs, x.workers, x.seconds, x.peak, x.start));
    rows.push_back(x);
  }
  const auto tpj = std::find_if(rows.begin(), rows.end(), [](const row& x) {
    return x.name == crew_bench::thread_per_job_contender::name;
  });
  s.burst_table.emplace_back(
      "| contender | workers | seconds | most jobs running at once | start RSS MiB | peak RSS MiB "
      "| peak / thread_per_job peak |");
  s.burst_table.emplace_back("|---|---:|---:|---:|---:|---:|---:|");
  std::string met, missed;
  for (const row& x : rows) {
    const double ratio =
        tpj != rows.end() ? static_cast<double>(x.peak) / static_cast<double>(tpj->peak) : 0.0;
    if (tpj != rows.end() && x.name != tpj->name) {
      (ratio <= 0.15 ? met : missed) += fmt(" %s (%.0f%%)", x.name.c_str(), 100.0 * ratio);
    }
    s.burst_table.push_back(fmt("| %s | %" PRId64 " | %.3f | %" PRId64 " | %.1f | %.1f | %.1f%% |",
                                x.name.c_str(), x.workers, x.seconds, x.max_running, mib(x.start),
                                mib(x.peak), 100.0 * ratio));
  }
  if (tpj == rows.end()) {
    s.verdicts.emplace_back("burst: no thread_per_job result, claim not evaluated");
  } else {
    s.verdicts.push_back(fmt("burst: pool peak RSS <= 15%% of thread_per_job's (%" PRId64
                             " threads alive at most): met by [%s ], NOT met by [%s ]",
                             tpj->max_running, met.c_str(), missed.c_str()));
  }
}

void run_stack(story& s) {
  const std::string peer = stack_peer_name();
  s.stack_table.emplace_back(
      "| contender | recycle_after | recycles | seconds | before MiB | peak MiB | end MiB | "
      "end / before |");
  s.stack_table.emplace_back("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const std::string name : {"crew_off", "crew_respawn", "crew_trim", peer.c_str()}) {
    const child_result r = run_child("stack", name);
    if (!s.check(r.ok, "stack " + name + ": child failed")) continue;
    const std::string tag = "stack " + name + ": ";
    const std::int64_t before = r.integer("rss_before_kib");
    const std::int64_t peak = r.integer("rss_peak_kib");
    const std::int64_t end = r.integer("rss_end_kib");
    const std::int64_t recycle_after = r.integer("recycle_after");
    const std::int64_t recycled = r.integer("recycled");
    s.check(r.integer("done") == stack::jobs,
            tag + fmt("%" PRId64 " of %" PRId64 " jobs completed", r.integer("done"), stack::jobs));
    s.check(before > 0 && end > 0 && peak >= before && peak >= end, tag + "implausible RSS");
    s.check(!r.samples.empty(), tag + "no RSS samples");
    s.check((recycle_after == 0) == (recycled == 0),
            tag + fmt("%" PRId64 " recycles with recycle_after %" PRId64, recycled, recycle_after));
    // Every deep job makes some worker's stack 4 MiB deep: RSS must have risen by about that.
    s.check(peak - before >= static_cast<std::int64_t>(stack::deep_bytes / 1024) / 2,
            tag + "RSS never rose: did the deep jobs run?");
    std::string samples;
    for (const sample& x : r.samples) {
      if (!samples.empty()) samples += ", ";
      samples += fmt("{\"t_ms\": %.1f, \"rss_kib\": %" PRId64 "}", x.t_ms, x.rss_kib);
    }
    s.stack_json.push_back(
        fmt("{\"contender\": %s, \"workers\": %" PRId64 ", \"recycle_after\": %" PRId64
            ", \"deep_every\": %" PRId64 ", \"deep_bytes\": %zu, \"jobs\": %" PRId64
            ", \"rss_before_kib\": %" PRId64 ", \"rss_peak_kib\": %" PRId64
            ", \"rss_end_kib\": %" PRId64 ", \"samples\": [",
            json_string(name).c_str(), r.integer("workers"), recycle_after, stack::deep_every,
            stack::deep_bytes, stack::jobs, before, peak, end) +
        samples + "]}");
    const double ratio = before > 0 ? static_cast<double>(end) / static_cast<double>(before) : 0;
    if (recycle_after != 0) {
      s.verdicts.push_back(fmt(
          "stack: %s rss_end within 10%% of rss_before: %s (%+.1f%%, %+" PRId64 " KiB)",
          name.c_str(), ratio <= 1.10 ? "met" : "NOT met", 100.0 * (ratio - 1.0), end - before));
    }
    s.stack_table.push_back(
        fmt("| %s | %" PRId64 " | %" PRId64 " | %.2f | %.1f | %.1f | %.1f | %.3f |", name.c_str(),
            recycle_after, recycled, r.real("seconds"), mib(before), mib(peak), mib(end), ratio));
  }
}

void run_recycle_cost(story& s) {
  const child_result r = run_child("recycle_cost", "crew");
  if (!s.check(r.ok, "recycle_cost: child failed")) return;
  struct row {
    std::string mode;
    std::uint64_t recycle_after;
    double rate;
    std::int64_t recycles;
    double slowest, fastest;
  };
  std::vector<row> rows;
  for (const std::string& line : r.rows) {
    char mode[16] = {};
    row x{};
    if (std::sscanf(line.c_str(), "%15s %" SCNu64 " %lf %" SCNd64 " %lf %lf", mode,
                    &x.recycle_after, &x.rate, &x.recycles, &x.slowest, &x.fastest) != 6) {
      s.fail("recycle_cost: bad row '" + line + "'");
      continue;
    }
    x.mode = mode;
    const std::string tag = "recycle_cost " + line + ": ";
    s.check(x.slowest > 0 && x.slowest <= x.rate && x.rate <= x.fastest, tag + "bad throughput");
    s.check((x.recycle_after == 0) == (x.recycles == 0), tag + "recycle count does not match");
    rows.push_back(x);
  }
  s.check(rows.size() == 7, "recycle_cost: expected 7 rows");
  if (rows.empty() || rows.front().mode != "off") return;
  const double off = rows.front().rate;
  s.cost_table.push_back(fmt("crew with %" PRId64 " workers (hardware_workers()), %" PRId64
                             " trivial jobs per run, submit_bulk chunks of %zu, median of %d "
                             "interleaved runs",
                             r.integer("workers"), r.integer("jobs_per_run"), cost::chunk,
                             cost::runs));
  s.cost_table.emplace_back("");
  s.cost_table.emplace_back(
      "| mode | recycle_after | jobs/s (median) | spread (max-min)/median | recycles/run | "
      "cost vs off (time per job) | us per recycle (derived) |");
  s.cost_table.emplace_back("|---|---:|---:|---:|---:|---:|---:|");
  const double noise_pct = 100.0 * (rows.front().fastest - rows.front().slowest) / off;
  std::string costs;
  bool goal = true;
  for (const row& x : rows) {
    s.cost_json.push_back(fmt("{\"mode\": %s, \"recycle_after\": %" PRIu64
                              ", \"jobs_per_s\": %.1f, \"recycles\": %" PRId64 "}",
                              json_string(x.mode).c_str(), x.recycle_after, x.rate, x.recycles));
    const double cost_pct = 100.0 * (off / x.rate - 1.0);  // extra time per job, in %
    if (x.recycle_after == (std::uint64_t{1} << 16)) {
      costs += fmt(" %s %+.1f%%", x.mode.c_str(), cost_pct);
      if (cost_pct >= 1.0) goal = false;
    }
    // The extra time of a run over recycling off, shared among its recycles.
    const double jobs = static_cast<double>(r.integer("jobs_per_run"));
    const std::string per_recycle =
        x.recycles == 0
            ? "-"
            : fmt("%.1f", 1e6 * (jobs / x.rate - jobs / off) / static_cast<double>(x.recycles));
    s.cost_table.push_back(fmt(
        "| %s | %s | %.3g | %.1f%% | %" PRId64 " | %+.1f%% | %s |", x.mode.c_str(),
        x.recycle_after == 0 ? "-" : fmt("2^%d", std::countr_zero(x.recycle_after)).c_str(), x.rate,
        100.0 * (x.fastest - x.slowest) / x.rate, x.recycles, cost_pct, per_recycle.c_str()));
  }
  // The verdict is only as good as the noise: with recycling off, runs differ by noise_pct.
  s.verdicts.push_back(
      fmt("recycle_cost: recycle_after 2^16 costs < 1%%: %s (measured:%s; "
          "run-to-run spread with recycling off %.1f%%)",
          noise_pct >= 1.0 ? "INCONCLUSIVE, the spread exceeds the 1% tested"
          : goal           ? "met"
                           : "NOT met",
          costs.c_str(), noise_pct));
}

std::string join_json(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    out += (i == 0 ? "\n    " : ",\n    ") + items[i];
  }
  return out + (items.empty() ? "]" : "\n  ]");
}

int parent_main(const std::string& out_path, const std::string& only) {
  const auto t0 = clock_type::now();
  const auto wanted = [&](std::string_view scenario) {
    return only.empty() ||
           ("," + only + ",").find("," + std::string(scenario) + ",") != std::string::npos;
  };
  story s;
  const std::string context = context_json();
  if (wanted("burst")) run_burst(s);
  if (wanted("stack")) run_stack(s);
  if (wanted("recycle_cost")) run_recycle_cost(s);

  const std::string json = "{\n  \"context\": " + context +
                           ",\n  \"burst\": " + join_json(s.burst_json) +
                           ",\n  \"stack\": " + join_json(s.stack_json) +
                           ",\n  \"recycle_cost\": " + join_json(s.cost_json) + "\n}\n";
  std::FILE* f = std::fopen(out_path.c_str(), "w");
  if (f == nullptr || std::fwrite(json.data(), 1, json.size(), f) != json.size() ||
      std::fclose(f) != 0) {
    s.fail("cannot write " + out_path);
  }

  const double runtime = std::chrono::duration<double>(clock_type::now() - t0).count();
  std::printf("# crew memory story\n\n%s\n", context.c_str());
  if (!s.burst_table.empty()) {
    std::printf("\n## burst: %" PRId64 " jobs of 1 ms sleep, %zu workers per pool\n\n", burst::jobs,
                burst::workers);
    for (const auto& line : s.burst_table) std::printf("%s\n", line.c_str());
  }
  if (!s.stack_table.empty()) {
    std::printf("\n## stack: %zu workers, %" PRId64 " jobs, 1 in %" PRId64
                " recurses %zu MiB deep during the first %" PRId64 "\n\n",
                stack::workers, stack::jobs, stack::deep_every, stack::deep_bytes >> 20,
                stack::deep_phase_jobs);
    for (const auto& line : s.stack_table) std::printf("%s\n", line.c_str());
  }
  if (!s.cost_table.empty()) {
    std::printf("\n## recycle_cost\n\n");
    for (const auto& line : s.cost_table) std::printf("%s\n", line.c_str());
  }
  std::printf("\n");
  for (const auto& v : s.verdicts) std::printf("- %s\n", v.c_str());
  std::printf("\nruntime %.1f s; JSON: %s; %s\n", runtime, out_path.c_str(),
              s.ok ? "all checks passed" : "CHECKS FAILED");
  return s.ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "memory_story.json";
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--child" && i + 2 < argc) return child_main(argv[i + 1], argv[i + 2]);
    if (arg.starts_with("--out=")) {
      out = arg.substr(6);
    } else if (arg.starts_with("--only=")) {
      only = arg.substr(7);
    } else {
      std::fprintf(stderr, "usage: memory_story [--out=FILE] [--only=burst,stack,recycle_cost]\n");
      return 2;
    }
  }
  return parent_main(out, only);
}
