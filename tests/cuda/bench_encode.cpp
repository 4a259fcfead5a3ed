// Not a test: the encoding half of scripts/gpu-bench. Two modes:
//
//   bench_encode gst --input FILE.yuv --width W --height H --fps F --frames N
//       --codec h265|av1|vp9|h264 --encoder FACTORY --preset P --bitrate KBPS --keyint K
//       [--live] [--no-low-latency] [--direct] [--element "DESCRIPTION name=enc ..."]
//     I420 frames from FILE (read into memory once, repeated if N is larger) go
//     through appsrc ! ccmencbin ! fakesink, the encoder's speed-preset set as
//     ccmencbin adds it. Without --live frames go in as fast as they are taken
//     (throughput); with --live one every 1/F s (per-frame latency at real time),
//     after two frames pushed at once and the first one out (the encoder's
//     start-up, a one-off, would otherwise leave a backlog that an encoder just
//     faster than real time takes minutes to drain; SVT-AV1 in low delay gives a
//     frame out only once the next one is in); fps and latency leave those two out.
//     --no-low-latency lets the encoder reorder and look ahead (throughput
//     settings); --direct puts the encoder element alone in place of ccmencbin;
//     --element puts that gst-launch description (one element named enc, or a bin
//     whose first element is named enc) in place of ccmencbin: a peer element at
//     settings of our choosing. Live latency runs from the moment a frame was due
//     (its slot), so frames held back by a slow encoder count as late;
//     ontime_slot is the share of frames out within one slot (1/F) of being due,
//     ontime_50ms the share out within 50 ms.
//
//   bench_encode rc --width W --height H --format NV12|P010_10LE --frames N [--cuda]
//     ccmratecontrol alone (mode=passthrough) on videotestsrc frames, in system
//     memory or, with --cuda, uploaded first (cudaupload): its stats' analysis-ms,
//     the mean time per frame as the element measures it (map for the GPU included).
//
//   bench_encode exec --frames N -- COMMAND ARGS...
//     Runs a peer (x265, SvtAv1EncApp) and measures it the same way from outside.
//
// Both print one line "RESULT fps=.. wall_s=.. cpu_s=.. cores=.. lat_med_ms=..
// lat_p95_ms=.. lat_max_ms=.. frames=.." (latency only where measured: from the
// frame entering ccmencbin to its encoded frame leaving it, matched by PTS).
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pipeline_util.h"

namespace {

using Clock = std::chrono::steady_clock;

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

double cpu_seconds(int who) {
  rusage u{};
  getrusage(who, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

struct Latencies {
  std::mutex lock;
  std::map<GstClockTime, double> in;  // pts -> time it entered ccmencbin (live: its slot)
  std::vector<double> in_order;        // the same, in the order frames went in
  std::vector<double> ms;
  int out = 0;
};

GstPadProbeReturn on_in(GstPad*, GstPadProbeInfo* info, gpointer data) {
  auto* l = static_cast<Latencies*>(data);
  const double t = now_s();
  std::lock_guard<std::mutex> g(l->lock);
  auto [it, fresh] = l->in.emplace(GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(info)), t);  // a slot set by the feeder stays
  l->in_order.push_back(it->second);
  return GST_PAD_PROBE_OK;
}

GstPadProbeReturn on_out(GstPad*, GstPadProbeInfo* info, gpointer data) {
  auto* l = static_cast<Latencies*>(data);
  const double t = now_s();
  std::lock_guard<std::mutex> g(l->lock);
  auto it = l->in.find(GST_BUFFER_PTS(GST_PAD_PROBE_INFO_BUFFER(info)));
  if (it != l->in.end()) {
    l->ms.push_back((t - it->second) * 1e3);
    l->in.erase(it);
  } else if (l->out < static_cast<int>(l->in_order.size())) {
    // Encoders that move the timestamps (x264enc adds 1000 h): at low latency
    // frames leave in the order they came.
    l->ms.push_back((t - l->in_order[l->out]) * 1e3);
  }
  ++l->out;
  return GST_PAD_PROBE_OK;
}

struct Preset {
  const char* factory;
  int value;
};

void on_deep_element_added(GstBin*, GstBin*, GstElement* element, gpointer data) {
  const auto* p = static_cast<const Preset*>(data);
  GstElementFactory* f = gst_element_get_factory(element);
  if (f && g_str_equal(GST_OBJECT_NAME(f), p->factory)) {
    g_object_set(element, "speed-preset", p->value, nullptr);
    std::printf("%s: speed-preset=%d\n", GST_OBJECT_NAME(element), p->value);
  }
}

void print_result(double fps, double wall, double cpu, int frames, std::vector<double> lat, double slot_ms = 0) {
  std::printf("RESULT fps=%.2f wall_s=%.3f cpu_s=%.2f cores=%.2f frames=%d", fps, wall, cpu, wall > 0 ? cpu / wall : 0,
              frames);
  if (!lat.empty()) {
    std::sort(lat.begin(), lat.end());
    std::printf(" lat_med_ms=%.1f lat_p95_ms=%.1f lat_max_ms=%.1f", lat[lat.size() / 2], lat[lat.size() * 95 / 100],
                lat.back());
    if (slot_ms > 0) {
      auto share = [&](double bound) {
        return 100.0 * double(std::upper_bound(lat.begin(), lat.end(), bound) - lat.begin()) / double(lat.size());
      };
      std::printf(" ontime_slot=%.1f ontime_50ms=%.1f", share(slot_ms), share(50.0));
    }
  }
  std::printf("\n");
  std::fflush(stdout);
}

int run_gst(int argc, char** argv) {
  std::string input, codec = "h265", encoder = "ccmx265enc", element_desc;
  int width = 0, height = 0, fps = 30, frames = 60, preset = -1, bitrate = 10000, keyint = 60;
  bool live = false, low_latency = true, direct = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--input") input = next();
    else if (a == "--width") width = std::atoi(next());
    else if (a == "--height") height = std::atoi(next());
    else if (a == "--fps") fps = std::atoi(next());
    else if (a == "--frames") frames = std::atoi(next());
    else if (a == "--codec") codec = next();
    else if (a == "--encoder") encoder = next();
    else if (a == "--preset") preset = std::atoi(next());
    else if (a == "--bitrate") bitrate = std::atoi(next());
    else if (a == "--keyint") keyint = std::atoi(next());
    else if (a == "--live") live = true;
    else if (a == "--no-low-latency") low_latency = false;
    else if (a == "--direct") direct = true;
    else if (a == "--element") element_desc = next(), direct = true;
  }
  const size_t frame_bytes = static_cast<size_t>(width) * height * 3 / 2;
  const int fd = open(input.c_str(), O_RDONLY);
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0 || frame_bytes == 0 || static_cast<size_t>(st.st_size) < frame_bytes) {
    std::fprintf(stderr, "cannot read %s as %dx%d I420\n", input.c_str(), width, height);
    return 2;
  }
  const int in_file = static_cast<int>(st.st_size / frame_bytes);
  // In memory (and touched) before the clock starts: the input costs nothing.
  auto* data = static_cast<uint8_t*>(mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0));
  close(fd);
  if (data == MAP_FAILED) return 2;

  const std::string settings = " bitrate=" + std::to_string(bitrate) + " keyframe-interval=" + std::to_string(keyint) +
                               " low-latency=" + (low_latency ? "true" : "false");
  const std::string element =
      !element_desc.empty() ? element_desc
      : direct ? encoder + " name=enc" + settings + (preset >= 0 ? " speed-preset=" + std::to_string(preset) : "")
             : "ccmencbin name=enc codec=" + codec + settings + " candidates=" + encoder;
  // BENCH_APPSRC_NOT_LIVE=1: paced by us but not a live source for GStreamer (a diagnostic).
  const bool live_src = live && !std::getenv("BENCH_APPSRC_NOT_LIVE");
  const std::string description = "appsrc name=src is-live=" + std::string(live_src ? "true" : "false") +
                                  " format=time block=true max-buffers=2 ! " + element +
                                  " ! fakesink name=sink sync=false";
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(description.c_str(), &err);
  if (!pipeline) {
    std::fprintf(stderr, "%s\n", err ? err->message : "parse failed");
    return 2;
  }
  Preset p{encoder.c_str(), preset};
  if (preset >= 0 && !direct) g_signal_connect(pipeline, "deep-element-added", G_CALLBACK(on_deep_element_added), &p);
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  GstCaps* caps = gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, "I420", "width", G_TYPE_INT, width,
                                      "height", G_TYPE_INT, height, "framerate", GST_TYPE_FRACTION, fps, 1, nullptr);
  g_object_set(src, "caps", caps, nullptr);
  gst_caps_unref(caps);
  Latencies lat;
  GstPad* enc_sink = gst_element_get_static_pad(enc, "sink");
  GstPad* sink_pad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(enc_sink, GST_PAD_PROBE_TYPE_BUFFER, on_in, &lat, nullptr);
  gst_pad_add_probe(sink_pad, GST_PAD_PROBE_TYPE_BUFFER, on_out, &lat, nullptr);

  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  const double cpu0 = cpu_seconds(RUSAGE_SELF);
  const double t0 = now_s();
  double paced_from = t0;
  std::thread feeder([&] {
    const GstClockTime period = GST_SECOND / fps;
    for (int i = 0; i < frames; ++i) {
      if (live && i == 2) {
        for (int waited = 0; waited < 60000; ++waited) {
          {
            std::lock_guard<std::mutex> g(lat.lock);
            if (lat.out > 0) break;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        paced_from = now_s();
      }
      if (live && i >= 2) {
        const double due = paced_from + static_cast<double>(i - 2) / fps;
        const double wait = due - now_s();
        if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      }
      if (live && i >= 2) {  // latency counts from the frame's slot, not from when it got in
        std::lock_guard<std::mutex> g(lat.lock);
        lat.in[i * period] = paced_from + static_cast<double>(i - 2) / fps;
      }
      uint8_t* frame = data + (i % in_file) * frame_bytes;
      GstBuffer* buf = gst_buffer_new_wrapped_full(GST_MEMORY_FLAG_READONLY, frame, frame_bytes, 0, frame_bytes,
                                                   nullptr, nullptr);
      GST_BUFFER_PTS(buf) = i * period;
      GST_BUFFER_DURATION(buf) = period;
      if (gst_app_src_push_buffer(GST_APP_SRC(src), buf) != GST_FLOW_OK) break;
    }
    gst_app_src_end_of_stream(GST_APP_SRC(src));
  });
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* m = gst_bus_timed_pop_filtered(bus, 600 * GST_SECOND,
                                             static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  const double wall = now_s() - t0;
  const double cpu = cpu_seconds(RUSAGE_SELF) - cpu0;
  int rc = 0;
  if (!m || GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
    GError* e = nullptr;
    gchar* dbg = nullptr;
    if (m) gst_message_parse_error(m, &e, &dbg);
    std::fprintf(stderr, "ERROR: %s | %s\n", e ? e->message : "timeout", dbg ? dbg : "");
    g_clear_error(&e);
    g_free(dbg);
    rc = 1;
  }
  if (m) gst_message_unref(m);
  if (!direct) {
    gchar* used = nullptr;
    g_object_get(enc, "encoder", &used, nullptr);
    std::printf("encoder in use: %s\n", used ? used : "?");
    g_free(used);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);  // unblocks a feeder stuck in push
  feeder.join();
  if (rc == 0 && live && lat.out > 2 && lat.ms.size() > 2) {
    const double paced = (t0 + wall) - paced_from;
    std::printf("first frame out after %.0f ms\n", lat.ms.front());
    lat.ms.erase(lat.ms.begin(), lat.ms.begin() + 2);
    print_result((lat.out - 2) / paced, wall, cpu, lat.out, lat.ms, 1000.0 / fps);
  } else if (rc == 0) {
    print_result(lat.out / wall, wall, cpu, lat.out, lat.ms);
  }
  gst_object_unref(enc_sink);
  gst_object_unref(sink_pad);
  gst_object_unref(bus);
  gst_object_unref(src);
  gst_object_unref(enc);
  gst_object_unref(sink);
  gst_object_unref(pipeline);
  munmap(data, st.st_size);
  return rc;
}

int run_rc(int argc, char** argv) {
  int width = 3840, height = 2160, frames = 300;
  std::string format = "NV12";
  bool cuda = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--width") width = std::atoi(next());
    else if (a == "--height") height = std::atoi(next());
    else if (a == "--frames") frames = std::atoi(next());
    else if (a == "--format") format = next();
    else if (a == "--cuda") cuda = true;
  }
  const std::string description =
      "videotestsrc num-buffers=" + std::to_string(frames) + " pattern=ball ! video/x-raw,format=" + format +
      ",width=" + std::to_string(width) + ",height=" + std::to_string(height) + ",framerate=60/1 ! " +
      (cuda ? "cudaupload ! video/x-raw(memory:CUDAMemory) ! " : "") +
      "ccmratecontrol name=rc mode=passthrough ! fakesink sync=false";
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(description.c_str(), &err);
  if (!pipeline) {
    std::fprintf(stderr, "%s\n", err ? err->message : "parse failed");
    return 2;
  }
  GstElement* rc = gst_bin_get_by_name(GST_BIN(pipeline), "rc");
  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstMessage* m = gst_bus_timed_pop_filtered(bus, 300 * GST_SECOND,
                                             static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  int result = 1;
  if (m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS) {
    GstStructure* stats = nullptr;
    g_object_get(rc, "stats", &stats, nullptr);
    double ms = 0;
    guint64 in = 0;
    gst_structure_get_double(stats, "analysis-ms", &ms);
    gst_structure_get_uint64(stats, "frames-in", &in);
    std::printf("RC %dx%d %s %s: analysis-ms=%.4f isa=%s frames=%" G_GUINT64_FORMAT "\n", width, height,
                format.c_str(), cuda ? "CUDAMemory" : "system-memory", ms, gst_structure_get_string(stats, "isa"),
                in);
    gst_structure_free(stats);
    result = 0;
  } else {
    std::fprintf(stderr, "pipeline failed: %s\n", description.c_str());
  }
  if (m) gst_message_unref(m);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(rc);
  gst_object_unref(pipeline);
  return result;
}

int run_exec(int argc, char** argv) {
  int frames = 0, first = -1;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--frames") == 0 && i + 1 < argc) frames = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--") == 0) {
      first = i + 1;
      break;
    }
  }
  if (first < 0 || first >= argc) return 2;
  const double t0 = now_s();
  const pid_t pid = fork();
  if (pid == 0) {
    execvp(argv[first], argv + first);
    std::perror("execvp");
    _exit(127);
  }
  int status = 0;
  rusage u{};
  wait4(pid, &status, 0, &u);
  const double wall = now_s() - t0;
  const double cpu = u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "ERROR: %s exited with %d\n", argv[first], WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 1;
  }
  print_result(frames / wall, wall, cpu, frames, {});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "exec") == 0) return run_exec(argc, argv);
  if (argc >= 2 && std::strcmp(argv[1], "gst") == 0) {
    ccm::test::init_gstreamer(&argc, &argv);
    return run_gst(argc, argv);
  }
  if (argc >= 2 && std::strcmp(argv[1], "rc") == 0) {
    ccm::test::init_gstreamer(&argc, &argv);
    return run_rc(argc, argv);
  }
  std::fprintf(stderr, "usage: %s gst --input FILE ... | rc ... | exec --frames N -- COMMAND...\n", argv[0]);
  return 2;
}
