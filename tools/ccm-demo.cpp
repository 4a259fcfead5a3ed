// ccm-demo: the main job in one program. Encodes a built-in moving test source
// with ccmencbin into a Matroska file, says which encoder it chose and why, what
// it achieved, and whether a real decoder (ffmpeg) reads every frame back.
#include "catalog/catalog.h"
#include "common/registry_probe.h"
#include "hw/cpu.h"
#include "hw/gpu.h"
#include "plugin.h"

#include <gst/gst.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

struct Options {
  std::string codec = "auto";
  guint bitrate = 800;
  guint seconds = 10;
  guint width = 1280, height = 720, fps = 30;
  std::string output = "demo.mkv";
};

// Options with GOption, GStreamer's own (--gst-debug ...) included; --help prints
// them all and exits 0. Returns -1 to go on, else the exit status.
int parse(int* argc, char*** argv, Options& o) {
  gchar* codec = nullptr;
  gchar* output = nullptr;
  gint bitrate = static_cast<gint>(o.bitrate), seconds = static_cast<gint>(o.seconds);
  gint width = static_cast<gint>(o.width), height = static_cast<gint>(o.height), fps = static_cast<gint>(o.fps);
  GOptionEntry entries[] = {
      {"codec", 'c', 0, G_OPTION_ARG_STRING, &codec, "auto, av1, h265, vp9 or h264 (default auto)", "CODEC"},
      {"bitrate", 'b', 0, G_OPTION_ARG_INT, &bitrate, "target bitrate in kbit/s (default 800)", "KBPS"},
      {"seconds", 's', 0, G_OPTION_ARG_INT, &seconds, "length of the source (default 10)", "S"},
      {"width", 0, 0, G_OPTION_ARG_INT, &width, "width (default 1280)", "W"},
      {"height", 0, 0, G_OPTION_ARG_INT, &height, "height (default 720)", "H"},
      {"fps", 0, 0, G_OPTION_ARG_INT, &fps, "frame rate (default 30)", "F"},
      {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Matroska file to write (default demo.mkv)", "FILE.mkv"},
      {nullptr}};
  GOptionContext* context = g_option_context_new(
      "- encode a test source with ccmencbin, say which encoder it chose and why, and check the file with ffmpeg");
  g_option_context_add_main_entries(context, entries, nullptr);
  g_option_context_add_group(context, gst_init_get_option_group());
  GError* error = nullptr;
  const gboolean parsed = g_option_context_parse(context, argc, argv, &error);
  g_option_context_free(context);
  if (!parsed) {
    std::fprintf(stderr, "ccm-demo: %s (ccm-demo --help lists the options)\n", error->message);
    g_clear_error(&error);
    g_free(codec);
    g_free(output);
    return 2;
  }
  if (codec) o.codec = codec;
  if (output) o.output = output;
  g_free(codec);
  g_free(output);
  if (*argc > 1) {
    std::fprintf(stderr, "ccm-demo: unexpected argument %s (ccm-demo --help lists the options)\n", (*argv)[1]);
    return 2;
  }
  if (bitrate < 1 || seconds < 1 || width < 1 || height < 1 || fps < 1) {
    std::fprintf(stderr, "ccm-demo: bitrate, seconds, fps, width and height must be at least 1\n");
    return 2;
  }
  o.bitrate = bitrate;
  o.seconds = seconds;
  o.width = width;
  o.height = height;
  o.fps = fps;
  return -1;
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
  if (const int rc = parse(&argc, &argv, o); rc >= 0) return rc;
  gst_init(nullptr, nullptr);  // already initialised by the option group; a no-op
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
  GstParseContext* parse_context = gst_parse_context_new();
  GstElement* pipeline = gst_parse_launch_full(desc, parse_context, GST_PARSE_FLAG_FATAL_ERRORS, &err);
  g_free(desc);
  if (!pipeline) {
    std::fprintf(stderr, "ccm-demo: %s\n", err ? err->message : "cannot build the pipeline");
    gchar** missing = gst_parse_context_get_missing_elements(parse_context);
    for (gchar** m = missing; m && *m; m++)
      std::fprintf(stderr, "ccm-demo: %s\n", ccm::catalog::missing_element_advice(*m).c_str());
    g_strfreev(missing);
    gst_parse_context_free(parse_context);
    g_clear_error(&err);
    return 1;
  }
  gst_parse_context_free(parse_context);
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
        } else if (gst_structure_has_name(s, "ccm-stats")) {
          // ccmencbin posts one a second: a progress line for long encodes.
          guint64 frames = 0;
          gdouble fps = 0, kbps = 0;
          gst_structure_get_uint64(s, "frames-out", &frames);
          gst_structure_get_double(s, "fps", &fps);
          gst_structure_get_double(s, "bitrate-kbps", &kbps);
          std::printf("progress: %" G_GUINT64_FORMAT " frames out, %.1f fps, %.0f kbit/s in the last second\n", frames,
                      fps, kbps);
          std::fflush(stdout);
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
  gst_structure_get_double(stats, "mean-bitrate-kbps", &kbps);
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
