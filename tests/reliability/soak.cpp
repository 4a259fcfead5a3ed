// Soak run (not a test; scripts/soak runs it): small frames through ccmencbin
// (its built-in ccmratecontrol) for a long time while random things happen:
// bitrate changes, ccm-bandwidth-estimate events from downstream, hot switches
// between encoders and codecs, and encoders told to fail, stall or refuse (test
// doubles). Prints one line per report interval (frames in/out, RSS, fds,
// switches, failovers, errors, warnings) and a verdict at the end:
//   frames out == frames in, errors == 0, RSS and fds flat (last quarter vs
//   the second quarter of the run).
//
//   soak [--minutes=N] [--seed=N] [--report-s=N] [--csv=PATH] [--width=W --height=H --fps=F]
#include "pipeline_util.h"
#include "test_doubles.h"

#include <gst/gst.h>

#include <dirent.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

struct Options {
  double minutes = 30;
  unsigned seed = 1;
  int report_s = 30;
  int width = 160, height = 96, fps = 60;
  std::string csv;
};

long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

// Bytes malloc has handed out and not got back (small chunks and mmapped ones):
// a leak grows this; RSS alone also grows with the fragmentation of glibc's
// per-thread arenas, which every encoder switch (new threads) feeds.
long heap_in_use_kib() {
  const struct mallinfo2 m = mallinfo2();
  return long((m.uordblks + m.hblkhd) / 1024);
}

int open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n - 1;  // the directory itself
}

int threads() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

std::atomic<guint64> g_in{0}, g_out{0};

GstPadProbeReturn count(GstPad*, GstPadProbeInfo* info, gpointer counter) {
  if (GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_BUFFER) static_cast<std::atomic<guint64>*>(counter)->fetch_add(1);
  return GST_PAD_PROBE_OK;
}

struct Sample {
  double t_s;
  guint64 in, out;
  long rss;       // after malloc_trim(0): free memory handed back to the system first
  long heap;      // heap_in_use_kib()
  int fds, threads;
};

Sample sample(double t) {
  malloc_trim(0);
  return Sample{t, g_in.load(), g_out.load(), rss_kib(), heap_in_use_kib(), open_fds(), threads()};
}

}  // namespace

int main(int argc, char** argv) {
  ccm::test::init_gstreamer(&argc, &argv);
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* key) -> const char* {
      const size_t n = std::strlen(key);
      return a.compare(0, n, key) == 0 ? a.c_str() + n : nullptr;
    };
    if (auto v = val("--minutes=")) o.minutes = std::atof(v);
    else if (auto v = val("--seed=")) o.seed = unsigned(std::atoi(v));
    else if (auto v = val("--report-s=")) o.report_s = std::atoi(v);
    else if (auto v = val("--csv=")) o.csv = v;
    else if (auto v = val("--width=")) o.width = std::atoi(v);
    else if (auto v = val("--height=")) o.height = std::atoi(v);
    else if (auto v = val("--fps=")) o.fps = std::atoi(v);
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }

  // Per codec: the real encoders to switch between (ccmx265enc and ccmsvtav1enc are
  // steered per frame by ccmencbin's built-in ccmratecontrol), and a double that
  // fails on demand, backed by a real encoder so that its output is real.
  struct Codec {
    const char* name;
    std::vector<const char*> real;
    const char* flaky;
    const char* flaky_inner;
    bool flaky_ok = false;
  };
  std::vector<Codec> codecs = {{"h265", {"ccmx265enc", "x265enc"}, "flaky_h265", "x265enc"},
                               {"h264", {"x264enc", "openh264enc"}, "flaky_h264", "x264enc"},
                               {"vp9", {"vp9enc"}, "flaky_vp9", "vp9enc"},
                               {"av1", {"ccmsvtav1enc"}, "flaky_av1", "ccmsvtav1enc"}};
  for (auto& c : codecs) c.flaky_ok = ccm::test::register_hardware_double(c.flaky, c.flaky_inner);

  const std::string desc = "videotestsrc is-live=true pattern=ball ! video/x-raw,width=" + std::to_string(o.width) +
                           ",height=" + std::to_string(o.height) + ",framerate=" + std::to_string(o.fps) +
                           "/1 ! ccmencbin name=enc codec=h265 candidates=ccmx265enc bitrate=800 stall-timeout=1000 "
                           "! fakesink name=sink sync=false";
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
  if (!pipeline) {
    std::fprintf(stderr, "soak: %s\n", err ? err->message : "parse failed");
    return 2;
  }
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstPad* enc_sink = gst_element_get_static_pad(enc, "sink");
  GstPad* enc_src = gst_element_get_static_pad(enc, "src");
  gst_pad_add_probe(enc_sink, GST_PAD_PROBE_TYPE_BUFFER, count, &g_in, nullptr);
  gst_pad_add_probe(enc_src, GST_PAD_PROBE_TYPE_BUFFER, count, &g_out, nullptr);
  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);

  // The codec property's enum value for a nick ("h265"), for setting it with candidates in one call.
  GParamSpec* codec_spec = g_object_class_find_property(G_OBJECT_GET_CLASS(enc), "codec");
  GEnumClass* codec_enum = G_ENUM_CLASS(g_type_class_ref(codec_spec->value_type));
  auto codec_value = [&](const char* nick) {
    const GEnumValue* v = g_enum_get_value_by_nick(codec_enum, nick);
    return v ? v->value : 0;
  };

  std::mt19937 rng(o.seed);
  auto pick = [&](int n) { return int(rng() % unsigned(n)); };
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const double total_s = o.minutes * 60;

  int errors = 0, warnings = 0, switches = 0, failovers = 0, bitrate_changes = 0, estimates = 0, injected = 0;
  std::vector<std::string> error_texts, warning_texts;
  std::vector<Sample> samples;
  FILE* csv = o.csv.empty() ? nullptr : std::fopen(o.csv.c_str(), "w");
  if (csv) std::fprintf(csv, "t_s,frames_in,frames_out,rss_kib,heap_kib,fds,threads,switches,failovers,errors,warnings\n");
  std::printf("%8s %10s %10s %9s %9s %5s %7s %8s %9s %6s %8s  encoder\n", "t_s", "in", "out", "rss_kib", "heap_kib",
              "fds", "threads", "switches", "failovers", "errors", "warnings");
  double next_report = 0, next_action = 2;
  bool ended = false;

  while (true) {
    const double t = elapsed();
    if (!ended && t >= total_s) {
      gst_element_send_event(pipeline, gst_event_new_eos());
      ended = true;
    }
    GstMessage* msg = gst_bus_timed_pop(bus, 50 * GST_MSECOND);
    if (msg) {
      const auto type = GST_MESSAGE_TYPE(msg);
      if (type == GST_MESSAGE_EOS) {
        gst_message_unref(msg);
        break;
      }
      if (type == GST_MESSAGE_ERROR || type == GST_MESSAGE_WARNING) {
        GError* e = nullptr;
        gchar* dbg = nullptr;
        if (type == GST_MESSAGE_ERROR) gst_message_parse_error(msg, &e, &dbg);
        else gst_message_parse_warning(msg, &e, &dbg);
        const std::string text = std::string(GST_MESSAGE_SRC_NAME(msg)) + ": " + e->message;
        if (type == GST_MESSAGE_ERROR) {
          ++errors;
          error_texts.push_back(text + " | " + (dbg ? dbg : ""));
        } else {
          ++warnings;
          if (warning_texts.size() < 20) warning_texts.push_back(text);
        }
        g_error_free(e);
        g_free(dbg);
        if (type == GST_MESSAGE_ERROR) {
          gst_message_unref(msg);
          break;
        }
      } else if (type == GST_MESSAGE_ELEMENT) {
        const GstStructure* s = gst_message_get_structure(msg);
        if (gst_structure_has_name(s, "ccm-encoder-switched")) {
          gboolean requested = FALSE;
          gst_structure_get_boolean(s, "requested", &requested);
          (requested ? switches : failovers)++;
        }
      }
      gst_message_unref(msg);
    }

    if (!ended && t >= next_action) {
      next_action = t + 0.5 + pick(2500) / 1000.0;
      const int what = pick(100);
      if (what < 40) {  // bitrate change
        g_object_set(enc, "bitrate", guint(100 + pick(3000)), nullptr);
        ++bitrate_changes;
      } else if (what < 70) {  // a bandwidth estimate from downstream (WebRTC glue would send one)
        gst_pad_send_event(enc_src, gst_event_new_custom(GST_EVENT_CUSTOM_UPSTREAM,
                                                         gst_structure_new("ccm-bandwidth-estimate", "bitrate",
                                                                           G_TYPE_DOUBLE, 1e5 + pick(3000) * 1e3,
                                                                           nullptr)));
        ++estimates;
      } else if (what < 88) {  // a hot switch to a real encoder, of this codec or another
        const Codec& c = codecs[pick(int(codecs.size()))];
        const char* real = c.real[pick(int(c.real.size()))];
        // One call: both apply together at the next frame boundary.
        g_object_set(enc, "codec", codec_value(c.name), "candidates", real, nullptr);
      } else {  // an encoder that will fail, stall or refuse, with a real one to take over
        const Codec& c = codecs[pick(int(codecs.size()))];
        if (!c.flaky_ok) continue;
        ccm::test::DoubleBehaviour b;
        const int kind = pick(4);
        if (kind <= 1) b.fail_after = 5 + pick(200);
        else if (kind == 2) b.stall_after = 5 + pick(200);
        else b.refuse_open = true;
        ccm::test::set_double_behaviour(c.flaky, b);
        g_object_set(enc, "codec", codec_value(c.name), "candidates", (std::string(c.flaky) + "," + c.real[0]).c_str(), nullptr);
        ++injected;
      }
    }

    if (t >= next_report) {
      next_report += o.report_s;
      const Sample s = sample(t);
      samples.push_back(s);
      gchar* encoder = nullptr;
      g_object_get(enc, "encoder", &encoder, nullptr);
      std::printf("%8.0f %10llu %10llu %9ld %9ld %5d %7d %8d %9d %6d %8d  %s\n", t, (unsigned long long)s.in,
                  (unsigned long long)s.out, s.rss, s.heap, s.fds, s.threads, switches, failovers, errors, warnings,
                  encoder ? encoder : "-");
      std::fflush(stdout);
      if (csv) {
        std::fprintf(csv, "%.1f,%llu,%llu,%ld,%ld,%d,%d,%d,%d,%d,%d\n", t, (unsigned long long)s.in,
                     (unsigned long long)s.out, s.rss, s.heap, s.fds, s.threads, switches, failovers, errors, warnings);
        std::fflush(csv);
      }
      g_free(encoder);
    }
    if (ended && elapsed() > total_s + 60) {
      error_texts.push_back("no EOS within 60 s of the end");
      ++errors;
      break;
    }
  }

  GstStructure* stats = nullptr;
  g_object_get(enc, "stats", &stats, nullptr);
  gchar* stats_text = stats ? gst_structure_to_string(stats) : nullptr;
  gst_element_set_state(pipeline, GST_STATE_NULL);
  const Sample end = sample(elapsed());

  // Flat: the last quarter's samples against the second quarter's (the first
  // quarter holds warm-up: codec libraries, caches, pools).
  auto quarter_max = [&](int q, auto field) {
    long m = 0;
    const size_t n = samples.size();
    for (size_t i = n * q / 4; i < n * (q + 1) / 4; ++i) m = std::max<long>(m, field(samples[i]));
    return m;
  };
  const long rss_q2 = quarter_max(1, [](const Sample& s) { return s.rss; });
  const long rss_q4 = quarter_max(3, [](const Sample& s) { return s.rss; });
  const long heap_q2 = quarter_max(1, [](const Sample& s) { return s.heap; });
  const long heap_q4 = quarter_max(3, [](const Sample& s) { return s.heap; });
  const long fds_q2 = quarter_max(1, [](const Sample& s) { return long(s.fds); });
  const long fds_q4 = quarter_max(3, [](const Sample& s) { return long(s.fds); });

  std::printf("\nsoak: %.1f min, seed %u, %dx%d@%d live\n", end.t_s / 60, o.seed, o.width, o.height, o.fps);
  std::printf("frames in %llu, out %llu (%s)\n", (unsigned long long)end.in, (unsigned long long)end.out,
              end.in == end.out ? "equal" : "DIFFERENT");
  std::printf("events: %d bitrate changes, %d bandwidth estimates, %d injected failures, %d requested switches, "
              "%d failovers\n", bitrate_changes, estimates, injected, switches, failovers);
  std::printf("RSS max KiB: 2nd quarter %ld, last quarter %ld (%+.1f%%)\n", rss_q2, rss_q4,
              rss_q2 ? 100.0 * (rss_q4 - rss_q2) / rss_q2 : 0.0);
  std::printf("heap in use max KiB: 2nd quarter %ld, last quarter %ld (%+.1f%%)\n", heap_q2, heap_q4,
              heap_q2 ? 100.0 * (heap_q4 - heap_q2) / heap_q2 : 0.0);
  std::printf("fds max: 2nd quarter %ld, last quarter %ld; after NULL %d\n", fds_q2, fds_q4, end.fds);
  std::printf("errors %d, warnings %d\n", errors, warnings);
  for (const auto& e : error_texts) std::printf("  error: %s\n", e.c_str());
  for (const auto& w : warning_texts) std::printf("  warning: %s\n", w.c_str());
  std::printf("stats: %s\n", stats_text ? stats_text : "(none)");
  g_free(stats_text);
  if (stats) gst_structure_free(stats);
  if (csv) std::fclose(csv);

  g_type_class_unref(codec_enum);
  gst_object_unref(enc_sink);
  gst_object_unref(enc_src);
  gst_object_unref(enc);
  gst_object_unref(bus);
  gst_object_unref(pipeline);

  const bool rss_flat = rss_q2 == 0 || rss_q4 <= rss_q2 * 1.10 + 2048;
  const bool heap_flat = heap_q2 == 0 || heap_q4 <= heap_q2 * 1.10 + 2048;
  const bool fds_flat = fds_q4 <= fds_q2 + 2;
  const bool ok = end.in == end.out && errors == 0 && rss_flat && heap_flat && fds_flat;
  std::printf("verdict: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
