// CPU detection: vendor, core counts, SIMD subsets, NUMA nodes.
// Pure C++ (no GStreamer); every missing piece of information is a fact
// (an empty string, a zero, a false), never an error.
#pragma once

#include <filesystem>
#include <string>

namespace ccm::hw {

struct CpuFeatures {
  bool sse4_2 = false;
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool bmi2 = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
  bool avx512cd = false;
  bool avx512vbmi = false;
  bool avx512ifma = false;
  bool avx512vnni = false;

  // AVX-512 as our kernels use it: F + BW + DQ + VL, and the OS saves ZMM state.
  bool avx512_usable() const { return avx512f && avx512bw && avx512dq && avx512vl; }
};

struct CpuInfo {
  std::string vendor;        // "GenuineIntel", "AuthenticAMD", ... ("" when unknown)
  std::string model_name;    // brand string from cpuid
  unsigned logical_cores = 0;   // CPUs this process may run on (affinity mask)
  unsigned physical_cores = 0;  // distinct (package, core) pairs from sysfs; 0 when unknown
  unsigned numa_nodes = 0;      // nodes under <root>/sys/devices/system/node; 0 when unknown
  CpuFeatures features;
};

// Reads cpuid for vendor and features; core and NUMA topology from <root>/sys
// so tests can point it at a fixture tree.
CpuInfo detect_cpu(const std::filesystem::path& root = "/");

// One line for logs: "GenuineIntel, 2 cores, AVX2, AVX-512 (F BW DQ VL VBMI IFMA), 1 NUMA node".
std::string describe(const CpuInfo& cpu);

}  // namespace ccm::hw
