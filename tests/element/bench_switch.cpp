// Not a test: scripts/bench-switch runs it. ccmencbin's switching costs, measured
// in one process on live 30 fps input (wall clock, medians over --trials):
//   start     time from PLAYING to the first encoded buffer out of ccmencbin, with
//             an empty probe cache (cold), with the answers cached (warm) and with
//             probe=false; and a cold test encode of every candidate of a codec
//   switch    `codec` (or `candidates`) set while PLAYING: request -> first buffer
//             of the new encoder out of ccmencbin
//   failover  a candidate (TEST DOUBLE wrapping x265enc) fails after N frames:
//             failure -> first buffer of the next encoder, with and without
//             standby=true, and the longest gap between two buffers out
// Every run also counts frames in and out (lost frames must be 0) and checks that
// output timestamps go up by one frame interval each.
#include "pipeline_util.h"
#include "test_doubles.h"

#include "catalog/rank.h"
#include "encbin/encoder_setup.h"
#include "encbin/probe.h"
#include "common/registry_probe.h"

#include <gst/gst.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace {

int g_width = 1280, g_height = 720, g_trials = 5;

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double ms_between(gint64 a, gint64 b) { return double(b - a) / 1000.0; }

void fresh_cache() {
  static int n = 0;
  gchar* dir = g_dir_make_tmp("ccm-bench-XXXXXX", nullptr);
  g_setenv("XDG_CACHE_HOME", (std::string(dir) + "/cache" + std::to_string(n++)).c_str(), TRUE);
  g_setenv("XDG_RUNTIME_DIR", (std::string(dir) + "/run").c_str(), TRUE);
  g_free(dir);
}

// What one run saw at ccmencbin's src pad.
struct Trace {
  std::mutex lock;
  gint64 playing_us = -1;
  gint64 first_out_us = -1;
  gint64 request_us = -1;        // switch requested (set in the streaming thread)
  gint64 first_new_out_us = -1;  // first buffer after the request with new caps/encoder
  std::vector<gint64> arrivals;
  std::vector<GstClockTime> pts;
  std::string caps_before;
  std::string error;
  GstStructure* stats = nullptr;
  GstStructure* switched = nullptr;
  ~Trace() {
    if (stats) gst_structure_free(stats);
    if (switched) gst_structure_free(switched);
  }
};

std::string caps_name(GstPad* pad) {
  GstCaps* caps = gst_pad_get_current_caps(pad);
  std::string name = caps ? gst_structure_get_name(gst_caps_get_structure(caps, 0)) : "";
  if (caps) gst_caps_unref(caps);
  return name;
}

// Runs `frames` live frames through `enc_desc`; `at` (if any) runs in the
// streaming thread before frame `at_frame` enters ccmencbin.
void run(Trace& t, int frames, const std::string& enc_desc, int at_frame = -1,
         std::function<void(GstElement*)> at = {}) {
  const std::string desc = "videotestsrc is-live=true pattern=ball num-buffers=" + std::to_string(frames) +
                           " ! video/x-raw,format=I420,width=" + std::to_string(g_width) + ",height=" +
                           std::to_string(g_height) + ",framerate=30/1 ! " + enc_desc + " ! fakesink sync=false";
  GstElement* pipeline = gst_parse_launch(desc.c_str(), nullptr);
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstPad* src = gst_element_get_static_pad(enc, "src");
  struct Ctx {
    Trace* t;
    GstPad* src;
  } ctx{&t, src};
  gst_pad_add_probe(
      src, GST_PAD_PROBE_TYPE_BUFFER,
      [](GstPad* pad, GstPadProbeInfo* info, gpointer data) -> GstPadProbeReturn {
        auto* c = static_cast<Ctx*>(data);
        const gint64 now = g_get_monotonic_time();
        std::lock_guard lk(c->t->lock);
        if (c->t->first_out_us < 0) c->t->first_out_us = now;
        if (c->t->request_us >= 0 && c->t->first_new_out_us < 0 && caps_name(pad) != c->t->caps_before)
          c->t->first_new_out_us = now;
        c->t->arrivals.push_back(now);
        c->t->pts.push_back(GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(info)));
        return GST_PAD_PROBE_OK;
      },
      &ctx, nullptr);
  struct Hook {
    Trace* t;
    int n, seen = 0;
    GstElement* enc;
    GstPad* src;
    std::function<void(GstElement*)> fn;
  } hook{&t, at_frame, 0, enc, src, at};
  if (at) {
    GstPad* sink = gst_element_get_static_pad(enc, "sink");
    gst_pad_add_probe(
        sink, GST_PAD_PROBE_TYPE_BUFFER,
        [](GstPad*, GstPadProbeInfo*, gpointer data) -> GstPadProbeReturn {
          auto* h = static_cast<Hook*>(data);
          if (h->seen++ == h->n) {
            {
              std::lock_guard lk(h->t->lock);
              h->t->caps_before = caps_name(h->src);
              h->t->request_us = g_get_monotonic_time();
            }
            h->fn(h->enc);
          }
          return GST_PAD_PROBE_OK;
        },
        &hook, nullptr);
    gst_object_unref(sink);
  }
  GstBus* bus = gst_element_get_bus(pipeline);
  t.playing_us = g_get_monotonic_time();
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  for (;;) {
    GstMessage* msg = gst_bus_timed_pop(bus, 60 * GST_SECOND);
    if (!msg) {
      t.error = "timeout";
      break;
    }
    const auto type = GST_MESSAGE_TYPE(msg);
    if (type == GST_MESSAGE_ELEMENT && gst_message_has_name(msg, "ccm-encoder-switched") && !t.switched)
      t.switched = gst_structure_copy(gst_message_get_structure(msg));
    if (type == GST_MESSAGE_ERROR) {
      GError* e = nullptr;
      gst_message_parse_error(msg, &e, nullptr);
      t.error = e->message;
      g_error_free(e);
    }
    gst_message_unref(msg);
    if (type == GST_MESSAGE_EOS || type == GST_MESSAGE_ERROR) break;
  }
  g_object_get(enc, "stats", &t.stats, nullptr);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(src);
  gst_object_unref(enc);
  gst_object_unref(pipeline);
}

guint64 u64(const GstStructure* s, const char* f) {
  guint64 v = 0;
  if (s) gst_structure_get_uint64(s, f, &v);
  return v;
}
double dbl(const GstStructure* s, const char* f) {
  double v = -1;
  if (s) gst_structure_get_double(s, f, &v);
  return v;
}

// Frames lost and timestamp steps that are not one frame interval.
std::pair<long, int> losses(const Trace& t, int frames) {
  int bad_steps = 0;
  for (size_t i = 1; i < t.pts.size(); i++)
    if (t.pts[i] - t.pts[i - 1] > GST_SECOND / 30 + GST_MSECOND || t.pts[i] <= t.pts[i - 1]) bad_steps++;
  return {long(frames) - long(t.pts.size()), bad_steps};
}

double longest_gap_ms(const Trace& t) {
  double gap = 0;
  for (size_t i = 1; i < t.arrivals.size(); i++) gap = std::max(gap, ms_between(t.arrivals[i - 1], t.arrivals[i]));
  return gap;
}

void bench_start(const char* codec) {
  // Two figures per start: ccmencbin's own choosing time (caps in -> encoder
  // chosen, set up and open: ranking, probe or cache, session) and PLAYING -> first
  // encoded buffer out (adds the source's first frame and the first encode).
  std::vector<double> cold, warm, off, cold_out, warm_out, off_out;
  std::string factory;
  for (int i = 0; i < g_trials; i++) {
    fresh_cache();
    for (int pass = 0; pass < 2; pass++) {
      Trace t;
      run(t, 5, std::string("ccmencbin name=enc codec=") + codec);
      (pass == 0 ? cold : warm).push_back(dbl(t.stats, "start-ms"));
      (pass == 0 ? cold_out : warm_out).push_back(ms_between(t.playing_us, t.first_out_us));
    }
    Trace t;
    run(t, 5, std::string("ccmencbin name=enc probe=false codec=") + codec);
    off.push_back(dbl(t.stats, "start-ms"));
    off_out.push_back(ms_between(t.playing_us, t.first_out_us));
    factory = t.stats ? gst_structure_get_string(t.stats, "encoder") : "";
  }
  std::printf("| start %s (%s) | choosing: cold %.1f ms, warm %.1f ms, probe=false %.1f ms (warm adds %+.1f ms) | "
              "first buffer out: cold %.1f ms, warm %.1f ms, probe=false %.1f ms |\n",
              codec, factory.c_str(), median(cold), median(warm), median(off), median(warm) - median(off),
              median(cold_out), median(warm_out), median(off_out));
}

void bench_probe_all(ccm::catalog::Codec codec) {
  ccm::catalog::RankRequest request;
  request.codec = codec;
  request.gpus = ccm::gst::detected_gpus();
  request.gst_version = ccm::gst::running_gst_version();
  request.has_factory = [](std::string_view f) { return ccm::gst::registry_has_element(f); };
  const auto ranking = ccm::catalog::rank(request);
  std::vector<double> totals;
  std::string each;
  for (int i = 0; i < g_trials; i++) {
    double total = 0;
    each.clear();
    for (const auto& c : ranking.candidates) {
      // Set up as ccmencbin sets it up for its own test encode (low latency, 2000 kbit/s).
      const auto r = ccm::gst::probe_encoder([&] {
        GstElement* e = gst_element_factory_make(c.factory.c_str(), nullptr);
        ccm::gst::EncodeSettings settings;
        settings.codec = codec;
        settings.keyframe_interval = 300;
        if (e) ccm::gst::configure_encoder(e, c.entry, settings);
        return e;
      });
      total += r.ms;
      each += c.factory + " " + std::to_string(int(r.ms + 0.5)) + " ms" + (r.ok ? "" : " (failed)") + ", ";
    }
    totals.push_back(total);
  }
  std::printf("| cold probe of every %s candidate | %.1f ms | %s |\n", ccm::catalog::to_string(codec), median(totals),
              each.c_str());
}

void bench_switch(const char* from_desc, const char* label, std::function<void(GstElement*)> change) {
  std::vector<double> outside, inside, gaps;
  long lost = 0;
  int bad = 0;
  for (int i = 0; i < g_trials; i++) {
    fresh_cache();
    Trace warmup;  // the probe answers are cached, as in a running service
    run(warmup, 3, from_desc);
    Trace t;
    run(t, 200, from_desc, 100, change);
    if (!t.error.empty()) std::printf("error: %s\n", t.error.c_str());
    outside.push_back(t.first_new_out_us >= 0 ? ms_between(t.request_us, t.first_new_out_us) : -1);
    inside.push_back(dbl(t.stats, "last-switch-ms"));
    gaps.push_back(longest_gap_ms(t));
    const auto [l, b] = losses(t, 200);
    lost += l;
    bad += b;
  }
  std::printf("| switch %s | request -> first new buffer %.1f ms (ccmencbin's own figure %.1f ms) | longest gap %.1f ms | "
              "frames lost %ld, timestamp steps off %d |\n",
              label, median(outside), median(inside), median(gaps), lost, bad);
}

void bench_failover(bool standby) {
  std::vector<double> inside, gaps;
  long lost = 0;
  int bad = 0;
  guint64 reencoded = 0;
  for (int i = 0; i < g_trials; i++) {
    fresh_cache();
    ccm::test::set_double_behaviour("testdouble_h265", {});
    const std::string desc = std::string("ccmencbin name=enc codec=h265 candidates=testdouble_h265,x265enc") +
                             (standby ? " standby=true" : "");
    Trace warmup;
    run(warmup, 3, desc);
    ccm::test::set_double_behaviour("testdouble_h265", {.fail_after = 100});
    Trace t;
    run(t, 200, desc);
    if (!t.error.empty()) std::printf("error: %s\n", t.error.c_str());
    inside.push_back(dbl(t.stats, "last-switch-ms"));
    gaps.push_back(longest_gap_ms(t));
    if (t.switched) gst_structure_get_uint64(t.switched, "frames-reencoded", &reencoded);
    const auto [l, b] = losses(t, 200);
    lost += l;
    bad += b;
  }
  std::printf("| failover %s | failure -> first buffer of x265enc %.1f ms | longest gap %.1f ms (frame interval 33.3) | "
              "frames re-encoded %" G_GUINT64_FORMAT ", lost %ld, timestamp steps off %d |\n",
              standby ? "with standby" : "without standby", median(inside), median(gaps), reencoded, lost, bad);
}

}  // namespace

int main(int argc, char** argv) {
  std::string what = "all";
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a.rfind("--trials=", 0) == 0) g_trials = std::atoi(a.c_str() + 9);
    if (a.rfind("--size=", 0) == 0) std::sscanf(a.c_str() + 7, "%dx%d", &g_width, &g_height);
    if (a.rfind("--only=", 0) == 0) what = a.substr(7);
  }
  ccm::test::init_gstreamer(&argc, &argv);
  ccm::test::register_hardware_double("testdouble_h265", "x265enc");
  std::printf("ccmencbin switching, %dx%d live 30 fps, median of %d trials\n\n", g_width, g_height, g_trials);
  auto want = [&](const char* part) { return what == "all" || what == part; };
  if (want("start")) {
    for (const char* codec : {"h265", "h264", "vp9", "av1"}) bench_start(codec);
    for (auto codec : ccm::catalog::kAllCodecs) bench_probe_all(codec);
  }
  if (want("switch")) {
    bench_switch("ccmencbin name=enc codec=h265", "h265 -> vp9",
                 [](GstElement* e) { gst_util_set_object_arg(G_OBJECT(e), "codec", "vp9"); });
    bench_switch("ccmencbin name=enc codec=vp9", "vp9 -> h265",
                 [](GstElement* e) { gst_util_set_object_arg(G_OBJECT(e), "codec", "h265"); });
    bench_switch("ccmencbin name=enc codec=h265", "h265 -> h264",
                 [](GstElement* e) { gst_util_set_object_arg(G_OBJECT(e), "codec", "h264"); });
  }
  if (want("failover")) {
    bench_failover(false);
    bench_failover(true);
  }
  gst_deinit();
  return 0;
}
