#pragma once

// crew::hardware_workers(): how many CPUs this process may really use.
//
// Why not std::thread::hardware_concurrency()? It reports the host's cores. A
// container limited to 2 CPUs on a 64-core host that sizes its pool from it
// starts 64 busy workers that the kernel's CFS bandwidth controller throttles
// to 2 CPUs' worth of time per period: every worker runs in short bursts, then
// the whole group stalls until the next period, and tail latency explodes.
// Go learnt this the hard way (uber-go/automaxprocs exists to set GOMAXPROCS
// from the cgroup quota; Go 1.25 finally does it itself), and oneTBB and the
// JVM read the quota for the same reason. So crew counts:
//
//   - the affinity mask (sched_getaffinity: taskset, cpusets, `docker --cpuset-cpus`), and
//   - the cgroup CPU bandwidth quota (`docker --cpus`, Kubernetes CPU limits):
//     cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us / cpu.cfs_period_us`, taking
//     the smallest quota along the process's cgroup path from its own cgroup up
//     to the root (a parent's limit binds its children; oneTBB does the same),
//     rounded up to whole CPUs,
//
// and returns the smaller of the two, at least 1. Everything that can fail
// (missing, unreadable or malformed files, a kernel without cgroups) is ignored
// rather than reported: the answer then falls back to the affinity count.
//
// The machinery is in crew::detail and takes its file locations as a
// parameter (detail::cgroup_fs), so tests can point it at a fake tree.

#include <sched.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace crew {
namespace detail {

// Where the cgroup information lives. The defaults are the real locations;
// tests point them at a temporary directory.
struct cgroup_fs {
  // The process's cgroup membership ("hierarchy-id:controllers:path" lines).
  std::filesystem::path proc_self_cgroup = "/proc/self/cgroup";
  // The cgroup mount: the v2 unified hierarchy itself, and the parent of the
  // v1 controller mounts (`cpu,cpuacct`, `cpu`, ...).
  std::filesystem::path cgroup_root = "/sys/fs/cgroup";
};

// The process's cgroup paths as listed in /proc/self/cgroup, split into
// components ("/a/b" -> {"a", "b"}; the root is the empty vector).
struct cgroup_paths {
  std::optional<std::vector<std::string>> v2;      // the "0::/path" line
  std::optional<std::vector<std::string>> v1_cpu;  // the v1 line whose controllers include "cpu"
  std::string v1_controllers;  // that line's controller list, e.g. "cpu,cpuacct"
};

// Reads at most `max_bytes` of a (small, possibly /proc or /sys) file. Returns
// nullopt when the file cannot be opened or read, or is longer than max_bytes.
// Never throws; thread-safe.
inline std::optional<std::string> read_small_file(const std::filesystem::path& file,
                                                  std::size_t max_bytes) noexcept {
  try {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      return std::nullopt;
    }
    std::string out;
    std::array<char, 512> buf{};
    for (;;) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const std::streamsize got = in.gcount();
      if (got > 0) {
        out.append(buf.data(), static_cast<std::size_t>(got));
      }
      if (out.size() > max_bytes) {
        return std::nullopt;
      }
      if (!in) {
        break;
      }
    }
    if (in.bad()) {
      return std::nullopt;
    }
    return out;
  } catch (...) {
    return std::nullopt;
  }
}

// Splits `text` on ASCII whitespace, dropping empty tokens. Never throws
// except std::bad_alloc; thread-safe.
inline std::vector<std::string_view> split_whitespace(std::string_view text) {
  std::vector<std::string_view> tokens;
  constexpr std::string_view kSpace = " \t\n\r\f\v";
  std::size_t pos = text.find_first_not_of(kSpace);
  while (pos != std::string_view::npos) {
    const std::size_t end = text.find_first_of(kSpace, pos);
    tokens.push_back(text.substr(pos, end == std::string_view::npos ? end : end - pos));
    pos = end == std::string_view::npos ? end : text.find_first_not_of(kSpace, end);
  }
  return tokens;
}

// Parses a whole token as a signed decimal integer; nullopt on anything else
// (empty, trailing garbage, out of range). Never throws; thread-safe.
inline std::optional<std::int64_t> parse_int64(std::string_view token) noexcept {
  std::int64_t value = 0;
  const char* const first = token.data();
  const char* const last = first + token.size();
  const auto [ptr, ec] = std::from_chars(first, last, value);
  if (token.empty() || ec != std::errc{} || ptr != last) {
    return std::nullopt;
  }
  return value;
}

// Parses the content of a cgroup v2 `cpu.max` file, "$QUOTA $PERIOD" in
// microseconds, e.g. "150000 100000" -> 1.5 CPUs. Returns nullopt for "max"
// (no limit) and for anything that does not parse: a missing period, a quota
// or period <= 0, extra tokens. Never throws; thread-safe.
inline std::optional<double> parse_cpu_max(std::string_view content) noexcept {
  try {
    const auto tokens = split_whitespace(content);
    if (tokens.size() != 2 || tokens[0] == "max") {
      return std::nullopt;
    }
    const auto quota = parse_int64(tokens[0]);
    const auto period = parse_int64(tokens[1]);
    if (!quota || !period || *quota <= 0 || *period <= 0) {
      return std::nullopt;
    }
    return static_cast<double>(*quota) / static_cast<double>(*period);
  } catch (...) {
    return std::nullopt;
  }
}

// Parses the contents of cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`
// (one integer each, microseconds). Returns quota / period in CPUs, or nullopt
// for no limit (quota -1, or any negative quota) and for anything that does not
// parse (a quota of 0, a period <= 0, garbage). Never throws; thread-safe.
inline std::optional<double> parse_cfs_quota(std::string_view quota_content,
                                             std::string_view period_content) noexcept {
  try {
    const auto quota_tokens = split_whitespace(quota_content);
    const auto period_tokens = split_whitespace(period_content);
    if (quota_tokens.size() != 1 || period_tokens.size() != 1) {
      return std::nullopt;
    }
    const auto quota = parse_int64(quota_tokens[0]);
    const auto period = parse_int64(period_tokens[0]);
    if (!quota || !period || *quota <= 0 || *period <= 0) {
      return std::nullopt;
    }
    return static_cast<double>(*quota) / static_cast<double>(*period);
  } catch (...) {
    return std::nullopt;
  }
}

// Splits an absolute cgroup path into its components. Returns nullopt for a
// path that is not absolute or that contains a ".." component (it could escape
// the mount). Empty and "." components are skipped. May throw std::bad_alloc;
// thread-safe.
inline std::optional<std::vector<std::string>> split_cgroup_path(std::string_view path) {
  if (path.empty() || path.front() != '/') {
    return std::nullopt;
  }
  std::vector<std::string> parts;
  std::size_t pos = 0;
  while (pos < path.size()) {
    std::size_t end = path.find('/', pos);
    if (end == std::string_view::npos) {
      end = path.size();
    }
    const std::string_view part = path.substr(pos, end - pos);
    if (part == "..") {
      return std::nullopt;
    }
    if (!part.empty() && part != ".") {
      parts.emplace_back(part);
    }
    pos = end + 1;
  }
  return parts;
}

// Parses the content of /proc/self/cgroup. Each line is
// "hierarchy-id:controller-list:path"; the path may itself contain ':'. The
// cgroup v2 line is "0::/path"; the v1 line that counts is the one whose
// comma-separated controller list contains exactly "cpu". Lines that do not
// parse are ignored; the first usable line of each kind wins. May throw
// std::bad_alloc; thread-safe.
inline cgroup_paths parse_proc_self_cgroup(std::string_view content) {
  cgroup_paths result;
  std::size_t pos = 0;
  while (pos < content.size()) {
    std::size_t eol = content.find('\n', pos);
    if (eol == std::string_view::npos) {
      eol = content.size();
    }
    std::string_view line = content.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    const std::size_t c1 = line.find(':');
    if (c1 == std::string_view::npos) {
      continue;
    }
    const std::size_t c2 = line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) {
      continue;
    }
    const std::string_view id = line.substr(0, c1);
    const std::string_view controllers = line.substr(c1 + 1, c2 - c1 - 1);
    const std::string_view path = line.substr(c2 + 1);
    if (id == "0" && controllers.empty()) {
      if (!result.v2) {
        result.v2 = split_cgroup_path(path);
      }
      continue;
    }
    if (result.v1_cpu || !parse_int64(id)) {
      continue;
    }
    bool has_cpu = false;
    std::size_t cpos = 0;
    while (cpos <= controllers.size()) {
      std::size_t cend = controllers.find(',', cpos);
      if (cend == std::string_view::npos) {
        cend = controllers.size();
      }
      if (controllers.substr(cpos, cend - cpos) == "cpu") {
        has_cpu = true;
      }
      cpos = cend + 1;
    }
    if (has_cpu) {
      result.v1_cpu = split_cgroup_path(path);
      if (result.v1_cpu) {
        result.v1_controllers = std::string(controllers);
      }
    }
  }
  return result;
}

// Calls `visit(dir)` for the cgroup directory `mount/parts...` and each of its
// ancestors up to and including `mount` itself, deepest first. Visiting the
// root matters: inside a container with its own cgroup namespace the path is
// "/" and the container's limit is in the mount's root; and without one, the
// host path (e.g. "/docker/<id>") may not exist under the container's mount,
// whose root is then the container's cgroup.
template <class Visit>
void for_each_cgroup_level(const std::filesystem::path& mount,
                           const std::vector<std::string>& parts, const Visit& visit) {
  for (std::size_t depth = parts.size() + 1; depth-- > 0;) {
    std::filesystem::path dir = mount;
    for (std::size_t i = 0; i < depth; ++i) {
      dir /= parts[i];
    }
    visit(dir);
  }
}

// The cgroup CPU bandwidth limit of the process described by `fs`, in CPUs
// (possibly fractional: 1.5 means 150 ms of CPU time per 100 ms), or nullopt
// when there is none or it cannot be determined. The smallest quota found
// along the process's cgroup path, from its own cgroup up to the root, in the
// v2 hierarchy (`cpu.max`) and in the v1 `cpu` hierarchy (`cpu.cfs_quota_us` /
// `cpu.cfs_period_us`, mounted at `cpu,cpuacct`, `cpu` or `cpuacct,cpu` under
// fs.cgroup_root). Unreadable or malformed files are ignored. Reads files on
// every call. Never throws; thread-safe.
inline std::optional<double> cgroup_cpu_limit(const cgroup_fs& fs) noexcept {
  try {
    const auto proc = read_small_file(fs.proc_self_cgroup, std::size_t{1} << 20);
    if (!proc) {
      return std::nullopt;
    }
    const cgroup_paths paths = parse_proc_self_cgroup(*proc);
    constexpr std::size_t kMaxCgroupFile = 4096;
    std::optional<double> limit;
    const auto consider = [&limit](std::optional<double> level) {
      if (level && (!limit || *level < *limit)) {
        limit = level;
      }
    };
    if (paths.v2) {
      for_each_cgroup_level(fs.cgroup_root, *paths.v2, [&](const std::filesystem::path& dir) {
        if (const auto text = read_small_file(dir / "cpu.max", kMaxCgroupFile)) {
          consider(parse_cpu_max(*text));
        }
      });
    }
    if (paths.v1_cpu) {
      std::vector<std::string> mounts = {"cpu,cpuacct", "cpu", "cpuacct,cpu"};
      if (!paths.v1_controllers.empty()) {
        mounts.insert(mounts.begin(), paths.v1_controllers);
      }
      for (const std::string& name : mounts) {
        if (name.find('/') != std::string::npos || name == "." || name == "..") {
          continue;
        }
        std::error_code ec;
        const std::filesystem::path mount = fs.cgroup_root / name;
        if (!std::filesystem::is_directory(mount, ec) || ec) {
          continue;
        }
        for_each_cgroup_level(mount, *paths.v1_cpu, [&](const std::filesystem::path& dir) {
          const auto quota = read_small_file(dir / "cpu.cfs_quota_us", kMaxCgroupFile);
          const auto period = read_small_file(dir / "cpu.cfs_period_us", kMaxCgroupFile);
          if (quota && period) {
            consider(parse_cfs_quota(*quota, *period));
          }
        });
        break;  // the first mount that exists is the cpu hierarchy
      }
    }
    return limit;
  } catch (...) {
    return std::nullopt;
  }
}

// Whole CPUs for a quota of `cpus`: rounded up, at least 1 (also for 0,
// negative and NaN inputs), saturating at SIZE_MAX. Never throws; thread-safe.
inline std::size_t cpus_from_quota(double cpus) noexcept {
  if (!(cpus > 1.0)) {
    return 1;  // also catches NaN
  }
  const double whole = std::ceil(cpus);
  // SIZE_MAX as a double (2^64 on 64-bit targets, where it rounds up): any
  // value below it converts exactly, anything at or above it saturates.
  constexpr auto kMax = static_cast<double>(std::numeric_limits<std::size_t>::max());
  if (whole >= kMax) {
    return std::numeric_limits<std::size_t>::max();
  }
  return static_cast<std::size_t>(whole);
}

// std::thread::hardware_concurrency(), or 1 when it does not know.
inline std::size_t fallback_cpu_count() noexcept {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<std::size_t>(n);
}

// The number of CPUs in this thread's affinity mask (sched_getaffinity on the
// calling thread, which new threads inherit), at least 1. The mask is sized
// dynamically (CPU_ALLOC), growing while the kernel reports EINVAL, so hosts
// with more than 1024 CPUs are counted correctly. Falls back to
// std::thread::hardware_concurrency() (or 1) when the call fails. Never
// throws; thread-safe.
inline std::size_t affinity_cpu_count() noexcept {
  for (std::size_t ncpus = 1024; ncpus <= (std::size_t{1} << 22); ncpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(ncpus);
    if (set == nullptr) {
      break;
    }
    const std::size_t size = CPU_ALLOC_SIZE(ncpus);
    CPU_ZERO_S(size, set);
    const int rc = sched_getaffinity(0, size, set);
    const int err = errno;
    const int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
    CPU_FREE(set);
    if (rc == 0) {
      return count > 0 ? static_cast<std::size_t>(count) : fallback_cpu_count();
    }
    if (err != EINVAL) {
      break;  // EINVAL: the mask is smaller than the kernel's; grow it
    }
  }
  return fallback_cpu_count();
}

// hardware_workers() for a given affinity count and cgroup location:
// min(affinity, cpus_from_quota(cgroup limit)), at least 1. Never throws;
// thread-safe.
inline std::size_t hardware_workers(const cgroup_fs& fs, std::size_t affinity) noexcept {
  std::size_t n = affinity;
  if (const auto limit = cgroup_cpu_limit(fs)) {
    n = std::min(n, cpus_from_quota(*limit));
  }
  return std::max<std::size_t>(n, 1);
}

}  // namespace detail

// The number of CPUs this process may really use: the smaller of the CPUs in
// its affinity mask and its cgroup CPU quota (v2 `cpu.max` or v1
// `cfs_quota_us / cfs_period_us`, the smallest along its cgroup path, rounded
// up), at least 1; never the host's core count when either is smaller (see the
// comment at the top of this header for why). The default
// pool_options::workers. Reads /proc and /sys on every call (tens of
// microseconds): call it once and keep the answer. Never throws; thread-safe.
inline std::size_t hardware_workers() noexcept {
  try {
    return detail::hardware_workers(detail::cgroup_fs{}, detail::affinity_cpu_count());
  } catch (...) {  // constructing the default paths could throw std::bad_alloc
    return detail::affinity_cpu_count();
  }
}

}  // namespace crew
