// ccmsvtav1enc on real content: live bitrate change, key frame on request in low
// delay, per-frame QP from the meta, HDR10 metadata, latency, refusals. Bitstreams
// are checked with ffmpeg (-xerror), ffprobe and dav1d.
#include "pipeline_util.h"

#include "common/qp_meta.h"

#include "enc/svt_headers.h"  // SVT_AV1_CHECK_VERSION: what differs between releases
#include <gst/app/app.h>
#define GST_USE_UNSTABLE_API  // GstAV1Parser: stable in use since 1.18, marked unstable
#include <gst/codecparsers/gstav1parser.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using ccm::test::media;
using ccm::test::probe_file;
using ccm::test::run_pipeline;
using ccm::test::temp_path;

namespace {

constexpr int kFps = 25;
// SVT-AV1 2.x makes a requested key picture in low delay and takes a new bitrate on
// it; 1.4.1 needs a restart (svt_session.h, kLowDelayKeyOnRequest).
constexpr bool kKeyOnRequestInLibrary = SVT_AV1_CHECK_VERSION(2, 0, 0);

// ---- helpers ------------------------------------------------------------------------

std::string run_command(const std::string& cmd, int* status = nullptr) {
  gchar* out = nullptr;
  gchar* err = nullptr;
  gint st = -1;
  GError* e = nullptr;
  std::string result;
  if (g_spawn_command_line_sync(cmd.c_str(), &out, &err, &st, &e)) {
    result = std::string(out ? out : "") + std::string(err ? err : "");
  } else {
    result = e ? e->message : "spawn failed";
    if (e) g_error_free(e);
  }
  g_free(out);
  g_free(err);
  if (status) *status = st;
  return result;
}

struct Packet {
  double pts = 0;
  int size = 0;
  bool key = false;
};

// Packets of the video stream as the container has them (ffprobe), in pts order.
std::vector<Packet> packets(const std::string& path) {
  std::vector<Packet> out;
  std::istringstream in(run_command("ffprobe -v error -select_streams v:0 -show_entries packet=pts_time,size,flags "
                                    "-of csv=p=0 " + path));
  std::string line;
  while (std::getline(in, line)) {
    Packet p;
    char flags[16] = {};
    if (std::sscanf(line.c_str(), "%lf,%d,%15s", &p.pts, &p.size, flags) >= 2) {
      p.key = flags[0] == 'K';
      out.push_back(p);
    }
  }
  return out;
}

// Frames the decoder (ffmpeg's libdav1d) calls key frames, by pts.
std::set<long> decoded_key_frames(const std::string& path, double fps) {
  std::set<long> keys;
  std::istringstream in(run_command("ffprobe -v error -select_streams v:0 -show_entries frame=pts_time,key_frame "
                                    "-of csv=p=0 " + path));
  std::string line;
  while (std::getline(in, line)) {
    int key = 0;
    double pts = 0;
    if (std::sscanf(line.c_str(), "%d,%lf", &key, &pts) == 2 && key) keys.insert(std::lround(pts * fps));
  }
  return keys;
}

// dav1d decodes an OBU stream (section 5) to the end: the number of frames it
// reports, -1 when it failed.
int dav1d_frames(const std::string& obu_path) {
  int status = -1;
  const std::string out =
      run_command("dav1d -i " + obu_path + " --demuxer section5 -o /dev/null --muxer null", &status);
  if (status != 0) return -1;
  const auto at = out.rfind("Decoded ");
  int done = 0, total = 0;
  if (at == std::string::npos || std::sscanf(out.c_str() + at, "Decoded %d/%d", &done, &total) != 2) return -1;
  return done == total ? done : -1;
}

// Raw frames of a clip, decoded once and kept in memory, to loop as live input.
std::vector<GstBuffer*> decode_clip(const std::string& clip, const char* format) {
  if (clip.empty()) return {};
  return ccm::test::decode_frames("filesrc location=" + clip + " ! h264parse ! avdec_h264", format);
}

// Feeds `count` frames at 25 fps, looping the clip back and forth (no cut at the
// loop point), into a pipeline that starts with "appsrc name=src" (live, but fed
// as fast as the pipeline takes it).
struct LoopSource {
  std::vector<GstBuffer*> frames;
  int count = 0;
  int next = 0;
  ~LoopSource() {
    for (GstBuffer* b : frames) gst_buffer_unref(b);
  }
  static void need_data(GstAppSrc* src, guint, gpointer data) {
    auto* self = static_cast<LoopSource*>(data);
    if (self->next >= self->count) {
      gst_app_src_end_of_stream(src);
      return;
    }
    const int n = int(self->frames.size());
    int i = self->next % (2 * n);
    if (i >= n) i = 2 * n - 1 - i;
    GstBuffer* b = gst_buffer_copy(self->frames[i]);  // shares the memory
    GST_BUFFER_PTS(b) = gst_util_uint64_scale(self->next, GST_SECOND, kFps);
    GST_BUFFER_DTS(b) = GST_CLOCK_TIME_NONE;
    GST_BUFFER_DURATION(b) = GST_SECOND / kFps;
    self->next++;
    gst_app_src_push_buffer(src, b);
  }
};

struct Outcome {
  bool eos = false;
  std::string error;
  guint restarts = 0;
};

// Runs a pipeline whose source is "appsrc name=src" fed by `source` and whose
// encoder is named "enc"; `setup` may add probes before it starts.
Outcome run_with_source(const std::string& desc, LoopSource& source, const GstVideoInfo& info,
                        const std::function<void(GstElement* pipeline)>& setup = {}, int timeout_s = 180) {
  Outcome o;
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
  if (!pipeline || err) {
    o.error = err ? err->message : "parse failed";
    if (err) g_error_free(err);
    if (pipeline) gst_object_unref(pipeline);
    return o;
  }
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstCaps* caps = gst_video_info_to_caps(&info);
  // Live, as a camera or a screen grabber: the encoder then holds one picture.
  g_object_set(src, "caps", caps, "format", GST_FORMAT_TIME, "max-buffers", guint64(4), "block", TRUE, "is-live",
               TRUE, "min-latency", gint64(0), nullptr);
  gst_caps_unref(caps);
  GstAppSrcCallbacks callbacks{};
  callbacks.need_data = &LoopSource::need_data;
  gst_app_src_set_callbacks(GST_APP_SRC(src), &callbacks, &source, nullptr);
  gst_object_unref(src);
  if (setup) setup(pipeline);

  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, GstClockTime(timeout_s) * GST_SECOND,
                                               GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  if (!msg) {
    o.error = "timeout";
  } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError* e = nullptr;
    gchar* dbg = nullptr;
    gst_message_parse_error(msg, &e, &dbg);
    o.error = std::string(e->message) + " | " + (dbg ? dbg : "");
    g_error_free(e);
    g_free(dbg);
  } else {
    o.eos = true;
  }
  if (msg) gst_message_unref(msg);
  if (GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc")) {
    g_object_get(enc, "key-frame-restarts", &o.restarts, nullptr);
    gst_object_unref(enc);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  return o;
}

// ---- the Must-show: 1080p street clip, bitrate 4000 -> 1000 while PLAYING ---------------

struct DepthCase {
  const char* format;
  const char* pix_fmt;
};

class BitrateChange : public ::testing::TestWithParam<DepthCase> {};

// 8 s of 1080p: bitrate=4000 for the first two seconds, 1000 from pts 2.0 s on
// (set while PLAYING, from the streaming thread at that frame). An upstream
// force-key-unit asks for a key frame at frame 40 (1.6 s). Per-second windows by
// pts: near 4000 before the change, near 1000 from the 4th second on; the key
// frames are exactly frame 0, 40 and the periodic one 5 s after 40; every frame
// decodes with ffmpeg and dav1d.
TEST_P(BitrateChange, TakesEffectWithinASecondAndKeyFrameOnRequest) {
  const DepthCase& c = GetParam();
  const std::string clip = media("street_1920x1080_54f.h264");
  if (clip.empty()) return;  // media() has failed the test, naming the clip
  LoopSource source;
  source.frames = decode_clip(clip, c.format);
  ASSERT_EQ(source.frames.size(), 54u);
  source.count = 8 * kFps;
  GstVideoInfo info;
  gst_video_info_set_format(&info, gst_video_format_from_string(c.format), 1920, 1080);
  GST_VIDEO_INFO_FPS_N(&info) = kFps;
  GST_VIDEO_INFO_FPS_D(&info) = 1;

  const std::string mkv = temp_path(std::string("svt-bitrate-") + c.format + ".mkv");
  const std::string obu = temp_path(std::string("svt-bitrate-") + c.format + ".obu");
  // The per-picture-QP path (the default on 1.4.1; on 2.x SVT's own rate control is,
  // whose bitrate changes come with key pictures: LibraryRateControlFollowsABitrateChange).
  const std::string desc = "appsrc name=src ! ccmsvtav1enc name=enc library-rate-control=false bitrate=4000 ! tee name=t "
                           "t. ! queue ! av1parse ! matroskamux ! filesink location=" + mkv +
                           " t. ! queue ! filesink location=" + obu;
  bool changed = false;
  GstClockTime latency = GST_CLOCK_TIME_NONE;
  auto setup = [&](GstElement* pipeline) {
    GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
    GstPad* sink = gst_element_get_static_pad(enc, "sink");
    GstPad* srcpad = gst_element_get_static_pad(enc, "src");
    // Borrowed, not owned: the probe lives on the encoder's own pad, and references
    // held here would keep the encoder alive past the pipeline (a cycle LeakSanitizer
    // reported on Debian 13).
    struct Ctx {
      GstElement* enc;
      GstPad* srcpad;
      bool* changed;
      GstClockTime* latency;
      bool asked = false;
    };
    auto* ctx = new Ctx{enc, srcpad, &changed, &latency};
    gst_pad_add_probe(
        sink, GST_PAD_PROBE_TYPE_BUFFER,
        [](GstPad*, GstPadProbeInfo* pi, gpointer data) -> GstPadProbeReturn {
          auto* ctx = static_cast<Ctx*>(data);
          GstBuffer* buf = GST_PAD_PROBE_INFO_BUFFER(pi);
          if (!ctx->asked) {
            // Key frame at frame 40: an upstream request for running time 1.6 s.
            ctx->asked = true;
            gst_pad_send_event(ctx->srcpad, gst_video_event_new_upstream_force_key_unit(
                                                gst_util_uint64_scale(40, GST_SECOND, kFps), TRUE, 1));
          }
          if (!*ctx->changed && GST_BUFFER_PTS(buf) >= 2 * GST_SECOND) {
            g_object_set(ctx->enc, "bitrate", 1000u, nullptr);
            *ctx->changed = true;
          }
          if (GST_BUFFER_PTS(buf) == GST_SECOND) {  // running: ask the encoder its latency
            GstQuery* q = gst_query_new_latency();
            if (gst_pad_query(ctx->srcpad, q)) {
              gboolean live;
              GstClockTime min, max;
              gst_query_parse_latency(q, &live, &min, &max);
              *ctx->latency = min;
            }
            gst_query_unref(q);
          }
          return GST_PAD_PROBE_OK;
        },
        ctx, [](gpointer data) { delete static_cast<Ctx*>(data); });
    gst_object_unref(sink);
    gst_object_unref(srcpad);
    gst_object_unref(enc);
  };
  const Outcome o = run_with_source(desc, source, info, setup);
  ASSERT_TRUE(o.eos) << o.error;
  EXPECT_TRUE(changed);
  // The key frame at 40: a restart on 1.4.1, a key picture of the library's on 2.x
  // (the bitrate change needs none on either).
  EXPECT_EQ(o.restarts, kKeyOnRequestInLibrary ? 0u : 1u);
  // Latency: the one picture SVT-AV1 holds in low delay (40 ms at 25 fps).
  EXPECT_EQ(latency, GST_SECOND / kFps);

  auto probe = probe_file(mkv);
  EXPECT_TRUE(probe.ok) << probe.decoder_errors;
  EXPECT_EQ(probe.frames, source.count);  // EOS drained every frame
  EXPECT_EQ(probe.pix_fmt, c.pix_fmt);
  EXPECT_EQ(dav1d_frames(obu), source.count);

  const auto pk = packets(mkv);
  ASSERT_EQ(int(pk.size()), source.count);
  std::map<int, double> kbps;
  for (const Packet& p : pk) kbps[int(std::floor(p.pts + 1e-6))] += p.size * 8 / 1000.0;
  for (auto [second, rate] : kbps) std::printf("[ %s ] second %d: %.0f kbit/s\n", c.format, second, rate);
  // Single seconds: the controller moves its QP slowly (down 1, up 4 a picture,
  // an excess spread over 2 s), which costs 1-s accuracy for BD-rate (against
  // SvtAv1EncApp's CBR +10-20% before, +0.5-3.4% now on the calibration clips).
  // Measured: 4589-5164 in the first second (the key frame), 709-1295 from the
  // change on, where the flat QPs of before kept 0.78-1.2. Where the machine cannot
  // code 1080p in real time one picture at a time (2 cores under load), the element
  // lets up to 4 in flight (LiveSourceItCannotKeepUpWith...) and the controller
  // learns each picture's size up to 3 pictures later: 589 in the 4th second then.
  for (int s : {0, 1}) {
    EXPECT_GT(kbps[s], 4000 * 0.8) << "second " << s;
    EXPECT_LT(kbps[s], 4000 * 1.4) << "second " << s;
  }
  for (int s = 3; s < 8; s++) {
    EXPECT_GT(kbps[s], 1000 * 0.55) << "second " << s;
    EXPECT_LT(kbps[s], 1000 * 1.45) << "second " << s;
  }
  // The whole of the 1000 kbit/s part (3-8 s) within 10 %.
  double tail = 0;
  for (int s = 3; s < 8; s++) tail += kbps[s];
  EXPECT_NEAR(tail / 5, 1000, 100);

  // Key frames in the bitstream (the decoder's view) and in the container.
  const std::set<long> expected{0, 40, 40 + 5 * kFps};
  EXPECT_EQ(decoded_key_frames(mkv, kFps), expected);
  std::set<long> flagged;
  for (const Packet& p : pk)
    if (p.key) flagged.insert(std::lround(p.pts * kFps));
  EXPECT_EQ(flagged, expected);
}

INSTANTIATE_TEST_SUITE_P(Depths, BitrateChange,
                         ::testing::Values(DepthCase{"I420", "yuv420p"}, DepthCase{"I420_10LE", "yuv420p10le"}),
                         [](const auto& info) { return std::string(info.param.format); });

// ---- library-rate-control: SVT's own rate control in low delay ---------------------------

// foreman 352x288, 8 s live at 25 fps, library-rate-control=true at 800 kbit/s; at 2 s
// 760 (5 %: no key frame for it on 2.x), at 4 s 300 (a fall: at once). SVT-AV1 2.x takes
// the 300 on a key picture of its own at frame 100, without a restart; 1.4.1 reopens
// for each change. The rate follows: 0.75-1.3x per window of two seconds.
TEST(SvtAv1Enc, LibraryRateControlFollowsABitrateChange) {
  const std::string clip = media("foreman_352x288_300f.h264");
  if (clip.empty()) return;
  LoopSource source;
  source.frames = decode_clip(clip, "I420");
  ASSERT_FALSE(source.frames.empty());
  source.count = 8 * kFps;
  GstVideoInfo info;
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_I420, 352, 288);
  GST_VIDEO_INFO_FPS_N(&info) = kFps;
  GST_VIDEO_INFO_FPS_D(&info) = 1;
  const std::string mkv = temp_path("svt-library-rate.mkv");
  const std::string desc = "appsrc name=src ! ccmsvtav1enc name=enc library-rate-control=true bitrate=800 ! "
                           "av1parse ! matroskamux ! filesink location=" + mkv;
  auto setup = [&](GstElement* pipeline) {
    GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
    GstPad* sink = gst_element_get_static_pad(enc, "sink");
    gst_pad_add_probe(
        sink, GST_PAD_PROBE_TYPE_BUFFER,
        [](GstPad* pad, GstPadProbeInfo* pi, gpointer) -> GstPadProbeReturn {
          const GstClockTime pts = GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(pi));
          GstObject* enc = gst_pad_get_parent(pad);
          if (pts == 2 * GST_SECOND) g_object_set(enc, "bitrate", 760u, nullptr);
          if (pts == 4 * GST_SECOND) g_object_set(enc, "bitrate", 300u, nullptr);
          gst_object_unref(enc);
          return GST_PAD_PROBE_OK;
        },
        nullptr, nullptr);
    gst_object_unref(sink);
    gst_object_unref(enc);
  };
  const Outcome o = run_with_source(desc, source, info, setup);
  ASSERT_TRUE(o.eos) << o.error;
  EXPECT_EQ(o.restarts, 0u);
  auto probe = probe_file(mkv);
  EXPECT_TRUE(probe.ok) << probe.decoder_errors;
  EXPECT_EQ(probe.frames, source.count);

  const auto pk = packets(mkv);
  ASSERT_EQ(int(pk.size()), source.count);
  std::map<int, double> kbits;
  for (const Packet& p : pk) kbits[int(std::floor(p.pts + 1e-6)) / 2] += p.size * 8 / 1000.0;
  const double want[] = {800, 780, 300, 300};  // per window of 2 s (760 from 2 s: within the limits either way)
  for (int w = 0; w < 4; w++) {
    const double rate = kbits[w] / 2;
    std::printf("[ library rate ] seconds %d-%d: %.0f kbit/s (asked %.0f)\n", 2 * w, 2 * w + 2, rate, want[w]);
    if (w == 2) continue;  // the change itself: the key picture and the buffer's way down
    EXPECT_GT(rate, want[w] * 0.75) << "window " << w;
    EXPECT_LT(rate, want[w] * 1.3) << "window " << w;
  }
  const std::set<long> keys = decoded_key_frames(mkv, kFps);
  EXPECT_TRUE(keys.contains(0) && keys.contains(4 * kFps)) << "key frames at 0 and at the fall to 300";
  if (kKeyOnRequestInLibrary) EXPECT_FALSE(keys.contains(2 * kFps)) << "the 5 % step waits for a key frame";
  else EXPECT_TRUE(keys.contains(2 * kFps)) << "1.4.1 reopens for every change";
}

// ---- keyframe-interval ----------------------------------------------------------------------

// keyframe-interval is the library's own intra period: key frames exactly every
// N pictures, without a restart; the base's interval requests fall on them.
TEST(SvtAv1Enc, KeyframeIntervalWithoutRestarts) {
  const std::string mkv = temp_path("svt-keyint.mkv");
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(
      ("videotestsrc num-buffers=31 pattern=ball ! video/x-raw,format=I420,width=160,height=128,framerate=25/1 ! "
       "ccmsvtav1enc name=enc keyframe-interval=10 ! av1parse ! matroskamux ! filesink location=" + mkv).c_str(),
      &err);
  ASSERT_TRUE(pipeline && !err);
  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstMessage* msg =
      gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND, GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(GST_MESSAGE_TYPE(msg), GST_MESSAGE_EOS);
  gst_message_unref(msg);
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  guint restarts = 99;
  g_object_get(enc, "key-frame-restarts", &restarts, nullptr);
  gst_object_unref(enc);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  EXPECT_EQ(restarts, 0u);
  EXPECT_EQ(decoded_key_frames(mkv, kFps), (std::set<long>{0, 10, 20, 30}));
  EXPECT_TRUE(probe_file(mkv).ok);
}

// ---- per-frame QP from GstCcmQpMeta -----------------------------------------------------

// Attaches a QP meta to every frame: `first` on even frames, `second` on odd ones.
void attach_alternating_qp(GstElement* pipeline, int first, int second) {
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstPad* sink = gst_element_get_static_pad(enc, "sink");
  struct Ctx {
    int qp[2];
    int n = 0;
  };
  gst_pad_add_probe(
      sink, GST_PAD_PROBE_TYPE_BUFFER,
      [](GstPad*, GstPadProbeInfo* pi, gpointer data) -> GstPadProbeReturn {
        auto* ctx = static_cast<Ctx*>(data);
        GstBuffer* buf = gst_buffer_make_writable(GST_PAD_PROBE_INFO_BUFFER(pi));
        gst_buffer_add_ccm_qp_meta(buf, ctx->qp[ctx->n++ % 2]);
        GST_PAD_PROBE_INFO_DATA(pi) = buf;
        return GST_PAD_PROBE_OK;
      },
      new Ctx{{first, second}}, [](gpointer d) { delete static_cast<Ctx*>(d); });
  gst_object_unref(sink);
  gst_object_unref(enc);
}

// The base_q_idx of every frame ccmsvtav1enc emits, in order, read with
// GStreamer's AV1 parser (codecparsers) at the encoder's source pad.
void attach_qindex_probe(GstElement* pipeline, std::vector<int>* out) {
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstPad* src = gst_element_get_static_pad(enc, "src");
  struct Ctx {
    GstAV1Parser* parser = gst_av1_parser_new();
    std::vector<int>* out;
    ~Ctx() { gst_av1_parser_free(parser); }
  };
  gst_pad_add_probe(
      src, GST_PAD_PROBE_TYPE_BUFFER,
      [](GstPad*, GstPadProbeInfo* pi, gpointer data) -> GstPadProbeReturn {
        auto* ctx = static_cast<Ctx*>(data);
        GstMapInfo map;
        if (!gst_buffer_map(GST_PAD_PROBE_INFO_BUFFER(pi), &map, GST_MAP_READ)) return GST_PAD_PROBE_OK;
        guint offset = 0;
        while (offset < map.size) {
          GstAV1OBU obu;
          guint consumed = 0;
          if (gst_av1_parser_identify_one_obu(ctx->parser, map.data + offset, map.size - offset, &obu, &consumed) !=
              GST_AV1_PARSER_OK)
            break;
          offset += consumed;
          if (obu.obu_type == GST_AV1_OBU_SEQUENCE_HEADER) {
            GstAV1SequenceHeaderOBU seq;
            gst_av1_parser_parse_sequence_header_obu(ctx->parser, &obu, &seq);
          } else if (obu.obu_type == GST_AV1_OBU_FRAME || obu.obu_type == GST_AV1_OBU_FRAME_HEADER) {
            GstAV1FrameOBU frame;
            GstAV1FrameHeaderOBU* header = &frame.frame_header;
            const GstAV1ParserResult r =
                obu.obu_type == GST_AV1_OBU_FRAME
                    ? gst_av1_parser_parse_frame_obu(ctx->parser, &obu, &frame)
                    : gst_av1_parser_parse_frame_header_obu(ctx->parser, &obu, header);
            if (r == GST_AV1_PARSER_OK && !header->show_existing_frame) {
              ctx->out->push_back(header->quantization_params.base_q_idx);
              gst_av1_parser_reference_frame_update(ctx->parser, header);
            }
          }
        }
        gst_buffer_unmap(GST_PAD_PROBE_INFO_BUFFER(pi), &map);
        return GST_PAD_PROBE_OK;
      },
      new Ctx{gst_av1_parser_new(), out}, [](gpointer d) { delete static_cast<Ctx*>(d); });
  gst_object_unref(src);
  gst_object_unref(enc);
}

struct QpRun {
  std::vector<Packet> packets;
  std::vector<int> qindex;
};

// 41 frames of foreman through ccmsvtav1enc (low delay), QP from the meta
// alternating `first`, `second` (frame 0 gets `first`), into matroskamux; every
// frame must decode.
QpRun run_with_meta_qp(int first, int second) {
  QpRun run;
  const std::string clip = media("foreman_352x288_300f.h264");
  if (clip.empty()) return run;  // media() has failed the test, naming the clip
  const std::string out = temp_path("svt-qp-" + std::to_string(first) + "-" + std::to_string(second) + ".mkv");
  const std::string desc = "filesrc location=" + clip +
                           " ! h264parse ! avdec_h264 ! identity eos-after=41 ! videoconvert ! "
                           "video/x-raw,format=I420 ! ccmsvtav1enc name=enc bitrate=300 ! "
                           "av1parse ! matroskamux ! filesink location=" + out;
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
  EXPECT_TRUE(pipeline && !err);
  if (!pipeline || err) return run;
  attach_alternating_qp(pipeline, first, second);
  attach_qindex_probe(pipeline, &run.qindex);
  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstMessage* msg =
      gst_bus_timed_pop_filtered(bus, 120 * GST_SECOND, GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  EXPECT_NE(msg, nullptr) << "no EOS within 120 s";
  if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError* e = nullptr;
    gst_message_parse_error(msg, &e, nullptr);
    ADD_FAILURE() << e->message;
    g_error_free(e);
  }
  if (msg) gst_message_unref(msg);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);

  auto probe = probe_file(out);
  EXPECT_TRUE(probe.ok) << probe.decoder_errors;
  run.packets = packets(out);
  EXPECT_EQ(probe.frames, int(run.packets.size()));
  EXPECT_EQ(run.qindex.size(), run.packets.size());
  return run;
}

// The temporal layer of frame `i` (>= 1) after the key frame in SVT-AV1's
// low-delay pattern of 3 levels: 0 every 8th, 1 halfway, 2 at the quarters, 3 between.
int layer_of(int i) {
  const int pos = i % 8;
  return pos == 0 ? 0 : pos == 4 ? 1 : pos % 2 == 0 ? 2 : 3;
}

// Alternating QP 20 / 40 against 40 / 20 on the same frames: each frame given QP
// 20 is the bigger one of its pair, whichever layer it sits in (both runs add the
// same layer offset to it), and every frame decodes.
TEST(SvtAv1Enc, PerFrameQpFromMeta) {
  const QpRun a = run_with_meta_qp(20, 40);
  const QpRun b = run_with_meta_qp(40, 20);
  ASSERT_GE(a.packets.size(), 40u);
  ASSERT_EQ(a.packets.size(), b.packets.size());
  int ordered = 0, pairs = 0;
  for (size_t i = 1; i < a.packets.size(); i++) {
    const bool a_low = i % 2 == 0;  // even frames: QP 20 in run a
    const int low = a_low ? a.packets[i].size : b.packets[i].size;
    const int high = a_low ? b.packets[i].size : a.packets[i].size;
    pairs++;
    if (low > 2 * high) ordered++;
    else std::printf("frame %zu: QP 20 %d bytes, QP 40 %d bytes\n", i, low, high);
  }
  EXPECT_EQ(ordered, pairs);
}

// In low delay every picture but a key frame gets its temporal layer's QP offset
// on top of the QP it was given (as SVT-AV1's own constant-QP mode does; flat QPs
// cost 18-31% in BD-rate): with QP 32 from the meta on every frame, the base layer
// is coded finest and the top layer coarsest.
TEST(SvtAv1Enc, LowDelayLayersGetTheirQpOffsets) {
  const QpRun run = run_with_meta_qp(32, 32);
  ASSERT_GE(run.qindex.size(), 40u);
  double sum[4] = {0, 0, 0, 0};
  int count[4] = {0, 0, 0, 0};
  for (size_t i = 1; i < run.qindex.size(); i++) {
    sum[layer_of(int(i))] += run.qindex[i];
    count[layer_of(int(i))]++;
  }
  double mean[4];
  for (int l = 0; l < 4; l++) {
    ASSERT_GT(count[l], 0);
    mean[l] = sum[l] / count[l];
    std::printf("layer %d: mean base_q_idx %.1f over %d frames\n", l, mean[l], count[l]);
  }
  std::printf("key frame: base_q_idx %d\n", run.qindex[0]);
  // base_q_idx is about 4x the QP: offsets -6, -2, +1, +3 give 104, 120, 132, 140.
  for (int l = 0; l < 3; l++) EXPECT_LE(mean[l] + 6, mean[l + 1]) << "layer " << l << " against " << l + 1;
  EXPECT_GE(mean[3] - mean[0], 30);
  // The key frame keeps the QP it was given: between the base and the top layer.
  EXPECT_GT(run.qindex[0], mean[0]);
  EXPECT_LT(run.qindex[0], mean[3]);
}

// ---- HDR10 ----------------------------------------------------------------------------

// Mastering display and content light level from the caps reach the bitstream:
// ffprobe reads them from the raw OBU stream (no container to carry them).
TEST(SvtAv1Enc, Hdr10MetadataInTheBitstream) {
  const std::string obu = temp_path("svt-hdr.obu");
  // BT.2020 primaries, D65, 1000 / 0.005 cd/m2 (GStreamer units: 0.00002, 0.0001).
  auto r = run_pipeline(
      "videotestsrc num-buffers=3 ! video/x-raw,format=I420_10LE,width=128,height=96,framerate=25/1,"
      "colorimetry=bt2100-pq,mastering-display-info=(string)\"35400:14600:8500:39850:6550:2300:15635:16450:"
      "10000000:50\",content-light-level=(string)\"1000:400\" ! ccmsvtav1enc ! filesink location=" + obu);
  ASSERT_TRUE(r.eos) << r.error;
  const std::string out = run_command("ffprobe -v error -f obu -show_frames -read_intervals %+#1 " + obu);
  auto value = [&](const std::string& key) {
    const auto at = out.find(key + "=");
    if (at == std::string::npos) return -1.0;
    double num = 0, den = 1;
    const int n = std::sscanf(out.c_str() + at + key.size() + 1, "%lf/%lf", &num, &den);
    return n == 2 ? num / den : n == 1 ? num : -1.0;
  };
  EXPECT_NE(out.find("Mastering display metadata"), std::string::npos) << out;
  EXPECT_NEAR(value("red_x"), 0.708, 0.001);
  EXPECT_NEAR(value("red_y"), 0.292, 0.001);
  EXPECT_NEAR(value("green_x"), 0.170, 0.001);
  EXPECT_NEAR(value("blue_y"), 0.046, 0.001);
  EXPECT_NEAR(value("white_point_x"), 0.3127, 0.001);
  EXPECT_NEAR(value("max_luminance"), 1000, 0.5);
  EXPECT_NEAR(value("min_luminance"), 0.005, 0.0005);
  EXPECT_NE(out.find("Content light level metadata"), std::string::npos) << out;
  EXPECT_EQ(value("max_content"), 1000);
  EXPECT_EQ(value("max_average"), 400);
  EXPECT_NE(out.find("color_transfer=smpte2084"), std::string::npos);
  EXPECT_NE(out.find("color_primaries=bt2020"), std::string::npos);
}

// ---- latency ------------------------------------------------------------------------------

// The latency query answers what the element holds: one picture behind a live
// source, four behind a non-live one (where SVT gets room to use every core), one
// with SVT's own rate control, which learns from the pictures already out.
TEST(SvtAv1Enc, LatencyIsThePicturesHeld) {
  struct Case {
    bool live, library;
    int frames;
  };
  for (auto [live, library, frames] : {Case{true, false, 1}, Case{false, false, 4}, Case{false, true, 1}}) {
    const std::string desc = std::string("videotestsrc num-buffers=12 is-live=") + (live ? "true" : "false") +
                             " ! video/x-raw,format=I420,width=128,height=96,framerate=25/1 ! "
                             "ccmsvtav1enc name=enc library-rate-control=" + (library ? "true" : "false") +
                             " ! fakesink";
    GError* err = nullptr;
    GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
    ASSERT_TRUE(pipeline && !err);
    GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
    GstPad* src = gst_element_get_static_pad(enc, "src");
    struct Ctx {
      GstPad* sink;
      GstClockTime min = GST_CLOCK_TIME_NONE;      // answered downstream of the encoder
      GstClockTime upstream = GST_CLOCK_TIME_NONE; // answered upstream of it (the source's own)
      gboolean live = FALSE;
      int seen = 0;
    } ctx{gst_element_get_static_pad(enc, "sink")};
    gst_pad_add_probe(
        src, GST_PAD_PROBE_TYPE_BUFFER,
        [](GstPad* pad, GstPadProbeInfo*, gpointer data) -> GstPadProbeReturn {
          auto* c = static_cast<Ctx*>(data);
          if (c->seen++ == 2) {
            GstQuery* q = gst_query_new_latency();
            if (gst_pad_query(pad, q)) gst_query_parse_latency(q, &c->live, &c->min, nullptr);
            gst_query_unref(q);
            q = gst_query_new_latency();
            if (gst_pad_peer_query(c->sink, q)) gst_query_parse_latency(q, nullptr, &c->upstream, nullptr);
            gst_query_unref(q);
          }
          return GST_PAD_PROBE_OK;
        },
        &ctx, nullptr);
    GstBus* bus = gst_element_get_bus(pipeline);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    GstMessage* msg = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND,
                                                 GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    ASSERT_NE(msg, nullptr);
    EXPECT_EQ(GST_MESSAGE_TYPE(msg), GST_MESSAGE_EOS);
    gst_message_unref(msg);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(bus);
    gst_object_unref(src);
    gst_object_unref(ctx.sink);
    gst_object_unref(enc);
    gst_object_unref(pipeline);
    EXPECT_EQ(ctx.live, live);
    ASSERT_TRUE(GST_CLOCK_TIME_IS_VALID(ctx.min) && GST_CLOCK_TIME_IS_VALID(ctx.upstream));
    EXPECT_EQ(ctx.min - ctx.upstream, GstClockTime(frames) * GST_SECOND / 25)
        << (live ? "live" : "non-live") << (library ? ", library rate control" : "");
    EXPECT_EQ(ctx.seen, 12);  // EOS drained every picture
  }
}

// Behind a live source faster than the library (1080p at 240 fps, the most SVT-AV1
// takes: no machine codes 1080p in a 4.2 ms slot, SvtAv1EncApp does 80 fps at preset
// 13 on 16 cores), the element lets more pictures in flight and reports the new
// latency (a latency message, the pipeline recomputes it); behind a source it keeps
// up with (640x480 at 30 fps), it stays at one. Every picture still comes out.
// (640x480 at 240 fps was behind with SVT-AV1 1.4.1, which holds a picture, and
// kept up with 2.3, which does not.)
TEST(SvtAv1Enc, LiveSourceItCannotKeepUpWithGetsMorePicturesInFlight) {
  for (int fps : {240, 30}) {
    const int frames = fps == 240 ? 120 : 45;
    const std::string size = fps == 240 ? "width=1920,height=1080" : "width=640,height=480";
    const std::string desc = "videotestsrc is-live=true pattern=ball num-buffers=" + std::to_string(frames) +
                             " ! video/x-raw,format=I420," + size + ",framerate=" + std::to_string(fps) +
                             "/1 ! ccmsvtav1enc name=enc ! fakesink name=sink";
    GError* err = nullptr;
    GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
    ASSERT_TRUE(pipeline && !err);
    GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
    GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    GstBus* bus = gst_element_get_bus(pipeline);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    int latency_messages = 0;
    GstMessage* end = nullptr;
    const gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    while (!end && g_get_monotonic_time() < deadline) {
      GstMessage* msg = gst_bus_timed_pop_filtered(
          bus, GST_SECOND, GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_LATENCY));
      if (!msg) continue;
      if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_LATENCY) {
        if (GST_MESSAGE_SRC(msg) == GST_OBJECT(enc)) latency_messages++;
        gst_bin_recalculate_latency(GST_BIN(pipeline));
        gst_message_unref(msg);
        continue;
      }
      end = msg;
    }
    ASSERT_NE(end, nullptr) << "no EOS within 60 s at " << fps << " fps";
    EXPECT_EQ(GST_MESSAGE_TYPE(end), GST_MESSAGE_EOS);
    gst_message_unref(end);
    GstClockTime min = 0;
    gst_video_encoder_get_latency(GST_VIDEO_ENCODER(enc), &min, nullptr);
    guint64 rendered = 0;
    GstStructure* stats = nullptr;
    g_object_get(sink, "stats", &stats, nullptr);
    gst_structure_get_uint64(stats, "rendered", &rendered);
    gst_structure_free(stats);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(bus);
    gst_object_unref(sink);
    gst_object_unref(enc);
    gst_object_unref(pipeline);
    const GstClockTime slot = GST_SECOND / fps;
    EXPECT_EQ(rendered, guint64(frames)) << fps << " fps: every picture comes out";
    if (fps == 240) {
      EXPECT_GT(min, slot + slot / 2) << "more than one picture in flight behind a 240 fps live source";
      EXPECT_LE(min, 4 * slot + 4) << "at most four";
      EXPECT_GE(latency_messages, 2) << "the open's latency and at least one rise";
    } else {
      EXPECT_LE(min, slot + 1) << "one picture in flight behind a 30 fps live source it keeps up with";
    }
  }
}

// ---- refusals ----------------------------------------------------------------------------

// Odd sizes: SVT-AV1 needs even ones for 4:2:0. The error names the limit.
TEST(SvtAv1Enc, OddSizeIsAnErrorThatNamesTheLimit) {
  auto r = run_pipeline("videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=1921,height=1081 ! "
                        "ccmsvtav1enc ! fakesink");
  ASSERT_FALSE(r.eos);
  EXPECT_NE(r.error.find("must be even"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("1921x1081"), std::string::npos) << r.error;
}

// Sizes below 64 and formats the library does not take negotiate away (caps).
TEST(SvtAv1Enc, UnsupportedCapsNegotiateAway) {
  for (const char* caps : {"video/x-raw,format=I420,width=32,height=32", "video/x-raw,format=Y444,width=128,height=96",
                           "video/x-raw,format=I420,width=128,height=9000"}) {
    auto r = run_pipeline(std::string("videotestsrc num-buffers=2 ! ") + caps + " ! ccmsvtav1enc ! fakesink");
    EXPECT_FALSE(r.eos) << caps;
    EXPECT_FALSE(r.error.empty()) << caps;
  }
}

// A setting SVT-AV1 refuses is reported by its field name.
TEST(SvtAv1Enc, LibraryRefusalNamesTheParameter) {
  auto r = run_pipeline("videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=128,height=96,framerate=1000/1 ! "
                        "ccmsvtav1enc ! fakesink");
  ASSERT_FALSE(r.eos);
  EXPECT_NE(r.error.find("SVT-AV1 refused"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("frame_rate"), std::string::npos) << r.error;
}

// Through ccmencbin: the catalogue ranks ccmsvtav1enc first for software AV1, and
// an odd size falls back to the next AV1 encoder.
TEST(SvtAv1Enc, ChosenByEncBinAndOddSizesFallBack) {
  auto r = run_pipeline("videotestsrc num-buffers=3 ! video/x-raw,width=320,height=240 ! "
                        "ccmencbin name=enc codec=av1 ! fakesink");
  ASSERT_TRUE(r.eos) << r.error;
  const GstStructure* s = r.message("ccm-encoder-selected");
  ASSERT_NE(s, nullptr);
  EXPECT_STREQ(gst_structure_get_string(s, "factory"), "ccmsvtav1enc");

  auto odd = run_pipeline("videotestsrc num-buffers=3 ! video/x-raw,width=321,height=241 ! "
                          "ccmencbin name=enc codec=av1 ! fakesink");
  ASSERT_TRUE(odd.eos) << odd.error;
  const GstStructure* so = odd.message("ccm-encoder-selected");
  ASSERT_NE(so, nullptr);
  EXPECT_STRNE(gst_structure_get_string(so, "factory"), "ccmsvtav1enc");
  // Passed over from the catalogue, before its library is asked (upstream's
  // svtav1enc, on 1.24+, refuses only in set_format and leaks its state there).
  const GValue* passed = gst_structure_get_value(so, "passed-over");
  ASSERT_NE(passed, nullptr);
  bool said = false;
  for (guint i = 0; i < gst_value_array_get_size(passed); i++) {
    const std::string line = g_value_get_string(gst_value_array_get_value(passed, i));
    const bool svt = line.rfind("ccmsvtav1enc: ", 0) == 0 || line.rfind("svtav1enc: ", 0) == 0;
    if (svt && line.find("not in this GStreamer") == std::string::npos) {
      EXPECT_NE(line.find("even sizes only"), std::string::npos) << line;
    }
    said |= line.rfind("ccmsvtav1enc: ", 0) == 0;
  }
  EXPECT_TRUE(said) << "ccmsvtav1enc is not among the passed-over candidates";
}

}  // namespace
