#include "hw/cpu.h"

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <utility>

#include "hw/sysfs_read.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CCM_HAVE_CPUID 1
#else
#define CCM_HAVE_CPUID 0
#endif

namespace ccm::hw {
namespace {

#if CCM_HAVE_CPUID

struct Regs {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

std::optional<Regs> cpuid(uint32_t leaf, uint32_t subleaf = 0) {
  Regs r;
  // __get_cpuid_count checks the leaf against the maximum the CPU reports, so an
  // old CPU without leaf 7 gives nullopt rather than garbage from a lower leaf.
  if (!__get_cpuid_count(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx)) return std::nullopt;
  return r;
}

constexpr bool bit(uint32_t reg, unsigned n) { return ((reg >> n) & 1u) != 0; }

// XCR0 via inline asm: the _xgetbv intrinsic needs -mxsave on the whole unit.
// Only valid when CPUID.1:ECX.OSXSAVE is set (otherwise the instruction faults).
uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

std::string read_vendor() {
  const auto r = cpuid(0);
  if (!r) return {};
  char text[13] = {};
  std::memcpy(text + 0, &r->ebx, 4);
  std::memcpy(text + 4, &r->edx, 4);
  std::memcpy(text + 8, &r->ecx, 4);
  return text;
}

std::string read_brand() {
  const auto max_ext = cpuid(0x80000000u);
  if (!max_ext || max_ext->eax < 0x80000004u) return {};
  char text[49] = {};
  for (uint32_t i = 0; i < 3; ++i) {
    const auto r = cpuid(0x80000002u + i);
    if (!r) return {};
    std::memcpy(text + 16 * i + 0, &r->eax, 4);
    std::memcpy(text + 16 * i + 4, &r->ebx, 4);
    std::memcpy(text + 16 * i + 8, &r->ecx, 4);
    std::memcpy(text + 16 * i + 12, &r->edx, 4);
  }
  // Intel pads the brand string with leading spaces on some parts.
  return std::string(detail::trim(text));
}

CpuFeatures read_features() {
  CpuFeatures f;
  const auto l1 = cpuid(1);
  if (!l1) return f;
  f.sse4_2 = bit(l1->ecx, 20);

  // VEX and EVEX instructions fault unless the OS saves the wider registers on
  // context switch, whatever CPUID says; XCR0 tells what the OS enabled.
  bool os_ymm = false, os_zmm = false;
  if (bit(l1->ecx, 27)) {  // OSXSAVE
    const uint64_t xcr0 = read_xcr0();
    os_ymm = (xcr0 & 0x6) == 0x6;     // XMM (bit 1) + YMM upper halves (bit 2)
    os_zmm = (xcr0 & 0xe6) == 0xe6;   // plus opmask (5), ZMM_Hi256 (6), Hi16_ZMM (7)
  }
  f.avx = os_ymm && bit(l1->ecx, 28);
  f.fma = f.avx && bit(l1->ecx, 12);  // VEX-encoded, so needs the YMM state too

  if (const auto l7 = cpuid(7, 0)) {
    f.avx2 = f.avx && bit(l7->ebx, 5);
    f.bmi2 = bit(l7->ebx, 8);  // general-purpose registers only: no OS state needed
    if (os_zmm) {
      f.avx512f = bit(l7->ebx, 16);
      // Every other AVX-512 subset is an extension of F; a hypervisor that masks F
      // but leaves a sub-bit on must not make us run EVEX code.
      f.avx512dq = f.avx512f && bit(l7->ebx, 17);
      f.avx512ifma = f.avx512f && bit(l7->ebx, 21);
      f.avx512cd = f.avx512f && bit(l7->ebx, 28);
      f.avx512bw = f.avx512f && bit(l7->ebx, 30);
      f.avx512vl = f.avx512f && bit(l7->ebx, 31);
      f.avx512vbmi = f.avx512f && bit(l7->ecx, 1);
      f.avx512vnni = f.avx512f && bit(l7->ecx, 11);
    }
  }
  return f;
}

#endif  // CCM_HAVE_CPUID

unsigned count_affinity_cpus() {
  // cpu_set_t holds 1024 CPUs; larger machines make sched_getaffinity fail with
  // EINVAL, so grow the set until the kernel's mask fits.
  for (int ncpus = 1024; ncpus <= (1 << 20); ncpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(ncpus);
    if (set == nullptr) break;
    const size_t size = CPU_ALLOC_SIZE(ncpus);
    CPU_ZERO_S(size, set);
    const int rc = sched_getaffinity(0, size, set);
    const int err = errno;
    const int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
    CPU_FREE(set);
    if (rc == 0) return static_cast<unsigned>(count);
    if (err != EINVAL) break;
  }
  return std::thread::hardware_concurrency();  // 0 when even that is unknown
}

unsigned count_physical_cores(const std::filesystem::path& root) {
  const auto cpu_dir = root / "sys/devices/system/cpu";
  std::set<std::pair<long, long>> cores;
  for (const auto& name : detail::list_directory(cpu_dir)) {
    if (!detail::numbered_suffix(name, "cpu")) continue;  // skips cpufreq, cpuidle, online ...
    // Offline CPUs have no topology directory; they are simply not counted.
    const auto topology = cpu_dir / name / "topology";
    const auto package = detail::read_line(topology / "physical_package_id");
    const auto core = detail::read_line(topology / "core_id");
    if (!package || !core) continue;
    const auto package_id = detail::parse_decimal(*package);
    const auto core_id = detail::parse_decimal(*core);
    if (!package_id || !core_id) continue;
    // core_id restarts in each package, so only the pair names a core.
    cores.emplace(*package_id, *core_id);
  }
  return static_cast<unsigned>(cores.size());
}

unsigned count_numa_nodes(const std::filesystem::path& root) {
  const auto names = detail::list_directory(root / "sys/devices/system/node");
  return static_cast<unsigned>(std::count_if(names.begin(), names.end(), [](const std::string& name) {
    return detail::numbered_suffix(name, "node").has_value();
  }));
}

}  // namespace

CpuInfo detect_cpu(const std::filesystem::path& root_in) {
  const std::filesystem::path root = root_in.empty() ? std::filesystem::path("/") : root_in;
  CpuInfo info;
#if CCM_HAVE_CPUID
  info.vendor = read_vendor();
  info.model_name = read_brand();
  info.features = read_features();
#endif
  info.logical_cores = count_affinity_cpus();
  info.physical_cores = count_physical_cores(root);
  info.numa_nodes = count_numa_nodes(root);
  return info;
}

std::string describe(const CpuInfo& cpu) {
  std::string out = cpu.model_name.empty() ? std::string("unknown CPU") : cpu.model_name;
  if (!cpu.vendor.empty()) out += " (" + cpu.vendor + ")";

  out += ", " + std::to_string(cpu.logical_cores) + (cpu.logical_cores == 1 ? " core" : " cores");
  if (cpu.physical_cores != 0) out += " (" + std::to_string(cpu.physical_cores) + " physical)";

  const auto& f = cpu.features;
  std::string simd;
  auto add = [](std::string& list, bool present, const char* name) {
    if (!present) return;
    if (!list.empty()) list += ' ';
    list += name;
  };
  add(simd, f.sse4_2, "SSE4.2");
  add(simd, f.avx, "AVX");
  add(simd, f.avx2, "AVX2");
  add(simd, f.fma, "FMA");
  add(simd, f.bmi2, "BMI2");
  std::string avx512;
  add(avx512, f.avx512f, "F");
  add(avx512, f.avx512bw, "BW");
  add(avx512, f.avx512dq, "DQ");
  add(avx512, f.avx512vl, "VL");
  add(avx512, f.avx512cd, "CD");
  add(avx512, f.avx512vbmi, "VBMI");
  add(avx512, f.avx512ifma, "IFMA");
  add(avx512, f.avx512vnni, "VNNI");
  if (!avx512.empty()) add(simd, true, ("AVX-512 (" + avx512 + ")").c_str());
  out += ", " + (simd.empty() ? std::string("no SIMD extensions") : simd);

  if (cpu.numa_nodes == 0)
    out += ", NUMA unknown";
  else
    out += ", " + std::to_string(cpu.numa_nodes) + (cpu.numa_nodes == 1 ? " NUMA node" : " NUMA nodes");
  return out;
}

}  // namespace ccm::hw
