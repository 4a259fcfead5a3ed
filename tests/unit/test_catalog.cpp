// The catalogue as data: coverage, consistency, and the name helpers.
#include "catalog/catalog.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

using namespace ccm::catalog;

namespace {

std::vector<std::string> property_list(std::string_view list) {
  std::vector<std::string> out;
  for_each_property(list, [&](std::string_view p) { out.emplace_back(p); });
  return out;
}

bool is_h26x(Codec c) { return c == Codec::H264 || c == Codec::H265; }

}  // namespace

TEST(Catalog, EveryCodecHasSoftwareAndTheTableIsGroupedHardwareFirst) {
  for (Codec c : kAllCodecs) {
    int software = 0;
    bool seen_software = false;
    for (const auto& e : entries()) {
      if (e.codec != c) continue;
      if (!e.hardware()) {
        ++software;
        seen_software = true;
      } else {
        EXPECT_FALSE(seen_software) << e.factory << ": hardware entries must precede software ones";
      }
    }
    EXPECT_GE(software, 1) << to_string(c);
  }
}

TEST(Catalog, CoversTheElementsOfEveryGStreamerVersion) {
  const std::map<Codec, std::vector<std::string_view>> expected = {
      {Codec::AV1, {"nvav1enc", "vaav1enc", "qsvav1enc", "ccmsvtav1enc", "svtav1enc", "av1enc"}},
      {Codec::H265, {"nvh265enc", "nvcudah265enc", "nvautogpuh265enc", "vah265enc", "vah265lpenc",
                     "qsvh265enc", "ccmx265enc", "x265enc"}},
      {Codec::VP9, {"vavp9enc", "qsvvp9enc", "vp9enc"}},
      {Codec::H264, {"nvh264enc", "nvcudah264enc", "nvautogpuh264enc", "vah264enc", "vah264lpenc",
                     "qsvh264enc", "x264enc", "openh264enc"}},
  };
  for (const auto& [codec, names] : expected)
    for (auto name : names) {
      const EncoderEntry* e = find(name);
      ASSERT_NE(e, nullptr) << name;
      EXPECT_EQ(e->codec, codec) << name;
    }
}

TEST(Catalog, SoftwarePreferenceOrder) {
  auto software_order = [](Codec c) {
    std::vector<std::string_view> out;
    for (const auto& e : entries())
      if (e.codec == c && !e.hardware() && (out.empty() || out.back() != e.factory))  // one per name
        out.push_back(e.factory);
    return out;
  };
  EXPECT_EQ(software_order(Codec::AV1), (std::vector<std::string_view>{"ccmsvtav1enc", "svtav1enc", "av1enc"}));
  EXPECT_EQ(software_order(Codec::H265), (std::vector<std::string_view>{"ccmx265enc", "x265enc"}));
  EXPECT_EQ(software_order(Codec::VP9), (std::vector<std::string_view>{"vp9enc"}));
  EXPECT_EQ(software_order(Codec::H264), (std::vector<std::string_view>{"x264enc", "openh264enc"}));
}

TEST(Catalog, BitrateUnitsAreKbitOrBit) {
  for (const auto& e : entries()) {
    EXPECT_TRUE(e.bitrate_units_per_kbps == 1 || e.bitrate_units_per_kbps == 1000) << e.factory;
  }
  // The ones that take bit/s.
  EXPECT_EQ(find("vp9enc")->bitrate_units_per_kbps, 1000u);
  EXPECT_EQ(find("openh264enc")->bitrate_units_per_kbps, 1000u);
  for (auto kbit : {"x264enc", "x265enc", "av1enc", "nvh265enc", "nvcudah264enc", "vah265enc",
                    "qsvh264enc", "nvav1enc", "svtav1enc", "ccmx265enc", "ccmsvtav1enc"})
    EXPECT_EQ(find(kbit)->bitrate_units_per_kbps, 1u) << kbit;
}

TEST(Catalog, EveryEntryNamesBitrateAndKeyframeProperties) {
  for (const auto& e : entries()) {
    EXPECT_FALSE(e.bitrate_property.empty()) << e.factory;
    EXPECT_FALSE(e.keyframe_interval_property.empty()) << e.factory;
    EXPECT_FALSE(e.traps.empty()) << e.factory;
    EXPECT_FALSE(e.low_latency.empty()) << e.factory;
  }
}

TEST(Catalog, RateControlValuesAndQuantizerRanges) {
  for (const auto& e : entries()) {
    if (e.rc_property.empty()) {
      EXPECT_TRUE(e.rc_cbr.empty() && e.rc_vbr.empty() && e.rc_cqp.empty()) << e.factory;
    } else {
      EXPECT_FALSE(e.rc_cbr.empty() && e.rc_vbr.empty() && e.rc_cqp.empty()) << e.factory;
    }
    // Every element can do CQP one way or another, and live streaming needs a bitrate mode.
    EXPECT_TRUE(supports(e, RateControl::Cqp)) << e.factory;
    EXPECT_TRUE(supports(e, RateControl::Cbr) || supports(e, RateControl::Vbr)) << e.factory;
    if (is_h26x(e.codec)) {
      EXPECT_TRUE(e.qp_max == 51 || e.qp_max == 50) << e.factory;
    } else {
      EXPECT_TRUE(e.qp_max == 63 || e.qp_max == 255) << e.factory;
      if (e.qp_max == 255) { EXPECT_TRUE(e.hardware()) << e.factory << ": only hardware takes q-index"; }
    }
  }
  EXPECT_EQ(find("av1enc")->qp_max, 63);
  EXPECT_EQ(find("vp9enc")->qp_max, 63);
  EXPECT_EQ(find("x264enc")->qp_max, 50);  // x264enc's quantizer property stops at 50
  EXPECT_EQ(find("x265enc")->qp_max, 51);
  // libvpx / libaom / openh264: CQP is a one-value min/max range.
  for (auto name : {"vp9enc", "av1enc", "openh264enc"}) {
    const EncoderEntry* e = find(name);
    EXPECT_TRUE(e->qp_property.empty()) << name;
    EXPECT_FALSE(e->min_qp_property.empty()) << name;
    EXPECT_FALSE(e->max_qp_property.empty()) << name;
  }
  // x265enc has one bitrate mode (no CBR/VBR switch) and CQP through qp.
  const EncoderEntry* x265 = find("x265enc");
  EXPECT_TRUE(x265->rc_property.empty());
  EXPECT_EQ(x265->qp_property, "qp");
  EXPECT_TRUE(supports(*x265, RateControl::Cbr));
  EXPECT_EQ(rc_value(*find("x264enc"), RateControl::Cqp), "quant");
  EXPECT_EQ(rc_value(*find("av1enc"), RateControl::Cbr), "cbr");
}

// How ccmratecontrol steers each encoder, and what it turns when frames are late,
// is catalogue data (ratecontrol/encoder_adapters reads it).
TEST(Catalog, SteeringAndSpeedKnobs) {
  struct Want {
    const char* factory;
    Steering steering;
    const char* speed;
    int direction, fastest;
    bool encoder_rate_first;  // measured: its own CBR, steered, beats our per-frame QP
  };
  for (const Want& w : {Want{"ccmx265enc", Steering::QpMeta, "speed-preset", -1, 0, true},
                        Want{"ccmsvtav1enc", Steering::QpMeta, "speed-preset", +1, 13, true},
                        Want{"vp9enc", Steering::Quantizer, "cpu-used", +1, 9, true},
                        Want{"av1enc", Steering::BitrateOnChange, "cpu-used", +1, 10, false},
                        Want{"x264enc", Steering::Bitrate, "", 0, 0, false}}) {
    const EncoderEntry* e = find(w.factory);
    ASSERT_NE(e, nullptr) << w.factory;
    EXPECT_EQ(e->steering, w.steering) << w.factory << ": " << to_string(e->steering);
    EXPECT_EQ(e->encoder_rate_first, w.encoder_rate_first) << w.factory;
    // Only ccmsvtav1enc's own controller wants the target alone (no gain, no key frames of ours).
    EXPECT_EQ(e->encoder_rate_hands_off, std::string_view(w.factory) == "ccmsvtav1enc") << w.factory;
    EXPECT_EQ(e->speed.property, w.speed) << w.factory;
    EXPECT_EQ(e->speed.direction, w.direction) << w.factory;
    EXPECT_EQ(e->speed.fastest, w.fastest) << w.factory;
  }
  // The SVT-AV1 elements take even sizes only (ccmencbin passes them over for odd
  // ones before building them); nothing else is marked so.
  for (const EncoderEntry& e : entries())
    EXPECT_EQ(e.even_sizes_only, e.factory == "ccmsvtav1enc" || e.factory == "svtav1enc") << e.factory;
  // Hardware encoders: their bitrate when the target changes, no speed knob.
  for (const EncoderEntry& e : entries())
    if (e.hardware()) {
      EXPECT_EQ(e.steering, Steering::BitrateOnChange) << e.factory;
      EXPECT_TRUE(e.speed.property.empty()) << e.factory;
    }
}

TEST(Catalog, NoDuplicateFactoryInAnyVersion) {
  for (GstVersion v : {GstVersion{1, 22}, GstVersion{1, 24}, GstVersion{1, 26}}) {
    std::set<std::string_view> seen;
    for (const auto& e : entries()) {
      if (!e.available_in(v)) continue;
      EXPECT_TRUE(seen.insert(e.factory).second) << e.factory << " twice in " << to_string(v);
      // Per-device patterns must not collide with another element's name either.
      if (!e.device_pattern.empty()) { EXPECT_TRUE(seen.insert(e.device_pattern).second) << e.device_pattern; }
    }
  }
}

TEST(Catalog, VersionRanges) {
  for (const auto& e : entries()) {
    EXPECT_GE(e.since, (GstVersion{1, 22})) << e.factory;
    if (e.until) { EXPECT_LE(e.since, *e.until) << e.factory; }
  }
  const EncoderEntry* nvav1 = find("nvav1enc");
  EXPECT_FALSE(nvav1->available_in({1, 22}));
  EXPECT_TRUE(nvav1->available_in({1, 24}));
  EXPECT_TRUE(nvav1->available_in({1, 26}));
  EXPECT_FALSE(find("svtav1enc")->available_in({1, 22}));
  EXPECT_FALSE(find("vaav1enc")->available_in({1, 22}));
  // nvh265enc changed meaning: old API up to 1.24, new API under the same name in 1.26.
  EXPECT_EQ(find("nvh265enc", {1, 22})->api, Api::NvencLegacy);
  EXPECT_EQ(find("nvh265enc", {1, 22})->bitrate_change, BitrateChange::LiveWithIdr);
  EXPECT_EQ(find("nvh265enc", {1, 26})->api, Api::NvencCuda);
  EXPECT_EQ(find("nvh265enc", {1, 26})->bitrate_change, BitrateChange::Live);
  EXPECT_EQ(find("nvh265enc")->api, Api::NvencLegacy);  // unversioned: what Debian 12 has
  EXPECT_EQ(find("nvcudah265enc", {1, 26}), nullptr);
  EXPECT_EQ(find("nvav1enc", {1, 22}), nullptr);
}

TEST(Catalog, FindMapsPerDeviceNamesToTheBaseEntry) {
  EXPECT_EQ(find("nvh265device1enc")->factory, "nvh265enc");
  EXPECT_EQ(find("nvh264device2enc")->factory, "nvh264enc");
  EXPECT_EQ(find("nvcudah265device1enc")->factory, "nvcudah265enc");
  EXPECT_EQ(find("nvav1device3enc")->factory, "nvav1enc");
  EXPECT_EQ(find("varenderD129h265enc")->factory, "vah265enc");
  EXPECT_EQ(find("varenderD129h265lpenc")->factory, "vah265lpenc");
  EXPECT_EQ(find("varenderD130av1enc")->factory, "vaav1enc");
  EXPECT_EQ(find("qsvh264device1enc")->factory, "qsvh264enc");
  EXPECT_EQ(find("nvh265device1enc", {1, 26})->api, Api::NvencCuda);
  // Not per-device names.
  EXPECT_EQ(find("nvh265deviceXenc"), nullptr);
  EXPECT_EQ(find("nvh265deviceenc"), nullptr);
  EXPECT_EQ(find("varenderDh265enc"), nullptr);
  EXPECT_EQ(find("nvautogpuh265device1enc"), nullptr);
  EXPECT_EQ(find("fakeenc"), nullptr);
  EXPECT_EQ(find(""), nullptr);
}

TEST(Catalog, DeviceFactoryName) {
  EXPECT_EQ(device_factory_name(*find("nvh265enc"), 1), "nvh265device1enc");
  EXPECT_EQ(device_factory_name(*find("vah265enc"), 129), "varenderD129h265enc");
  EXPECT_EQ(device_factory_name(*find("nvautogpuh265enc"), 1), "nvautogpuh265enc");
  EXPECT_EQ(device_factory_name(*find("x264enc"), 3), "x264enc");
  // Round trip through find() for every entry with copies.
  for (const auto& e : entries()) {
    if (e.device_pattern.empty()) continue;
    const EncoderEntry* back = find(device_factory_name(e, 7), e.since);
    ASSERT_NE(back, nullptr) << e.factory;
    EXPECT_EQ(back, &e) << e.factory;
  }
}

TEST(Catalog, HardwareEntriesDescribeTheirDevices) {
  for (const auto& e : entries()) {
    if (!e.hardware()) {
      EXPECT_EQ(e.api, Api::Software) << e.factory;
      EXPECT_TRUE(e.device_pattern.empty()) << e.factory;
      continue;
    }
    EXPECT_NE(e.api, Api::Software) << e.factory;
    if (e.api == Api::NvencAutoGpu) {
      EXPECT_TRUE(e.device_pattern.empty()) << e.factory;
    } else {
      EXPECT_FALSE(e.device_pattern.empty()) << e.factory;
    }
    const bool nvidia = e.api == Api::NvencLegacy || e.api == Api::NvencCuda || e.api == Api::NvencAutoGpu;
    if (nvidia) { EXPECT_EQ(e.vendors, unsigned{kVendorNvidia}) << e.factory; }
    if (e.api == Api::Qsv) { EXPECT_EQ(e.vendors, unsigned{kVendorIntel}) << e.factory; }
    if (e.api == Api::Va || e.api == Api::VaLowPower) {
      EXPECT_EQ(e.vendors, unsigned{kVendorIntel | kVendorAmd}) << e.factory;
    }
  }
}

TEST(Catalog, BehaviourFacts) {
  EXPECT_EQ(find("av1enc")->key_unit, KeyUnit::Unsupported);
  EXPECT_EQ(find("av1enc", {1, 22})->key_unit, KeyUnit::Unsupported);
  EXPECT_EQ(find("av1enc", {1, 26})->key_unit, KeyUnit::Event);  // seen on Debian 13's 1.26.2
  EXPECT_EQ(find("x264enc")->key_unit, KeyUnit::Event);
  EXPECT_EQ(find("x265enc")->bitrate_change, BitrateChange::Reopen);
  EXPECT_EQ(find("x264enc")->bitrate_change, BitrateChange::Live);
  EXPECT_EQ(find("vah264enc")->bitrate_change, BitrateChange::Drain);
  EXPECT_EQ(find("nvcudah264enc")->bitrate_change, BitrateChange::Live);
  EXPECT_EQ(find("ccmx265enc")->bitrate_change, BitrateChange::Live);
  // av1enc's trap fix: a real quantizer range instead of Debian's 0..0.
  bool min_set = false, max_set = false;
  for (const Setting& s : find("av1enc")->always) {
    if (s.property == "min-quantizer") min_set = std::stoi(std::string(s.value)) > 0;
    if (s.property == "max-quantizer") max_set = std::stoi(std::string(s.value)) >= 32;
  }
  EXPECT_TRUE(min_set && max_set);
  auto has_setting = [](std::string_view factory, std::string_view prop, std::string_view value) {
    for (const Setting& s : find(factory)->low_latency)
      if (s.property == prop && s.value == value) return true;
    return false;
  };
  EXPECT_TRUE(has_setting("x264enc", "tune", "zerolatency"));
  EXPECT_TRUE(has_setting("x265enc", "tune", "zerolatency"));
  EXPECT_TRUE(has_setting("vp9enc", "deadline", "1"));
  EXPECT_TRUE(has_setting("vp9enc", "lag-in-frames", "0"));
  EXPECT_TRUE(has_setting("av1enc", "usage-profile", "realtime"));
  EXPECT_TRUE(has_setting("nvh264enc", "zerolatency", "true"));
  EXPECT_TRUE(has_setting("vah265enc", "b-frames", "0"));
  EXPECT_TRUE(has_setting("ccmsvtav1enc", "low-latency", "true"));
}

TEST(Catalog, DebianPackages) {
  EXPECT_EQ(debian_package_for(Codec::AV1), "gstreamer1.0-plugins-bad");
  EXPECT_EQ(debian_package_for(Codec::H265), "gstreamer1.0-plugins-bad");
  EXPECT_EQ(debian_package_for(Codec::VP9), "gstreamer1.0-plugins-good");
  EXPECT_EQ(debian_package_for(Codec::H264), "gstreamer1.0-plugins-ugly");
  EXPECT_EQ(find("x264enc")->debian_package, "gstreamer1.0-plugins-ugly");
  EXPECT_EQ(find("vp9enc")->debian_package, "gstreamer1.0-plugins-good");
  EXPECT_TRUE(find("svtav1enc")->debian_package.empty());
  EXPECT_TRUE(find("ccmx265enc")->debian_package.empty());
  // The package named for a codec really ships a software encoder of it.
  for (Codec c : kAllCodecs) {
    bool found = false;
    for (const auto& e : entries())
      if (e.codec == c && !e.hardware() && e.debian_package == debian_package_for(c)) found = true;
    EXPECT_TRUE(found) << to_string(c);
  }
}

TEST(Catalog, CodecStrings) {
  for (Codec c : kAllCodecs) {
    auto back = codec_from_string(to_string(c));
    ASSERT_TRUE(back.has_value()) << to_string(c);
    EXPECT_EQ(*back, c);
    EXPECT_EQ(std::string(caps_name(c)).rfind("video/x-", 0), 0u);
    EXPECT_EQ(std::string(parser_factory(c)), std::string(to_string(c)) + "parse");
  }
  EXPECT_EQ(codec_from_string("hevc"), Codec::H265);
  EXPECT_EQ(codec_from_string("HEVC"), Codec::H265);
  EXPECT_EQ(codec_from_string("avc"), Codec::H264);
  EXPECT_EQ(codec_from_string("H264"), Codec::H264);
  EXPECT_FALSE(codec_from_string("vp8").has_value());
  EXPECT_FALSE(codec_from_string("").has_value());
  EXPECT_STREQ(caps_name(Codec::H265), "video/x-h265");
  EXPECT_STREQ(caps_name(Codec::AV1), "video/x-av1");
  EXPECT_STREQ(to_string(RateControl::Cqp), "cqp");
  EXPECT_STREQ(to_string(Api::VaLowPower), "va-lowpower");
  EXPECT_STREQ(to_string(BitrateChange::LiveWithIdr), "live-with-idr");
  EXPECT_EQ(to_string(GstVersion{1, 24}), "1.24");
}

TEST(Catalog, PropertyLists) {
  EXPECT_EQ(property_list("qp-i,qp-p,qp-b"), (std::vector<std::string>{"qp-i", "qp-p", "qp-b"}));
  EXPECT_EQ(property_list("quantizer"), (std::vector<std::string>{"quantizer"}));
  EXPECT_TRUE(property_list("").empty());
  EXPECT_EQ(property_list("a,,b,"), (std::vector<std::string>{"a", "b"}));
  // Every named property is a plain GObject property name.
  for (const auto& e : entries())
    for (std::string_view list : {e.bitrate_property, e.rc_property, e.qp_property, e.min_qp_property,
                                  e.max_qp_property, e.keyframe_interval_property, e.bframes_property,
                                  e.threads_property})
      for (const auto& p : property_list(list))
        for (char ch : p)
          EXPECT_TRUE((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')
              << e.factory << ": '" << p << "'";
}
