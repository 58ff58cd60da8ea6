// tasks: a parallel directory scan. The listing of the tree is one task (submit_task, its result a
// std::future); every file is then read by a task of one crew::task_group, which counts its bytes
// and lines. The first file that cannot be read throws: the group stops, the files not started yet
// are skipped, the ones being read see the group's stop token and give up, and wait() rethrows
// that first error.
//
//   ./build/dev/examples/tasks/tasks <directory>   scan it; exit 1 if a file could not be read
//   ./build/dev/examples/tasks/tasks               self-test: scan a generated tree, check the
//                                                  totals, break one file, check the fail-fast

#include <crew/task.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct totals {
  std::atomic<std::uint64_t> files{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> lines{0};
};

// Every entry of the tree that is not a directory (links included: a dangling one is an
// unreadable file).
std::vector<fs::path> list_files(const fs::path& root) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_directory()) files.push_back(entry.path());
  }
  return files;
}

// Reads one file in 64 KiB chunks, checking the group's stop token between chunks.
void count_file(const fs::path& path, const std::stop_token& stop, totals& t) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::vector<char> chunk(64 * 1024);
  std::uint64_t bytes = 0;
  std::uint64_t lines = 0;
  while (!stop.stop_requested() && in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    bytes += n;
    for (std::size_t i = 0; i < n; ++i) lines += chunk[i] == '\n' ? 1 : 0;
  }
  if (in.bad()) throw std::runtime_error("error reading " + path.string());
  t.files.fetch_add(1, std::memory_order_relaxed);
  t.bytes.fetch_add(bytes, std::memory_order_relaxed);
  t.lines.fetch_add(lines, std::memory_order_relaxed);
}

struct scan_result {
  std::uint64_t files = 0, bytes = 0, lines = 0;
  std::size_t listed = 0, skipped = 0, failed = 0;
  std::string error;  // empty: every file was read
};

scan_result scan(crew::task_pool& pool, const fs::path& root) {
  // The listing runs on the pool too; its exception (a missing root) would come out of get().
  auto [status, listing] = pool.submit_task([root] { return list_files(root); });
  if (status != crew::submit_status::accepted) throw std::runtime_error("pool refused the listing");
  const std::vector<fs::path> files = listing.get();

  totals t;
  crew::task_group group{pool};
  for (const fs::path& file : files) {
    // The pool blocks when its queue is full (the default policy), so run() only fails once the
    // group has stopped: then the remaining files are not even submitted.
    const crew::submit_status s =
        group.run([&t, file](std::stop_token stop) { count_file(file, stop, t); });
    if (s == crew::submit_status::cancelled) break;
  }
  scan_result r;
  try {
    group.wait();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  r.files = t.files.load();
  r.bytes = t.bytes.load();
  r.lines = t.lines.load();
  r.listed = files.size();
  r.skipped = group.skipped();
  r.failed = group.failed();
  return r;
}

void print(const scan_result& r) {
  std::printf("%zu files listed, %llu read: %llu bytes, %llu lines; %zu skipped, %zu failed\n",
              r.listed, static_cast<unsigned long long>(r.files),
              static_cast<unsigned long long>(r.bytes), static_cast<unsigned long long>(r.lines),
              r.skipped, r.failed);
  if (!r.error.empty()) std::printf("scan stopped: %s\n", r.error.c_str());
}

int self_test(crew::task_pool& pool) {
  const fs::path root =
      fs::temp_directory_path() / ("crew-tasks-example-" + std::to_string(::getpid()));
  fs::remove_all(root);
  std::uint64_t bytes = 0;
  std::uint64_t lines = 0;
  constexpr int dirs = 8;
  constexpr int per_dir = 50;
  for (int d = 0; d < dirs; ++d) {
    fs::create_directories(root / std::to_string(d));
    for (int f = 0; f < per_dir; ++f) {
      std::ofstream out(root / std::to_string(d) / (std::to_string(f) + ".txt"));
      for (int l = 0; l <= d + f; ++l) {
        const std::string line = "line " + std::to_string(l) + " of file " + std::to_string(f);
        out << line << '\n';
        bytes += line.size() + 1;
        ++lines;
      }
    }
  }
  int failures = 0;
  const scan_result good = scan(pool, root);
  print(good);
  if (!good.error.empty() || good.files != dirs * per_dir || good.bytes != bytes ||
      good.lines != lines) {
    std::printf("FAIL: the clean scan's totals are wrong\n");
    ++failures;
  }

  fs::create_symlink(root / "no-such-file", root / "3" / "broken-link");
  const scan_result bad = scan(pool, root);
  print(bad);
  if (bad.error.find("broken-link") == std::string::npos || bad.failed != 1 ||
      bad.files + bad.skipped + bad.failed > bad.listed) {
    std::printf("FAIL: the scan with an unreadable file did not stop on it\n");
    ++failures;
  }
  fs::remove_all(root);
  std::printf(failures == 0 ? "self-test passed\n" : "self-test FAILED\n");
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  crew::task_pool pool{{.workers = 4, .queue_capacity = 256, .name = "scan"}};
  if (argc < 2) return self_test(pool);
  try {
    const scan_result r = scan(pool, argv[1]);
    print(r);
    return r.error.empty() ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tasks: %s\n", e.what());
    return 2;
  }
}
