// GPU detection against the fixture trees in tests/fixtures/sysfs (see the
// README there), the host root, and a root that does not exist.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "hw/gpu.h"
#include "hw/nvml.h"

namespace fs = std::filesystem;
using ccm::hw::detect_gpus;
using ccm::hw::GpuDetectOptions;
using ccm::hw::GpuInfo;
using ccm::hw::GpuVendor;

namespace {

fs::path fixture(const char* name) {
  const char* dir = std::getenv("CCM_TEST_FIXTURES");
  if (dir == nullptr) {
    ADD_FAILURE() << "CCM_TEST_FIXTURES is not set (run through meson test)";
    return "/nonexistent";
  }
  return fs::path(dir) / "sysfs" / name;
}

std::vector<GpuInfo> detect_in(const char* tree) {
  GpuDetectOptions options;
  options.root = fixture(tree);
  // use_nvml stays true: a fixture root must never consult the host's NVML.
  return detect_gpus(options);
}

// Every field as one line, so a mismatch shows the whole record.
std::string record(const GpuInfo& g) {
  char ids[16];
  std::snprintf(ids, sizeof ids, "%04x:%04x", g.vendor_id, g.device_id);
  const char* encoder = !g.has_encoder ? "?" : (*g.has_encoder ? "yes" : "no");
  return g.pci_address + " " + to_string(g.vendor) + "#" + std::to_string(g.vendor_index) + " " + ids +
         " render=" + g.render_node + "(" + std::to_string(g.render_minor) + ")" +
         " numa=" + std::to_string(g.numa_node) + " name='" + g.name + "'" + " encoder=" + encoder +
         " capacity=" + std::to_string(g.encoder_capacity) + " driver=" + g.driver;
}

std::vector<std::string> records(const std::vector<GpuInfo>& gpus) {
  std::vector<std::string> out;
  for (const auto& g : gpus) out.push_back(record(g));
  return out;
}

using Records = std::vector<std::string>;

}  // namespace

TEST(Gpu, VendorNames) {
  EXPECT_STREQ(to_string(GpuVendor::Nvidia), "nvidia");
  EXPECT_STREQ(to_string(GpuVendor::Intel), "intel");
  EXPECT_STREQ(to_string(GpuVendor::Amd), "amd");
}

TEST(Gpu, NoDisplayDevices) {
  // A SATA controller, a NIC, a host bridge and an ASPEED BMC VGA (display
  // class, but not a vendor we can encode on).
  EXPECT_EQ(records(detect_in("none")), Records{});
}

TEST(Gpu, NvidiaAda) {
  // The card's HDMI audio function (class 0x0403) is not a GPU.
  EXPECT_EQ(records(detect_in("nvidia-ada")),
            (Records{"0000:01:00.0 nvidia#0 10de:2684 render=/dev/dri/renderD128(128) numa=-1 "
                     "name='NVIDIA GeForce RTX 4090' encoder=? capacity=-1 driver=nvidia"}));
}

TEST(Gpu, NvidiaH100HasNoEncoder) {
  // 3D controller class, no DRM node; the id table says no NVENC.
  EXPECT_EQ(records(detect_in("nvidia-h100")),
            (Records{"0000:00:06.0 nvidia#0 10de:2330 render=(-1) numa=0 "
                     "name='NVIDIA H100 80GB HBM3' encoder=no capacity=-1 driver=nvidia"}));
}

TEST(Gpu, IntelArc) {
  EXPECT_EQ(records(detect_in("intel-arc")),
            (Records{"0000:03:00.0 intel#0 8086:56a0 render=/dev/dri/renderD128(128) numa=-1 "
                     "name='' encoder=? capacity=-1 driver=i915"}));
}

TEST(Gpu, AmdRdna3) {
  EXPECT_EQ(records(detect_in("amd-rdna3")),
            (Records{"0000:03:00.0 amd#0 1002:744c render=/dev/dri/renderD128(128) numa=-1 "
                     "name='' encoder=? capacity=-1 driver=amdgpu"}));
}

TEST(Gpu, ThreeVendorsSortedByAddress) {
  EXPECT_EQ(records(detect_in("mix3")),
            (Records{
                "0000:00:02.0 intel#0 8086:a780 render=/dev/dri/renderD128(128) numa=0 "
                "name='' encoder=? capacity=-1 driver=i915",
                "0000:01:00.0 nvidia#0 10de:2684 render=/dev/dri/renderD129(129) numa=0 "
                "name='NVIDIA GeForce RTX 4090' encoder=? capacity=-1 driver=nvidia",
                "0000:03:00.0 amd#0 1002:744c render=/dev/dri/renderD130(130) numa=1 "
                "name='' encoder=? capacity=-1 driver=amdgpu",
            }));
}

TEST(Gpu, VendorIndexFollowsPciOrder) {
  // Proc folders here are "00000000:01:00.0" (8-digit domain) and plain
  // "0000:02:00.0"; the second domain sorts after every bus of domain 0.
  EXPECT_EQ(records(detect_in("nvidia-2gpu")),
            (Records{
                "0000:01:00.0 nvidia#0 10de:2684 render=/dev/dri/renderD128(128) numa=0 "
                "name='NVIDIA GeForce RTX 4090' encoder=? capacity=-1 driver=nvidia",
                "0000:02:00.0 nvidia#1 10de:24b0 render=/dev/dri/renderD129(129) numa=0 "
                "name='NVIDIA RTX A4000' encoder=? capacity=-1 driver=nvidia",
                "0001:81:00.0 nvidia#2 10de:2330 render=(-1) numa=1 "
                "name='NVIDIA H100 80GB HBM3' encoder=no capacity=-1 driver=nvidia",
            }));
}

TEST(Gpu, MissingPiecesAreFacts) {
  // NVIDIA: no numa_node file, no driver link, no /proc entry.
  // Intel (class 0x0380): no device file, a DRM card but no render node.
  // AMD at 05: no class file; AMD at 06: no vendor file; 07: class is garbage.
  EXPECT_EQ(records(detect_in("partial")),
            (Records{
                "0000:01:00.0 nvidia#0 10de:2684 render=(-1) numa=-1 name='' encoder=? capacity=-1 driver=",
                "0000:02:00.0 intel#0 8086:0000 render=(-1) numa=-1 name='' encoder=no capacity=-1 driver=i915",
            }));
}

TEST(Gpu, RootWithTrailingSlash) {
  GpuDetectOptions options;
  options.root = fixture("mix3").string() + "/";
  EXPECT_EQ(records(detect_gpus(options)), records(detect_in("mix3")));
}

TEST(Gpu, NonexistentRootIsEmpty) {
  GpuDetectOptions options;
  options.root = "/nonexistent/ccm-root";
  EXPECT_TRUE(detect_gpus(options).empty());
}

TEST(Gpu, HostRootRuns) {
  // The development machine has no GPU; a machine with one (the lent H100)
  // must give a consistent list, NVML or not.
  for (bool use_nvml : {false, true}) {
    GpuDetectOptions options;
    options.use_nvml = use_nvml;
    const auto gpus = detect_gpus(options);
    std::map<GpuVendor, int> seen;
    for (size_t i = 0; i < gpus.size(); ++i) {
      const auto& g = gpus[i];
      std::printf("host GPU (nvml %s): %s\n", use_nvml ? "on" : "off", describe(g).c_str());
      if (i > 0) {
        EXPECT_LT(gpus[i - 1].pci_address, g.pci_address);
      }
      EXPECT_EQ(g.vendor_index, seen[g.vendor]++);
      EXPECT_NE(g.vendor_id, 0);
      if (g.render_minor >= 0) {
        EXPECT_EQ(g.render_node, "/dev/dri/renderD" + std::to_string(g.render_minor));
      }
      if (!use_nvml) {
        EXPECT_EQ(g.encoder_capacity, -1);
      }
      // The lent H100: NVML reports H.264 encoder capacity there although the
      // part has no NVENC; detection must still say "no encoder".
      if (g.vendor_id == 0x10de && g.device_id == 0x2330) {
        EXPECT_EQ(g.has_encoder, std::optional<bool>(false));
        EXPECT_EQ(g.encoder_capacity, -1);
      }
    }
    if (gpus.empty()) std::printf("host: no GPU (nvml %s)\n", use_nvml ? "on" : "off");
  }
}

TEST(Gpu, NvmlAbsentIsNotAnError) {
  EXPECT_FALSE(ccm::hw::NvmlSession::open("libccm-test-no-such-nvml.so.1").has_value());
}

TEST(Gpu, Describe) {
  const auto h100 = detect_in("nvidia-h100");
  ASSERT_EQ(h100.size(), 1u);
  EXPECT_EQ(describe(h100[0]),
            "NVIDIA H100 80GB HBM3 (10de:2330) at 0000:00:06.0, nvidia #0, no render node, NUMA 0, "
            "no encoder, driver nvidia");

  const auto mix = detect_in("mix3");
  ASSERT_EQ(mix.size(), 3u);
  EXPECT_EQ(describe(mix[0]),
            "intel GPU (8086:a780) at 0000:00:02.0, intel #0, /dev/dri/renderD128, NUMA 0, "
            "encoder unknown, driver i915");

  GpuInfo with_nvml = mix[1];
  with_nvml.has_encoder = true;
  with_nvml.encoder_capacity = 100;
  with_nvml.numa_node = -1;
  with_nvml.driver.clear();
  EXPECT_EQ(describe(with_nvml),
            "NVIDIA GeForce RTX 4090 (10de:2684) at 0000:01:00.0, nvidia #0, /dev/dri/renderD129, NUMA -, "
            "encoder (100% free), driver none");
}
