// Ranking with synthetic GPU lists and fake registries.
#include "catalog/rank.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <set>
#include <string>
#include <vector>

using namespace ccm::catalog;
using ccm::hw::GpuInfo;
using ccm::hw::GpuVendor;

namespace {

GpuInfo nvidia(int vendor_index, std::string name, std::optional<bool> has_encoder = true,
               int render_minor = -1) {
  GpuInfo g;
  g.vendor = GpuVendor::Nvidia;
  g.vendor_id = 0x10de;
  g.name = std::move(name);
  g.vendor_index = vendor_index;
  g.has_encoder = has_encoder;
  g.render_minor = render_minor;
  if (render_minor >= 0) g.render_node = "/dev/dri/renderD" + std::to_string(render_minor);
  g.pci_address = "0000:0" + std::to_string(vendor_index + 1) + ":00.0";
  g.driver = "nvidia";
  return g;
}

GpuInfo intel(int render_minor, int vendor_index = 0, std::optional<bool> has_encoder = std::nullopt) {
  GpuInfo g;
  g.vendor = GpuVendor::Intel;
  g.vendor_id = 0x8086;
  g.name = "";  // sysfs gives no model name for Intel
  g.vendor_index = vendor_index;
  g.has_encoder = has_encoder;
  g.render_minor = render_minor;
  g.render_node = "/dev/dri/renderD" + std::to_string(render_minor);
  g.pci_address = "0000:0" + std::to_string(render_minor - 120) + ":00.0";
  g.driver = "i915";
  return g;
}

GpuInfo amd(int render_minor, int vendor_index = 0) {
  GpuInfo g = intel(render_minor, vendor_index);
  g.vendor = GpuVendor::Amd;
  g.vendor_id = 0x1002;
  g.driver = "amdgpu";
  return g;
}

using Registry = std::set<std::string, std::less<>>;

// What this development machine has: software encoders only.
const Registry kThisMachine = {"x264enc", "x265enc", "vp9enc", "av1enc", "openh264enc"};

// A Debian 12 (1.22) machine with nvcodec and va loaded on two NVIDIA GPUs, an
// Intel GPU at renderD128 and an AMD one at renderD129/130.
const Registry kFull122 = {
    "nvh264enc", "nvh265enc", "nvh264device1enc", "nvh265device1enc", "nvh265device2enc",
    "nvcudah264enc", "nvcudah265enc", "nvcudah264device1enc", "nvcudah265device1enc",
    "nvautogpuh264enc", "nvautogpuh265enc",
    "vah264enc", "vah265enc", "vah264lpenc", "vah265lpenc",
    "varenderD129h264enc", "varenderD129h265enc", "varenderD130h264enc", "varenderD130h265enc",
    "qsvh264enc", "qsvh265enc", "qsvav1enc", "qsvvp9enc",
    "x264enc", "x265enc", "vp9enc", "av1enc", "openh264enc",
    // 1.24+ names, so that version gating is what keeps them out on 1.22.
    "nvav1enc", "vaav1enc", "vavp9enc", "svtav1enc",
};

struct Fixture {
  std::vector<GpuInfo> gpus;
  Registry registry;
  std::vector<std::string> candidates;

  Ranking rank(Codec codec, GstVersion version = {1, 22}, HardwarePolicy policy = HardwarePolicy::Auto,
               int gpu = -1) const {
    RankRequest r;
    r.codec = codec;
    r.policy = policy;
    r.gpu = gpu;
    r.gpus = gpus;
    r.gst_version = version;
    r.has_factory = [this](std::string_view f) { return registry.find(f) != registry.end(); };
    r.candidates = candidates;
    return ccm::catalog::rank(r);
  }
};

std::vector<std::string> names(const Ranking& r) {
  std::vector<std::string> out;
  for (const auto& c : r.candidates) out.push_back(c.factory);
  return out;
}

std::vector<int> gpus_of(const Ranking& r) {
  std::vector<int> out;
  for (const auto& c : r.candidates) out.push_back(c.gpu);
  return out;
}

// The reason an element was passed over for, "" when it is not in the list.
std::string reason(const Ranking& r, std::string_view factory) {
  for (const auto& p : r.passed_over)
    if (p.factory == factory) return p.reason;
  return "";
}

std::vector<std::string> passed(const Ranking& r) {
  std::vector<std::string> out;
  for (const auto& p : r.passed_over) out.push_back(p.factory);
  return out;
}

using Names = std::vector<std::string>;

}  // namespace

TEST(Rank, NoGpuOnThisMachineFallsToSoftwareAndSaysWhy) {
  Fixture f{.gpus = {}, .registry = kThisMachine};
  Ranking r = f.rank(Codec::H265);
  EXPECT_EQ(names(r), (Names{"x265enc"}));
  EXPECT_FALSE(r.candidates[0].hardware);
  EXPECT_EQ(r.candidates[0].gpu, -1);
  ASSERT_NE(r.candidates[0].entry, nullptr);
  EXPECT_EQ(r.candidates[0].entry->factory, "x265enc");
  EXPECT_EQ(reason(r, "nvcudah265enc"), "no NVIDIA GPU detected");
  EXPECT_EQ(reason(r, "nvh265enc"), "no NVIDIA GPU detected");
  EXPECT_EQ(reason(r, "nvautogpuh265enc"), "no NVIDIA GPU detected");
  EXPECT_EQ(reason(r, "vah265enc"), "no Intel or AMD GPU detected");
  EXPECT_EQ(reason(r, "qsvh265enc"), "no Intel GPU detected");
  EXPECT_NE(reason(r, "ccmx265enc").find("element not in the registry"), std::string::npos);
  // Each entry once: the 1.26 nvh265enc is not news on 1.22 when the old one is there.
  int nvh265 = 0;
  for (const auto& p : r.passed_over) nvh265 += p.factory == "nvh265enc";
  EXPECT_EQ(nvh265, 1);
  EXPECT_EQ(passed(r), (Names{"nvcudah265enc", "nvh265enc", "nvautogpuh265enc", "vah265enc",
                              "vah265lpenc", "qsvh265enc", "ccmx265enc"}));
}

TEST(Rank, NoGpuAv1On122) {
  Fixture f{.gpus = {}, .registry = kThisMachine};
  Ranking r = f.rank(Codec::AV1);
  EXPECT_EQ(names(r), (Names{"av1enc"}));
  EXPECT_EQ(reason(r, "nvav1enc"), "not in this GStreamer (needs 1.24)");
  EXPECT_EQ(reason(r, "vaav1enc"), "not in this GStreamer (needs 1.24)");
  EXPECT_EQ(reason(r, "svtav1enc"), "not in this GStreamer (needs 1.24)");
  EXPECT_EQ(reason(r, "qsvav1enc"), "no Intel GPU detected");
  EXPECT_EQ(reason(r, "ccmsvtav1enc"), "element not in the registry (gst-ccm was built without it)");
}

TEST(Rank, SoftwareMissingFromTheRegistryNamesThePackage) {
  Fixture f{.gpus = {}, .registry = {"openh264enc"}};
  Ranking r = f.rank(Codec::H264);
  EXPECT_EQ(names(r), (Names{"openh264enc"}));
  EXPECT_EQ(reason(r, "x264enc"), "element not in the registry (install gstreamer1.0-plugins-ugly)");
  Ranking none = Fixture{.gpus = {}, .registry = {}}.rank(Codec::VP9);
  EXPECT_TRUE(none.candidates.empty());
  EXPECT_EQ(reason(none, "vp9enc"), "element not in the registry (install gstreamer1.0-plugins-good)");
  EXPECT_EQ(reason(none, "qsvvp9enc"), "no Intel GPU detected");
}

TEST(Rank, PassedOverStopsAtTheLastCandidate) {
  // openh264enc ranks below x264enc: its absence is not worth a line.
  Fixture f{.gpus = {}, .registry = {"x264enc"}};
  Ranking r = f.rank(Codec::H264);
  EXPECT_EQ(names(r), (Names{"x264enc"}));
  EXPECT_EQ(reason(r, "openh264enc"), "");
  EXPECT_NE(reason(r, "nvh264enc"), "");
}

TEST(Rank, NvidiaAdaOn122) {
  Fixture f{.gpus = {nvidia(0, "NVIDIA GeForce RTX 4090")}, .registry = kFull122};
  Ranking r = f.rank(Codec::H265);
  EXPECT_EQ(names(r), (Names{"nvcudah265enc", "nvh265enc", "nvautogpuh265enc", "x265enc"}));
  EXPECT_EQ(gpus_of(r), (std::vector<int>{0, 0, -1, -1}));
  EXPECT_TRUE(r.candidates[0].hardware);
  EXPECT_TRUE(r.candidates[2].hardware);  // nvautogpu: hardware, GPU of its own choosing
  EXPECT_EQ(r.candidates[1].entry->api, Api::NvencLegacy);
  EXPECT_EQ(reason(r, "vah265enc"), "no Intel or AMD GPU detected");
  EXPECT_EQ(reason(r, "ccmx265enc"), "element not in the registry (gst-ccm was built without it)");
  // AV1 on 1.22: NVENC AV1 needs 1.24 even where the registry (wrongly) has it.
  Ranking av1 = f.rank(Codec::AV1);
  EXPECT_EQ(names(av1), (Names{"av1enc"}));
  EXPECT_EQ(reason(av1, "nvav1enc"), "not in this GStreamer (needs 1.24)");
  // VP9: NVENC has none.
  Ranking vp9 = f.rank(Codec::VP9);
  EXPECT_EQ(names(vp9), (Names{"vp9enc"}));
}

TEST(Rank, VersionGating) {
  Fixture f{.gpus = {nvidia(0, "NVIDIA GeForce RTX 4090")}, .registry = kFull122};
  Ranking av1_124 = f.rank(Codec::AV1, {1, 24});
  EXPECT_EQ(names(av1_124), (Names{"nvav1enc", "svtav1enc", "av1enc"}));
  Ranking av1_126 = f.rank(Codec::AV1, {1, 26});
  EXPECT_EQ(names(av1_126).front(), "nvav1enc");
  // 1.26: nvh265enc is the new API, the nvcuda names are gone.
  Ranking h265_126 = f.rank(Codec::H265, {1, 26});
  EXPECT_EQ(names(h265_126), (Names{"nvh265enc", "nvautogpuh265enc", "x265enc"}));
  EXPECT_EQ(h265_126.candidates[0].entry->api, Api::NvencCuda);
  EXPECT_EQ(h265_126.candidates[0].entry->bitrate_change, BitrateChange::Live);
  EXPECT_EQ(reason(h265_126, "nvcudah265enc"), "not in this GStreamer (last in 1.24)");
}

TEST(Rank, H100WithoutNvenc) {
  Fixture f{.gpus = {nvidia(0, "NVIDIA H100 80GB HBM3", false)}, .registry = kThisMachine};
  Ranking r = f.rank(Codec::H264);
  EXPECT_EQ(names(r), (Names{"x264enc", "openh264enc"}));
  EXPECT_EQ(reason(r, "nvcudah264enc"), "NVIDIA H100 80GB HBM3 has no hardware encoder (NVENC)");
  EXPECT_EQ(reason(r, "nvh264enc"), "NVIDIA H100 80GB HBM3 has no hardware encoder (NVENC)");
  EXPECT_EQ(reason(r, "nvautogpuh264enc"), "NVIDIA H100 80GB HBM3 has no hardware encoder (NVENC)");
  EXPECT_EQ(reason(r, "vah264enc"), "no Intel or AMD GPU detected");
}

TEST(Rank, NvidiaInTheRegistryButNoEncoderElements) {
  // Unknown has_encoder is taken as "yes"; the registry then has the final word.
  Fixture f{.gpus = {nvidia(0, "", std::nullopt)}, .registry = kThisMachine};
  Ranking r = f.rank(Codec::H264);
  EXPECT_EQ(names(r), (Names{"x264enc", "openh264enc"}));
  EXPECT_EQ(reason(r, "nvcudah264enc"),
            "element not in the registry (needs gstreamer1.0-plugins-bad and a working NVIDIA driver)");
}

TEST(Rank, IntelArc) {
  Fixture f{.gpus = {intel(128)}, .registry = kFull122};
  Ranking r = f.rank(Codec::H265);
  EXPECT_EQ(names(r), (Names{"vah265enc", "vah265lpenc", "qsvh265enc", "x265enc"}));
  EXPECT_EQ(gpus_of(r), (std::vector<int>{0, 0, 0, -1}));
  EXPECT_EQ(reason(r, "nvcudah265enc"), "no NVIDIA GPU detected");
  Ranking av1 = f.rank(Codec::AV1, {1, 24});
  EXPECT_EQ(names(av1), (Names{"vaav1enc", "qsvav1enc", "svtav1enc", "av1enc"}));
  Ranking vp9_122 = f.rank(Codec::VP9);
  EXPECT_EQ(names(vp9_122), (Names{"qsvvp9enc", "vp9enc"}));
  EXPECT_EQ(reason(vp9_122, "vavp9enc"), "not in this GStreamer (needs 1.24)");
}

TEST(Rank, AmdRdna3) {
  Fixture f{.gpus = {amd(128)}, .registry = {"vah265enc", "vah264enc", "vaav1enc", "x265enc", "x264enc"}};
  Ranking r = f.rank(Codec::H265);
  EXPECT_EQ(names(r), (Names{"vah265enc", "x265enc"}));
  EXPECT_EQ(reason(r, "qsvh265enc"), "no Intel GPU detected");
  EXPECT_EQ(reason(r, "vah265lpenc"),
            "element not in the registry (needs gstreamer1.0-plugins-bad and a working Intel or AMD driver)");
  Ranking av1 = f.rank(Codec::AV1, {1, 24});
  EXPECT_EQ(names(av1), (Names{"vaav1enc"}));
}

TEST(Rank, ThreeGpuMix) {
  // Intel renderD128, NVIDIA renderD129, AMD renderD130.
  Fixture f{.gpus = {intel(128), nvidia(0, "NVIDIA RTX A2000", true, 129), amd(130)},
            .registry = kFull122};
  Ranking r = f.rank(Codec::H265);
  EXPECT_EQ(names(r), (Names{"nvcudah265enc", "nvh265enc", "nvautogpuh265enc", "vah265enc",
                             "varenderD130h265enc", "vah265lpenc", "qsvh265enc", "x265enc"}));
  EXPECT_EQ(gpus_of(r), (std::vector<int>{1, 1, -1, 0, 2, 0, 0, -1}));
  // The AMD low-power copy is not in the registry: said, since it ranks above x265enc.
  EXPECT_NE(reason(r, "varenderD130h265lpenc").find("element not in the registry"), std::string::npos);

  // gpu=2: only the AMD GPU's elements, then software.
  Ranking amd_only = f.rank(Codec::H265, {1, 22}, HardwarePolicy::Auto, 2);
  EXPECT_EQ(names(amd_only), (Names{"varenderD130h265enc", "x265enc"}));
  EXPECT_EQ(amd_only.candidates[0].gpu, 2);
  EXPECT_NE(reason(amd_only, "nvcudah265enc").find("gpu=2 requested"), std::string::npos);
  EXPECT_EQ(reason(amd_only, "vah265enc"), "gpu=2 requested");
  EXPECT_NE(reason(amd_only, "qsvh265enc").find("gpu=2 requested"), std::string::npos);

  // gpu=1: the NVIDIA one; nvautogpu cannot be pinned.
  Ranking nv_only = f.rank(Codec::H265, {1, 22}, HardwarePolicy::Auto, 1);
  EXPECT_EQ(names(nv_only), (Names{"nvcudah265enc", "nvh265enc", "x265enc"}));
  EXPECT_NE(reason(nv_only, "nvautogpuh265enc").find("picks its own GPU"), std::string::npos);
  EXPECT_NE(reason(nv_only, "vah265enc").find("gpu=1 requested"), std::string::npos);

  // A GPU index that does not exist.
  Ranking bad = f.rank(Codec::H265, {1, 22}, HardwarePolicy::Auto, 5);
  EXPECT_EQ(names(bad), (Names{"x265enc"}));
  EXPECT_NE(reason(bad, "nvcudah265enc").find("gpu=5 requested"), std::string::npos);
}

TEST(Rank, TwoNvidiaGpus) {
  Fixture f{.gpus = {nvidia(0, "NVIDIA GeForce RTX 4090"), nvidia(1, "NVIDIA GeForce RTX 4080")},
            .registry = kFull122};
  Ranking r = f.rank(Codec::H265);
  EXPECT_EQ(names(r), (Names{"nvcudah265enc", "nvcudah265device1enc", "nvh265enc", "nvh265device1enc",
                             "nvautogpuh265enc", "x265enc"}));
  EXPECT_EQ(gpus_of(r), (std::vector<int>{0, 1, 0, 1, -1, -1}));
  Ranking second = f.rank(Codec::H265, {1, 22}, HardwarePolicy::Auto, 1);
  EXPECT_EQ(names(second), (Names{"nvcudah265device1enc", "nvh265device1enc", "x265enc"}));
  EXPECT_EQ(reason(second, "nvcudah265enc"), "gpu=1 requested");
}

TEST(Rank, NvidiaNamingSkipsGpusWithoutNvenc) {
  // GPU 0 is a compute part: the plugins register nothing for it, so GPU 1 owns the
  // plain names; with a third GPU the two APIs number differently.
  Fixture two{.gpus = {nvidia(0, "NVIDIA H100 80GB HBM3", false), nvidia(1, "NVIDIA L4")},
              .registry = kFull122};
  Ranking r = two.rank(Codec::H264);
  EXPECT_EQ(names(r), (Names{"nvcudah264enc", "nvh264enc", "nvautogpuh264enc", "x264enc", "openh264enc"}));
  EXPECT_EQ(gpus_of(r)[0], 1);
  EXPECT_EQ(gpus_of(r)[1], 1);

  Fixture three{.gpus = {nvidia(0, "NVIDIA L4"), nvidia(1, "NVIDIA H100 80GB HBM3", false), nvidia(2, "NVIDIA L4")},
                .registry = {"nvcudah265enc", "nvcudah265device1enc", "nvh265enc", "nvh265device2enc", "x265enc"}};
  Ranking r3 = three.rank(Codec::H265);
  EXPECT_EQ(names(r3), (Names{"nvcudah265enc", "nvcudah265device1enc", "nvh265enc", "nvh265device2enc",
                              "x265enc"}));
  EXPECT_EQ(gpus_of(r3), (std::vector<int>{0, 2, 0, 2, -1}));
  EXPECT_EQ(reason(r3, "nvautogpuh265enc"),
            "element not in the registry (needs gstreamer1.0-plugins-bad and a working NVIDIA driver)");
  bool h100_said = false;
  for (const auto& p : r3.passed_over) h100_said |= p.reason == "NVIDIA H100 80GB HBM3 has no hardware encoder (NVENC)";
  EXPECT_TRUE(h100_said);
}

TEST(Rank, VaNameFallsBackWhenAnotherDriverOwnsTheFirstRenderNode) {
  // nvidia-vaapi-driver opened renderD128 first, so the Intel GPU's VA encoder is
  // registered under its render node name.
  Fixture f{.gpus = {nvidia(0, "NVIDIA GeForce RTX 4090", true, 128), intel(129)},
            .registry = {"varenderD129h264enc", "x264enc"}};
  Ranking r = f.rank(Codec::H264);
  EXPECT_EQ(names(r), (Names{"varenderD129h264enc", "x264enc"}));
  EXPECT_EQ(r.candidates[0].gpu, 1);
  EXPECT_EQ(r.candidates[0].entry->factory, "vah264enc");
}

TEST(Rank, GpuWithoutRenderNodeCannotUseVa) {
  GpuInfo headless = intel(128);
  headless.render_minor = -1;
  headless.render_node.clear();
  Fixture f{.gpus = {headless}, .registry = kFull122};
  Ranking r = f.rank(Codec::H264);
  EXPECT_EQ(names(r), (Names{"x264enc", "openh264enc"}));
  EXPECT_NE(reason(r, "vah264enc").find("has no DRM render node"), std::string::npos);
}

TEST(Rank, Policies) {
  Fixture ada{.gpus = {nvidia(0, "NVIDIA GeForce RTX 4090")}, .registry = kFull122};
  Ranking sw = ada.rank(Codec::H264, {1, 22}, HardwarePolicy::SoftwareOnly);
  EXPECT_EQ(names(sw), (Names{"x264enc", "openh264enc"}));
  EXPECT_EQ(reason(sw, "nvcudah264enc"), "hardware=software-only");
  EXPECT_EQ(reason(sw, "nvh264enc"), "hardware=software-only");
  EXPECT_EQ(reason(sw, "vah264enc"), "hardware=software-only");

  Ranking hw = ada.rank(Codec::H264, {1, 22}, HardwarePolicy::HardwareOnly);
  EXPECT_EQ(names(hw), (Names{"nvcudah264enc", "nvh264enc", "nvautogpuh264enc"}));
  for (const auto& c : hw.candidates) EXPECT_TRUE(c.hardware);

  Fixture none{.gpus = {}, .registry = kThisMachine};
  Ranking nothing = none.rank(Codec::H264, {1, 22}, HardwarePolicy::HardwareOnly);
  EXPECT_TRUE(nothing.candidates.empty());
  EXPECT_EQ(reason(nothing, "x264enc"), "hardware=hardware-only");
  EXPECT_EQ(reason(nothing, "nvh264enc"), "no NVIDIA GPU detected");
  // Nothing kept: every entry of the codec is accounted for.
  EXPECT_EQ(passed(nothing).size(), 8u);
}

TEST(Rank, CandidatesOverrideTheOrder) {
  Fixture f{.gpus = {nvidia(0, "NVIDIA GeForce RTX 4090"), nvidia(1, "NVIDIA GeForce RTX 4080")},
            .registry = kFull122,
            .candidates = {"vp9enc", "x265enc", "fakeenc", "mycustomh265enc", "nvh265device1enc", "x265enc"}};
  f.registry.insert("mycustomh265enc");
  Ranking r = f.rank(Codec::H265);
  EXPECT_EQ(names(r), (Names{"x265enc", "mycustomh265enc", "nvh265device1enc"}));
  EXPECT_EQ(reason(r, "vp9enc"), "encodes vp9, not h265");
  EXPECT_EQ(reason(r, "fakeenc"), "no such element in the registry");
  // Unknown elements are kept, as software, without an entry.
  EXPECT_EQ(r.candidates[1].entry, nullptr);
  EXPECT_FALSE(r.candidates[1].hardware);
  EXPECT_EQ(r.candidates[1].gpu, -1);
  // Per-device names resolve to their entry and GPU.
  ASSERT_NE(r.candidates[2].entry, nullptr);
  EXPECT_EQ(r.candidates[2].entry->factory, "nvh265enc");
  EXPECT_TRUE(r.candidates[2].hardware);
  EXPECT_EQ(r.candidates[2].gpu, 1);
  // Nothing from the catalogue order is added behind the user's list.
  EXPECT_EQ(reason(r, "nvcudah265enc"), "");

  Ranking sw = f.rank(Codec::H265, {1, 22}, HardwarePolicy::SoftwareOnly);
  EXPECT_EQ(names(sw), (Names{"x265enc", "mycustomh265enc"}));
  EXPECT_EQ(reason(sw, "nvh265device1enc"), "hardware=software-only");

  Ranking hw = f.rank(Codec::H265, {1, 22}, HardwarePolicy::HardwareOnly);
  EXPECT_EQ(names(hw), (Names{"mycustomh265enc", "nvh265device1enc"}));  // unknown: kept
  EXPECT_EQ(reason(hw, "x265enc"), "hardware=hardware-only");
}

TEST(Rank, NoRegistryCallbackMeansNothingIsThere) {
  RankRequest req;
  req.codec = Codec::VP9;
  Ranking r = rank(req);
  EXPECT_TRUE(r.candidates.empty());
  EXPECT_EQ(reason(r, "vp9enc"), "element not in the registry (install gstreamer1.0-plugins-good)");
}
