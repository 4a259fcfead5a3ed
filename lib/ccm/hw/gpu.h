// GPU detection from sysfs (PCI display devices, DRM render nodes, NUMA node),
// /proc/driver/nvidia and NVML (dlopen'ed when present).
// Everything is read below a root prefix so tests can point it at fixture trees.
// Missing pieces are facts, never errors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ccm::hw {

enum class GpuVendor { Nvidia, Intel, Amd };

const char* to_string(GpuVendor v);  // "nvidia", "intel", "amd"

struct GpuInfo {
  std::string pci_address;     // "0000:01:00.0"
  GpuVendor vendor = GpuVendor::Nvidia;
  uint16_t vendor_id = 0;      // 0x10de, 0x8086, 0x1002
  uint16_t device_id = 0;
  std::string name;            // NVML or /proc/driver/nvidia model name; else "" 
  std::string render_node;     // "/dev/dri/renderD128" ("" when the device has none)
  int render_minor = -1;       // 128 for renderD128, -1 when none
  int numa_node = -1;          // -1 when sysfs says -1 or nothing
  // Index among GPUs of the same vendor, ordered by PCI address. For NVIDIA this is
  // the CUDA ordinal with CUDA_DEVICE_ORDER=PCI_BUS_ID, the number nvcodec puts in
  // its per-device element names (nvh265device1enc).
  int vendor_index = 0;
  // Whether the GPU has a hardware video encoder. nullopt = unknown (assume yes for
  // display-class devices). NVML's encoder capacity or a table of known
  // compute-only parts (A100, H100, H200 ...) answer this for NVIDIA.
  std::optional<bool> has_encoder;
  int encoder_capacity = -1;   // NVML nvmlDeviceGetEncoderCapacity (H.264), percent; -1 unknown
  std::string driver;          // kernel driver bound (basename of the driver link): "nvidia", "i915", "amdgpu"
};

struct GpuDetectOptions {
  std::filesystem::path root = "/";
  bool use_nvml = true;        // dlopen libnvidia-ml.so.1 when root is "/"
};

std::vector<GpuInfo> detect_gpus(const GpuDetectOptions& options = {});

// "NVIDIA H100 80GB HBM3 (10de:2330) at 0000:01:00.0, no render node, NUMA 0, no encoder"
std::string describe(const GpuInfo& gpu);

}  // namespace ccm::hw
