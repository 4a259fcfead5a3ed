// ccmratecontrol on real encoders and real clips: the rate over every 1 s window
// of the output file (sizes read back by ffprobe, not from our own messages), key
// frames at the scene cuts of mixed-content, bandwidth-estimate events from both
// directions, QoS, the PSNR cap against PSNR measured by decoding, and the
// warnings for bad input.
#include "common/bandwidth_estimate.h"
#include "pipeline_util.h"

#include <gst/gst.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

using ccm::test::media;
using ccm::test::temp_path;

namespace {

bool has_element(const char* name) {
  GstElementFactory* f = gst_element_factory_find(name);
  if (f) gst_object_unref(f);
  return f != nullptr;
}

std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

struct Clip {
  std::string yuv;  // raw I420, every frame of the clip
  int width = 0, height = 0, frames = 0;
  std::string source(int fps = 25) const {
    return "filesrc location=" + yuv + " ! rawvideoparse width=" + std::to_string(width) +
           " height=" + std::to_string(height) + " format=i420 framerate=" + std::to_string(fps) + "/1";
  }
};

// Raw I420 of every frame of `src` (any file ffmpeg reads) into the temp folder as
// `name`.yuv; frames = 0 when it could not be decoded.
Clip decode_to_yuv(const std::string& src, const std::string& name, int w, int h) {
  Clip c;
  c.yuv = temp_path(name + ".yuv");
  run_capture("timeout 300 ffmpeg -nostdin -v error -y -i '" + src +
              "' -fps_mode passthrough -f rawvideo -pix_fmt yuv420p '" + c.yuv + "' 2>&1");
  c.width = w;
  c.height = h;
  if (FILE* f = fopen(c.yuv.c_str(), "rb")) {
    fseek(f, 0, SEEK_END);
    c.frames = static_cast<int>(ftell(f) / (w * h * 3 / 2));
    fclose(f);
  }
  return c;
}

// Decodes a clip of tests/media once per process into raw I420 (ffmpeg, every frame).
const Clip* raw_clip(const std::string& name, int w, int h) {
  static std::map<std::string, Clip> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second.frames ? &it->second : nullptr;
  const std::string src = media(name);
  auto& stored = cache[name] = src.empty() ? Clip{} : decode_to_yuv(src, name, w, h);
  return stored.frames ? &stored : nullptr;
}

// A validation clip (scripts/make-validation-media: content the rate model was never
// tuned on) made once per process at `w`x`h`, decoded to raw I420; nullptr after a
// failure, which is reported.
const Clip* validation_clip(const std::string& name, int w, int h, double seconds, int noise = 8) {
  static std::map<std::string, Clip> cache;
  const std::string key = name + std::to_string(w) + "x" + std::to_string(h) + "-" + std::to_string(noise);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second.frames ? &it->second : nullptr;
  Clip c;
  const char* maker = g_getenv("CCM_VALIDATION_MAKER");
  const std::string dir = temp_path("validation");
  const std::string y4m = run_capture(std::string("timeout 300 ") + (maker ? maker : "scripts/make-validation-media") +
                                      " --size " + std::to_string(w) + "x" + std::to_string(h) + " --seconds " +
                                      std::to_string(seconds) + " --noise " + std::to_string(noise) + " --out '" +
                                      dir + "' " + name + " 2>&1");
  const std::string path = y4m.substr(0, y4m.find('\n'));
  if (!g_file_test(path.c_str(), G_FILE_TEST_IS_REGULAR))
    ADD_FAILURE() << "scripts/make-validation-media " << name << " failed: " << y4m;
  else
    c = decode_to_yuv(path, key, w, h);
  auto& stored = cache[key] = c;
  return stored.frames ? &stored : nullptr;
}

struct Packet {
  double pts = 0;  // seconds
  int size = 0;
  bool key = false;
};

std::vector<Packet> packets(const std::string& file) {
  std::vector<Packet> out;
  std::istringstream in(run_capture("ffprobe -v error -select_streams v -show_entries packet=pts_time,size,flags -of csv=p=0 '" +
                                    file + "'"));
  std::string line;
  while (std::getline(in, line)) {
    Packet p;
    std::istringstream l(line);
    std::string pts, size, flags;
    if (!std::getline(l, pts, ',') || !std::getline(l, size, ',') || !std::getline(l, flags, ',')) continue;
    p.pts = std::atof(pts.c_str());
    p.size = std::atoi(size.c_str());
    p.key = flags.find('K') != std::string::npos;
    out.push_back(p);
  }
  std::sort(out.begin(), out.end(), [](const Packet& a, const Packet& b) { return a.pts < b.pts; });
  return out;
}

// kbit/s of every 1 s window [t, t+1) with t = from, from + step, ... while t + 1 <= to.
std::vector<double> window_kbps(const std::vector<Packet>& pk, double from, double to, double step = 0.2) {
  std::vector<double> out;
  for (double t = from; t + 1.0 <= to + 1e-9; t += step) {
    double bits = 0;
    for (const auto& p : pk)
      if (p.pts >= t - 1e-6 && p.pts < t + 1.0 - 1e-6) bits += p.size * 8.0;
    out.push_back(bits / 1000.0);
  }
  return out;
}

double p95_error(const std::vector<double>& kbps, double target) {
  std::vector<double> e;
  for (double k : kbps) e.push_back(std::fabs(k / target - 1.0));
  std::sort(e.begin(), e.end());
  return e.empty() ? 1.0 : e[static_cast<size_t>(0.95 * (e.size() - 1))];
}

double psnr_y(const std::string& encoded, const Clip& clip, int frames) {
  const std::string out = run_capture("ffmpeg -nostdin -v info -i '" + encoded + "' -f rawvideo -pix_fmt yuv420p -s " +
                                      std::to_string(clip.width) + "x" + std::to_string(clip.height) + " -i '" +
                                      clip.yuv + "' -frames:v " + std::to_string(frames) +
                                      " -lavfi '[0:v][1:v]psnr' -f null - 2>&1");
  const auto at = out.find("PSNR y:");
  return at == std::string::npos ? 0.0 : std::atof(out.c_str() + at + 7);
}

// A run of a pipeline with an element named "rc" (ccmratecontrol), its stats read
// after the run; the ccm-ratecontrol messages and who kept the rate picked out.
struct Result : ccm::test::RunResult {
  std::vector<const GstStructure*> messages;  // ccm-ratecontrol only (owned by element_messages)
  std::vector<std::string> rate_kept_by;      // ccmencbin's ccm-encoder-selected: rate-controller
  explicit Result(ccm::test::RunResult&& r) : ccm::test::RunResult(std::move(r)) {
    for (const GstStructure* s : element_messages) {
      if (gst_structure_has_name(s, "ccm-ratecontrol")) messages.push_back(s);
      if (gst_structure_has_name(s, "ccm-encoder-selected") && gst_structure_has_field(s, "rate-controller"))
        rate_kept_by.push_back(gst_structure_get_string(s, "rate-controller"));
    }
  }
  bool warned(const std::string& text) const {
    return std::any_of(warnings.begin(), warnings.end(),
                       [&](const std::string& w) { return w.find(text) != std::string::npos; });
  }
};

// before_play may install probes.
Result run(const std::string& desc, const std::function<void(GstElement*)>& before_play = {}, int timeout_s = 120) {
  ccm::test::RunOptions options;
  options.timeout_s = timeout_s;
  options.before_play = before_play;
  options.stats_from = "rc";
  return Result(ccm::test::run_pipeline(desc, options));
}

struct EncoderCase {
  const char* factory;
  const char* element;  // with the settings a live sender uses
  const char* tail;     // parser ! muxer
  const char* ext;
  bool per_frame_qp;
};

const EncoderCase kEncoders[] = {
    {"ccmx265enc", "ccmx265enc keyframe-interval=1000", "h265parse ! matroskamux", "mkv", true},
    {"ccmsvtav1enc", "ccmsvtav1enc keyframe-interval=1000", "av1parse ! matroskamux", "mkv", true},
    {"vp9enc", "vp9enc deadline=1 cpu-used=8 lag-in-frames=0 end-usage=cbr keyframe-max-dist=1000", "webmmux", "webm",
     true},
    {"x264enc", "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=1000", "h264parse ! matroskamux", "mkv",
     false},
};

std::string name_of(const ::testing::TestParamInfo<EncoderCase>& i) { return i.param.factory; }

class RateControl : public ::testing::TestWithParam<EncoderCase> {
 protected:
  void SetUp() override {
    if (!has_element(GetParam().factory)) GTEST_SKIP() << GetParam().factory << " is not in this registry";
  }
};

}  // namespace

// The per-frame path (mode=rlambda; x264enc takes it under auto too).
// Foreman (hand-held camera, a fast pan at the end) at 400 kbit/s: every 1 s
// window of the file after the first second within the goal.
TEST_P(RateControl, OneSecondWindowsFollowTheTarget) {
  const auto& e = GetParam();
  const Clip* clip = raw_clip("foreman_352x288_300f.h264", 352, 288);
  if (!clip) FAIL() << "ffmpeg could not decode the foreman clip of tests/media (see the failure above)";
  const std::string out = temp_path(std::string("rc-foreman-") + e.factory + "." + e.ext);
  const double target = 400;
  auto r = run(clip->source() + " ! ccmratecontrol name=rc target-bitrate=400 mode=rlambda ! " + e.element + " ! " + e.tail +
               " ! filesink location=" + out);
  ASSERT_TRUE(r.eos) << r.error;
  const auto pk = packets(out);
  ASSERT_EQ(static_cast<int>(pk.size()), clip->frames);
  const double duration = clip->frames / 25.0;
  const auto w = window_kbps(pk, 1.0, duration);
  double bits = 0;
  for (const auto& p : pk) bits += p.size * 8.0;
  const double err95 = p95_error(w, target);
  const double worst = *std::max_element(w.begin(), w.end()) / target;
  RecordProperty("p95_window_error", std::to_string(err95));
  RecordProperty("worst_window_ratio", std::to_string(worst));
  std::printf("%s: mean %.1f kbit/s, p95 |1 s window error| %.1f%%, worst window %.2f x target\n", e.factory,
              bits / duration / 1000, 100 * err95, worst);
  // Goal 5% (p95) and 1.15 (worst) for encoders that take a QP per frame; the
  // limits here leave room for a loaded machine. SVT-AV1's low-delay structure
  // (base-layer pictures cost twice the rest at one QP, sizes arrive frames
  // late) and x264enc (a bitrate property, its own ABR in between) get more:
  // SVT-AV1 measured 17.9-19.3% on 1.4.1 (Debian 12) and 20.1% on 2.3 (Debian 13,
  // the same on every run there), x264enc 11.6%. (Under mode=auto ccmsvtav1enc
  // runs its own controller: RateControlEncoderRate.)
  const std::string f = e.factory;
  const double mean_tol = f == "x264enc" ? 0.08 : 0.05;
  const double p95_limit = f == "x264enc" ? 0.15 : f == "ccmsvtav1enc" ? 0.23 : 0.07;
  const double worst_limit = f == "x264enc" ? 1.3 : f == "ccmsvtav1enc" ? 1.25 : 1.12;
  EXPECT_NEAR(bits / duration / 1000.0, target, mean_tol * target);
  EXPECT_LT(err95, p95_limit);
  EXPECT_LT(worst, worst_limit);
  ASSERT_TRUE(r.stats);
  guint64 frames_out = 0;
  gst_structure_get_uint64(r.stats, "frames-out", &frames_out);
  EXPECT_EQ(frames_out, static_cast<guint64>(clip->frames)) << "the probe saw every encoded frame";
  EXPECT_EQ(r.messages.size(), static_cast<size_t>(clip->frames));
}

// mixed-content: cuts at 5.000 s (frame 125), 10.036 s (frame 245) and a camera
// cut at frame 356; with scene-cut=false none of them is a key frame.
TEST_P(RateControl, KeyFramesAtSceneCuts) {
  const auto& e = GetParam();
  if (std::string(e.factory) == "ccmsvtav1enc") GTEST_SKIP() << "SVT-AV1 forces no key frames in low delay";
  const Clip* clip = raw_clip("mixed-content_480x270.webm", 480, 270);
  if (!clip) FAIL() << "ffmpeg could not decode the mixed-content clip of tests/media (see the failure above)";
  for (bool cuts : {true, false}) {
    const std::string out = temp_path(std::string("rc-mixed-") + e.factory + (cuts ? "-cuts." : "-nocuts.") + e.ext);
    auto r = run(clip->source() + " ! ccmratecontrol name=rc target-bitrate=600 mode=rlambda scene-cut=" + (cuts ? "true" : "false") +
                 " ! " + e.element + " ! " + e.tail + " ! filesink location=" + out);
    ASSERT_TRUE(r.eos) << r.error;
    const auto pk = packets(out);
    ASSERT_EQ(static_cast<int>(pk.size()), clip->frames);
    std::vector<int> keys;
    for (size_t i = 0; i < pk.size(); ++i)
      if (pk[i].key) keys.push_back(static_cast<int>(i));
    const auto has = [&](int f) { return std::find(keys.begin(), keys.end(), f) != keys.end(); };
    std::string listed;
    for (int k : keys) listed += std::to_string(k) + " ";
    if (cuts) {
      EXPECT_TRUE(has(125) && has(245) && has(356)) << e.factory << " key frames: " << listed;
      guint64 n = 0;
      gst_structure_get_uint64(r.stats, "scene-cuts", &n);
      EXPECT_EQ(n, 3u);
    } else if (std::string(e.factory) != "x264enc") {  // x264 places key frames at cuts by itself
      EXPECT_FALSE(has(125) || has(245)) << e.factory << " key frames: " << listed;
    }
  }
}

// A bandwidth estimate from downstream at 4 s (300 kbit/s) and one from upstream
// at 8 s (600 kbit/s): each rate holds in the windows after it.
TEST_P(RateControl, BandwidthEstimatesFromBothDirections) {
  const auto& e = GetParam();
  const Clip* clip = raw_clip("foreman_352x288_300f.h264", 352, 288);
  if (!clip) FAIL() << "ffmpeg could not decode the foreman clip of tests/media (see the failure above)";
  const std::string out = temp_path(std::string("rc-bwe-") + e.factory + "." + e.ext);
  struct State {
    GstElement* rc = nullptr;
    bool down = false, up = false;
  } st;
  auto r = run(
      clip->source() + " ! ccmratecontrol name=rc target-bitrate=900 mode=rlambda ! " + e.element + " ! " + e.tail +
          " ! filesink location=" + out,
      [&](GstElement* pipeline) {
        st.rc = gst_bin_get_by_name(GST_BIN(pipeline), "rc");
        GstPad* sink = gst_element_get_static_pad(st.rc, "sink");
        gst_pad_add_probe(
            sink, GST_PAD_PROBE_TYPE_BUFFER,
            [](GstPad*, GstPadProbeInfo* info, gpointer data) -> GstPadProbeReturn {
              auto* s = static_cast<State*>(data);
              const GstClockTime pts = GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(info));
              if (!s->down && pts >= 4 * GST_SECOND) {
                s->down = true;  // as an application would: a downstream event into the element
                gst_element_send_event(s->rc, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
                                                                   gst_structure_new("ccm-bandwidth-estimate", "bitrate",
                                                                                     G_TYPE_UINT, 300000u, nullptr)));
              }
              if (!s->up && pts >= 8 * GST_SECOND) {
                s->up = true;  // as WebRTC glue downstream would: upstream, into our source pad
                GstPad* src = gst_element_get_static_pad(s->rc, "src");
                gst_pad_send_event(src, gst_event_new_custom(GST_EVENT_CUSTOM_UPSTREAM,
                                                             gst_structure_new("ccm-bandwidth-estimate", "bitrate",
                                                                               G_TYPE_DOUBLE, 600000.0, nullptr)));
                gst_object_unref(src);
              }
              return GST_PAD_PROBE_OK;
            },
            &st, nullptr);
        gst_object_unref(sink);
      });
  if (st.rc) gst_object_unref(st.rc);
  ASSERT_TRUE(r.eos) << r.error;
  ASSERT_TRUE(st.down && st.up);
  const auto pk = packets(out);
  const std::string f = e.factory;
  const double tol = f == "x264enc" ? 0.4 : f == "ccmsvtav1enc" ? 0.25 : 0.12;
  for (double k : window_kbps(pk, 1.5, 4.0)) EXPECT_NEAR(k, 900, 900 * tol) << "before the first estimate";
  for (double k : window_kbps(pk, 4.6, 8.0)) EXPECT_NEAR(k, 300, 300 * tol) << "after the downstream estimate";
  for (double k : window_kbps(pk, 8.6, 12.0)) EXPECT_NEAR(k, 600, 600 * tol) << "after the upstream estimate";
  if (e.per_frame_qp && f != "ccmsvtav1enc") {
    // Per-frame-QP encoders follow within two frames: the third frame after 4 s
    // is already under the new rate's share (300 kbit/s / 25 fps).
    size_t i = 0;
    while (i < pk.size() && pk[i].pts < 4.0 - 1e-6) ++i;
    ASSERT_LT(i + 2, pk.size());
    EXPECT_LT(pk[i + 2].size * 8.0, 1.3 * 300000 / 25) << "frame " << i + 2;
  }
}

INSTANTIATE_TEST_SUITE_P(Encoders, RateControl, ::testing::ValuesIn(kEncoders), name_of);

// mode=auto for ccmx265enc, vp9enc and ccmsvtav1enc (the catalogue's
// encoder_rate_first): the encoder keeps its own CBR (its QPs, -1 in the messages,
// but for the key frames we force at cuts), its bitrate corrected to deliver the
// target; a bandwidth estimate at 4 s is followed. On the validation set this beat
// our per-frame QP by 20-50% BD-rate (docs/benchmarks.md); the windows are the
// encoder's own (looser). ccmsvtav1enc (encoder_rate_hands_off) gets the target
// alone: its bitrate is the estimate exactly, every frame at its own QP.
TEST(RateControlEncoderRate, TheEncodersOwnCbrSteeredToTheTarget) {
  const Clip* clip = raw_clip("foreman_352x288_300f.h264", 352, 288);
  if (!clip) FAIL() << "ffmpeg could not decode the foreman clip of tests/media (see the failure above)";
  for (const EncoderCase& e : kEncoders) {
    const std::string f = e.factory;
    if (f != "ccmx265enc" && f != "vp9enc" && f != "ccmsvtav1enc") continue;
    const bool hands_off = f == "ccmsvtav1enc";
    if (!has_element(e.factory)) continue;
    const std::string out = temp_path("rc-encoder-rate-" + f + "." + e.ext);
    GstElement* rc = nullptr;
    GstElement* enc = nullptr;
    bool sent = false;
    guint late_bitrate = 0;  // the encoder's bitrate from 6 s on (hands-off encoders)
    struct State {
      GstElement** rc;
      bool* sent;
      GstElement** enc;
      guint* late_bitrate;
    } st{&rc, &sent, &enc, &late_bitrate};
    auto r = run(clip->source() + " ! identity eos-after=226 ! ccmratecontrol name=rc target-bitrate=400 ! " +
                     e.element + " name=enc ! " + e.tail + " ! filesink location=" + out,
                 [&](GstElement* pipeline) {
                   rc = gst_bin_get_by_name(GST_BIN(pipeline), "rc");
                   if (hands_off) enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
                   GstPad* sink = gst_element_get_static_pad(rc, "sink");
                   gst_pad_add_probe(
                       sink, GST_PAD_PROBE_TYPE_BUFFER,
                       [](GstPad*, GstPadProbeInfo* info, gpointer data) -> GstPadProbeReturn {
                         auto* s = static_cast<State*>(data);
                         const GstClockTime pts = GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(info));
                         if (!*s->sent && pts >= 4 * GST_SECOND) {
                           *s->sent = true;
                           gst_element_send_event(*s->rc, gst_ccm_bandwidth_estimate_new(GST_EVENT_CUSTOM_DOWNSTREAM, 200000.0));
                         }
                         if (*s->enc && pts >= 6 * GST_SECOND) g_object_get(*s->enc, "bitrate", s->late_bitrate, nullptr);
                         return GST_PAD_PROBE_OK;
                       },
                       &st, nullptr);
                   gst_object_unref(sink);
                 });
    if (rc) gst_object_unref(rc);
    if (enc) gst_object_unref(enc);
    ASSERT_TRUE(r.eos) << r.error;
    ASSERT_TRUE(sent);
    ASSERT_TRUE(r.stats);
    EXPECT_STREQ(gst_structure_get_string(r.stats, "family"), "encoder-rate") << f;
    int own = 0, own_keys = 0;
    for (const GstStructure* m : r.messages) {
      int qp = 0;
      gboolean key = FALSE;
      gst_structure_get_int(m, "qp", &qp);
      gst_structure_get_boolean(m, "key-frame", &key);
      if (!key && qp == -1) ++own;
      if (key && qp == -1) ++own_keys;
    }
    EXPECT_GE(own, 200) << f << ": inter frames at the encoder's own QP";
    if (hands_off) {
      EXPECT_GE(own_keys, 1) << f << ": its first key frame is its own";
      EXPECT_EQ(late_bitrate, 200u) << f << ": the estimate as it stands, no gain";
    }
    const auto pk = packets(out);
    ASSERT_EQ(static_cast<int>(pk.size()), 225) << f;
    double before = 0, after = 0;  // bits in [0, 4) s, and in [5, 9) s
    for (const auto& p : pk) {
      if (p.pts < 4.0) before += p.size * 8.0;
      if (p.pts >= 5.0) after += p.size * 8.0;
    }
    std::printf("%s, mode auto (encoder-rate): %.0f kbit/s for 400 before the estimate, %.0f for 200 from 1 s after\n",
                e.factory, before / 4.0 / 1000, after / 4.0 / 1000);
    EXPECT_NEAR(before / 4.0 / 1000, 400, 400 * 0.15) << f;
    EXPECT_NEAR(after / 4.0 / 1000, 200, 200 * 0.2) << f;
  }
}

// QoS from the sink: frames 20..39 arrive 80 ms late (more than the 33 ms
// budget), the rest on time. What the rate scale and vp9enc's cpu-used were
// after the late frames and at the end.
struct QosOutcome {
  bool eos = false;
  std::string error;
  double scale_after_late = 0, scale_end = 0;
  int cpu_used_after_late = 0, cpu_used_end = 0;
};

QosOutcome run_with_late_frames(const std::string& rc_settings) {
  struct State {
    GstElement* rc = nullptr;
    GstElement* enc = nullptr;
    int frames = 0;
    QosOutcome out;
  } st;
  auto r = run(
      "videotestsrc num-buffers=200 pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! "
      "ccmratecontrol name=rc target-bitrate=500 latency-budget=33 " + rc_settings +
          " ! vp9enc name=enc deadline=1 cpu-used=4 lag-in-frames=0 end-usage=cbr ! fakesink name=sink",
      [&](GstElement* pipeline) {
        st.rc = gst_bin_get_by_name(GST_BIN(pipeline), "rc");
        st.enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
        GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
        GstPad* pad = gst_element_get_static_pad(sink, "sink");
        gst_pad_add_probe(
            pad, GST_PAD_PROBE_TYPE_BUFFER,
            [](GstPad* p, GstPadProbeInfo* info, gpointer data) -> GstPadProbeReturn {
              auto* s = static_cast<State*>(data);
              const GstClockTime ts = GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(info));
              ++s->frames;
              if (s->frames == 40) {
                GstStructure* stats = nullptr;
                g_object_get(s->rc, "stats", &stats, nullptr);
                gst_structure_get_double(stats, "qos-rate-scale", &s->out.scale_after_late);
                gst_structure_free(stats);
                g_object_get(s->enc, "cpu-used", &s->out.cpu_used_after_late, nullptr);
              }
              const GstClockTimeDiff late = (s->frames >= 20 && s->frames < 40) ? 80 * GST_MSECOND : -5 * GST_MSECOND;
              gst_pad_push_event(p, gst_event_new_qos(GST_QOS_TYPE_UNDERFLOW, 1.2, late, ts));
              return GST_PAD_PROBE_OK;
            },
            &st, nullptr);
        gst_object_unref(pad);
        gst_object_unref(sink);
      });
  st.out.eos = r.eos;
  st.out.error = r.error;
  if (r.stats) gst_structure_get_double(r.stats, "qos-rate-scale", &st.out.scale_end);
  if (st.enc) g_object_get(st.enc, "cpu-used", &st.out.cpu_used_end, nullptr);
  if (st.rc) gst_object_unref(st.rc);
  if (st.enc) gst_object_unref(st.enc);
  return st.out;
}

// Frames later than the budget cut the rate 5% each and raise the encoder's
// speed; on-time frames bring both back.
TEST(RateControlQos, LateFramesCutTheRateAndSpeedUpTheEncoder) {
  if (!has_element("vp9enc")) GTEST_SKIP() << "no vp9enc";
  const QosOutcome o = run_with_late_frames("");
  ASSERT_TRUE(o.eos) << o.error;
  // 20 late frames: 0.95^20 = 0.36.
  EXPECT_NEAR(o.scale_after_late, std::pow(0.95, 20), 0.01);
  EXPECT_GT(o.cpu_used_after_late, 4) << "the speed preset went up while frames were late";
  EXPECT_DOUBLE_EQ(o.scale_end, 1.0) << "recovered once frames were on time";
  EXPECT_LT(o.cpu_used_end, o.cpu_used_after_late);
}

// qos=false: the same late frames change nothing.
TEST(RateControlQos, QosFalseIgnoresThem) {
  if (!has_element("vp9enc")) GTEST_SKIP() << "no vp9enc";
  const QosOutcome o = run_with_late_frames("qos=false");
  ASSERT_TRUE(o.eos) << o.error;
  EXPECT_DOUBLE_EQ(o.scale_after_late, 1.0) << "qos=false: late frames leave the rate alone";
  EXPECT_EQ(o.cpu_used_after_late, 4) << "qos=false: the encoder's speed stays";
}

// What gst-inspect and gst-launch show is what the element does: it reacts to
// QoS (qos=true by default) and its instances are named after the element.
TEST(RateControlInspect, TellsTheTruth) {
  GstElement* rc = gst_element_factory_make("ccmratecontrol", nullptr);
  ASSERT_NE(rc, nullptr);
  gst_object_ref_sink(rc);
  gboolean qos = FALSE;
  g_object_get(rc, "qos", &qos, nullptr);
  EXPECT_TRUE(qos);
  gchar* name = gst_object_get_name(GST_OBJECT(rc));
  EXPECT_TRUE(g_str_has_prefix(name, "ccmratecontrol") && g_ascii_isdigit(name[strlen("ccmratecontrol")])) << name;
  g_free(name);
  gst_object_unref(rc);
}

// max-psnr: far more rate than the clip needs, capped at 36 dB. The measured
// PSNR-Y (decoded by ffmpeg) stays near the cap and the estimate agrees with it.
TEST(RateControlPsnr, CapHoldsAgainstMeasuredPsnr) {
  if (!has_element("ccmx265enc")) GTEST_SKIP() << "no ccmx265enc";
  const Clip* clip = raw_clip("foreman_352x288_300f.h264", 352, 288);
  if (!clip) FAIL() << "ffmpeg could not decode the foreman clip of tests/media (see the failure above)";
  const int frames = 100;
  double kbps[2] = {0, 0}, psnr[2] = {0, 0}, estimate = 0;
  for (int capped = 0; capped < 2; ++capped) {
    const std::string out = temp_path(std::string("rc-psnr-") + (capped ? "cap" : "free") + ".mkv");
    auto r = run(clip->source() + " ! identity eos-after=" + std::to_string(frames + 1) +
                 " ! ccmratecontrol name=rc target-bitrate=3000 max-psnr=" + (capped ? "36" : "0") +
                 " ! ccmx265enc ! h265parse ! matroskamux ! filesink location=" + out);
    ASSERT_TRUE(r.eos) << r.error;
    double bits = 0;
    for (const auto& p : packets(out)) bits += p.size * 8.0;
    kbps[capped] = bits / (frames / 25.0) / 1000.0;
    psnr[capped] = psnr_y(out, *clip, frames);
    if (capped) {
      double sum = 0;
      int n = 0;
      for (auto* s : r.messages) {
        double e = 0;
        gboolean c = FALSE;
        gst_structure_get_double(s, "psnr-estimate", &e);
        gst_structure_get_boolean(s, "psnr-capped", &c);
        sum += e;
        ++n;
      }
      estimate = n ? sum / n : 0;
    }
  }
  std::printf("free: %.0f kbit/s %.2f dB; cap 36: %.0f kbit/s %.2f dB (estimate %.2f dB)\n", kbps[0], psnr[0],
              kbps[1], psnr[1], estimate);
  EXPECT_GT(psnr[0], 38.0) << "without the cap the rate buys more quality";
  EXPECT_LT(psnr[1], 37.5);
  EXPECT_LT(kbps[1], 0.6 * kbps[0]) << "the cap leaves bits unspent";
  EXPECT_NEAR(estimate, psnr[1], 2.0) << "the estimate matches decoded PSNR";
}

// mode=passthrough hands the rate back to the encoder's own settings.
TEST(RateControlModes, PassthroughLeavesTheEncoderAlone) {
  if (!has_element("ccmx265enc")) GTEST_SKIP() << "no ccmx265enc";
  const Clip* clip = raw_clip("foreman_352x288_300f.h264", 352, 288);
  if (!clip) FAIL() << "ffmpeg could not decode the foreman clip of tests/media (see the failure above)";
  double kbps[2];
  for (int pass = 0; pass < 2; ++pass) {
    const std::string out = temp_path(std::string("rc-mode-") + (pass ? "pass" : "rl") + ".mkv");
    auto r = run(clip->source() + " ! identity eos-after=151 ! ccmratecontrol name=rc target-bitrate=250 mode=" +
                 (pass ? "passthrough" : "rlambda") + " ! ccmx265enc bitrate=1000 ! h265parse ! matroskamux ! filesink location=" + out);
    ASSERT_TRUE(r.eos) << r.error;
    double bits = 0;
    for (const auto& p : packets(out)) bits += p.size * 8.0;
    kbps[pass] = bits / 6.0 / 1000.0;
    int qp = 0;
    ASSERT_FALSE(r.messages.empty());
    gst_structure_get_int(r.messages.back(), "qp", &qp);
    EXPECT_EQ(qp < 0, pass == 1) << "QP is reported only when it was applied";
  }
  EXPECT_NEAR(kbps[0], 250, 30);
  EXPECT_GT(kbps[1], 600) << "passthrough: ccmx265enc's own bitrate=1000 decides";
}

TEST(RateControlInput, WarningsSayWhatHappened) {
  // No encoder downstream.
  {
    auto r = run("videotestsrc num-buffers=10 ! video/x-raw,width=64,height=64 ! ccmratecontrol name=rc ! fakesink");
    ASSERT_TRUE(r.eos) << r.error;
    EXPECT_TRUE(r.warned("no encoder downstream")) << (r.warnings.empty() ? "" : r.warnings[0]);
    EXPECT_TRUE(r.warned("fakesink"));
    EXPECT_EQ(r.messages.size(), 10u) << "analysis and messages go on without an encoder";
  }
  // The range is the valid values (1 kbit/s to 10 Gbit/s): GObject refuses a
  // zero or absurd target before the element sees it, and the old one is kept.
  {
    GstElement* rc = gst_element_factory_make("ccmratecontrol", nullptr);
    gst_object_ref_sink(rc);
    GParamSpec* spec = g_object_class_find_property(G_OBJECT_GET_CLASS(rc), "target-bitrate");
    ASSERT_NE(spec, nullptr);
    EXPECT_EQ(G_PARAM_SPEC_UINT(spec)->minimum, 1u);
    EXPECT_EQ(G_PARAM_SPEC_UINT(spec)->maximum, 10000000u);
    g_object_set(rc, "target-bitrate", 700u, nullptr);
    for (guint bad : {0u, 10000001u}) {
      GValue v = G_VALUE_INIT;
      g_value_init(&v, G_TYPE_UINT);
      g_value_set_uint(&v, bad);
      g_object_set_property(G_OBJECT(rc), "target-bitrate", &v);  // GLib: "out of range"
      g_value_unset(&v);
    }
    guint kbps = 0;
    g_object_get(rc, "target-bitrate", &kbps, nullptr);
    EXPECT_EQ(kbps, 700u);
    gst_object_unref(rc);
  }
  // A stock encoder without per-frame QP: said so, and its bitrate is still steered.
  if (has_element("x265enc")) {
    auto r = run("videotestsrc num-buffers=10 ! video/x-raw,width=64,height=64 ! ccmratecontrol name=rc "
                 "target-bitrate=300 ! x265enc name=enc tune=zerolatency speed-preset=ultrafast ! fakesink");
    ASSERT_TRUE(r.eos) << r.error;
    EXPECT_TRUE(r.warned("x265enc takes no per-frame QP")) << (r.warnings.empty() ? "" : r.warnings[0]);
  }
  // Bad bandwidth estimates are ignored with a warning.
  {
    auto r = run(
        "videotestsrc num-buffers=5 ! video/x-raw,width=64,height=64 ! ccmratecontrol name=rc ! fakesink",
        [](GstElement* pipeline) {
          GstElement* rc = gst_bin_get_by_name(GST_BIN(pipeline), "rc");
          GstPad* sink = gst_element_get_static_pad(rc, "sink");
          gst_pad_add_probe(
              sink, GST_PAD_PROBE_TYPE_BUFFER,
              [](GstPad* pad, GstPadProbeInfo*, gpointer) -> GstPadProbeReturn {
                GstElement* e = gst_pad_get_parent_element(pad);
                gst_element_send_event(e, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
                                                               gst_structure_new("ccm-bandwidth-estimate", "bitrate",
                                                                                 G_TYPE_INT, 0, nullptr)));
                gst_object_unref(e);
                return GST_PAD_PROBE_REMOVE;
              },
              nullptr, nullptr);
          gst_object_unref(sink);
          gst_object_unref(rc);
        });
    ASSERT_TRUE(r.eos) << r.error;
    EXPECT_TRUE(r.warned("ignoring a ccm-bandwidth-estimate event"));
    double target = 0;
    gst_structure_get_double(r.stats, "target-kbps", &target);
    EXPECT_DOUBLE_EQ(target, 2000.0) << "the default target stays";
  }
}

// The encoder is found through queues, capsfilters and into bins (ghost pads).
TEST(RateControlDiscovery, ThroughQueuesAndIntoBins) {
  if (!has_element("vp9enc")) GTEST_SKIP() << "no vp9enc";
  const std::string src = "videotestsrc num-buffers=20 ! video/x-raw,width=160,height=120,framerate=30/1 ! ";
  const std::string chains[] = {
      "ccmratecontrol name=rc ! queue ! capsfilter caps=video/x-raw ! vp9enc deadline=1 ! fakesink",
      "ccmratecontrol name=rc ! ccmencbin codec=vp9 ! fakesink",
  };
  for (const auto& chain : chains) {
    auto r = run(src + chain);
    ASSERT_TRUE(r.eos) << r.error;
    ASSERT_TRUE(r.stats);
    EXPECT_STREQ(gst_structure_get_string(r.stats, "encoder"), "vp9enc") << chain;
    // mode auto: vp9enc's own CBR, steered (the catalogue's encoder_rate_first).
    EXPECT_STREQ(gst_structure_get_string(r.stats, "family"), "encoder-rate") << chain;
    guint64 out = 0;
    gst_structure_get_uint64(r.stats, "frames-out", &out);
    EXPECT_EQ(out, 20u) << chain;
    EXPECT_FALSE(r.warned("no encoder downstream")) << chain;
    if (chain.find("ccmencbin") != std::string::npos) {
      ASSERT_EQ(r.rate_kept_by.size(), 1u);
      EXPECT_EQ(r.rate_kept_by[0], "ccmratecontrol upstream") << "ccmencbin adds none of its own";
    }
  }
}

// ---- inside ccmencbin ------------------------------------------------------------------

// ccmencbin puts a ccmratecontrol in front of the encoders it can steer per frame:
// on foreman at 400 kbit/s the 1 s windows hold as with the element standalone;
// rate-controller=encoder leaves the encoder's own CBR (printed side by side).
TEST(RateControlInEncBin, OnByDefaultAndFollowsTheTarget) {
  const Clip* clip = raw_clip("foreman_352x288_300f.h264", 352, 288);
  if (!clip) FAIL() << "ffmpeg could not decode the foreman clip of tests/media (see the failure above)";
  struct Case {
    const char* codec;
    const char* tail;
    const char* ext;
    double p95_limit;
  };
  // ccmencbin's ccmratecontrol runs mode=auto: x265's and libvpx's own CBR, steered
  // (encoder-rate), whose windows are the encoder's (12.6% and 13.0% measured, the
  // encoders alone 13.9% and 7.2%); the per-frame path holds 7% (RateControl.
  // OneSecondWindowsFollowTheTarget, mode=rlambda).
  for (const Case& c : {Case{"h265", "h265parse ! matroskamux", "mkv", 0.16}, Case{"vp9", "webmmux", "webm", 0.16}}) {
    double err[2] = {0, 0};
    for (const char* controller : {"ccm", "encoder"}) {
      const bool ours = std::string(controller) == "ccm";
      const std::string out = temp_path(std::string("rc-encbin-") + c.codec + "-" + controller + "." + c.ext);
      auto r = run(clip->source() + " ! ccmencbin codec=" + c.codec + " bitrate=400 keyframe-interval=1000 " +
                   "rate-controller=" + controller + " ! " + c.tail + " ! filesink location=" + out);
      ASSERT_TRUE(r.eos) << r.error;
      ASSERT_EQ(r.rate_kept_by.size(), 1u);
      EXPECT_EQ(r.rate_kept_by[0], ours ? "ccmratecontrol" : "encoder");
      const auto pk = packets(out);
      ASSERT_EQ(static_cast<int>(pk.size()), clip->frames);
      err[ours ? 0 : 1] = p95_error(window_kbps(pk, 1.0, clip->frames / 25.0), 400);
    }
    std::printf("ccmencbin codec=%s bitrate=400 on foreman: p95 |1 s window error| %.1f%% with ccmratecontrol, "
                "%.1f%% with the encoder's own rate control\n", c.codec, 100 * err[0], 100 * err[1]);
    EXPECT_LT(err[0], c.p95_limit) << c.codec;
  }
}

// A bandwidth estimate sent upstream into ccmencbin's source pad (as WebRTC glue
// does) reaches its rate control; a codec switch afterwards keeps it: the new
// encoder's session starts from the estimate, not from `bitrate`.
TEST(RateControlInEncBin, BandwidthEstimateSurvivesASwitch) {
  const Clip* clip = raw_clip("foreman_352x288_300f.h264", 352, 288);
  if (!clip) FAIL() << "ffmpeg could not decode the foreman clip of tests/media (see the failure above)";
  struct State {
    GstElement* bin = nullptr;
    bool estimated = false, switched = false;
    std::mutex lock;
    std::vector<Packet> out;
  } st;
  auto r = run(
      clip->source() + " ! ccmencbin name=bin codec=h265 bitrate=900 keyframe-interval=1000 ! fakesink",
      [&](GstElement* pipeline) {
        st.bin = gst_bin_get_by_name(GST_BIN(pipeline), "bin");
        GstPad* src = gst_element_get_static_pad(st.bin, "src");
        gst_pad_add_probe(
            src, GST_PAD_PROBE_TYPE_BUFFER,
            [](GstPad* pad, GstPadProbeInfo* info, gpointer data) -> GstPadProbeReturn {
              auto* s = static_cast<State*>(data);
              GstBuffer* buf = GST_PAD_PROBE_INFO_BUFFER(info);
              const GstClockTime pts = GST_BUFFER_PTS(buf);
              {
                std::lock_guard lk(s->lock);
                s->out.push_back(Packet{double(pts) / GST_SECOND, int(gst_buffer_get_size(buf)),
                                        !GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT)});
              }
              if (!s->estimated && pts >= 4 * GST_SECOND) {
                s->estimated = true;  // upstream from downstream's side, into our source pad
                gst_pad_send_event(pad, gst_event_new_custom(GST_EVENT_CUSTOM_UPSTREAM,
                                                             gst_structure_new("ccm-bandwidth-estimate", "bitrate",
                                                                               G_TYPE_UINT, 300000u, nullptr)));
              }
              if (!s->switched && pts >= 7 * GST_SECOND) {
                s->switched = true;
                g_object_set(s->bin, "codec", 3 /* vp9 */, nullptr);
              }
              return GST_PAD_PROBE_OK;
            },
            &st, nullptr);
        gst_object_unref(src);
      });
  if (st.bin) gst_object_unref(st.bin);
  ASSERT_TRUE(r.eos) << r.error;
  ASSERT_TRUE(st.estimated && st.switched);
  auto pk = st.out;
  std::sort(pk.begin(), pk.end(), [](const Packet& a, const Packet& b) { return a.pts < b.pts; });
  ASSERT_EQ(static_cast<int>(pk.size()), clip->frames) << "every frame out across the switch";
  for (double k : window_kbps(pk, 1.5, 4.0)) EXPECT_NEAR(k, 900, 900 * 0.15) << "before the estimate";
  for (double k : window_kbps(pk, 4.6, 7.0)) EXPECT_NEAR(k, 300, 300 * 0.15) << "after the estimate (h265)";
  // libvpx's own CBR (mode auto) starts under its rate: 0.75-0.8 of it over the first
  // seconds of the new session, while the gain learns (it was 0.8-1.2 per frame QP).
  for (double k : window_kbps(pk, 8.0, 12.0)) EXPECT_NEAR(k, 300, 300 * 0.3) << "after the switch (vp9)";
}

// 10-bit input (I420_10LE) through ccmx265enc: analysis of 16-bit samples and QP meta.
TEST(RateControlFormats, TenBitInput) {
  if (!has_element("ccmx265enc")) GTEST_SKIP() << "no ccmx265enc";
  const std::string out = temp_path("rc-10bit.mkv");
  auto r = run("videotestsrc num-buffers=60 pattern=ball ! video/x-raw,format=I420_10LE,width=320,height=240,framerate=30/1 ! "
               "ccmratecontrol name=rc target-bitrate=300 message-interval=10 ! ccmx265enc ! h265parse ! matroskamux ! "
               "filesink location=" + out);
  ASSERT_TRUE(r.eos) << r.error;
  EXPECT_EQ(r.messages.size(), 6u) << "every 10th frame";
  auto probe = ccm::test::probe_file(out);
  EXPECT_TRUE(probe.ok) << probe.decoder_errors;
  EXPECT_EQ(probe.pix_fmt, "yuv420p10le");
  double mafd = 0;
  gst_structure_get_double(r.messages.back(), "mafd", &mafd);
  EXPECT_GT(mafd, 0.0) << "the ball moves";
}

// ---- content the model was never tuned on, through ccmencbin's defaults ---------------
//
// The calibration clips (tests/media) fitted the model; these clips are made by
// scripts/make-validation-media from stills it never saw. Before the still-frame
// QP track, ccmencbin delivered about a fifth of the target on a slideshow.

struct EncBinCase {
  const char* codec;
  const char* tail;
  const char* ext;
};
const EncBinCase kEncBinCodecs[] = {{"h265", "h265parse ! matroskamux", "mkv"}, {"vp9", "webmmux", "webm"}};

std::vector<Packet> encode_with_encbin(const Clip& clip, const EncBinCase& c, int kbps, const std::string& name) {
  const std::string out = temp_path("validation-" + name + "-" + c.codec + "." + c.ext);
  auto r = run(clip.source() + " ! ccmencbin codec=" + c.codec + " bitrate=" + std::to_string(kbps) + " ! " + c.tail +
               " ! filesink location=" + out);
  EXPECT_TRUE(r.eos) << r.error;
  auto pk = packets(out);
  EXPECT_EQ(static_cast<int>(pk.size()), clip.frames) << "every frame in comes out";
  return pk;
}

double clip_rate(const std::vector<Packet>& pk, int frames, int kbps) {
  double bits = 0;
  for (const auto& p : pk) bits += p.size * 8.0;
  return bits / 1000.0 / (frames / 25.0) / kbps;
}

// Five stills with a cross-fade, a hard cut and a fade through black: the still
// frames' own QP falls while the budget is unspent, so the rate is spent on them.
TEST(RateControlValidation, StillSlideshowWithFadesReachesItsTarget) {
  const Clip* clip = validation_clip("slideshow", 320, 240, 8);
  if (!clip) FAIL() << "no slideshow clip (see the failure above)";
  for (const EncBinCase& c : kEncBinCodecs) {
    const auto pk = encode_with_encbin(*clip, c, 300, "slideshow");
    const double rate = clip_rate(pk, clip->frames, 300);
    const auto w = window_kbps(pk, 1.0, clip->frames / 25.0);
    std::printf("slideshow 320x240, ccmencbin codec=%s bitrate=300: %.0f%% of the target over the clip, worst 1 s "
                "window %.2fx\n", c.codec, 100 * rate, *std::max_element(w.begin(), w.end()) / 300);
    EXPECT_GE(rate, 0.85) << c.codec;
    EXPECT_LE(rate, 1.05) << c.codec;
  }
}

// A fixed camera with a slow drift, a small object crossing and light sensor noise
// (frames below the still threshold that still cost bits): the rate is spent and
// no second bursts (it was 2.0x the target for H.265, 1.5x for VP9).
TEST(RateControlValidation, StaticSceneWithNoiseReachesItsTarget) {
  const Clip* clip = validation_clip("static-camera", 320, 240, 8, 2);
  if (!clip) FAIL() << "no static-camera clip (see the failure above)";
  for (const EncBinCase& c : kEncBinCodecs) {
    const auto pk = encode_with_encbin(*clip, c, 300, "static-camera");
    const double rate = clip_rate(pk, clip->frames, 300);
    const auto w = window_kbps(pk, 1.0, clip->frames / 25.0);
    const double worst = *std::max_element(w.begin(), w.end()) / 300;
    std::printf("static camera with noise 320x240, ccmencbin codec=%s bitrate=300: %.0f%% of the target, p95 "
                "|1 s window error| %.1f%%, worst window %.2fx\n", c.codec, 100 * rate, 100 * p95_error(w, 300), worst);
    EXPECT_GE(rate, 0.9) << c.codec;
    EXPECT_LE(rate, 1.05) << c.codec;
    // Under mode auto the encoders' own CBR: 1.34x (H.265) and 1.36x (VP9) measured,
    // 1.2-1.3x with our per-frame QP; it was 2.0x and 1.5x before the still-frame track.
    EXPECT_LE(worst, 1.45) << c.codec;
  }
}

// Broadcast-style shots with hard cuts: each cut's key frame gets about three frame
// shares (it got 0.4-1.7, at QP 48-63) and the frame after it stays within three
// (it needed 5-16: re-coding what the starved key frame could not carry).
TEST(RateControlValidation, CutKeyFramesAndTheFrameAfterStayWithinThreeShares) {
  const Clip* clip = validation_clip("broadcast", 320, 240, 8);
  if (!clip) FAIL() << "no broadcast clip (see the failure above)";
  const double share = 300000.0 / 25;
  for (const EncBinCase& c : kEncBinCodecs) {
    const auto pk = encode_with_encbin(*clip, c, 300, "broadcast");
    int cuts = 0;
    for (size_t i = 1; i + 1 < pk.size(); ++i) {
      if (!pk[i].key) continue;
      ++cuts;
      std::printf("%s: key frame at %.2f s %.1f shares, the next frame %.1f\n", c.codec, pk[i].pts,
                  pk[i].size * 8 / share, pk[i + 1].size * 8 / share);
      EXPECT_GE(pk[i].size * 8, 1.5 * share) << c.codec << " key frame at " << pk[i].pts << " s is starved";
      EXPECT_LE(pk[i].size * 8, 4.5 * share) << c.codec << " key frame at " << pk[i].pts << " s";
      // VP9 under mode auto: libvpx's own CBR codes the frame after (4.9-5.8 shares
      // measured); our per-frame QP kept it within 3 (mode=rlambda).
      const double after_limit = std::string(c.codec) == "vp9" ? 6.5 : 3.0;
      EXPECT_LE(pk[i + 1].size * 8, after_limit * share)
          << c.codec << " frame after the key frame at " << pk[i].pts << " s";
    }
    EXPECT_GE(cuts, 2) << c.codec << ": the clip has two hard cuts (and a fade through black)";
  }
}

// A picture that cannot spend the rate at any QP (a small ball on a flat field at
// 1.5 Mbit/s): the QP reaches the lowest the settings allow and ccmencbin's stats
// say so (at-min-qp), while a rate the content can spend does not.
TEST(RateControlInEncBin, AtMinQpSaysTheTargetIsOutOfReach) {
  for (const auto& [kbps, reachable] : {std::pair{1500, false}, std::pair{60, true}}) {
    ccm::test::RunOptions options;
    options.stats_from = "enc";
    auto r = ccm::test::run_pipeline("videotestsrc num-buffers=90 pattern=ball ! video/x-raw,width=320,height=240 ! "
                                     "ccmencbin name=enc codec=h265 bitrate=" + std::to_string(kbps) +
                                         " ! h265parse ! fakesink",
                                     options);
    ASSERT_TRUE(r.eos) << r.error;
    ASSERT_NE(r.stats, nullptr);
    gboolean at_min = !reachable;
    ASSERT_TRUE(gst_structure_get_boolean(r.stats, "at-min-qp", &at_min));
    EXPECT_EQ(static_cast<bool>(at_min), !reachable) << kbps << " kbit/s";
  }
}
