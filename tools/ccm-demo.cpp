// ccm-demo: the main job in one program. Encodes a built-in moving test source
// with ccmencbin into a Matroska file, says which encoder it chose and why, what
// it achieved, and whether a real decoder (ffmpeg) reads every frame back.
#include "encbin/registry_probe.h"
#include "hw/cpu.h"
#include "hw/gpu.h"
#include "plugin.h"

#include <gst/gst.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

struct Options {
  std::string codec = "auto";
  guint bitrate = 800;
  guint seconds = 10;
  guint width = 1280, height = 720, fps = 30;
  std::string output = "demo.mkv";
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--codec" && (v = next())) o.codec = v;
    else if (a == "--bitrate" && (v = next())) o.bitrate = std::strtoul(v, nullptr, 10);
    else if (a == "--seconds" && (v = next())) o.seconds = std::strtoul(v, nullptr, 10);
    else if (a == "--width" && (v = next())) o.width = std::strtoul(v, nullptr, 10);
    else if (a == "--height" && (v = next())) o.height = std::strtoul(v, nullptr, 10);
    else if (a == "--fps" && (v = next())) o.fps = std::strtoul(v, nullptr, 10);
    else if (a == "--output" && (v = next())) o.output = v;
    else {
      std::fprintf(stderr,
                   "usage: ccm-demo [--codec auto|av1|h265|vp9|h264] [--bitrate KBPS] [--seconds S]\n"
                   "                [--width W] [--height H] [--fps F] [--output FILE.mkv]\n");
      return false;
    }
  }
  if (!o.seconds || !o.fps || !o.width || !o.height) {
    std::fprintf(stderr, "ccm-demo: seconds, fps, width and height must be at least 1\n");
    return false;
  }
  return true;
}

std::string run_capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    *status = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) return 2;
  gst_init(&argc, &argv);
  ccm_plugin_register_static();

  std::printf("machine: %s\n", ccm::hw::describe(ccm::gst::detected_cpu()).c_str());
  const auto& gpus = ccm::gst::detected_gpus();
  if (gpus.empty()) std::printf("GPUs:    none detected\n");
  for (const auto& g : gpus) std::printf("GPU:     %s\n", ccm::hw::describe(g).c_str());

  const guint frames = o.seconds * o.fps;
  gchar* desc = g_strdup_printf(
      "videotestsrc num-buffers=%u pattern=ball motion=sweep ! "
      "video/x-raw,width=%u,height=%u,framerate=%u/1 ! "
      "ccmencbin name=enc codec=%s bitrate=%u ! matroskamux ! filesink location=\"%s\"",
      frames, o.width, o.height, o.fps, o.codec.c_str(), o.bitrate, o.output.c_str());
  std::printf("pipeline: %s\n\n", desc);
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(desc, &err);
  g_free(desc);
  if (!pipeline) {
    std::fprintf(stderr, "ccm-demo: %s\n", err ? err->message : "cannot build the pipeline");
    return 1;
  }
  GstBus* bus = gst_element_get_bus(pipeline);
  const gint64 t0 = g_get_monotonic_time();
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  int rc = 0;
  for (bool done = false; !done;) {
    GstMessage* m = gst_bus_timed_pop(bus, GST_CLOCK_TIME_NONE);
    switch (GST_MESSAGE_TYPE(m)) {
      case GST_MESSAGE_ELEMENT: {
        const GstStructure* s = gst_message_get_structure(m);
        if (gst_structure_has_name(s, "ccm-encoder-selected")) {
          gboolean hw = FALSE;
          gst_structure_get_boolean(s, "hardware", &hw);
          std::printf("chose:   %s (%s, %s) for %s\n", gst_structure_get_string(s, "factory"),
                      hw ? "hardware" : "software", gst_structure_get_string(s, "device"),
                      gst_structure_get_string(s, "codec"));
          std::printf("why:     %s\n", gst_structure_get_string(s, "reason"));
          std::printf("set:     %s\n", gst_structure_get_string(s, "settings"));
          if (const gchar* rc = gst_structure_get_string(s, "rate-controller"))
            std::printf("rate:    kept by %s\n", rc);
          const GValue* passed = gst_structure_get_value(s, "passed-over");
          for (guint i = 0; passed && i < gst_value_array_get_size(passed); i++)
            std::printf("  passed over %s\n", g_value_get_string(gst_value_array_get_value(passed, i)));
        }
        break;
      }
      case GST_MESSAGE_ERROR: {
        GError* e = nullptr;
        gchar* dbg = nullptr;
        gst_message_parse_error(m, &e, &dbg);
        std::fprintf(stderr, "error from %s: %s\n  %s\n", GST_MESSAGE_SRC_NAME(m), e->message, dbg ? dbg : "");
        g_error_free(e);
        g_free(dbg);
        rc = 1;
        done = true;
        break;
      }
      case GST_MESSAGE_EOS: done = true; break;
      default: break;
    }
    gst_message_unref(m);
  }
  const double wall = (g_get_monotonic_time() - t0) / 1e6;
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstStructure* stats = nullptr;
  g_object_get(enc, "stats", &stats, nullptr);
  gst_object_unref(enc);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  if (rc) return rc;

  guint64 in = 0, out = 0, keys = 0, bytes = 0;
  gdouble kbps = 0;
  gst_structure_get_uint64(stats, "frames-in", &in);
  gst_structure_get_uint64(stats, "frames-out", &out);
  gst_structure_get_uint64(stats, "key-frames", &keys);
  gst_structure_get_uint64(stats, "bytes-out", &bytes);
  gst_structure_get_double(stats, "bitrate-kbps", &kbps);
  gst_structure_free(stats);
  std::printf("\nencoded: %" G_GUINT64_FORMAT " frames in, %" G_GUINT64_FORMAT " out (%" G_GUINT64_FORMAT
              " key) in %.2f s: %.1f fps\n",
              in, out, keys, wall, out / wall);
  std::printf("bitrate: %.0f kbit/s achieved for a target of %u kbit/s (%.1f%%)\n", kbps, o.bitrate,
              100.0 * kbps / o.bitrate);
  std::printf("wrote:   %s (%.2f MB)\n", o.output.c_str(), bytes / 1e6);

  int status = 0;
  const std::string decoded = run_capture(
      "ffmpeg -v error -xerror -i '" + o.output + "' -map 0:v:0 -f framecrc - 2>&1 | grep -vc '^#'", &status);
  const long n = std::strtol(decoded.c_str(), nullptr, 10);
  const bool ok = n == (long)out && out == in;
  std::printf("decoded: ffmpeg read back %ld of %" G_GUINT64_FORMAT " frames without error: %s\n", n, out,
              ok ? "OK" : "FAILED");
  gst_deinit();
  return ok ? 0 : 1;
}
