#include "hw/gpu.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string_view>
#include <system_error>

#include "hw/nvml.h"
#include "hw/sysfs_read.h"

namespace ccm::hw {
namespace {

namespace fs = std::filesystem;

constexpr uint16_t kVendorNvidia = 0x10de;
constexpr uint16_t kVendorIntel = 0x8086;
constexpr uint16_t kVendorAmd = 0x1002;

std::optional<GpuVendor> vendor_from_id(uint32_t id) {
  switch (id) {
    case kVendorNvidia: return GpuVendor::Nvidia;
    case kVendorIntel: return GpuVendor::Intel;
    case kVendorAmd: return GpuVendor::Amd;
    default: return std::nullopt;
  }
}

// NVIDIA data-centre parts that have NVDEC but no NVENC. The driver still ships
// libnvidia-encode, and nvcodec's encoders only fail when a session is opened, so
// without NVML this table is what tells these apart from display GPUs.
// Keep to parts seen in servers we may run on; unknown ids stay "unknown".
constexpr uint16_t kNvidiaWithoutNvenc[] = {
    // A100 (GA100): SXM4 40GB, PCIe 40GB, SXM4 80GB, SXM4 64GB, PCIe 80GB, PG506-232
    0x20b0, 0x20b1, 0x20b2, 0x20b3, 0x20b5, 0x20b6,
    // A100 PCIe 40GB (GA100GL), A800 SXM4 80GB, A800 PCIe 80GB
    0x20f1, 0x20f3, 0x20f5,
    // A30
    0x20b7,
    // H100 (GH100): SXM5 80GB, PCIe, NVL 94GB, H800 PCIe, H800 SXM, SXM5 94GB, H800L 94GB
    0x2330, 0x2331, 0x2321, 0x2322, 0x2324, 0x2339, 0x233a,
    // H200 SXM 141GB, H200 NVL
    0x2335, 0x233b,
    // H20
    0x2329,
};

bool nvidia_known_without_nvenc(uint16_t device_id) {
  return std::ranges::find(kNvidiaWithoutNvenc, device_id) != std::end(kNvidiaWithoutNvenc);
}

// domain:bus:device.function as numbers, so "0000:01:00.0", "00000000:01:00.0"
// (NVML's form) and "0000:C1:00.0" all compare equal to what sysfs says.
struct PciAddress {
  uint32_t domain = 0, bus = 0, device = 0, function = 0;
  auto operator<=>(const PciAddress&) const = default;
};

std::optional<PciAddress> parse_pci_address(std::string_view text) {
  const auto dot = text.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const auto function = detail::parse_hex(text.substr(dot + 1));
  text = text.substr(0, dot);

  const auto last_colon = text.rfind(':');
  if (last_colon == std::string_view::npos) return std::nullopt;
  const auto device = detail::parse_hex(text.substr(last_colon + 1));
  text = text.substr(0, last_colon);

  std::optional<uint32_t> domain = 0;
  std::optional<uint32_t> bus;
  if (const auto colon = text.rfind(':'); colon != std::string_view::npos) {
    domain = detail::parse_hex(text.substr(0, colon));
    bus = detail::parse_hex(text.substr(colon + 1));
  } else {
    bus = detail::parse_hex(text);  // "01:00.0": domain 0 implied
  }
  if (!function || !device || !domain || !bus) return std::nullopt;
  return PciAddress{*domain, *bus, *device, *function};
}

// Lowest-numbered render node under <device>/drm ("renderD128"); -1 when none.
int find_render_minor(const fs::path& device_dir) {
  int best = -1;
  for (const auto& name : detail::list_directory(device_dir / "drm")) {
    if (const auto minor = detail::numbered_suffix(name, "renderD")) {
      if (best < 0 || static_cast<int>(*minor) < best) best = static_cast<int>(*minor);
    }
  }
  return best;
}

std::string driver_name(const fs::path& device_dir) {
  std::error_code ec;
  const auto target = fs::read_symlink(device_dir / "driver", ec);
  if (ec) return {};
  return target.filename().string();
}

// "Model:" from /proc/driver/nvidia/gpus/<address>/information. The proprietary
// driver names the folder "0000:01:00.0"; the address is matched numerically so
// a full 8-digit domain or upper-case hex there matches too.
std::string nvidia_proc_model(const fs::path& root, const PciAddress& address) {
  const auto gpus_dir = root / "proc/driver/nvidia/gpus";
  for (const auto& entry : detail::list_directory(gpus_dir)) {
    const auto entry_address = parse_pci_address(entry);
    if (!entry_address || *entry_address != address) continue;
    const auto text = detail::read_file(gpus_dir / entry / "information");
    if (!text) return {};
    std::string_view rest = *text;
    while (!rest.empty()) {
      const auto eol = rest.find('\n');
      const std::string_view line = rest.substr(0, eol);
      rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 1);
      constexpr std::string_view kKey = "Model:";
      if (line.starts_with(kKey)) return std::string(detail::trim(line.substr(kKey.size())));
    }
    return {};
  }
  return {};
}

struct Candidate {
  PciAddress address;
  GpuInfo info;
};

std::optional<Candidate> read_pci_device(const fs::path& root, const fs::path& device_dir,
                                         const std::string& name) {
  const auto address = parse_pci_address(name);
  if (!address) return std::nullopt;

  // Display controllers are base class 0x03; the low 16 bits separate VGA
  // (0x0300xx), 3D controllers without VGA decode such as the H100 (0x0302xx)
  // and others (0x0380xx).
  const auto class_line = detail::read_line(device_dir / "class");
  const auto class_code = class_line ? detail::parse_hex(*class_line) : std::nullopt;
  if (!class_code || (*class_code >> 16) != 0x03) return std::nullopt;

  const auto vendor_line = detail::read_line(device_dir / "vendor");
  const auto vendor_id = vendor_line ? detail::parse_hex(*vendor_line) : std::nullopt;
  const auto vendor = vendor_id ? vendor_from_id(*vendor_id) : std::nullopt;
  if (!vendor) return std::nullopt;  // BMC VGA (ASPEED, Matrox) and the like

  Candidate c;
  c.address = *address;
  GpuInfo& gpu = c.info;
  gpu.pci_address = name;
  gpu.vendor = *vendor;
  gpu.vendor_id = static_cast<uint16_t>(*vendor_id);
  if (const auto line = detail::read_line(device_dir / "device")) {
    if (const auto id = detail::parse_hex(*line); id && *id <= 0xffff) gpu.device_id = static_cast<uint16_t>(*id);
  }
  if (const auto line = detail::read_line(device_dir / "numa_node")) {
    if (const auto node = detail::parse_decimal(*line); node && *node >= 0 && *node < 65536)
      gpu.numa_node = static_cast<int>(*node);
  }
  gpu.render_minor = find_render_minor(device_dir);
  if (gpu.render_minor >= 0) gpu.render_node = "/dev/dri/renderD" + std::to_string(gpu.render_minor);
  gpu.driver = driver_name(device_dir);

  if (gpu.vendor == GpuVendor::Nvidia) {
    gpu.name = nvidia_proc_model(root, c.address);
    if (nvidia_known_without_nvenc(gpu.device_id)) gpu.has_encoder = false;
  } else if (gpu.render_minor < 0) {
    // VA-API opens a render node; without one there is nothing to encode with.
    gpu.has_encoder = false;
  }
  return c;
}

bool is_host_root(const fs::path& root) {
  return root.empty() || root.lexically_normal() == fs::path("/");
}

}  // namespace

const char* to_string(GpuVendor v) {
  switch (v) {
    case GpuVendor::Nvidia: return "nvidia";
    case GpuVendor::Intel: return "intel";
    case GpuVendor::Amd: return "amd";
  }
  return "unknown";
}

std::vector<GpuInfo> detect_gpus(const GpuDetectOptions& options) {
  const fs::path root = options.root.empty() ? fs::path("/") : options.root;
  const auto devices_dir = root / "sys/bus/pci/devices";

  std::vector<Candidate> found;
  for (const auto& name : detail::list_directory(devices_dir)) {
    if (auto c = read_pci_device(root, devices_dir / name, name)) found.push_back(std::move(*c));
  }
  std::sort(found.begin(), found.end(),
            [](const Candidate& a, const Candidate& b) { return a.address < b.address; });

  // NVML only describes the live machine; a fixture root must not be mixed
  // with facts from the host's driver.
  const bool want_nvml =
      options.use_nvml && is_host_root(root) &&
      std::any_of(found.begin(), found.end(), [](const Candidate& c) { return c.info.vendor == GpuVendor::Nvidia; });
  std::optional<NvmlSession> nvml = want_nvml ? NvmlSession::open() : std::nullopt;

  std::vector<GpuInfo> gpus;
  gpus.reserve(found.size());
  std::map<GpuVendor, int> next_index;
  for (auto& c : found) {
    GpuInfo& gpu = c.info;
    gpu.vendor_index = next_index[gpu.vendor]++;
    if (nvml && gpu.vendor == GpuVendor::Nvidia) {
      if (const auto facts = nvml->query(gpu.pci_address)) {
        if (!facts->name.empty()) gpu.name = facts->name;
        // The table is only parts known to lack NVENC, so it stands even where
        // NVML claims an encoder (the H100 reports 100% H.264 capacity).
        if (!nvidia_known_without_nvenc(gpu.device_id)) {
          if (facts->has_encoder) gpu.has_encoder = facts->has_encoder;
          gpu.encoder_capacity = facts->encoder_capacity;
        }
      }
    }
    gpus.push_back(std::move(gpu));
  }
  return gpus;  // nvml unloads here
}

std::string describe(const GpuInfo& gpu) {
  char ids[16];
  std::snprintf(ids, sizeof ids, "%04x:%04x", gpu.vendor_id, gpu.device_id);

  std::string out = gpu.name.empty() ? std::string(to_string(gpu.vendor)) + " GPU" : gpu.name;
  out += " (";
  out += ids;
  out += ") at " + gpu.pci_address;
  out += ", " + std::string(to_string(gpu.vendor)) + " #" + std::to_string(gpu.vendor_index);
  out += ", " + (gpu.render_node.empty() ? std::string("no render node") : gpu.render_node);
  out += ", NUMA " + (gpu.numa_node < 0 ? std::string("-") : std::to_string(gpu.numa_node));
  if (!gpu.has_encoder.has_value())
    out += ", encoder unknown";
  else if (*gpu.has_encoder)
    out += ", encoder";
  else
    out += ", no encoder";
  if (gpu.encoder_capacity >= 0) out += " (" + std::to_string(gpu.encoder_capacity) + "% free)";
  out += ", driver " + (gpu.driver.empty() ? std::string("none") : gpu.driver);
  return out;
}

}  // namespace ccm::hw
