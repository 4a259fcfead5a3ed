// ccmencbin on real encoders: selection, property mapping, the inputs stock
// elements trip on, error paths, presets. Bitstreams are checked by ffmpeg.
#include "pipeline_util.h"

#include "catalog/catalog.h"
#include "encbin/encoder_setup.h"

#include <gst/app/app.h>
#include <gst/gst.h>
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <vector>

using ccm::test::media;
using ccm::test::probe_file;
using ccm::test::run_pipeline;
using ccm::test::temp_path;

namespace {

using ccm::test::str_field;
using ccm::test::u64_field;

struct CodecCase {
  const char* codec;
  const char* muxer;       // container the file goes into
  const char* extension;
  const char* ffprobe_name;
};

const CodecCase kCodecs[] = {
    {"h265", "matroskamux", "mkv", "hevc"},
    {"vp9", "webmmux", "webm", "vp9"},
    {"av1", "matroskamux", "mkv", "av1"},
    {"h264", "matroskamux", "mkv", "h264"},
};

class RealContent : public ::testing::TestWithParam<CodecCase> {};

// Camera content (Foreman, 300 frames at 25 fps) at 800 kbit/s: decodes cleanly,
// every frame in comes out, and the file's bitrate is near the target.
TEST_P(RealContent, EveryFrameOutAndNearTargetBitrate) {
  const CodecCase& c = GetParam();
  const std::string clip = media("foreman_352x288_300f.h264");
  if (clip.empty()) return;  // media() has failed the test, naming the clip
  const std::string out = temp_path(std::string("foreman-") + c.codec + "." + c.extension);
  const std::string desc = "filesrc location=" + clip +
                           " ! h264parse ! avdec_h264 ! ccmencbin name=enc codec=" + c.codec +
                           " bitrate=800 ! " + c.muxer + " ! filesink location=" + out;
  auto r = run_pipeline(desc, 300);
  ASSERT_TRUE(r.eos) << r.error;

  const GstStructure* selected = r.message("ccm-encoder-selected");
  ASSERT_NE(selected, nullptr);
  EXPECT_EQ(str_field(selected, "codec"), c.codec);
  EXPECT_FALSE(str_field(selected, "factory").empty());
  EXPECT_FALSE(str_field(selected, "reason").empty());

  EXPECT_EQ(u64_field(r.stats, "frames-in"), 300u);
  EXPECT_EQ(u64_field(r.stats, "frames-out"), 300u);

  auto p = probe_file(out);
  EXPECT_TRUE(p.ok) << p.decoder_errors;
  EXPECT_EQ(p.codec, c.ffprobe_name);
  EXPECT_EQ(p.frames, 300);
  EXPECT_EQ(p.width, 352);
  EXPECT_EQ(p.height, 288);
  // The raw .h264 has no timing: ccmencbin gives it 30 fps, so does the file.
  const double kbps = p.kbps();
  RecordProperty("kbps", std::to_string(kbps));
  std::printf("[ %s ] %s: %.0f kbit/s for a target of 800\n", c.codec, str_field(selected, "factory").c_str(), kbps);
  EXPECT_GT(kbps, 800 * 0.75);
  EXPECT_LT(kbps, 800 * 1.25);
}

INSTANTIATE_TEST_SUITE_P(Codecs, RealContent, ::testing::ValuesIn(kCodecs),
                         [](const auto& info) { return std::string(info.param.codec); });

// A raw .h264 decoded by GStreamer arrives with framerate=0/1; stock x265enc
// refuses to start on it.
TEST(EncBin, VariableFramerateInput) {
  const std::string clip = media("foreman_352x288_300f.h264");
  if (clip.empty()) return;  // media() has failed the test, naming the clip
  const std::string out = temp_path("vfr.mkv");
  auto r = run_pipeline("filesrc location=" + clip +
                        " ! h264parse ! avdec_h264 ! video/x-raw,framerate=0/1 ! identity eos-after=20 ! "
                        "ccmencbin name=enc codec=h265 candidates=x265enc ! matroskamux ! filesink location=" + out);
  ASSERT_TRUE(r.eos) << r.error;
  const guint64 frames = u64_field(r.stats, "frames-in");
  EXPECT_GE(frames, 20u);
  EXPECT_EQ(u64_field(r.stats, "frames-out"), frames);
  auto p = probe_file(out);
  EXPECT_TRUE(p.ok) << p.decoder_errors;
  EXPECT_EQ(p.frames, (int)frames);
  EXPECT_NEAR(p.duration_s, frames / 30.0, 0.05);  // the nominal 30 fps
}

class OddSize : public ::testing::TestWithParam<CodecCase> {};

TEST_P(OddSize, KeepsTheExactSize) {
  const CodecCase& c = GetParam();
  const std::string out = temp_path(std::string("odd-") + c.codec + "." + c.extension);
  auto r = run_pipeline("videotestsrc num-buffers=3 ! video/x-raw,width=1921,height=1081 ! ccmencbin name=enc codec=" +
                        std::string(c.codec) + " ! " + c.muxer + " ! filesink location=" + out);
  ASSERT_TRUE(r.eos) << r.error;
  auto p = probe_file(out);
  EXPECT_TRUE(p.ok) << p.decoder_errors;
  EXPECT_EQ(p.frames, 3);
  EXPECT_EQ(p.width, 1921);
  EXPECT_EQ(p.height, 1081);
}

INSTANTIATE_TEST_SUITE_P(Codecs, OddSize, ::testing::ValuesIn(kCodecs),
                         [](const auto& info) { return std::string(info.param.codec); });

// Any raw format videoconvert handles goes in.
TEST(EncBin, AnyRawFormat) {
  for (const char* fmt : {"RGB", "BGRx", "YUY2", "GRAY8", "NV12", "I420_10LE", "AYUV64"}) {
    const std::string out = temp_path(std::string("fmt-") + fmt + ".mkv");
    auto r = run_pipeline(std::string("videotestsrc num-buffers=4 ! video/x-raw,format=") + fmt +
                          ",width=96,height=64 ! ccmencbin name=enc codec=h264 ! matroskamux ! filesink location=" + out);
    ASSERT_TRUE(r.eos) << fmt << ": " << r.error;
    auto p = probe_file(out);
    EXPECT_TRUE(p.ok) << fmt << ": " << p.decoder_errors;
    EXPECT_EQ(p.frames, 4) << fmt;
  }
}

// hdr=true: 10-bit 4:2:0 into encoders that take it; 8-bit 4:2:0 otherwise.
TEST(EncBin, HdrGivesTenBitWhereTheEncoderCan) {
  for (const CodecCase& c : kCodecs) {
    const std::string out = temp_path(std::string("hdr-") + c.codec + "." + c.extension);
    auto r = run_pipeline("videotestsrc num-buffers=3 ! video/x-raw,width=128,height=96 ! ccmencbin name=enc hdr=true codec=" +
                          std::string(c.codec) + " ! " + c.muxer + " ! filesink location=" + out);
    ASSERT_TRUE(r.eos) << c.codec << ": " << r.error;
    auto p = probe_file(out);
    EXPECT_TRUE(p.ok) << p.decoder_errors;
    EXPECT_EQ(p.frames, 3);
    const std::string factory = str_field(r.message("ccm-encoder-selected"), "factory");
    if (factory == "openh264enc" || factory == "av1enc")  // 8-bit only in Debian 12: a warning, 8-bit out
      EXPECT_EQ(p.pix_fmt, "yuv420p");
    else
      EXPECT_EQ(p.pix_fmt, "yuv420p10le") << c.codec << " with " << factory;
  }
  // Without hdr, 8-bit 4:2:0 whatever the input.
  const std::string out = temp_path("sdr.mkv");
  auto r = run_pipeline("videotestsrc num-buffers=2 ! video/x-raw,format=I420_10LE,width=64,height=64 ! "
                        "ccmencbin name=enc codec=h265 ! matroskamux ! filesink location=" + out);
  ASSERT_TRUE(r.eos) << r.error;
  EXPECT_EQ(probe_file(out).pix_fmt, "yuv420p");
}

// codec=auto follows what downstream accepts.
TEST(EncBin, AutoCodecFollowsDownstream) {
  for (const CodecCase& c : kCodecs) {
    auto r = run_pipeline(std::string("videotestsrc num-buffers=2 ! video/x-raw,width=64,height=64 ! "
                                      "ccmencbin name=enc ! video/x-") + c.codec + " ! fakesink");
    ASSERT_TRUE(r.eos) << c.codec << ": " << r.error;
    EXPECT_EQ(str_field(r.message("ccm-encoder-selected"), "codec"), c.codec);
  }
}

// GStreamer 1.24+ (Debian 13's 1.26) has upstream's svtav1enc beside ours: the
// selection says, from the catalogue, why ccmsvtav1enc ranks above it; where
// svtav1enc is missing (Debian 12's 1.22) nothing is said about it.
TEST(EncBin, SelectedMessageSaysWhyAbovePeer) {
  auto r = run_pipeline("videotestsrc num-buffers=2 ! video/x-raw,width=64,height=64 ! ccmencbin name=enc codec=av1 ! fakesink");
  ASSERT_TRUE(r.eos) << r.error;
  const GstStructure* s = r.message("ccm-encoder-selected");
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(str_field(s, "factory"), "ccmsvtav1enc");
  const std::string reason = str_field(s, "reason");
  GstElementFactory* peer = gst_element_factory_find("svtav1enc");
  if (peer) {
    EXPECT_NE(reason.find("ranked above svtav1enc: measured on Debian 13"), std::string::npos) << reason;
    gst_object_unref(peer);
  } else {
    EXPECT_EQ(reason.find("svtav1enc"), std::string::npos) << reason;
  }
}

TEST(EncBin, SelectedMessageExplainsPassedOver) {
  auto r = run_pipeline("videotestsrc num-buffers=1 ! ccmencbin name=enc codec=h265 ! fakesink");
  ASSERT_TRUE(r.eos) << r.error;
  const GstStructure* s = r.message("ccm-encoder-selected");
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(gst_structure_get_value(s, "hardware") == nullptr);
  EXPECT_FALSE(str_field(s, "device").empty());
  const GValue* passed = gst_structure_get_value(s, "passed-over");
  ASSERT_NE(passed, nullptr);
  ASSERT_TRUE(GST_VALUE_HOLDS_ARRAY(passed));
  // No GPU here: the hardware H.265 encoders were passed over, each with a reason.
  bool saw_nvenc = false;
  for (guint i = 0; i < gst_value_array_get_size(passed); i++) {
    std::string line = g_value_get_string(gst_value_array_get_value(passed, i));
    EXPECT_NE(line.find(": "), std::string::npos) << line;
    if (line.rfind("nvh265enc", 0) == 0) saw_nvenc = true;
  }
  EXPECT_TRUE(saw_nvenc);
  // The same for programs: a structure per candidate, and not-set as a list.
  const GValue* details = gst_structure_get_value(s, "passed-over-details");
  ASSERT_NE(details, nullptr);
  ASSERT_TRUE(GST_VALUE_HOLDS_ARRAY(details));
  ASSERT_EQ(gst_value_array_get_size(details), gst_value_array_get_size(passed));
  bool saw_nvenc_detail = false;
  for (guint i = 0; i < gst_value_array_get_size(details); i++) {
    const GstStructure* d = gst_value_get_structure(gst_value_array_get_value(details, i));
    EXPECT_FALSE(str_field(d, "reason").empty());
    if (str_field(d, "factory") == "nvh265enc") saw_nvenc_detail = true;
  }
  EXPECT_TRUE(saw_nvenc_detail);
  const GValue* not_set = gst_structure_get_value(s, "not-set");
  ASSERT_NE(not_set, nullptr);
  EXPECT_TRUE(GST_VALUE_HOLDS_ARRAY(not_set));
}

// ccm-stats comes as a message every stats-interval whatever keeps the rate,
// with the same fields and types as the stats property.
TEST(EncBin, StatsMessageEverySecondWhateverTheRateController) {
  for (const char* rc : {"ccm", "encoder"}) {
    auto r = run_pipeline(std::string("videotestsrc is-live=true num-buffers=24 ! video/x-raw,width=160,height=120,"
                                      "framerate=30/1 ! ccmencbin name=enc codec=h264 stats-interval=200 "
                                      "rate-controller=") + rc + " ! fakesink");
    ASSERT_TRUE(r.eos) << rc << ": " << r.error;
    // 0.8 s of live frames, one message every 0.2 s after the first output.
    EXPECT_GE(r.count("ccm-stats"), 2) << rc;
    const GstStructure* m = r.message("ccm-stats");
    ASSERT_NE(m, nullptr) << rc;
    for (const GstStructure* st : {m, (const GstStructure*)r.stats}) {
      ASSERT_NE(st, nullptr);
      EXPECT_EQ(gst_structure_get_field_type(st, "frames-out"), G_TYPE_UINT64);
      EXPECT_EQ(gst_structure_get_field_type(st, "frames-reencoded"), G_TYPE_UINT64);
      EXPECT_EQ(gst_structure_get_field_type(st, "bitrate-kbps"), G_TYPE_DOUBLE);
      EXPECT_EQ(gst_structure_get_field_type(st, "mean-bitrate-kbps"), G_TYPE_DOUBLE);
      EXPECT_EQ(gst_structure_get_field_type(st, "fps"), G_TYPE_DOUBLE);
    }
    double kbps = 0, fps = 0;
    gst_structure_get_double(m, "bitrate-kbps", &kbps);
    gst_structure_get_double(m, "fps", &fps);
    EXPECT_GT(kbps, 0) << rc;
    EXPECT_GT(fps, 5) << rc;
  }
}

// ---- property mapping: unified units into each encoder's own ------------------

struct Mapping {
  const char* candidates;
  const char* codec;
  const char* property;
  guint64 expected;  // for bitrate=800 kbit/s
};

class BitrateMapping : public ::testing::TestWithParam<Mapping> {};

// 8K AV1 comes out and decodes: GStreamer 1.22's av1parse rejects frames this
// large, so ccmencbin leaves it out there.
TEST(EncBinSizes, Av1At8kComesOut) {
  GstElementFactory* f = gst_element_factory_find("ccmsvtav1enc");
  if (!f) GTEST_SKIP() << "no ccmsvtav1enc";
  gst_object_unref(f);
  const std::string out = temp_path("av1-8k.mkv");
  auto r = run_pipeline("videotestsrc num-buffers=2 ! video/x-raw,width=7680,height=4320,framerate=30/1 ! "
                        "ccmencbin name=enc codec=av1 candidates=ccmsvtav1enc ! matroskamux ! filesink location=" + out,
                        300);
  ASSERT_TRUE(r.eos) << r.error;
  auto p = probe_file(out);
  EXPECT_TRUE(p.ok) << p.decoder_errors;
  EXPECT_EQ(p.frames, 2);
  EXPECT_EQ(p.width, 7680);
  EXPECT_EQ(p.height, 4320);
}

// Wider than 7680 (8192x16): 1.22's av1parse rejects libaom's frames there too
// ("No valid frames found"), so AV1 goes out unparsed, every frame.
TEST(EncBinSizes, Av1Wider8192ComesOut) {
  auto r = run_pipeline("videotestsrc num-buffers=3 ! video/x-raw,width=8192,height=16,framerate=30/1 ! "
                        "ccmencbin name=enc codec=av1 candidates=av1enc ! fakesink", 120);
  ASSERT_TRUE(r.eos) << r.error;
  EXPECT_EQ(r.count("ccm-encoder-switched"), 0);
  EXPECT_EQ(u64_field(r.stats, "frames-out"), 3u);
}

// low-latency=false reaches encoders whose own switch is on by default (ours).
TEST(EncBinSettings, LowLatencyOffReachesOurEncoders) {
  for (const char* factory : {"ccmx265enc", "ccmsvtav1enc"}) {
    GstElementFactory* f = gst_element_factory_find(factory);
    if (!f) continue;
    gst_object_unref(f);
    const std::string codec = std::string(factory) == "ccmx265enc" ? "h265" : "av1";
    for (bool low : {true, false}) {
      gboolean seen = !low;
      auto r = run_pipeline(std::string("videotestsrc num-buffers=5 ! video/x-raw,width=64,height=64,framerate=30/1 ! "
                                        "ccmencbin name=enc low-latency=") + (low ? "true" : "false") +
                                " codec=" + codec + " candidates=" + factory + " ! fakesink",
                            60, [&](GstElement* pipeline) {
                              if (GstElement* e = ccm::test::element_in_bin(pipeline, "enc", factory)) {
                                g_object_get(e, "low-latency", &seen, nullptr);
                                gst_object_unref(e);
                              }
                            });
      ASSERT_TRUE(r.eos) << r.error;
      EXPECT_EQ(bool(seen), low) << factory << " low-latency=" << low;
    }
  }
}

// The encoder's own rate control (rate-controller=encoder): with ccmratecontrol in
// front, x264enc's and vp9enc's rate properties follow each frame's budget instead.
TEST_P(BitrateMapping, InTheEncodersUnit) {
  const Mapping& m = GetParam();
  GstElementFactory* f = gst_element_factory_find(m.candidates);
  if (!f) GTEST_SKIP() << m.candidates << " not installed";
  gst_object_unref(f);
  guint64 seen = 0, live = 0;
  auto r = run_pipeline(std::string("videotestsrc num-buffers=30 is-live=true ! video/x-raw,width=64,height=64,framerate=30/1 ! "
                                    "ccmencbin name=enc bitrate=800 rate-controller=encoder codec=") +
                            m.codec + " candidates=" + m.candidates + " ! fakesink",
                        60, [&](GstElement* pipeline) {
                          GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
                          GstElement* inner = ccm::test::element_in_bin(pipeline, "enc", m.candidates);
                          if (inner) {
                            GValue pv = G_VALUE_INIT;
                            g_object_get_property(G_OBJECT(inner), m.property, &pv);
                            GValue as64 = G_VALUE_INIT;
                            g_value_init(&as64, G_TYPE_UINT64);
                            g_value_transform(&pv, &as64);
                            seen = g_value_get_uint64(&as64);
                            // A bitrate change while PLAYING reaches the encoder in its unit.
                            g_object_set(enc, "bitrate", 400u, nullptr);
                            g_value_unset(&pv);
                            g_object_get_property(G_OBJECT(inner), m.property, &pv);
                            g_value_transform(&pv, &as64);
                            live = g_value_get_uint64(&as64);
                            g_value_unset(&pv);
                            gst_object_unref(inner);
                          }
                          gst_object_unref(enc);
                        });
  ASSERT_TRUE(r.eos) << r.error;
  EXPECT_EQ(seen, m.expected);
  EXPECT_EQ(live, m.expected / 2);
}

const Mapping kMappings[] = {
    {"x264enc", "h264", "bitrate", 800},
    {"openh264enc", "h264", "bitrate", 800000},
    {"x265enc", "h265", "bitrate", 800},
    {"vp9enc", "vp9", "target-bitrate", 800000},
    {"av1enc", "av1", "target-bitrate", 800},
};

INSTANTIATE_TEST_SUITE_P(Catalogue, BitrateMapping, ::testing::ValuesIn(kMappings),
                         [](const auto& info) { return std::string(info.param.candidates); });

// rate-control=cqp puts the quantizer into every property the catalogue names
// for it (one value, or a min = max range), and the stream still decodes.
class CqpMapping : public ::testing::TestWithParam<Mapping> {};

TEST_P(CqpMapping, QuantizerReachesTheEncoder) {
  const Mapping& m = GetParam();
  const ccm::catalog::EncoderEntry* entry = ccm::catalog::find(m.candidates);
  ASSERT_NE(entry, nullptr);
  GstElementFactory* f = gst_element_factory_find(m.candidates);
  if (!f) GTEST_SKIP() << m.candidates << " not installed";
  gst_object_unref(f);
  std::vector<std::string> props;
  std::string_view list = !entry->qp_property.empty() ? entry->qp_property : entry->min_qp_property;
  ccm::catalog::for_each_property(list, [&](std::string_view p) { props.emplace_back(p); });
  if (entry->qp_property.empty())
    ccm::catalog::for_each_property(entry->max_qp_property, [&](std::string_view p) { props.emplace_back(p); });
  ASSERT_FALSE(props.empty());
  std::vector<gint64> seen;
  auto r = run_pipeline(std::string("videotestsrc num-buffers=10 ! video/x-raw,width=64,height=64 ! "
                                    "ccmencbin name=enc rate-control=cqp quantizer=30 codec=") + m.codec +
                            " candidates=" + m.candidates + " ! fakesink",
                        60, [&](GstElement* pipeline) {
                          GstElement* e = ccm::test::element_in_bin(pipeline, "enc", m.candidates);
                          if (!e) return;
                          for (const auto& p : props) {
                            GValue pv = G_VALUE_INIT, as64 = G_VALUE_INIT;
                            g_object_get_property(G_OBJECT(e), p.c_str(), &pv);
                            g_value_init(&as64, G_TYPE_INT64);
                            g_value_transform(&pv, &as64);
                            seen.push_back(g_value_get_int64(&as64));
                            g_value_unset(&pv);
                          }
                          gst_object_unref(e);
                        });
  ASSERT_TRUE(r.eos) << r.error;
  ASSERT_EQ(seen.size(), props.size());
  for (size_t i = 0; i < seen.size(); i++) EXPECT_EQ(seen[i], 30) << props[i];
  EXPECT_EQ(u64_field(r.stats, "frames-out"), 10u);
}

INSTANTIATE_TEST_SUITE_P(Catalogue, CqpMapping, ::testing::ValuesIn(kMappings),
                         [](const auto& info) { return std::string(info.param.candidates); });

// The unit of an unknown encoder's bitrate, read from its description: one
// rule for ccmencbin and ccmratecontrol (common/encoder_properties).
TEST(EncoderProperties, BitrateUnitFromTheDescription) {
  const std::pair<const char*, guint> cases[] = {
      {"Bitrate in kbit/sec", 1},           {"Bitrate (kbps)", 1},      {"Target bitrate in Kbps", 1},
      {"Target bitrate (in bits/sec)", 1000}, {"bitrate in bits", 1000}, {"Bitrate in bit/s", 1000},
      {"Bitrate in bps", 1000},             {"Target quality", 1}};
  for (const auto& [blurb, units] : cases) {
    GParamSpec* p = g_param_spec_uint("bitrate", "Bitrate", blurb, 0, G_MAXUINT, 0, G_PARAM_READWRITE);
    g_param_spec_ref_sink(p);
    EXPECT_EQ(ccm::gst::units_per_kbps_from_blurb(p), units) << blurb;
    g_param_spec_unref(p);
  }
}

// Elements the catalogue does not know are configured through what they have:
// avenc_mpeg4's bitrate blurb says bits/s. (Not libav's OpenMAX H.264 encoder, as before: FFmpeg 7
// in Debian 13 has no h264_omx, and the test would skip there.)
TEST(EncoderSetup, UnknownElementByItsOwnProperties) {
  GstElement* e = gst_element_factory_make("avenc_mpeg4", nullptr);
  ASSERT_NE(e, nullptr) << "avenc_mpeg4 missing: gstreamer1.0-libav (scripts/install-deps)";
  gst_object_ref_sink(e);
  ccm::gst::EncodeSettings s;
  s.bitrate_kbps = 800;
  s.keyframe_interval = 60;
  auto report = ccm::gst::configure_encoder(e, nullptr, s);
  gint bitrate = 0;
  g_object_get(e, "bitrate", &bitrate, nullptr);
  EXPECT_EQ(bitrate, 800000);
  gint gop = 0;
  g_object_get(e, "gop-size", &gop, nullptr);
  EXPECT_EQ(gop, 60);
  gst_object_unref(e);
}

// Live 4K60 on 16 cores: vp9enc would encode on its default 8 threads;
// the catalogue's many-cores settings spread it, and only where the picture rate
// calls for it and the input is live.
TEST(EncoderSetup, ManyCoresForLargeLiveInput) {
  const auto* entry = ccm::catalog::find("vp9enc");
  ASSERT_NE(entry, nullptr);
  auto threads_after = [&](guint64 pixel_rate, bool low_latency) {
    GstElement* e = gst_element_factory_make("vp9enc", nullptr);
    if (!e) return -1;
    gst_object_ref_sink(e);
    ccm::gst::EncodeSettings s;
    s.codec = ccm::catalog::Codec::VP9;
    s.low_latency = low_latency;
    s.pixel_rate = pixel_rate;
    s.cpus = 16;
    ccm::gst::configure_encoder(e, entry, s);
    gint threads = -1;
    g_object_get(e, "threads", &threads, nullptr);
    gst_object_unref(e);
    return threads;
  };
  const gint element_default = threads_after(0, true);  // unknown rate: left alone (8 in 1.22)
  if (element_default < 0) GTEST_SKIP() << "vp9enc not installed";
  ASSERT_NE(element_default, 16);
  EXPECT_EQ(threads_after(3840ull * 2160 * 60, true), 16);
  EXPECT_EQ(threads_after(320ull * 240 * 30, true), element_default);     // small: the element's default
  EXPECT_EQ(threads_after(3840ull * 2160 * 60, false), element_default);  // not live: the user's call

  // x264enc: its own count (threads=0) left frames late at 4K60 live.
  GstElement* x264 = gst_element_factory_make("x264enc", nullptr);
  if (!x264) return;
  gst_object_ref_sink(x264);
  ccm::gst::EncodeSettings s;
  s.pixel_rate = 3840ull * 2160 * 60;
  s.cpus = 16;
  ccm::gst::configure_encoder(x264, ccm::catalog::find("x264enc"), s);
  guint threads = 0;
  g_object_get(x264, "threads", &threads, nullptr);
  EXPECT_EQ(threads, 16u);
  gst_object_unref(x264);
}

TEST(EncBin, CandidatesOverrideOrder) {
  auto r = run_pipeline("videotestsrc num-buffers=2 ! video/x-raw,width=64,height=64 ! "
                        "ccmencbin name=enc codec=h264 candidates=vp9enc,openh264enc,x264enc ! fakesink");
  ASSERT_TRUE(r.eos) << r.error;
  const GstStructure* s = r.message("ccm-encoder-selected");
  EXPECT_EQ(str_field(s, "factory"), "openh264enc");
  EXPECT_EQ(str_field(r.stats, "encoder"), "openh264enc");
}

// Zero copy: the frames the source made reach ccmx265enc inside the bin as the
// same memory (the converter passes them through, the pool ccmencbin offers is
// the one the source fills), 8-bit and 10-bit alike; hdr=false turns 10-bit input
// into 8-bit on purpose, so there every frame is a converted one.
struct ZeroCopyCase {
  const char* format;
  bool hdr;
  bool in_place;
};

class ZeroCopy : public ::testing::TestWithParam<ZeroCopyCase> {};

// The memory of every frame the source made, and how many of those the encoder got.
struct MemorySeen {
  std::mutex lock;
  std::set<GstMemory*> made;
  int in_place = 0, frames = 0;
  void note(GstBuffer* b, bool at_encoder) {
    std::lock_guard lk(lock);
    GstMemory* m = gst_buffer_peek_memory(b, 0);
    if (!at_encoder) {
      made.insert(m);
      return;
    }
    frames++;
    in_place += made.contains(m);
  }
};

template <bool kAtEncoder>
GstPadProbeReturn note_memory(GstPad*, GstPadProbeInfo* info, gpointer seen) {
  static_cast<MemorySeen*>(seen)->note(GST_PAD_PROBE_INFO_BUFFER(info), kAtEncoder);
  return GST_PAD_PROBE_OK;
}

TEST_P(ZeroCopy, FramesReachTheEncoderInTheSourcesMemory) {
  const ZeroCopyCase& c = GetParam();
  MemorySeen seen;
  ccm::test::RunOptions options;
  options.before_play = [&seen](GstElement* pipeline) {
    GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
    GstPad* pad = gst_element_get_static_pad(src, "src");
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, note_memory<false>, &seen, nullptr);
    gst_object_unref(pad);
    gst_object_unref(src);
    GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
    g_signal_connect(enc, "deep-element-added", G_CALLBACK(+[](GstBin*, GstBin*, GstElement* e, gpointer data) {
                       GstElementFactory* f = gst_element_get_factory(e);
                       if (!f || std::string(GST_OBJECT_NAME(f)) != "ccmx265enc") return;
                       GstPad* sink = gst_element_get_static_pad(e, "sink");
                       gst_pad_add_probe(sink, GST_PAD_PROBE_TYPE_BUFFER, note_memory<true>, data, nullptr);
                       gst_object_unref(sink);
                     }),
                     &seen);
    gst_object_unref(enc);
  };
  auto r = run_pipeline(std::string("videotestsrc name=src num-buffers=10 ! video/x-raw,format=") + c.format +
                            ",width=320,height=240 ! ccmencbin name=enc codec=h265 candidates=ccmx265enc hdr=" +
                            (c.hdr ? "true" : "false") + " ! fakesink",
                        options);
  ASSERT_TRUE(r.eos) << r.error;
  EXPECT_EQ(seen.frames, 10);
  EXPECT_EQ(seen.in_place, c.in_place ? 10 : 0) << c.format << " hdr=" << c.hdr;
}

INSTANTIATE_TEST_SUITE_P(EncBin, ZeroCopy,
                         ::testing::Values(ZeroCopyCase{"I420", false, true}, ZeroCopyCase{"I420_10LE", true, true},
                                           ZeroCopyCase{"I420_10LE", false, false}),
                         [](const auto& info) {
                           return std::string(info.param.format) + (info.param.hdr ? "_hdr" : "_sdr");
                         });

// ---- bad input: an element error that names the cause and the fix -------------

// The ranges are the valid values: gst-inspect shows 1 as the least bitrate,
// and GObject refuses 0 (keeping the bitrate) before the element sees it.
// A flush before anything came out (a seek in the first moments of a stream): the
// first frame pushed into the encoder is gone with the flush, so the first output
// is another frame. The outputs keep the timestamps of the frames after the flush,
// every one comes out once, and nothing is mistaken for a lost frame (before: the
// timestamps moved by the seek's distance, and at EOS the encoder was taken for one
// that lost frames and all 30 were encoded again by the next candidate). x264enc
// with low-latency=false holds its first 10 frames in its look-ahead.
TEST(EncBin, FlushBeforeTheFirstOutputKeepsTimestampsAndFrames) {
  GstElement* pipeline = gst_parse_launch(
      "appsrc name=src format=time caps=video/x-raw,format=I420,width=64,height=48,framerate=30/1 ! "
      "ccmencbin name=enc codec=h264 candidates=x264enc,openh264enc low-latency=false probe=false ! "
      "appsink name=sink sync=false",
      nullptr);
  ASSERT_TRUE(pipeline);
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  GstPad* enc_sink = gst_element_get_static_pad(enc, "sink");
  static std::atomic<int> taken{0};
  taken = 0;
  gst_pad_add_probe(enc_sink, GST_PAD_PROBE_TYPE_BUFFER,
                    [](GstPad*, GstPadProbeInfo*, gpointer) {
                      ++taken;
                      return GST_PAD_PROBE_OK;
                    },
                    nullptr, nullptr);
  // Everything ccmencbin sends, before appsink drops what lies outside the segment.
  static std::atomic<int> sent_out{0};
  sent_out = 0;
  GstPad* enc_src = gst_element_get_static_pad(enc, "src");
  gst_pad_add_probe(enc_src, GST_PAD_PROBE_TYPE_BUFFER,
                    [](GstPad*, GstPadProbeInfo*, gpointer) {
                      ++sent_out;
                      return GST_PAD_PROBE_OK;
                    },
                    nullptr, nullptr);
  gst_object_unref(enc_src);
  ASSERT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  const GstClockTime frame = GST_SECOND / 30;
  auto push = [&](GstClockTime pts) {
    GstBuffer* b = gst_buffer_new_allocate(nullptr, 64 * 48 * 3 / 2, nullptr);
    gst_buffer_memset(b, 0, guint8(pts / frame * 7), 64 * 48 * 3 / 2);
    GST_BUFFER_PTS(b) = pts;
    GST_BUFFER_DURATION(b) = frame;
    return gst_app_src_push_buffer(GST_APP_SRC(src), b);
  };
  for (int i = 0; i < 10; i++) ASSERT_EQ(push(i * frame), GST_FLOW_OK);
  const gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
  while (taken < 10 && g_get_monotonic_time() < deadline) g_usleep(10000);
  ASSERT_EQ(taken.load(), 10) << "ccmencbin did not take the first 10 frames within 30 s";
  GstSample* early = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 200 * GST_MSECOND);
  ASSERT_EQ(early, nullptr) << "x264enc was expected to hold the first frames in its look-ahead";

  // The flush, as a flushing seek sends it, then a segment from 5 s on.
  ASSERT_TRUE(gst_pad_send_event(enc_sink, gst_event_new_flush_start()));
  ASSERT_TRUE(gst_pad_send_event(enc_sink, gst_event_new_flush_stop(TRUE)));
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  segment.start = segment.time = 5 * GST_SECOND;
  ASSERT_TRUE(gst_pad_send_event(enc_sink, gst_event_new_segment(&segment)));
  std::set<GstClockTime> sent;
  for (int i = 0; i < 30; i++) {
    const GstClockTime pts = 5 * GST_SECOND + i * frame;
    sent.insert(pts);
    ASSERT_EQ(push(pts), GST_FLOW_OK);
  }
  gst_app_src_end_of_stream(GST_APP_SRC(src));

  std::multiset<GstClockTime> got;
  while (GstSample* sample = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 30 * GST_SECOND)) {
    got.insert(GST_BUFFER_PTS(gst_sample_get_buffer(sample)));
    gst_sample_unref(sample);
  }
  EXPECT_TRUE(gst_app_sink_is_eos(GST_APP_SINK(sink))) << "no EOS within 30 s of the last sample";
  GstBus* bus = gst_element_get_bus(pipeline);
  int switches = 0;
  while (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
    if (gst_message_has_name(m, "ccm-encoder-switched")) switches++;
    gst_message_unref(m);
  }
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(enc_sink);
  gst_object_unref(sink);
  gst_object_unref(enc);
  gst_object_unref(src);
  gst_object_unref(pipeline);

  EXPECT_EQ(sent_out.load(), 30) << "every frame after the flush out of ccmencbin once";
  EXPECT_EQ(got.size(), 30u) << "every frame after the flush out once";
  EXPECT_EQ(std::set<GstClockTime>(got.begin(), got.end()), sent) << "the timestamps that went in";
  EXPECT_EQ(switches, 0) << "no encoder was taken for one that lost frames";
}

TEST(EncBinErrors, BitrateZeroIsOutOfRange) {
  GstElement* e = gst_element_factory_make("ccmencbin", nullptr);
  gst_object_ref_sink(e);
  GParamSpec* spec = g_object_class_find_property(G_OBJECT_GET_CLASS(e), "bitrate");
  ASSERT_NE(spec, nullptr);
  EXPECT_EQ(G_PARAM_SPEC_UINT(spec)->minimum, 1u);
  g_object_set(e, "bitrate", 700u, nullptr);
  GValue zero = G_VALUE_INIT;
  g_value_init(&zero, G_TYPE_UINT);  // 0: GLib warns "out of range" and leaves the property
  g_object_set_property(G_OBJECT(e), "bitrate", &zero);
  guint kbps = 0;
  g_object_get(e, "bitrate", &kbps, nullptr);
  EXPECT_EQ(kbps, 700u);
  gst_object_unref(e);
}

TEST(EncBinErrors, HardwareOnlyWithoutHardware) {
  auto r = run_pipeline("videotestsrc num-buffers=2 ! ccmencbin name=enc hardware=hardware-only ! fakesink");
  ASSERT_FALSE(r.eos);
  EXPECT_NE(r.error.find("no hardware encoder"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("hardware=auto"), std::string::npos) << r.error;
}

TEST(EncBinErrors, DownstreamTakesNoCodecWeMake) {
  auto r = run_pipeline("videotestsrc num-buffers=2 ! ccmencbin name=enc ! video/x-theora ! fakesink");
  ASSERT_FALSE(r.eos);
  // Either we refuse at link time (parse) or at caps time with our message.
  EXPECT_TRUE(r.error.find("none of AV1") != std::string::npos || r.error.find("parse") != std::string::npos)
      << r.error;
}

TEST(EncBinErrors, ForcedCodecDownstreamRefuses) {
  auto r = run_pipeline("videotestsrc num-buffers=2 ! ccmencbin name=enc codec=vp9 ! video/x-h264 ! fakesink");
  ASSERT_FALSE(r.eos);
  EXPECT_NE(r.error.find("codec=vp9"), std::string::npos) << r.error;
}

TEST(EncBinErrors, CapsItCannotConvert) {
  // appsrc forces caps in GPU memory that no converter inside can read.
  GstElement* pipeline = gst_parse_launch(
      "appsrc name=src format=time caps=video/x-raw(memory:GLMemory),format=RGBA,width=64,height=64,framerate=30/1 ! "
      "ccmencbin name=enc ! fakesink",
      nullptr);
  ASSERT_NE(pipeline, nullptr);
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, 64 * 64 * 4, nullptr);
  GST_BUFFER_PTS(buf) = 0;
  GstFlowReturn flow;
  g_signal_emit_by_name(src, "push-buffer", buf, &flow);
  gst_buffer_unref(buf);
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, 10 * GST_SECOND, GST_MESSAGE_ERROR);
  ASSERT_NE(msg, nullptr);
  GError* e = nullptr;
  gchar* dbg = nullptr;
  gst_message_parse_error(msg, &e, &dbg);
  const std::string text = e->message;
  EXPECT_NE(text.find("memory:GLMemory"), std::string::npos) << text;
  EXPECT_NE(text.find("download"), std::string::npos) << text;
  g_error_free(e);
  g_free(dbg);
  gst_message_unref(msg);
  gst_object_unref(bus);
  gst_object_unref(src);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);
}

// No AV1 encoder in the registry: the error names the Debian package to install.
// Encoders installed but none takes this input: say that, not "install ...".
TEST(EncBinErrors, InstalledEncodersThatRefuseTheInputAreNamed) {
  GstElementFactory* f = gst_element_factory_find("openh264enc");
  if (!f) GTEST_SKIP() << "no openh264enc";
  gst_object_unref(f);
  auto r = run_pipeline("videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=33,height=33 ! "
                        "ccmencbin name=enc codec=h264 candidates=openh264enc ! fakesink");
  ASSERT_FALSE(r.eos);
  EXPECT_NE(r.error.find("none of openh264enc takes 33x33 I420"), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find("install"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("odd size"), std::string::npos) << "the debug text says why: " << r.error;
}

TEST(EncBinErrors, CandidateThatDoesNotExistIsNamed) {
  auto r = run_pipeline("videotestsrc num-buffers=2 ! ccmencbin name=enc codec=h265 candidates=doesnotexist ! fakesink");
  ASSERT_FALSE(r.eos);
  EXPECT_NE(r.error.find("candidates=doesnotexist names no usable h265 encoder (doesnotexist: no such element"),
            std::string::npos) << r.error;
  EXPECT_EQ(r.error.find("install"), std::string::npos) << r.error;
}

// 1x1 AV1: the error says the smallest frame each encoder takes, not "could not be linked".
TEST(EncBinErrors, BelowTheEncodersMinimumSizeNamesIt) {
  auto r = run_pipeline("videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=1,height=1 ! "
                        "ccmencbin name=enc codec=av1 ! fakesink");
  ASSERT_FALSE(r.eos);
  EXPECT_NE(r.error.find("av1enc: takes frames of at least 4x4, not 1x1"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("videoscale"), std::string::npos) << r.error;
}

// bitrate=-5 from gst-launch arrives as 4294967291: clamped, with a warning that says so.
TEST(EncBinErrors, NegativeBitrateIsClampedWithAWarning) {
  auto r = run_pipeline("videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48 ! "
                        "ccmencbin name=enc codec=h264 bitrate=-5 ! fakesink");
  ASSERT_TRUE(r.eos) << r.error;
  std::string all;
  for (const auto& w : r.warnings) all += w + "\n";
  EXPECT_NE(all.find("bitrate=4294967291 kbit/s is out of range (-5 read as unsigned?): clamped to 2048000"),
            std::string::npos) << all;
  EXPECT_EQ(u64_field(r.stats, "frames-out"), 5u);
}

// Larger than any encoder takes: refused at the caps, before an encoder reserves memory for it.
TEST(EncBinErrors, SizeOverTheLimitIsRefusedAtTheCaps) {
  auto r = run_pipeline("videotestsrc num-buffers=1 ! video/x-raw,format=I420,width=16385,height=16 ! "
                        "ccmencbin name=enc codec=vp9 ! fakesink");
  ASSERT_FALSE(r.eos);
  EXPECT_NE(r.error.find("16385x16 is larger than any encoder takes (16384 per side at most)"), std::string::npos)
      << r.error;
}

TEST(EncBinErrors, NoEncoderNamesThePackage) {
  GstRegistry* registry = gst_registry_get();
  std::vector<GstPluginFeature*> removed;
  for (const auto& entry : ccm::catalog::entries()) {
    if (entry.codec != ccm::catalog::Codec::AV1) continue;
    std::string name(entry.factory);
    if (GstPluginFeature* f = gst_registry_lookup_feature(registry, name.c_str())) {
      gst_registry_remove_feature(registry, f);
      removed.push_back(f);
    }
  }
  auto r = run_pipeline("videotestsrc num-buffers=2 ! ccmencbin name=enc codec=av1 ! fakesink");
  for (GstPluginFeature* f : removed) gst_registry_add_feature(registry, f);  // takes our reference
  ASSERT_FALSE(r.eos);
  EXPECT_NE(r.error.find("no usable encoder for av1"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("gstreamer1.0-plugins-bad"), std::string::npos) << r.error;
}

// ---- what gst-inspect shows -----------------------------------------------------

// The sink template names CUDA memory, which ccmencbin takes where cudadownload
// exists (the CAPS query offers it only there).
TEST(EncBinInspect, SinkTemplateNamesCudaMemory) {
  GstElementFactory* f = gst_element_factory_find("ccmencbin");
  ASSERT_NE(f, nullptr);
  bool cuda = false, system = false;
  for (const GList* l = gst_element_factory_get_static_pad_templates(f); l; l = l->next) {
    auto* t = static_cast<GstStaticPadTemplate*>(l->data);
    if (t->direction != GST_PAD_SINK) continue;
    GstCaps* caps = gst_static_caps_get(&t->static_caps);
    for (guint i = 0; i < gst_caps_get_size(caps); ++i) {
      GstCapsFeatures* features = gst_caps_get_features(caps, i);
      if (gst_caps_features_contains(features, "memory:CUDAMemory")) cuda = true;
      if (gst_caps_features_is_equal(features, GST_CAPS_FEATURES_MEMORY_SYSTEM_MEMORY)) system = true;
    }
    gst_caps_unref(caps);
  }
  gst_object_unref(f);
  EXPECT_TRUE(system);
  EXPECT_TRUE(cuda);
}

// ---- presets --------------------------------------------------------------------

TEST(EncBinPresets, ShippedPresetsLoad) {
  GstElement* e = gst_element_factory_make("ccmencbin", nullptr);
  ASSERT_NE(e, nullptr);
  gst_object_ref_sink(e);
  gchar** names = gst_preset_get_preset_names(GST_PRESET(e));
  ASSERT_NE(names, nullptr);
  std::string all;
  for (gchar** n = names; *n; n++) all += std::string(*n) + ",";
  g_strfreev(names);
  for (const char* want : {"live-8k-hdr", "conference-4k-low-latency", "cloud-gaming-1080p120", "screen-share"})
    EXPECT_NE(all.find(want), std::string::npos) << want << " missing from " << all;

  ASSERT_TRUE(gst_preset_load_preset(GST_PRESET(e), "live-8k-hdr"));
  guint bitrate = 0;
  gboolean hdr = FALSE;
  g_object_get(e, "bitrate", &bitrate, "hdr", &hdr, nullptr);
  EXPECT_EQ(bitrate, 120000u);
  EXPECT_TRUE(hdr);

  ASSERT_TRUE(gst_preset_load_preset(GST_PRESET(e), "conference-4k-low-latency"));
  gint bframes = -1, maxq = -1;
  g_object_get(e, "bitrate", &bitrate, "b-frames", &bframes, "max-quantizer", &maxq, "hdr", &hdr, nullptr);
  EXPECT_EQ(bitrate, 12000u);
  EXPECT_EQ(bframes, 0);
  EXPECT_EQ(maxq, 40);
  EXPECT_FALSE(hdr);
  gst_object_unref(e);
}

// gst-launch loads `@preset=` after every property on the line, whatever the
// order: what the user set must survive it, and what the preset names applies.
TEST(EncBinPresets, PresetKeepsWhatTheUserSet) {
  for (const char* line : {"ccmencbin name=enc @preset=screen-share codec=h264 bitrate=900",
                           "ccmencbin name=enc codec=h264 bitrate=900 @preset=screen-share"}) {
    GError* error = nullptr;
    GstElement* e = gst_parse_launch(line, &error);
    ASSERT_NE(e, nullptr) << line << ": " << (error ? error->message : "");
    ASSERT_EQ(error, nullptr) << line << ": " << error->message;
    guint bitrate = 0, keyframes = 0;
    gboolean low_latency = FALSE;
    g_object_get(e, "bitrate", &bitrate, "keyframe-interval", &keyframes, "low-latency", &low_latency, nullptr);
    GValue cv = G_VALUE_INIT;
    g_value_init(&cv, g_object_class_find_property(G_OBJECT_GET_CLASS(e), "codec")->value_type);
    g_object_get_property(G_OBJECT(e), "codec", &cv);
    gchar* nick = gst_value_serialize(&cv);
    g_value_unset(&cv);
    EXPECT_STREQ(nick, "h264") << line;
    EXPECT_EQ(bitrate, 900u) << line;
    EXPECT_EQ(keyframes, 300u) << line << ": what the user left alone comes from the preset";
    g_free(nick);
    gst_object_unref(e);
  }
}

// A preset stores only values it means: no codec=auto, hardware=auto or -1
// ("unset"), which would undo a choice made by an earlier preset.
TEST(EncBinPresets, PresetsStoreNoUnsetValues) {
  const char* dir = g_getenv("GST_PRESET_PATH");
  if (!dir || !*dir) dir = g_getenv("CCM_PRESETS_DIR");  // element_presets_installed
  ASSERT_TRUE(dir && *dir) << "the suite points GST_PRESET_PATH or CCM_PRESETS_DIR at presets/";
  gchar* path = g_build_filename(dir, "GstCcmEncBin.prs", nullptr);
  GKeyFile* file = g_key_file_new();
  ASSERT_TRUE(g_key_file_load_from_file(file, path, G_KEY_FILE_NONE, nullptr)) << path;
  gchar** groups = g_key_file_get_groups(file, nullptr);
  int values = 0;
  for (gchar** g = groups; *g; g++) {
    if (g_str_equal(*g, "_presets_")) continue;
    gchar** keys = g_key_file_get_keys(file, *g, nullptr, nullptr);
    for (gchar** k = keys; *k; k++, values++) {
      gchar* value = g_key_file_get_value(file, *g, *k, nullptr);
      EXPECT_STRNE(value, "auto") << *g << ": " << *k;
      EXPECT_STRNE(value, "-1") << *g << ": " << *k;
      g_free(value);
    }
    g_strfreev(keys);
  }
  EXPECT_GT(values, 20);
  g_strfreev(groups);
  g_key_file_unref(file);
  g_free(path);
}

}  // namespace
