// ccmx265enc on real content: live bitrate change without reopen or IDR, forced key
// frames, per-frame QP and per-block offsets from GstCcmQpMeta, HDR10 SEI, EOS
// drain, variable-rate input and the errors for input x265 refuses. Every stream
// is decoded with ffmpeg (-xerror) and libde265.

#include "common/qp_meta.h"
#include "pipeline_util.h"

#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using ccm::test::media;
using ccm::test::probe_file;
using ccm::test::run_pipeline;
using ccm::test::temp_path;

constexpr int kFps = 30;
constexpr GstClockTime kFrameDuration = GST_SECOND / kFps;

bool have_element(const char* name) {
  GstElementFactory* f = gst_element_factory_find(name);
  if (f) gst_object_unref(f);
  return f != nullptr;
}

// ---- decoded real content, held in memory and looped ----------------------------------

struct Clip {
  GstCaps* caps = nullptr;
  GstVideoInfo info{};
  std::vector<GstBuffer*> frames;
  Clip() = default;
  Clip(const Clip&) = delete;
  Clip& operator=(const Clip&) = delete;
  ~Clip() {
    for (GstBuffer* b : frames) gst_buffer_unref(b);
    if (caps) gst_caps_unref(caps);
  }
};

// Decodes `source_chain` (gst-launch syntax ending in raw video) to `format`.
std::unique_ptr<Clip> decode_clip(const std::string& source_chain, const char* format) {
  auto clip = std::make_unique<Clip>();
  clip->frames = ccm::test::decode_frames(source_chain, format, &clip->caps);
  if (clip->caps) gst_video_info_from_caps(&clip->info, clip->caps);
  return clip;
}

const Clip& street_1080p(const char* format) {
  static std::map<std::string, std::unique_ptr<Clip>> cache;
  auto& slot = cache[format];
  if (!slot)
    slot = decode_clip("filesrc location=" + media("street_1920x1080_54f.h264") + " ! h264parse ! avdec_h264",
                       format);
  return *slot;
}

const Clip& cars_small() {
  static std::unique_ptr<Clip> clip =
      decode_clip("filesrc location=" + media("cars_320x240_30f.y4m") + " ! y4mdec", "I420");
  return *clip;
}

// ---- encoding through appsrc ! ccmx265enc ! appsink -------------------------------------

struct Packet {
  GstClockTime pts = GST_CLOCK_TIME_NONE;
  bool delta = true;  // GST_BUFFER_FLAG_DELTA_UNIT
  std::vector<guint8> data;
};

struct Encoded {
  std::vector<Packet> packets;
  std::string error;
  bool eos = false;

  double kbps_in_window(int second) const {
    double bytes = 0;
    for (const Packet& p : packets)
      if (p.pts >= GstClockTime(second) * GST_SECOND && p.pts < GstClockTime(second + 1) * GST_SECOND)
        bytes += double(p.data.size());
    return bytes * 8 / 1000;
  }
  std::string write(const std::string& name) const {
    const std::string path = temp_path(name);
    FILE* f = std::fopen(path.c_str(), "wb");
    for (const Packet& p : packets) std::fwrite(p.data.data(), 1, p.data.size(), f);
    std::fclose(f);
    return path;
  }
};

// NAL unit types in one Annex B access unit.
std::vector<int> nal_types(const std::vector<guint8>& au) {
  std::vector<int> types;
  for (size_t i = 0; i + 3 < au.size(); ++i)
    if (au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1) {
      types.push_back((au[i + 3] >> 1) & 0x3f);
      i += 3;
    }
  return types;
}

bool is_idr(const Packet& p) {
  for (int t : nal_types(p.data))
    if (t == 19 || t == 20) return true;  // IDR_W_RADL, IDR_N_LP
  return false;
}

struct EncodeOptions {
  std::string encoder = "ccmx265enc";  // element description, properties included
  int frames = 30;
  // Streaming thread, just before frame `index` enters the encoder.
  std::function<void(GstElement* enc, GstPad* sinkpad, int index)> before_frame;
  // Test thread, on the writable copy that is pushed.
  std::function<void(GstBuffer* buffer, int index)> decorate;
};

struct ProbeContext {
  GstElement* enc;
  const EncodeOptions* options;
};

GstPadProbeReturn before_frame_probe(GstPad* pad, GstPadProbeInfo* info, gpointer data) {
  auto* ctx = static_cast<ProbeContext*>(data);
  GstBuffer* buffer = GST_PAD_PROBE_INFO_BUFFER(info);
  const int index = int((GST_BUFFER_PTS(buffer) + kFrameDuration / 2) / kFrameDuration);
  ctx->options->before_frame(ctx->enc, pad, index);
  return GST_PAD_PROBE_OK;
}

Encoded encode(const Clip& clip, const EncodeOptions& options) {
  Encoded result;
  if (clip.frames.empty()) {
    result.error = "no input frames";
    return result;
  }
  const std::string desc = "appsrc name=src format=time block=true max-buffers=4 ! " + options.encoder +
                           " name=enc ! appsink name=sink sync=false";
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
  if (!pipeline) {
    result.error = std::string("parse: ") + (err ? err->message : "?");
    g_clear_error(&err);
    return result;
  }
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");

  GstCaps* caps = gst_caps_copy(clip.caps);
  gst_caps_set_simple(caps, "framerate", GST_TYPE_FRACTION, kFps, 1, nullptr);
  gst_app_src_set_caps(GST_APP_SRC(src), caps);
  gst_caps_unref(caps);

  ProbeContext ctx{enc, &options};
  GstPad* enc_sink = gst_element_get_static_pad(enc, "sink");
  if (options.before_frame)
    gst_pad_add_probe(enc_sink, GST_PAD_PROBE_TYPE_BUFFER, before_frame_probe, &ctx, nullptr);

  struct Collector {
    std::mutex lock;
    std::vector<Packet> packets;
  } collector;
  GstAppSinkCallbacks callbacks{};
  callbacks.new_sample = [](GstAppSink* s, gpointer data) -> GstFlowReturn {
    auto* c = static_cast<Collector*>(data);
    GstSample* sample = gst_app_sink_pull_sample(s);
    if (!sample) return GST_FLOW_ERROR;
    GstBuffer* b = gst_sample_get_buffer(sample);
    Packet p;
    p.pts = GST_BUFFER_PTS(b);
    p.delta = GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DELTA_UNIT);
    p.data.resize(gst_buffer_get_size(b));
    gst_buffer_extract(b, 0, p.data.data(), p.data.size());
    gst_sample_unref(sample);
    std::lock_guard<std::mutex> guard(c->lock);
    c->packets.push_back(std::move(p));
    return GST_FLOW_OK;
  };
  gst_app_sink_set_callbacks(GST_APP_SINK(sink), &callbacks, &collector, nullptr);

  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(pipeline);
  for (int i = 0; i < options.frames; ++i) {
    // A shallow copy: the decoded pixels are shared, timestamps and metas are ours.
    GstBuffer* frame = gst_buffer_copy(clip.frames[size_t(i) % clip.frames.size()]);
    GST_BUFFER_PTS(frame) = GstClockTime(i) * kFrameDuration;
    GST_BUFFER_DTS(frame) = GST_CLOCK_TIME_NONE;
    GST_BUFFER_DURATION(frame) = kFrameDuration;
    if (options.decorate) options.decorate(frame, i);
    if (gst_app_src_push_buffer(GST_APP_SRC(src), frame) != GST_FLOW_OK) break;
  }
  gst_app_src_end_of_stream(GST_APP_SRC(src));
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, 300 * GST_SECOND,
                                               GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  if (!msg) {
    result.error = "timeout";
  } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError* e = nullptr;
    gchar* dbg = nullptr;
    gst_message_parse_error(msg, &e, &dbg);
    result.error = std::string(e->message) + " | " + (dbg ? dbg : "");
    g_error_free(e);
    g_free(dbg);
  } else {
    result.eos = true;
  }
  if (msg) gst_message_unref(msg);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  result.packets = std::move(collector.packets);

  gst_object_unref(enc_sink);
  gst_object_unref(bus);
  gst_object_unref(src);
  gst_object_unref(enc);
  gst_object_unref(sink);
  gst_object_unref(pipeline);
  return result;
}

// ---- decoders ----------------------------------------------------------------------------

bool run_command(const std::vector<std::string>& args, std::string* out, std::string* err) {
  std::vector<gchar*> argv;
  for (const auto& a : args) argv.push_back(const_cast<gchar*>(a.c_str()));
  argv.push_back(nullptr);
  gchar* o = nullptr;
  gchar* e = nullptr;
  gint status = 0;
  GError* error = nullptr;
  const bool spawned = g_spawn_sync(nullptr, argv.data(), nullptr, G_SPAWN_SEARCH_PATH, nullptr, nullptr, &o, &e,
                                    &status, &error);
  if (out) *out = o ? o : "";
  if (err) *err = e ? e : (error ? error->message : "");
  g_free(o);
  g_free(e);
  if (error) g_error_free(error);
  return spawned && g_spawn_check_wait_status(status, nullptr);
}

// libde265's dec265 exits 0 even on broken streams: it prints WARNING lines and
// "nFrames decoded: N" instead.
struct De265 {
  int frames = -1;
  std::string complaints;
};
De265 decode_with_libde265(const std::string& path) {
  De265 r;
  std::string out, err;
  if (!run_command({"libde265-dec265", "-q", path}, &out, &err)) {
    r.complaints = "dec265 failed: " + err;
    return r;
  }
  const std::string all = out + err;
  std::sscanf(all.c_str() + std::min(all.size(), all.find("nFrames decoded:")), "nFrames decoded: %d", &r.frames);
  std::istringstream lines(all);
  for (std::string line; std::getline(lines, line);)
    if (line.find("WARNING") != std::string::npos || line.find("ERROR") != std::string::npos)
      r.complaints += line + "\n";
  return r;
}

// Both decoders take every frame without a complaint.
void expect_decodes(const std::string& path, int frames) {
  const auto probe = probe_file(path);
  EXPECT_TRUE(probe.ok) << path << ": " << probe.decoder_errors;
  EXPECT_EQ(probe.frames, frames) << path << " (ffmpeg)";
  gchar* dec265 = g_find_program_in_path("libde265-dec265");
  const bool have_dec265 = dec265 != nullptr;
  g_free(dec265);
  if (!have_dec265) {
    ADD_FAILURE() << "libde265-dec265 missing (package libde265-examples)";
    return;
  }
  const De265 de = decode_with_libde265(path);
  EXPECT_EQ(de.frames, frames) << path << " (libde265)";
  EXPECT_TRUE(de.complaints.empty()) << path << " (libde265): " << de.complaints;
}

std::set<int> idr_frames(const Encoded& e) {
  std::set<int> out;
  for (const Packet& p : e.packets)
    if (is_idr(p)) out.insert(int((p.pts + kFrameDuration / 2) / kFrameDuration));
  return out;
}

std::set<int> key_flagged_frames(const Encoded& e) {
  std::set<int> out;
  for (const Packet& p : e.packets)
    if (!p.delta) out.insert(int((p.pts + kFrameDuration / 2) / kFrameDuration));
  return out;
}

class X265Enc : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_element("ccmx265enc")) GTEST_SKIP() << "built without x265";
  }
};

// ---- live bitrate change on 1080p real content ---------------------------------------------

class LiveBitrate : public X265Enc, public ::testing::WithParamInterface<const char*> {};

TEST_P(LiveBitrate, ChangeAppliesWithinASecondWithoutIdrAndForcedKeyFrameLands) {
  const char* format = GetParam();
  const Clip& clip = street_1080p(format);
  ASSERT_EQ(clip.frames.size(), 54u);
  ASSERT_EQ(GST_VIDEO_INFO_WIDTH(&clip.info), 1920);

  constexpr int kSeconds = 6, kChangeAt = 3 * kFps, kForceAt = 40;
  EncodeOptions o;
  o.encoder = "ccmx265enc bitrate=4000";
  o.frames = kSeconds * kFps;
  o.before_frame = [](GstElement* enc, GstPad* pad, int index) {
    if (index == kForceAt) {
      const GstClockTime t = GstClockTime(index) * kFrameDuration;
      gst_pad_send_event(pad, gst_video_event_new_downstream_force_key_unit(t, t, t, TRUE, 1));
    }
    if (index == kChangeAt) g_object_set(enc, "bitrate", 1000u, nullptr);
  };
  const gint64 t0 = g_get_monotonic_time();
  const Encoded e = encode(clip, o);
  const double wall = double(g_get_monotonic_time() - t0) / 1e6;
  ASSERT_TRUE(e.eos) << e.error;
  ASSERT_EQ(e.packets.size(), size_t(o.frames)) << "EOS must drain every frame";

  std::printf("[ %s ] 1 s windows (kbit/s):", format);
  for (int s = 0; s < kSeconds; ++s) std::printf(" %.0f", e.kbps_in_window(s));
  std::printf("  (%.1f fps wall)\n", o.frames / wall);
  for (int s = 0; s < 3; ++s) {
    EXPECT_GT(e.kbps_in_window(s), 4000 * 0.75) << "second " << s;
    EXPECT_LT(e.kbps_in_window(s), 4000 * 1.3) << "second " << s;
  }
  for (int s = 4; s < kSeconds; ++s) {
    EXPECT_GT(e.kbps_in_window(s), 1000 * 0.75) << "second " << s;
    EXPECT_LT(e.kbps_in_window(s), 1000 * 1.25) << "second " << s;
  }
  // IDRs exactly at the start and the forced frame: the bitrate change added none
  // (stock x265enc reopens and starts over with an IDR there).
  EXPECT_EQ(idr_frames(e), (std::set<int>{0, kForceAt}));
  EXPECT_EQ(key_flagged_frames(e), (std::set<int>{0, kForceAt}));
  // Headers repeated with every key frame, for receivers that join late.
  for (const Packet& p : e.packets)
    if (is_idr(p)) {
      const auto t = nal_types(p.data);
      EXPECT_TRUE(std::count(t.begin(), t.end(), 32) && std::count(t.begin(), t.end(), 33) &&
                  std::count(t.begin(), t.end(), 34))
          << "VPS/SPS/PPS missing on the key frame at " << p.pts / GST_MSECOND << " ms";
    }
  expect_decodes(e.write(std::string("live-bitrate-") + format + ".h265"), o.frames);
}

INSTANTIATE_TEST_SUITE_P(RealContent1080p, LiveBitrate, ::testing::Values("I420", "I420_10LE"));

// ---- per-frame QP and per-block offsets -----------------------------------------------------

class FrameQp : public X265Enc, public ::testing::WithParamInterface<const char*> {};

TEST_P(FrameQp, AlternatingQp20And40GivesBigSmallFrames) {
  const Clip& clip = cars_small();
  ASSERT_FALSE(clip.frames.empty());
  EncodeOptions o;
  o.encoder = std::string("ccmx265enc rate-control=") + GetParam() + " bitrate=300 quantizer=30";
  o.frames = 30;
  o.decorate = [](GstBuffer* b, int i) { gst_buffer_add_ccm_qp_meta(b, i % 2 ? 40 : 20); };
  const Encoded e = encode(clip, o);
  ASSERT_TRUE(e.eos) << e.error;
  ASSERT_EQ(e.packets.size(), 30u);
  std::printf("[ %s ] frame sizes:", GetParam());
  for (const Packet& p : e.packets) std::printf(" %zu", p.data.size());
  std::printf("\n");
  // Every QP 20 frame (even) at least twice the size of its QP 40 neighbours.
  for (size_t i = 2; i + 1 < e.packets.size(); i += 2) {
    EXPECT_GT(e.packets[i].data.size(), 2 * e.packets[i - 1].data.size()) << "frame " << i;
    EXPECT_GT(e.packets[i].data.size(), 2 * e.packets[i + 1].data.size()) << "frame " << i;
  }
  expect_decodes(e.write(std::string("qp-alternating-") + GetParam() + ".h265"), 30);
}

INSTANTIATE_TEST_SUITE_P(Modes, FrameQp, ::testing::Values("cqp", "cbr"));

// Luma PSNR of a rectangle of decoded frame `index` against the source.
struct Rect {
  int x, y, w, h;
};
double luma_psnr(const std::vector<guint8>& decoded, const Clip& clip, int index, Rect r) {
  const int w = GST_VIDEO_INFO_WIDTH(&clip.info), h = GST_VIDEO_INFO_HEIGHT(&clip.info);
  const size_t frame_bytes = size_t(w) * h * 3 / 2;
  GstVideoFrame src;
  gst_video_frame_map(&src, const_cast<GstVideoInfo*>(&clip.info), clip.frames[size_t(index)], GST_MAP_READ);
  const auto* sp = static_cast<const guint8*>(GST_VIDEO_FRAME_PLANE_DATA(&src, 0));
  const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(&src, 0);
  const guint8* dp = decoded.data() + frame_bytes * size_t(index);
  double sse = 0;
  for (int y = r.y; y < r.y + r.h; ++y)
    for (int x = r.x; x < r.x + r.w; ++x) {
      const double d = double(sp[y * stride + x]) - double(dp[y * w + x]);
      sse += d * d;
    }
  gst_video_frame_unmap(&src);
  const double mse = sse / (double(r.w) * r.h);
  return mse <= 0 ? 99 : 10 * std::log10(255.0 * 255.0 / mse);
}

std::vector<guint8> decode_to_i420(const std::string& path) {
  const std::string raw = path + ".yuv";
  std::string out, err;
  EXPECT_TRUE(run_command({"ffmpeg", "-v", "error", "-y", "-i", path, "-f", "rawvideo", "-pix_fmt", "yuv420p", raw},
                          &out, &err))
      << err;
  gchar* data = nullptr;
  gsize len = 0;
  std::vector<guint8> bytes;
  if (g_file_get_contents(raw.c_str(), &data, &len, nullptr)) bytes.assign(data, data + len);
  g_free(data);
  return bytes;
}

TEST_F(X265Enc, PerBlockOffsetsLandOnTheirBlocks) {
  const Clip& clip = cars_small();
  ASSERT_FALSE(clip.frames.empty());
  const int w = GST_VIDEO_INFO_WIDTH(&clip.info), h = GST_VIDEO_INFO_HEIGHT(&clip.info);
  constexpr guint kBlock = 32;  // not x265's 16: the element converts the grid
  const guint bx = (guint(w) + kBlock - 1) / kBlock, by = (guint(h) + kBlock - 1) / kBlock;
  constexpr int kFrames = 6;

  // offset(x, y) for a block whose top-left corner is at pixel (x, y).
  auto run = [&](const char* name, std::function<float(guint, guint)> offset) {
    EncodeOptions o;
    o.encoder = "ccmx265enc rate-control=cbr bitrate=500";
    o.frames = kFrames;
    o.decorate = [&](GstBuffer* b, int) {
      GstCcmQpMeta* meta = gst_buffer_add_ccm_qp_meta(b, 32);
      std::vector<float> map(size_t(bx) * by);
      for (guint y = 0; y < by; ++y)
        for (guint x = 0; x < bx; ++x) map[size_t(y) * bx + x] = offset(x * kBlock, y * kBlock);
      ASSERT_TRUE(gst_ccm_qp_meta_set_offsets(meta, kBlock, bx, by, map.data()));
    };
    const Encoded e = encode(clip, o);
    EXPECT_TRUE(e.eos) << e.error;
    const std::string path = e.write(std::string("offsets-") + name + ".h265");
    expect_decodes(path, kFrames);
    return decode_to_i420(path);
  };
  const Rect left{0, 0, w / 2, h}, right{w / 2, 0, w / 2, h}, top{0, 0, w, h / 2}, bottom{0, h / 2, w, h / 2};
  const auto none = run("none", [](guint, guint) { return 0.0f; });
  const auto lr = run("left-right", [&](guint x, guint) { return x < guint(w) / 2 ? -8.0f : 8.0f; });
  const auto tb = run("top-bottom", [&](guint, guint y) { return y < guint(h) / 2 ? -8.0f : 8.0f; });
  ASSERT_FALSE(none.empty());
  ASSERT_FALSE(lr.empty());
  ASSERT_FALSE(tb.empty());
  for (int f : {0, kFrames - 1}) {
    const double base_lr = luma_psnr(none, clip, f, left) - luma_psnr(none, clip, f, right);
    const double got_lr = luma_psnr(lr, clip, f, left) - luma_psnr(lr, clip, f, right);
    const double base_tb = luma_psnr(none, clip, f, top) - luma_psnr(none, clip, f, bottom);
    const double got_tb = luma_psnr(tb, clip, f, top) - luma_psnr(tb, clip, f, bottom);
    std::printf("[ offsets ] frame %d: left-right PSNR gap %.1f dB (none %.1f), top-bottom %.1f dB (none %.1f)\n", f,
                got_lr, base_lr, got_tb, base_tb);
    // 16 QP apart is a factor ~6 in step size: several dB.
    EXPECT_GT(got_lr - base_lr, 4.0) << "frame " << f;
    EXPECT_GT(got_tb - base_tb, 4.0) << "frame " << f;
  }
}

TEST_F(X265Enc, CqpQuantizerChangesLiveWithoutReopen) {
  const Clip& clip = cars_small();
  EncodeOptions o;
  o.encoder = "ccmx265enc rate-control=cqp quantizer=20";
  o.frames = 30;
  o.before_frame = [](GstElement* enc, GstPad*, int index) {
    if (index == 15) g_object_set(enc, "quantizer", 45u, nullptr);
  };
  const Encoded e = encode(clip, o);
  ASSERT_TRUE(e.eos) << e.error;
  ASSERT_EQ(e.packets.size(), 30u);
  size_t before = 0, after = 0;
  for (int i = 5; i < 15; ++i) before += e.packets[size_t(i)].data.size();
  for (int i = 20; i < 30; ++i) after += e.packets[size_t(i)].data.size();
  EXPECT_GT(before, 4 * after);
  EXPECT_EQ(idr_frames(e), (std::set<int>{0}));
  expect_decodes(e.write("cqp-live.h265"), 30);
}

TEST_F(X265Enc, KeyframeIntervalCountsFramesAndChangesLive) {
  const Clip& clip = cars_small();
  EncodeOptions o;
  o.encoder = "ccmx265enc keyframe-interval=10";
  o.frames = 45;
  o.before_frame = [](GstElement* enc, GstPad*, int index) {
    if (index == 25) g_object_set(enc, "keyframe-interval", 7u, nullptr);
  };
  const Encoded e = encode(clip, o);
  ASSERT_TRUE(e.eos) << e.error;
  EXPECT_EQ(idr_frames(e), (std::set<int>{0, 10, 20, 27, 34, 41}));
  expect_decodes(e.write("keyint.h265"), 45);
}

// ---- HDR10, EOS, variable rate, bad input ----------------------------------------------------

TEST_F(X265Enc, Hdr10MetadataFromCapsReachesTheBitstream) {
  GstVideoMasteringDisplayInfo mdi;
  gst_video_mastering_display_info_init(&mdi);
  // BT.2020 primaries (R, G, B), D65, 1000 cd/m2 peak, 0.005 min.
  const guint16 xy[3][2] = {{35400, 14600}, {8500, 39850}, {6550, 2300}};
  for (int i = 0; i < 3; ++i) {
    mdi.display_primaries[i].x = xy[i][0];
    mdi.display_primaries[i].y = xy[i][1];
  }
  mdi.white_point.x = 15635;
  mdi.white_point.y = 16450;
  mdi.max_display_mastering_luminance = 10000000;
  mdi.min_display_mastering_luminance = 50;
  gchar* mdi_str = gst_video_mastering_display_info_to_string(&mdi);
  const std::string out = temp_path("hdr10.h265");
  const auto r = run_pipeline(
      std::string("videotestsrc num-buffers=5 ! video/x-raw,format=I420_10LE,width=320,height=240,framerate=30/1,"
                  "colorimetry=bt2100-pq,mastering-display-info=(string)") +
      mdi_str + ",content-light-level=(string)1000:400 ! ccmx265enc ! filesink location=" + out);
  g_free(mdi_str);
  ASSERT_TRUE(r.eos) << r.error;
  expect_decodes(out, 5);

  std::string json, err;
  ASSERT_TRUE(run_command({"ffprobe", "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#1",
                           "-show_frames", "-show_entries",
                           "frame=color_transfer,color_primaries:frame_side_data", "-of", "flat", out},
                          &json, &err))
      << err;
  auto has = [&](const std::string& s) { return json.find(s) != std::string::npos; };
  EXPECT_TRUE(has("Mastering display metadata")) << json;
  EXPECT_TRUE(has("red_x=\"35400/50000\"")) << json;
  EXPECT_TRUE(has("green_y=\"39850/50000\"")) << json;
  EXPECT_TRUE(has("blue_x=\"6550/50000\"")) << json;
  EXPECT_TRUE(has("white_point_x=\"15635/50000\"")) << json;
  EXPECT_TRUE(has("max_luminance=\"10000000/10000\"")) << json;
  EXPECT_TRUE(has("min_luminance=\"50/10000\"")) << json;
  EXPECT_TRUE(has("Content light level metadata")) << json;
  EXPECT_TRUE(has("max_content=1000")) << json;
  EXPECT_TRUE(has("max_average=400")) << json;
  EXPECT_TRUE(has("color_transfer=\"smpte2084\"")) << json;
  EXPECT_TRUE(has("color_primaries=\"bt2020\"")) << json;
}

// speed-preset by name, as x265enc takes it (`speed-preset=ultrafast`), and by
// its number 0-9 as before (1 = superfast).
TEST(X265EncProperties, SpeedPresetByNameAsX265enc) {
  GstElement* e = gst_element_factory_make("ccmx265enc", nullptr);
  ASSERT_NE(e, nullptr);
  gst_object_ref_sink(e);
  GParamSpec* spec = g_object_class_find_property(G_OBJECT_GET_CLASS(e), "speed-preset");
  ASSERT_NE(spec, nullptr);
  ASSERT_TRUE(G_IS_PARAM_SPEC_ENUM(spec));
  auto nick = [&] {
    GValue v = G_VALUE_INIT;
    g_value_init(&v, spec->value_type);
    g_object_get_property(G_OBJECT(e), "speed-preset", &v);
    const GEnumValue* ev = g_enum_get_value(G_PARAM_SPEC_ENUM(spec)->enum_class, g_value_get_enum(&v));
    g_value_unset(&v);
    return std::string(ev ? ev->value_nick : "?");
  };
  EXPECT_EQ(nick(), "ultrafast") << "the default";
  gst_util_set_object_arg(G_OBJECT(e), "speed-preset", "veryslow");
  EXPECT_EQ(nick(), "veryslow");
  gst_util_set_object_arg(G_OBJECT(e), "speed-preset", "1");
  EXPECT_EQ(nick(), "superfast") << "numbers keep their old meaning";
  gint number = -1;
  g_object_get(e, "speed-preset", &number, nullptr);
  EXPECT_EQ(number, 1);
  // Every name x265enc takes, ccmx265enc takes (x265enc's "No preset" aside).
  if (GstElement* upstream = gst_element_factory_make("x265enc", nullptr)) {
    gst_object_ref_sink(upstream);
    GParamSpec* theirs = g_object_class_find_property(G_OBJECT_GET_CLASS(upstream), "speed-preset");
    ASSERT_NE(theirs, nullptr);
    GEnumClass* klass = G_PARAM_SPEC_ENUM(theirs)->enum_class;
    int names = 0;
    for (guint i = 0; i < klass->n_values; ++i) {
      const char* name = klass->values[i].value_nick;
      if (klass->values[i].value == 0) continue;  // "No preset"
      EXPECT_NE(g_enum_get_value_by_nick(G_PARAM_SPEC_ENUM(spec)->enum_class, name), nullptr) << name;
      ++names;
    }
    EXPECT_EQ(names, 10);
    gst_object_unref(upstream);
  }
  gst_object_unref(e);
  // gst-launch syntax.
  GError* error = nullptr;
  GstElement* parsed = gst_parse_launch("ccmx265enc name=enc speed-preset=faster", &error);
  ASSERT_EQ(error, nullptr) << error->message;
  gint faster = -1;
  g_object_get(parsed, "speed-preset", &faster, nullptr);
  EXPECT_EQ(faster, 3);
  gst_object_unref(parsed);
}

TEST_F(X265Enc, EosDrainsEveryFrameWithLookahead) {
  const Clip& clip = cars_small();
  EncodeOptions o;
  o.encoder = "ccmx265enc low-latency=false speed-preset=1";
  o.frames = 40;
  const Encoded e = encode(clip, o);
  ASSERT_TRUE(e.eos) << e.error;
  EXPECT_EQ(e.packets.size(), 40u);
  expect_decodes(e.write("lookahead.h265"), 40);
}

TEST_F(X265Enc, BitrateChangeWithLookaheadKeepsEveryFrame) {
  // low-latency=false: frames inside the look-ahead when the change lands.
  const Clip& clip = cars_small();
  EncodeOptions o;
  o.encoder = "ccmx265enc low-latency=false bitrate=1200";
  o.frames = 90;
  o.before_frame = [](GstElement* enc, GstPad*, int index) {
    if (index == 30) g_object_set(enc, "bitrate", 300u, nullptr);
  };
  const Encoded e = encode(clip, o);
  ASSERT_TRUE(e.eos) << e.error;
  ASSERT_EQ(e.packets.size(), 90u);
  std::printf("[ lookahead ] kbit/s per second: %.0f %.0f %.0f\n", e.kbps_in_window(0), e.kbps_in_window(1),
              e.kbps_in_window(2));
  EXPECT_LT(e.kbps_in_window(2), 0.5 * e.kbps_in_window(0));
  EXPECT_EQ(idr_frames(e), (std::set<int>{0}));
  expect_decodes(e.write("lookahead-bitrate.h265"), 90);
}

TEST_F(X265Enc, LatencyQueryAnswersTheLibraryDelay) {
  for (const bool low_latency : {true, false}) {
    GstElement* pipeline = gst_parse_launch(
        (std::string("videotestsrc is-live=true ! video/x-raw,width=160,height=128,framerate=30/1 ! ccmx265enc "
                     "name=enc low-latency=") +
         (low_latency ? "true" : "false") + " ! fakesink name=sink")
            .c_str(),
        nullptr);
    ASSERT_NE(pipeline, nullptr);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    // The encoder reports its latency once it has opened, on the first caps.
    GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
    GstPad* src = gst_element_get_static_pad(enc, "src");
    for (int i = 0; i < 200 && !gst_pad_has_current_caps(src); ++i) g_usleep(50 * 1000);
    EXPECT_TRUE(gst_pad_has_current_caps(src));
    // What the sink asks upstream: the source's frame plus the encoder's delay.
    GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    GstPad* sinkpad = gst_element_get_static_pad(sink, "sink");
    GstQuery* q = gst_query_new_latency();
    EXPECT_TRUE(gst_pad_peer_query(sinkpad, q));
    gst_object_unref(sinkpad);
    gst_object_unref(sink);
    GstClockTime min = 0;
    gst_query_parse_latency(q, nullptr, &min, nullptr);
    gst_query_unref(q);
    gst_object_unref(src);
    gst_object_unref(enc);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
    // The live source adds one frame; zerolatency nothing on top, look-ahead and
    // B-frames several frames.
    std::printf("[ latency ] low-latency=%d: %.1f ms\n", low_latency, double(min) / GST_MSECOND);
    if (low_latency)
      EXPECT_LE(min, kFrameDuration + GST_MSECOND);
    else
      EXPECT_GT(min, 5 * kFrameDuration);
  }
}

TEST_F(X265Enc, VariableRateInputWithoutTimestampsIsEncoded) {
  // A raw .h264 decoded by GStreamer: framerate=0/1 and no timestamps after the
  // first frame. Stock x265enc refuses to start on it.
  const std::string out = temp_path("variable-rate.mkv");
  const auto r = run_pipeline("filesrc location=" + media("webcam_1280x720_19f.h264") +
                              " ! h264parse ! avdec_h264 ! ccmx265enc ! h265parse ! matroskamux ! filesink location=" +
                              out);
  ASSERT_TRUE(r.eos) << r.error;
  const auto p = probe_file(out);
  EXPECT_TRUE(p.ok) << p.decoder_errors;
  EXPECT_EQ(p.frames, 19);
  EXPECT_NEAR(p.duration_s, 19.0 / 30, 0.05);
}

TEST_F(X265Enc, NewCapsMidStreamReopenWithAKeyFrame) {
  // 10 frames of the cars clip, then 10 of its top-left 160x128: the encoder
  // drains, reopens at the new size and starts with an IDR.
  const Clip& clip = cars_small();
  ASSERT_FALSE(clip.frames.empty());
  GstElement* pipeline = gst_parse_launch(
      "appsrc name=src format=time ! ccmx265enc ! appsink name=sink sync=false", nullptr);
  ASSERT_NE(pipeline, nullptr);
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  for (int i = 0; i < 20; ++i) {
    const bool small = i >= 10;
    if (i == 0 || i == 10) {
      GstCaps* caps = gst_caps_copy(clip.caps);
      gst_caps_set_simple(caps, "framerate", GST_TYPE_FRACTION, kFps, 1, "width", G_TYPE_INT, small ? 160 : 320,
                          "height", G_TYPE_INT, small ? 128 : 240, nullptr);
      gst_app_src_set_caps(GST_APP_SRC(src), caps);
      gst_caps_unref(caps);
    }
    GstBuffer* frame;
    if (!small) {
      frame = gst_buffer_copy(clip.frames[size_t(i)]);
    } else {
      GstVideoInfo info;
      gst_video_info_set_format(&info, GST_VIDEO_FORMAT_I420, 160, 128);
      frame = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
      GstVideoFrame in, out;
      gst_video_frame_map(&in, const_cast<GstVideoInfo*>(&clip.info), clip.frames[size_t(i)], GST_MAP_READ);
      gst_video_frame_map(&out, &info, frame, GST_MAP_WRITE);
      for (int p = 0; p < 3; ++p)
        for (int y = 0; y < GST_VIDEO_FRAME_COMP_HEIGHT(&out, p); ++y)
          memcpy(static_cast<guint8*>(GST_VIDEO_FRAME_PLANE_DATA(&out, p)) + y * GST_VIDEO_FRAME_PLANE_STRIDE(&out, p),
                 static_cast<guint8*>(GST_VIDEO_FRAME_PLANE_DATA(&in, p)) + y * GST_VIDEO_FRAME_PLANE_STRIDE(&in, p),
                 GST_VIDEO_FRAME_COMP_WIDTH(&out, p));
      gst_video_frame_unmap(&out);
      gst_video_frame_unmap(&in);
    }
    GST_BUFFER_PTS(frame) = GstClockTime(i) * kFrameDuration;
    GST_BUFFER_DURATION(frame) = kFrameDuration;
    ASSERT_EQ(gst_app_src_push_buffer(GST_APP_SRC(src), frame), GST_FLOW_OK);
  }
  gst_app_src_end_of_stream(GST_APP_SRC(src));
  Encoded e;
  while (GstSample* sample = gst_app_sink_pull_sample(GST_APP_SINK(sink))) {
    GstBuffer* b = gst_sample_get_buffer(sample);
    Packet p;
    p.pts = GST_BUFFER_PTS(b);
    p.delta = GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DELTA_UNIT);
    p.data.resize(gst_buffer_get_size(b));
    gst_buffer_extract(b, 0, p.data.data(), p.data.size());
    e.packets.push_back(std::move(p));
    gst_sample_unref(sample);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(src);
  gst_object_unref(sink);
  gst_object_unref(pipeline);
  EXPECT_EQ(e.packets.size(), 20u);
  EXPECT_EQ(idr_frames(e), (std::set<int>{0, 10}));
  expect_decodes(e.write("caps-change.h265"), 20);
}

TEST_F(X265Enc, OddSizesIn444KeepTheirSize) {
  const std::string out = temp_path("odd444.h265");
  const auto r = run_pipeline(
      "videotestsrc num-buffers=5 ! video/x-raw,format=Y444,width=321,height=241,framerate=30/1 ! ccmx265enc ! "
      "filesink location=" + out);
  ASSERT_TRUE(r.eos) << r.error;
  const auto p = probe_file(out);
  EXPECT_TRUE(p.ok) << p.decoder_errors;
  EXPECT_EQ(p.width, 321);
  EXPECT_EQ(p.height, 241);
  EXPECT_EQ(p.pix_fmt, "yuv444p");
}

struct BadInput {
  const char* name;
  const char* caps;
  const char* expect;  // in the error message (or debug text)
};

class BadInputs : public X265Enc, public ::testing::WithParamInterface<BadInput> {};

TEST_P(BadInputs, ElementErrorNamesTheLimit) {
  const BadInput& b = GetParam();
  const auto r = run_pipeline(std::string("videotestsrc num-buffers=3 ! ") + b.caps + " ! ccmx265enc ! fakesink", 30);
  EXPECT_FALSE(r.eos);
  EXPECT_NE(r.error.find(b.expect), std::string::npos) << r.error;
}

INSTANTIATE_TEST_SUITE_P(
    X265, BadInputs,
    ::testing::Values(BadInput{"odd420", "video/x-raw,format=I420,width=321,height=240", "even width and height"},
                      BadInput{"odd422", "video/x-raw,format=Y42B,width=321,height=240", "even width"},
                      BadInput{"tiny", "video/x-raw,format=I420,width=8,height=8", "at least 16x16"},
                      // Refused by the caps: the link fails, nothing runs.
                      BadInput{"nv12", "video/x-raw,format=NV12,width=320,height=240", "can't handle caps"},
                      BadInput{"huge", "video/x-raw,format=I420,width=20000,height=64", "can't handle caps"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
