#include <crew/concurrency.hpp>

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;

// A fake cgroup tree in a fresh temporary directory, removed at the end of the test.
class FakeCgroup : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<unsigned> counter{0};
    std::random_device rd;
    root_ = fs::temp_directory_path() /
            ("crew_concurrency_test_" + std::to_string(::getpid()) + "_" +
             std::to_string(counter.fetch_add(1)) + "_" + std::to_string(rd()));
    ASSERT_TRUE(fs::create_directories(root_));
    fs_.proc_self_cgroup = root_ / "proc_self_cgroup";
    fs_.cgroup_root = root_ / "sys_fs_cgroup";
    fs::create_directories(fs_.cgroup_root);
  }

  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_FALSE(fs::exists(root_));
  }

  static void write(const fs::path& file, const std::string& content) {
    fs::create_directories(file.parent_path());
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << content;
    ASSERT_TRUE(out.good()) << file;
  }

  void proc(const std::string& content) { write(fs_.proc_self_cgroup, content); }
  // `dir` is relative to the cgroup mount ("" is its root).
  void cpu_max(const std::string& dir, const std::string& content) {
    write(fs_.cgroup_root / dir / "cpu.max", content);
  }
  void cfs(const std::string& mount_and_dir, const std::string& quota, const std::string& period) {
    write(fs_.cgroup_root / mount_and_dir / "cpu.cfs_quota_us", quota);
    write(fs_.cgroup_root / mount_and_dir / "cpu.cfs_period_us", period);
  }

  std::optional<double> limit() const { return crew::detail::cgroup_cpu_limit(fs_); }
  std::size_t workers(std::size_t affinity) const {
    return crew::detail::hardware_workers(fs_, affinity);
  }

  fs::path root_;
  crew::detail::cgroup_fs fs_;
};

// ---------------------------------------------------------------------------- cgroup v2

TEST_F(FakeCgroup, V2UnlimitedIsNoLimit) {
  proc("0::/app.slice/app.service\n");
  cpu_max("app.slice/app.service", "max 100000\n");
  cpu_max("app.slice", "max 100000\n");
  EXPECT_EQ(limit(), std::nullopt);
  EXPECT_EQ(workers(8), 8u);
}

TEST_F(FakeCgroup, V2OneAndAHalfCpusRoundsUpToTwo) {
  proc("0::/app\n");
  cpu_max("app", "150000 100000\n");
  ASSERT_TRUE(limit().has_value());
  EXPECT_DOUBLE_EQ(*limit(), 1.5);
  EXPECT_EQ(workers(8), 2u);
}

TEST_F(FakeCgroup, V2HalfCpuIsOneWorker) {
  proc("0::/app\n");
  cpu_max("app", "50000 100000\n");
  ASSERT_TRUE(limit().has_value());
  EXPECT_DOUBLE_EQ(*limit(), 0.5);
  EXPECT_EQ(workers(8), 1u);
}

TEST_F(FakeCgroup, V2ExactQuotaIsNotRoundedUp) {
  proc("0::/app\n");
  cpu_max("app", "300000 100000");  // no trailing newline
  EXPECT_EQ(workers(8), 3u);
}

TEST_F(FakeCgroup, V2NestedParentLimitBindsUnlimitedChild) {
  proc("0::/parent/child\n");
  cpu_max("parent", "200000 100000\n");
  cpu_max("parent/child", "max 100000\n");
  ASSERT_TRUE(limit().has_value());
  EXPECT_DOUBLE_EQ(*limit(), 2.0);
  EXPECT_EQ(workers(16), 2u);
}

TEST_F(FakeCgroup, V2NestedSmallestWinsWhenChildIsSmaller) {
  proc("0::/parent/child\n");
  cpu_max("parent", "400000 100000\n");
  cpu_max("parent/child", "100000 100000\n");
  ASSERT_TRUE(limit().has_value());
  EXPECT_DOUBLE_EQ(*limit(), 1.0);
  EXPECT_EQ(workers(16), 1u);
}

TEST_F(FakeCgroup, V2NestedSmallestWinsAcrossThreeLevelsWithDifferentPeriods) {
  proc("0::/a/b/c\n");
  cpu_max("a", "600000 100000\n");   // 6
  cpu_max("a/b", "250000 50000\n");  // 5
  cpu_max("a/b/c", "max 100000\n");  // none
  cpu_max("", "1000000 100000\n");   // 10 at the root
  EXPECT_DOUBLE_EQ(*limit(), 5.0);
  EXPECT_EQ(workers(64), 5u);
}

TEST_F(FakeCgroup, V2CgroupNamespaceRootPathReadsTheMountRoot) {
  // A container with its own cgroup namespace sees "0::/" and its limit at the mount's root.
  proc("0::/\n");
  cpu_max("", "200000 100000\n");
  EXPECT_EQ(workers(8), 2u);
}

TEST_F(FakeCgroup, V2HostPathMissingUnderContainerMountFallsBackToTheRoot) {
  // Without a cgroup namespace the host path is listed, but the mount is the container's cgroup.
  proc("0::/docker/0123456789abcdef\n");
  cpu_max("", "300000 100000\n");
  EXPECT_EQ(workers(8), 3u);
}

TEST_F(FakeCgroup, V2PathWithColonAndSiblingDirectoriesIgnored) {
  proc("0::/a:b/c\n");
  cpu_max("a:b/c", "700000 100000\n");
  cpu_max("a:b/other", "100000 100000\n");  // a sibling: not on the path
  cpu_max("other", "100000 100000\n");
  EXPECT_EQ(workers(64), 7u);
}

TEST_F(FakeCgroup, AffinityBelowQuotaWins) {
  proc("0::/app\n");
  cpu_max("app", "400000 100000\n");
  EXPECT_EQ(workers(2), 2u);
  EXPECT_EQ(workers(0), 1u);  // never 0
}

// ---------------------------------------------------------------------------- cgroup v1

TEST_F(FakeCgroup, V1QuotaOverPeriodInCpuCpuacctMount) {
  proc("5:memory:/grp\n4:cpu,cpuacct:/grp\n1:name=systemd:/grp\n");
  cfs("cpu,cpuacct/grp", "250000\n", "100000\n");
  ASSERT_TRUE(limit().has_value());
  EXPECT_DOUBLE_EQ(*limit(), 2.5);
  EXPECT_EQ(workers(8), 3u);
}

TEST_F(FakeCgroup, V1SeparateCpuMount) {
  proc("2:cpuacct:/x\n1:cpu:/x\n0::/\n");
  cfs("cpu/x", "100000", "50000");
  EXPECT_EQ(workers(8), 2u);
}

TEST_F(FakeCgroup, V1MountNameNeedNotMatchTheControllerList) {
  // Listed as "cpuacct,cpu", mounted as "cpu,cpuacct".
  proc("4:cpuacct,cpu:/g\n");
  cfs("cpu,cpuacct/g", "300000", "100000");
  EXPECT_EQ(workers(8), 3u);
  // Listed as "cpu,cpuacct", only a "cpu" mount (or symlink) present.
  fs::remove_all(fs_.cgroup_root / "cpu,cpuacct");
  proc("4:cpu,cpuacct:/g\n");
  cfs("cpu/g", "200000", "100000");
  EXPECT_EQ(workers(8), 2u);
}

TEST_F(FakeCgroup, V1UnlimitedMinusOne) {
  proc("4:cpu,cpuacct:/grp\n");
  cfs("cpu,cpuacct/grp", "-1\n", "100000\n");
  cfs("cpu,cpuacct", "-1\n", "100000\n");
  EXPECT_EQ(limit(), std::nullopt);
  EXPECT_EQ(workers(8), 8u);
}

TEST_F(FakeCgroup, V1NestedSmallestAlongPath) {
  proc("4:cpu,cpuacct:/outer/inner\n");
  cfs("cpu,cpuacct/outer", "100000", "100000");    // 1 CPU
  cfs("cpu,cpuacct/outer/inner", "-1", "100000");  // unlimited
  EXPECT_EQ(workers(8), 1u);
}

TEST_F(FakeCgroup, V1ControllerNameMustMatchExactly) {
  // "cpuset" and "cpuacct" are not "cpu".
  proc("3:cpuset:/grp\n2:cpuacct:/grp\n");
  cfs("cpu,cpuacct/grp", "100000", "100000");
  EXPECT_EQ(limit(), std::nullopt);
}

TEST_F(FakeCgroup, HybridTakesTheSmallerOfV1AndV2) {
  proc("0::/g\n4:cpu,cpuacct:/g\n");
  cpu_max("g", "300000 100000\n");
  cfs("cpu,cpuacct/g", "200000", "100000");
  EXPECT_EQ(workers(8), 2u);
}

// ---------------------------------------------------------------------------- bad input

TEST_F(FakeCgroup, MalformedCpuMaxIsIgnored) {
  const std::vector<std::string> bad = {
      "",
      "\n",
      "garbage",
      "max",
      "150000",
      "150000 100000 7",
      "abc 100000",
      "150000 abc",
      "150000x 100000",
      "+150000 100000",
      "1.5 1",
      "-5 100000",
      "0 100000",
      "150000 0",
      "150000 -100000",
      "99999999999999999999999 100000",
      "150000 99999999999999999999999",
      std::string("15\0000 100000", 12),
      "max max",
  };
  proc("0::/app\n");
  for (const std::string& content : bad) {
    cpu_max("app", content);
    EXPECT_EQ(limit(), std::nullopt) << '"' << content << '"';
    EXPECT_EQ(workers(8), 8u) << '"' << content << '"';
  }
}

TEST_F(FakeCgroup, MalformedLevelDoesNotHideAValidOne) {
  proc("0::/a/b\n");
  cpu_max("a/b", "this is not a quota\n");
  cpu_max("a", "200000 100000\n");
  EXPECT_EQ(workers(8), 2u);
}

TEST_F(FakeCgroup, PeriodZeroIsIgnored) {
  proc("0::/app\n4:cpu,cpuacct:/app\n");
  cpu_max("app", "100000 0\n");
  cfs("cpu,cpuacct/app", "100000", "0");
  EXPECT_EQ(limit(), std::nullopt);
  EXPECT_EQ(workers(8), 8u);
}

TEST_F(FakeCgroup, MalformedV1FilesAreIgnored) {
  proc("4:cpu,cpuacct:/app\n");
  for (const auto& [quota, period] :
       std::vector<std::pair<std::string, std::string>>{{"", "100000"},
                                                        {"100000", ""},
                                                        {"abc", "100000"},
                                                        {"100000", "-1"},
                                                        {"0", "100000"},
                                                        {"1 2", "100000"},
                                                        {"100000", "100000 5"}}) {
    cfs("cpu,cpuacct/app", quota, period);
    EXPECT_EQ(limit(), std::nullopt) << quota << " / " << period;
  }
}

TEST_F(FakeCgroup, MalformedProcSelfCgroupIsIgnored) {
  // Limits that must not be found through a bad line.
  cpu_max("", "100000 100000\n");
  cfs("cpu", "100000", "100000");
  const std::vector<std::string> bad = {
      "",        "garbage", "0:/",    "0::relative/path",   "0::/../escape",
      "x:cpu:/", ":cpu:/",  "1:cpu:", std::string(3, '\0'),
  };
  for (const std::string& content : bad) {
    proc(content);
    EXPECT_EQ(limit(), std::nullopt) << '"' << content << '"';
  }
  // The same tree with a good line is found, so the cases above fail for the right reason.
  proc("garbage\n0::/\n");
  EXPECT_EQ(workers(8), 1u);
  proc("garbage\n1:cpu:/\n");
  EXPECT_EQ(workers(8), 1u);
}

TEST_F(FakeCgroup, MissingFilesAreIgnored) {
  // No /proc/self/cgroup at all.
  cpu_max("", "100000 100000\n");
  EXPECT_EQ(limit(), std::nullopt);
  EXPECT_EQ(workers(4), 4u);
  // No cgroup mount at all.
  proc("0::/app\n4:cpu,cpuacct:/app\n");
  fs::remove_all(fs_.cgroup_root);
  EXPECT_EQ(limit(), std::nullopt);
  // Only a quota file without its period.
  write(fs_.cgroup_root / "cpu,cpuacct" / "app" / "cpu.cfs_quota_us", "100000");
  EXPECT_EQ(limit(), std::nullopt);
  // The leaf has no cpu.max, the parent does.
  proc("0::/a/b\n");
  cpu_max("a", "200000 100000\n");
  EXPECT_EQ(workers(8), 2u);
}

TEST_F(FakeCgroup, DirectoryWhereAFileShouldBeIsIgnored) {
  proc("0::/app\n");
  fs::create_directories(fs_.cgroup_root / "app" / "cpu.max");
  EXPECT_EQ(limit(), std::nullopt);
  fs::create_directories(fs_.proc_self_cgroup.string() + ".d");
  fs_.proc_self_cgroup += ".d";
  EXPECT_EQ(limit(), std::nullopt);
}

TEST_F(FakeCgroup, OversizedFileIsIgnored) {
  proc("0::/app\n");
  cpu_max("app", "200000 100000" + std::string(10000, ' '));
  EXPECT_EQ(limit(), std::nullopt);
}

// ---------------------------------------------------------------------------- pure helpers

TEST(Concurrency, ParseCpuMax) {
  using crew::detail::parse_cpu_max;
  EXPECT_EQ(parse_cpu_max("max 100000\n"), std::nullopt);
  EXPECT_EQ(parse_cpu_max("150000 100000\n"), 1.5);
  EXPECT_EQ(parse_cpu_max("  50000\t100000  "), 0.5);
  EXPECT_EQ(parse_cpu_max("100000 0"), std::nullopt);
  EXPECT_EQ(parse_cpu_max("1 2 3"), std::nullopt);
}

TEST(Concurrency, ParseCfsQuota) {
  using crew::detail::parse_cfs_quota;
  EXPECT_EQ(parse_cfs_quota("-1\n", "100000\n"), std::nullopt);
  EXPECT_EQ(parse_cfs_quota("200000\n", "100000\n"), 2.0);
  EXPECT_EQ(parse_cfs_quota("200000", "0"), std::nullopt);
}

TEST(Concurrency, ParseProcSelfCgroup) {
  const auto paths = crew::detail::parse_proc_self_cgroup(
      "12:cpuset:/s\n4:cpu,cpuacct:/a/b\n0::/x/./y//z\n1:name=systemd:/q\n");
  ASSERT_TRUE(paths.v2.has_value());
  EXPECT_EQ(*paths.v2, (std::vector<std::string>{"x", "y", "z"}));
  ASSERT_TRUE(paths.v1_cpu.has_value());
  EXPECT_EQ(*paths.v1_cpu, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(paths.v1_controllers, "cpu,cpuacct");

  const auto root = crew::detail::parse_proc_self_cgroup("0::/\n");
  ASSERT_TRUE(root.v2.has_value());
  EXPECT_TRUE(root.v2->empty());
  EXPECT_FALSE(root.v1_cpu.has_value());
}

TEST(Concurrency, CpusFromQuota) {
  using crew::detail::cpus_from_quota;
  EXPECT_EQ(cpus_from_quota(0.0), 1u);
  EXPECT_EQ(cpus_from_quota(-3.0), 1u);
  EXPECT_EQ(cpus_from_quota(std::nan("")), 1u);
  EXPECT_EQ(cpus_from_quota(0.01), 1u);
  EXPECT_EQ(cpus_from_quota(1.0), 1u);
  EXPECT_EQ(cpus_from_quota(1.00001), 2u);
  EXPECT_EQ(cpus_from_quota(1.5), 2u);
  EXPECT_EQ(cpus_from_quota(2.0), 2u);
  EXPECT_EQ(cpus_from_quota(63.2), 64u);
  EXPECT_EQ(cpus_from_quota(1e300), std::numeric_limits<std::size_t>::max());
  EXPECT_EQ(cpus_from_quota(std::numeric_limits<double>::infinity()),
            std::numeric_limits<std::size_t>::max());
}

// ---------------------------------------------------------------------------- the real machine

TEST(Concurrency, AffinityCountMatchesTheMask) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(crew::detail::affinity_cpu_count(), static_cast<std::size_t>(CPU_COUNT(&set)));
}

TEST(Concurrency, AffinityCountFollowsAPinnedThread) {
  std::size_t seen = 0;
  bool pinned = false;
  std::thread t([&] {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return;
    int first = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE && first < 0; ++cpu) {
      if (CPU_ISSET(cpu, &set)) first = cpu;
    }
    if (first < 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    pinned = sched_setaffinity(0, sizeof one, &one) == 0;
    seen = crew::detail::affinity_cpu_count();
  });
  t.join();
  ASSERT_TRUE(pinned);
  EXPECT_EQ(seen, 1u);
}

TEST(Concurrency, HardwareWorkersIsWithinTheAffinityMask) {
  const std::size_t n = crew::hardware_workers();
  EXPECT_GE(n, 1u);
  EXPECT_LE(n, crew::detail::affinity_cpu_count());
  // And it agrees with the injectable form on the real paths.
  EXPECT_EQ(n, crew::detail::hardware_workers(crew::detail::cgroup_fs{},
                                              crew::detail::affinity_cpu_count()));
}

}  // namespace
