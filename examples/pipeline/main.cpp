// crew pipeline: read files -> checksum -> write results, each stage its own pool sized for
// its bottleneck, connected with overflow_policy::block and small queues: when a stage falls
// behind, the stage before it waits in submit instead of piling up file contents in memory.
// At most (queue capacity + workers) items are in flight per stage, however many files there are.
//
// Sizing (Little's law: workers = throughput x latency of one job):
//   read   I/O-bound. Assumed latency 2 ms per file (a cold read from disk or network storage),
//          target 2,000 files/s -> 4 workers.
//   hash   CPU-bound: one worker per usable CPU, crew::hardware_workers() (cgroup-aware).
//   write  I/O-bound. Assumed latency 1 ms per small result file, 2,000 files/s -> 2 workers.
//
// The program generates its own input (files of pseudo-random bytes in a temporary directory),
// runs the pipeline, prints each stage's stats, then checks every result against a checksum
// computed directly, and exits non-zero on any mismatch.
//
// Run: ./build/dev/examples/pipeline/pipeline [files]

#include <crew.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

using namespace std::chrono_literals;

// Little's law: workers = throughput (jobs/s) x latency (s), rounded up, at least 1.
constexpr std::size_t littles_law(double jobs_per_second, double latency_seconds) {
  const double n = jobs_per_second * latency_seconds;
  const auto whole = static_cast<std::size_t>(n);
  return std::max<std::size_t>(1, static_cast<double>(whole) < n ? whole + 1 : whole);
}

// 64-bit FNV-1a: the "work" of the middle stage.
std::uint64_t fnv1a(const std::vector<unsigned char>& bytes) {
  std::uint64_t h = 14695981039346656037u;
  for (const unsigned char b : bytes) {
    h ^= b;
    h *= 1099511628211u;
  }
  return h;
}

std::vector<unsigned char> read_file(const fs::path& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::vector<unsigned char> bytes(fs::file_size(path));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return bytes;
}

struct blob {  // read -> hash
  std::string name;
  std::vector<unsigned char> bytes;
};

struct result {  // hash -> write
  std::string name;
  std::uint64_t checksum = 0;
  std::size_t size = 0;
};

// The most a stage's queue held and the most producers waited on it, sampled while running.
struct high_water {
  std::size_t depth = 0;
  std::size_t blocked = 0;
  void sample(const crew::pool_stats& s) {
    depth = std::max(depth, s.queue_depth);
    blocked = std::max(blocked, s.blocked_producers);
  }
};

void print_stage(const char* name, const crew::pool_stats& s, const high_water& hw) {
  std::printf(
      "  %-6s workers %2zu  queue %3zu  accepted %5llu  executed %5llu  failed %2llu  "
      "max queued %3zu  max blocked producers %zu\n",
      name, s.workers, s.capacity, static_cast<unsigned long long>(s.accepted),
      static_cast<unsigned long long>(s.executed), static_cast<unsigned long long>(s.failed),
      hw.depth, hw.blocked);
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t files = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200;
  const fs::path root = fs::temp_directory_path() / ("crew-pipeline-" + std::to_string(::getpid()));
  const fs::path in_dir = root / "in";
  const fs::path out_dir = root / "out";
  fs::create_directories(in_dir);
  fs::create_directories(out_dir);

  // Input: `files` files of 8 KiB to 136 KiB of pseudo-random bytes.
  std::uint64_t rng = 0x9e3779b97f4a7c15u;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  std::size_t total_bytes = 0;
  for (std::size_t i = 0; i < files; ++i) {
    const std::size_t size = (8u << 10) + next() % (128u << 10);
    std::string data(size, '\0');
    for (std::size_t at = 0; at < size; at += 8) {
      const std::uint64_t word = next();
      std::memcpy(data.data() + at, &word, std::min<std::size_t>(8, size - at));
    }
    std::ofstream(in_dir / ("file-" + std::to_string(i) + ".bin"), std::ios::binary) << data;
    total_bytes += size;
  }

  const std::size_t read_workers = littles_law(2000, 0.002);
  const std::size_t hash_workers = crew::hardware_workers();
  const std::size_t write_workers = littles_law(2000, 0.001);
  std::atomic<std::size_t> errors{0};
  auto on_error = [&errors](std::exception_ptr) { errors.fetch_add(1); };

  // Declared last stage first, so each stage outlives the one that submits into it.
  crew::worker_pool<result> writer{[&](result&& r) {
                                     std::ofstream out{out_dir / (r.name + ".fnv")};
                                     char line[64];
                                     std::snprintf(line, sizeof line, "%016llx %zu\n",
                                                   static_cast<unsigned long long>(r.checksum),
                                                   r.size);
                                     out << line;
                                     if (!out) throw std::runtime_error("cannot write " + r.name);
                                   },
                                   {.workers = write_workers,
                                    .queue_capacity = 16,
                                    .on_full = crew::overflow_policy::block,
                                    .name = "write",
                                    .on_error = on_error}};
  crew::worker_pool<blob> hasher{
      [&](blob&& b) {
        const std::uint64_t sum = fnv1a(b.bytes);
        if (writer.submit(result{std::move(b.name), sum, b.bytes.size()}) !=
            crew::submit_status::accepted)
          throw std::runtime_error("writer refused a result");
      },
      {.workers = hash_workers,
       .queue_capacity = 8,
       .on_full = crew::overflow_policy::block,
       .name = "hash",
       .on_error = on_error}};
  crew::worker_pool<fs::path> reader{
      [&](fs::path&& path) {
        blob b{path.stem().string(), read_file(path)};
        if (hasher.submit(std::move(b)) != crew::submit_status::accepted)
          throw std::runtime_error("hasher refused " + path.string());
      },
      {.workers = read_workers,
       .queue_capacity = 32,
       .on_full = crew::overflow_policy::block,
       .name = "read",
       .on_error = on_error}};

  std::printf("crew pipeline: %zu files, %.1f MiB, in %s\n", files,
              static_cast<double>(total_bytes) / (1 << 20), root.c_str());
  std::printf(
      "  read %zu workers (2,000 files/s x 2 ms), hash %zu (hardware_workers), write %zu "
      "(2,000 files/s x 1 ms)\n",
      read_workers, hash_workers, write_workers);

  // A monitor samples the stages while the pipeline runs.
  high_water hw_read, hw_hash, hw_write;
  std::atomic<bool> done{false};
  std::jthread monitor{[&] {
    while (!done.load()) {
      hw_read.sample(reader.stats());
      hw_hash.sample(hasher.stats());
      hw_write.sample(writer.stats());
      std::this_thread::sleep_for(2ms);
    }
  }};

  const auto t0 = std::chrono::steady_clock::now();
  std::size_t submitted = 0;
  for (const auto& entry : fs::directory_iterator(in_dir))
    if (reader.submit(fs::path{entry.path()}) == crew::submit_status::accepted) ++submitted;
  // Drain stage by stage: once the readers are done nobody submits to the hasher, and so on.
  const auto r1 = reader.shutdown();
  const auto r2 = hasher.shutdown();
  const auto r3 = writer.shutdown();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  done = true;
  monitor.join();

  std::printf("  %zu files through 3 stages in %.0f ms (%.0f MiB/s)\n", submitted, secs * 1000,
              static_cast<double>(total_bytes) / (1 << 20) / secs);
  print_stage("read", reader.stats(), hw_read);
  print_stage("hash", hasher.stats(), hw_hash);
  print_stage("write", writer.stats(), hw_write);

  // Check: every input has a result whose checksum matches one computed here directly.
  std::size_t good = 0;
  std::size_t bad = 0;
  for (const auto& entry : fs::directory_iterator(in_dir)) {
    const auto bytes = read_file(entry.path());
    std::ifstream in{out_dir / (entry.path().stem().string() + ".fnv")};
    std::string hex;
    std::size_t size = 0;
    if (in >> hex >> size && std::stoull(hex, nullptr, 16) == fnv1a(bytes) &&
        size == bytes.size()) {
      ++good;
    } else {
      ++bad;
    }
  }
  const bool ok = good == files && bad == 0 && errors.load() == 0 && r1.drained && r2.drained &&
                  r3.drained && r3.executed == files;
  std::printf(
      "check: %zu of %zu results present and correct, %zu wrong or missing, %zu errors: %s\n", good,
      files, bad, errors.load(), ok ? "OK" : "FAIL");
  fs::remove_all(root);
  return ok ? 0 : 1;
}
