#include "pipeline_util.h"

#include "catalog/catalog.h"
#include "plugin.h"

#include <gst/app/app.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <sstream>
#include <thread>

namespace ccm::test {

void init_gstreamer(int* argc, char*** argv) {
  // The elements under test are the ones linked into this binary: keep the
  // plugin .so of the build tree (GST_PLUGIN_PATH) out of this process, with a
  // registry of its own so other test processes' scans don't interfere.
  g_unsetenv("GST_PLUGIN_PATH");
  if (const char* reg = g_getenv("GST_REGISTRY")) {
    std::string own = std::string(reg) + ".static";
    g_setenv("GST_REGISTRY", own.c_str(), TRUE);
  }
  gst_init(argc, argv);
  ccm_plugin_register_static();
}

RunResult::RunResult(RunResult&& o) noexcept
    : eos(o.eos), error(std::move(o.error)), error_source(std::move(o.error_source)),
      warnings(std::move(o.warnings)), element_messages(std::move(o.element_messages)), stats(o.stats) {
  o.element_messages.clear();
  o.stats = nullptr;
}

RunResult::~RunResult() {
  for (GstStructure* s : element_messages) gst_structure_free(s);
  if (stats) gst_structure_free(stats);
}

const GstStructure* RunResult::message(const char* name) const {
  for (GstStructure* s : element_messages)
    if (gst_structure_has_name(s, name)) return s;
  return nullptr;
}

int RunResult::count(const char* name) const {
  int n = 0;
  for (GstStructure* s : element_messages) n += gst_structure_has_name(s, name);
  return n;
}

RunResult run_pipeline(const std::string& description, int timeout_s,
                       const std::function<void(GstElement*)>& on_playing) {
  RunOptions options;
  options.timeout_s = timeout_s;
  options.on_playing = on_playing;
  return run_pipeline(description, options);
}

namespace {
// gst_parse_launch that says which Debian package ships an element it lacks.
GstElement* parse(const std::string& description, std::string* error) {
  GError* err = nullptr;
  GstParseContext* context = gst_parse_context_new();
  GstElement* pipeline = gst_parse_launch_full(description.c_str(), context, GST_PARSE_FLAG_FATAL_ERRORS, &err);
  if (!pipeline || err) {
    *error = std::string("parse: ") + (err ? err->message : "unknown");
    gchar** missing = gst_parse_context_get_missing_elements(context);
    for (gchar** m = missing; m && *m; m++) *error += "; " + ccm::catalog::missing_element_advice(*m);
    g_strfreev(missing);
    if (pipeline) gst_object_unref(pipeline);
    pipeline = nullptr;
  }
  g_clear_error(&err);
  gst_parse_context_free(context);
  return pipeline;
}
}  // namespace

RunResult run_pipeline(const std::string& description, const RunOptions& options) {
  const int timeout_s = options.timeout_s;
  const auto& on_playing = options.on_playing;
  RunResult result;
  GstElement* pipeline = parse(description, &result.error);
  if (!pipeline) return result;
  if (options.before_play) options.before_play(pipeline);
  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  bool called = false;
  const gint64 deadline = g_get_monotonic_time() + gint64(timeout_s) * G_USEC_PER_SEC;
  while (g_get_monotonic_time() < deadline) {
    GstMessage* msg = gst_bus_timed_pop(bus, 100 * GST_MSECOND);
    if (!msg) continue;
    bool done = false;
    switch (GST_MESSAGE_TYPE(msg)) {
      case GST_MESSAGE_EOS:
        result.eos = true;
        done = true;
        break;
      case GST_MESSAGE_ERROR: {
        GError* e = nullptr;
        gchar* dbg = nullptr;
        gst_message_parse_error(msg, &e, &dbg);
        result.error = std::string(e->message) + " | " + (dbg ? dbg : "");
        result.error_source = GST_MESSAGE_SRC_NAME(msg) ? GST_MESSAGE_SRC_NAME(msg) : "";
        g_error_free(e);
        g_free(dbg);
        done = true;
        break;
      }
      case GST_MESSAGE_WARNING: {
        GError* e = nullptr;
        gchar* dbg = nullptr;
        gst_message_parse_warning(msg, &e, &dbg);
        result.warnings.push_back(std::string(GST_MESSAGE_SRC_NAME(msg) ? GST_MESSAGE_SRC_NAME(msg) : "?") + ": " +
                                  e->message + " | " + (dbg ? dbg : ""));
        g_error_free(e);
        g_free(dbg);
        break;
      }
      case GST_MESSAGE_ELEMENT:
        if (const GstStructure* s = gst_message_get_structure(msg))
          result.element_messages.push_back(gst_structure_copy(s));
        break;
      case GST_MESSAGE_STATE_CHANGED:
        if (on_playing && !called && GST_MESSAGE_SRC(msg) == GST_OBJECT(pipeline)) {
          GstState state;
          gst_message_parse_state_changed(msg, nullptr, &state, nullptr);
          if (state == GST_STATE_PLAYING) {
            called = true;
            on_playing(pipeline);
          }
        }
        break;
      default:
        break;
    }
    gst_message_unref(msg);
    if (done) break;
  }
  if (!result.eos && result.error.empty()) result.error = "timeout";
  if (GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), options.stats_from.c_str())) {
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(enc), "stats"))
      g_object_get(enc, "stats", &result.stats, nullptr);
    gst_object_unref(enc);
  }
  stop_pipeline(pipeline, description);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  return result;
}

void at_frame(GstElement* pipeline, int n, std::function<void(GstElement*)> fn) {
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstPad* pad = gst_element_get_static_pad(enc, "sink");
  struct Hook {
    int n;
    int seen = 0;
    GstElement* enc;
    std::function<void(GstElement*)> fn;
  };
  auto* hook = new Hook{n, 0, enc, std::move(fn)};
  gst_pad_add_probe(
      pad, GST_PAD_PROBE_TYPE_BUFFER,
      [](GstPad*, GstPadProbeInfo*, gpointer data) -> GstPadProbeReturn {
        auto* h = static_cast<Hook*>(data);
        if (h->seen++ == h->n) h->fn(h->enc);
        return GST_PAD_PROBE_OK;
      },
      hook, [](gpointer data) { delete static_cast<Hook*>(data); });
  gst_object_unref(pad);
  gst_object_unref(enc);
}

GstElement* element_in_bin(GstElement* pipeline, const char* bin_name, const char* factory) {
  GstElement* bin = gst_bin_get_by_name(GST_BIN(pipeline), bin_name);
  if (!bin) return nullptr;
  GstElement* found = nullptr;
  GstIterator* it = gst_bin_iterate_elements(GST_BIN(bin));
  GValue v = G_VALUE_INIT;
  while (!found && gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
    GstElement* e = GST_ELEMENT(g_value_get_object(&v));
    GstElementFactory* f = gst_element_get_factory(e);
    if (f && g_str_equal(GST_OBJECT_NAME(f), factory)) found = GST_ELEMENT(gst_object_ref(e));
    g_value_unset(&v);
  }
  gst_iterator_free(it);
  gst_object_unref(bin);
  return found;
}

std::string str_field(const GstStructure* s, const char* field) {
  const gchar* v = s ? gst_structure_get_string(s, field) : nullptr;
  return v ? v : "";
}

guint64 u64_field(const GstStructure* s, const char* field) {
  guint64 v = 0;
  if (s) gst_structure_get_uint64(s, field, &v);
  return v;
}

std::string passed_over(const GstStructure* selected) {
  std::string all;
  const GValue* list = selected ? gst_structure_get_value(selected, "passed-over") : nullptr;
  for (guint i = 0; list && i < gst_value_array_get_size(list); i++)
    all += std::string(g_value_get_string(gst_value_array_get_value(list, i))) + "\n";
  return all;
}

std::string sysfs_fixture() {
  const char* root = g_getenv("CCM_SYSFS_ROOT");
  return root ? std::string(root) : "";
}

bool sysfs_fixture_is(const char* name) { return sysfs_fixture().ends_with(std::string("/") + name); }

std::string media(const std::string& name) {
  const char* dir = g_getenv("CCM_TEST_MEDIA");
  if (!dir) {
    ADD_FAILURE() << "CCM_TEST_MEDIA is not set: run the element tests through `meson test` "
                     "(it points at tests/media of the source tree)";
    return "";
  }
  std::string path = std::string(dir) + "/" + name;
  if (g_file_test(path.c_str(), G_FILE_TEST_IS_REGULAR)) return path;
  ADD_FAILURE() << "clip " << name << " is missing: " << path
                << " does not exist (tests/media is part of the repository; a clone has it)";
  return "";
}

std::vector<GstBuffer*> decode_frames(const std::string& source_chain, const char* format, GstCaps** caps,
                                      int timeout_s) {
  std::vector<GstBuffer*> frames;
  if (caps) *caps = nullptr;
  const std::string desc = source_chain + " ! videoconvert ! video/x-raw,format=" + format +
                           " ! appsink name=sink sync=false";
  std::string error;
  GstElement* pipeline = parse(desc, &error);
  if (!pipeline) {
    ADD_FAILURE() << "cannot build " << desc << ": " << error;
    return frames;
  }
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  const gint64 deadline = g_get_monotonic_time() + gint64(timeout_s) * G_USEC_PER_SEC;
  std::string failure;
  while (failure.empty()) {
    if (GstSample* sample = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 100 * GST_MSECOND)) {
      if (caps && !*caps) *caps = gst_caps_copy(gst_sample_get_caps(sample));
      frames.push_back(gst_buffer_ref(gst_sample_get_buffer(sample)));
      gst_sample_unref(sample);
      continue;
    }
    if (gst_app_sink_is_eos(GST_APP_SINK(sink))) break;
    if (GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
      GError* e = nullptr;
      gst_message_parse_error(msg, &e, nullptr);
      failure = std::string(GST_MESSAGE_SRC_NAME(msg) ? GST_MESSAGE_SRC_NAME(msg) : "?") + ": " +
                (e ? e->message : "error");
      g_clear_error(&e);
      gst_message_unref(msg);
    } else if (g_get_monotonic_time() > deadline) {
      failure = "no end of stream within " + std::to_string(timeout_s) + " s (" + std::to_string(frames.size()) +
                " frames so far)";
    }
  }
  if (!failure.empty()) ADD_FAILURE() << "decoding " << desc << " failed: " << failure;
  stop_pipeline(pipeline, desc);
  gst_object_unref(bus);
  gst_object_unref(sink);
  gst_object_unref(pipeline);
  return frames;
}

void stop_pipeline(GstElement* pipeline, const std::string& what, int timeout_s) {
  // set_state(NULL) waits for every streaming thread: an element that never
  // returns would hold the test until meson's timeout with no word. Bounded here.
  auto done = std::make_shared<std::promise<void>>();
  auto ready = done->get_future();
  gst_object_ref(pipeline);
  std::thread([pipeline, done] {
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
    done->set_value();
  }).detach();
  if (ready.wait_for(std::chrono::seconds(timeout_s)) != std::future_status::ready) {
    std::fprintf(stderr, "FATAL: setting the pipeline to NULL did not return within %d s: %s\n", timeout_s,
                 what.c_str());
    std::fflush(stderr);
    std::abort();
  }
}

std::string temp_path(const std::string& name) {
  static std::string dir = [] {
    gchar* d = g_dir_make_tmp("ccm-test-XXXXXX", nullptr);
    std::string s = d ? d : "/tmp";
    g_free(d);
    return s;
  }();
  return dir + "/" + name;
}

namespace {
// Decoders and probes on files we wrote: bounded by coreutils' timeout (a decoder
// that never ends fails its check with "killed" instead of holding the test).
constexpr const char* kToolTimeout = "300";
bool run(const std::vector<std::string>& args, std::string* out, std::string* err) {
  std::vector<gchar*> argv;
  const std::string bound[] = {"timeout", "-k", "5", kToolTimeout};
  for (const auto& a : bound) argv.push_back(const_cast<gchar*>(a.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<gchar*>(a.c_str()));
  argv.push_back(nullptr);
  gchar* o = nullptr;
  gchar* e = nullptr;
  gint status = 0;
  GError* error = nullptr;
  const bool spawned = g_spawn_sync(nullptr, argv.data(), nullptr, G_SPAWN_SEARCH_PATH, nullptr, nullptr,
                                    &o, &e, &status, &error);
  if (out) *out = o ? o : "";
  if (err) *err = e ? e : (error ? error->message : "");
  g_free(o);
  g_free(e);
  if (error) g_error_free(error);
  return spawned && g_spawn_check_wait_status(status, nullptr);
}
}  // namespace

Probe probe_file(const std::string& path) {
  Probe p;
  std::string out, err;
  // Every frame decoded, any decoder complaint is a failure (-xerror), frames counted.
  const bool decoded = run({"ffmpeg", "-v", "error", "-xerror", "-i", path, "-map", "0:v:0", "-f", "framecrc", "-"},
                           &out, &err);
  p.ok = decoded && err.empty();
  p.decoder_errors = err;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line[0] != '#') p.frames++;
  // One ffprobe for the rest (each start costs a few hundred ms on a loaded machine):
  // the video stream's fields, the container's duration, the video packets' sizes.
  if (run({"ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
           "stream=codec_name,width,height,pix_fmt:format=duration:packet=size", "-of", "default=noprint_wrappers=1",
           path},
          &out, &err)) {
    std::istringstream kv(out);
    for (std::string line; std::getline(kv, line);) {
      auto eq = line.find('=');
      if (eq == std::string::npos) continue;
      std::string k = line.substr(0, eq), v = line.substr(eq + 1);
      if (k == "codec_name") p.codec = v;
      if (k == "pix_fmt") p.pix_fmt = v;
      if (k == "width") p.width = std::atoi(v.c_str());
      if (k == "height") p.height = std::atoi(v.c_str());
      if (k == "duration") p.duration_s = std::atof(v.c_str());  // the format's (the only one asked)
      if (k == "size") p.packet_bytes += std::atof(v.c_str());   // one per video packet
    }
  }
  return p;
}

}  // namespace ccm::test
