// CPU detection: cpuid features checked against the kernel's own view
// (/proc/cpuinfo flags), core and NUMA counting against fixture trees.
#include <gtest/gtest.h>
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "hw/cpu.h"

namespace fs = std::filesystem;
using ccm::hw::CpuInfo;
using ccm::hw::detect_cpu;

namespace {

fs::path fixture(const char* name) {
  const char* dir = std::getenv("CCM_TEST_FIXTURES");
  if (dir == nullptr) {
    ADD_FAILURE() << "CCM_TEST_FIXTURES is not set (run through meson test)";
    return "/nonexistent";
  }
  return fs::path(dir) / "sysfs" / name;
}

// Flags of the first processor in /proc/cpuinfo; empty when unreadable.
// The kernel clears AVX/AVX-512 flags itself when it does not enable their
// XSAVE state, so these are the "usable" flags we must agree with.
std::set<std::string> proc_cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string w; words >> w;) flags.insert(w);
    return flags;
  }
  return {};
}

}  // namespace

#if defined(__x86_64__) || defined(__i386__)

TEST(Cpu, VendorAndBrandFromCpuid) {
  const CpuInfo cpu = detect_cpu();
  EXPECT_TRUE(cpu.vendor == "GenuineIntel" || cpu.vendor == "AuthenticAMD" || cpu.vendor.size() == 12)
      << cpu.vendor;
  EXPECT_FALSE(cpu.model_name.empty());
  EXPECT_NE(cpu.model_name.front(), ' ');
  EXPECT_NE(cpu.model_name.back(), ' ');
}

TEST(Cpu, FeaturesMatchTheKernelFlags) {
  const auto flags = proc_cpuinfo_flags();
  if (flags.empty()) GTEST_SKIP() << "/proc/cpuinfo has no flags line";
  const auto f = detect_cpu().features;
  auto has = [&](const char* flag) { return flags.count(flag) != 0; };
  EXPECT_EQ(f.sse4_2, has("sse4_2"));
  EXPECT_EQ(f.avx, has("avx"));
  EXPECT_EQ(f.avx2, has("avx2"));
  EXPECT_EQ(f.fma, has("fma"));
  EXPECT_EQ(f.bmi2, has("bmi2"));
  EXPECT_EQ(f.avx512f, has("avx512f"));
  EXPECT_EQ(f.avx512bw, has("avx512bw"));
  EXPECT_EQ(f.avx512dq, has("avx512dq"));
  EXPECT_EQ(f.avx512vl, has("avx512vl"));
  EXPECT_EQ(f.avx512cd, has("avx512cd"));
  EXPECT_EQ(f.avx512vbmi, has("avx512vbmi"));
  EXPECT_EQ(f.avx512ifma, has("avx512ifma"));
  EXPECT_EQ(f.avx512vnni, has("avx512_vnni"));
}

// facts.md: the development machine and the lent H100 machine both have AVX2
// and AVX-512 F/BW/DQ/VL; a machine without them skips rather than fails.
TEST(Cpu, ProjectMachinesHaveAvx512) {
  const auto flags = proc_cpuinfo_flags();
  if (flags.count("avx512f") == 0) GTEST_SKIP() << "this CPU has no AVX-512";
  const auto f = detect_cpu().features;
  EXPECT_TRUE(f.avx2);
  EXPECT_TRUE(f.avx512f);
  EXPECT_TRUE(f.avx512_usable());
}

TEST(Cpu, FeatureImplicationsHold) {
  const auto f = detect_cpu().features;
  // VEX/EVEX instructions all need the YMM state the AVX flag stands for.
  if (f.avx2) {
    EXPECT_TRUE(f.avx);
  }
  if (f.fma) {
    EXPECT_TRUE(f.avx);
  }
  if (f.avx512f) {
    EXPECT_TRUE(f.avx);
  }
  for (bool sub : {f.avx512bw, f.avx512dq, f.avx512vl, f.avx512cd, f.avx512vbmi, f.avx512ifma, f.avx512vnni}) {
    if (sub) {
      EXPECT_TRUE(f.avx512f);
    }
  }
  EXPECT_EQ(f.avx512_usable(), f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl);
}

#endif

TEST(Cpu, LogicalCoresFollowTheAffinityMask) {
  const CpuInfo all = detect_cpu();
  EXPECT_GE(all.logical_cores, 1u);
  EXPECT_LE(all.logical_cores, std::thread::hardware_concurrency());

  // hardware_concurrency counts online CPUs; a pinned process must see one.
  unsigned pinned = 0;
  std::thread worker([&] {
    cpu_set_t current;
    CPU_ZERO(&current);
    ASSERT_EQ(sched_getaffinity(0, sizeof current, &current), 0);
    int first = 0;
    while (!CPU_ISSET(first, &current)) ++first;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    pinned = detect_cpu().logical_cores;
  });
  worker.join();
  EXPECT_EQ(pinned, 1u);
}

TEST(Cpu, TopologyFromFixture) {
  // 2 packages x 4 cores x 2 threads; core ids repeat in each package.
  const CpuInfo cpu = detect_cpu(fixture("nvidia-h100"));
  EXPECT_EQ(cpu.physical_cores, 8u);
  EXPECT_EQ(cpu.numa_nodes, 2u);
}

TEST(Cpu, PartialTopologyCountsWhatIsThere) {
  // cpu3 has no topology directory (offline); no node directory at all.
  const CpuInfo cpu = detect_cpu(fixture("partial"));
  EXPECT_EQ(cpu.physical_cores, 3u);
  EXPECT_EQ(cpu.numa_nodes, 0u);
}

TEST(Cpu, MissingRootIsNotAnError) {
  const CpuInfo cpu = detect_cpu("/nonexistent/ccm-root");
  EXPECT_EQ(cpu.physical_cores, 0u);
  EXPECT_EQ(cpu.numa_nodes, 0u);
  EXPECT_GE(cpu.logical_cores, 1u);  // from the process, not from the root
}

TEST(Cpu, HostTopology) {
  const CpuInfo cpu = detect_cpu("/");
  if (fs::exists("/sys/devices/system/cpu/cpu0/topology/core_id")) {
    EXPECT_GE(cpu.physical_cores, 1u);
  }
  if (fs::exists("/sys/devices/system/node/node0")) {
    EXPECT_GE(cpu.numa_nodes, 1u);
  }
}

TEST(Cpu, DescribeIsOneLine) {
  CpuInfo cpu = detect_cpu(fixture("nvidia-h100"));
  cpu.vendor = "GenuineIntel";
  cpu.model_name = "Intel(R) Xeon(R) Processor";
  cpu.logical_cores = 16;
  cpu.features = {};
  cpu.features.sse4_2 = cpu.features.avx = cpu.features.avx2 = true;
  cpu.features.avx512f = cpu.features.avx512bw = cpu.features.avx512dq = cpu.features.avx512vl = true;
  EXPECT_EQ(ccm::hw::describe(cpu),
            "Intel(R) Xeon(R) Processor (GenuineIntel), 16 cores (8 physical), "
            "SSE4.2 AVX AVX2 AVX-512 (F BW DQ VL), 2 NUMA nodes");

  const std::string host = ccm::hw::describe(detect_cpu());
  EXPECT_EQ(host.find('\n'), std::string::npos);
  std::printf("host CPU: %s\n", host.c_str());

  CpuInfo unknown;
  EXPECT_EQ(ccm::hw::describe(unknown), "unknown CPU, 0 cores, no SIMD extensions, NUMA unknown");
}
