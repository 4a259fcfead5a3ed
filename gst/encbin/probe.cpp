#include "encbin/probe.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(ccm_probe_debug);
#define GST_CAT_DEFAULT ccm_probe_debug

namespace ccm::gst {

namespace fs = std::filesystem;

namespace {

void init_debug() {
  static std::once_flag once;
  std::call_once(once, [] { GST_DEBUG_CATEGORY_INIT(ccm_probe_debug, "ccmprobe", 0, "ccmencbin test encodes"); });
}

constexpr int kWidth = 320, kHeight = 240;

// What the probe's sink pad saw; shared with the streaming thread.
struct Outcome {
  std::mutex lock;
  std::condition_variable cond;
  bool got_buffer = false;
  bool first_is_key = false;
  bool eos = false;
};

GstFlowReturn collect_chain(GstPad* pad, GstObject*, GstBuffer* buffer) {
  auto* out = static_cast<Outcome*>(gst_pad_get_element_private(pad));
  {
    std::lock_guard lock(out->lock);
    if (!out->got_buffer) {
      out->got_buffer = true;
      // Headers alone (a buffer flagged HEADER) do not count as the first frame.
      out->first_is_key = !GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_DELTA_UNIT);
    }
  }
  out->cond.notify_all();
  gst_buffer_unref(buffer);
  return GST_FLOW_OK;
}

gboolean collect_event(GstPad* pad, GstObject*, GstEvent* event) {
  auto* out = static_cast<Outcome*>(gst_pad_get_element_private(pad));
  if (GST_EVENT_TYPE(event) == GST_EVENT_EOS) {
    {
      std::lock_guard lock(out->lock);
      out->eos = true;
    }
    out->cond.notify_all();
  }
  gst_event_unref(event);
  return TRUE;
}

gboolean collect_query(GstPad*, GstObject*, GstQuery* query) {
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS: {
      GstCaps* filter = nullptr;
      gst_query_parse_caps(query, &filter);
      GstCaps* any = filter ? gst_caps_ref(filter) : gst_caps_new_any();
      gst_query_set_caps_result(query, any);
      gst_caps_unref(any);
      return TRUE;
    }
    case GST_QUERY_ACCEPT_CAPS:
      gst_query_set_accept_caps_result(query, TRUE);
      return TRUE;
    default:
      return FALSE;
  }
}

GstBuffer* probe_frame() {
  const gsize luma = kWidth * kHeight, chroma = luma / 4;
  GstBuffer* buffer = gst_buffer_new_allocate(nullptr, luma + 2 * chroma, nullptr);
  GstMapInfo map;
  gst_buffer_map(buffer, &map, GST_MAP_WRITE);
  // A gradient with some texture: some encoders special-case flat frames.
  for (int y = 0; y < kHeight; y++)
    for (int x = 0; x < kWidth; x++) map.data[y * kWidth + x] = guint8((x + 2 * y + ((x ^ y) & 8) * 4) & 0xff);
  std::fill(map.data + luma, map.data + luma + 2 * chroma, 128);
  gst_buffer_unmap(buffer, &map);
  GST_BUFFER_PTS(buffer) = 0;
  GST_BUFFER_DTS(buffer) = GST_CLOCK_TIME_NONE;
  GST_BUFFER_DURATION(buffer) = GST_SECOND / 30;
  return buffer;
}

std::string first_error(GstBus* bus) {
  std::string out;
  while (GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
    if (out.empty()) {
      GError* e = nullptr;
      gchar* dbg = nullptr;
      gst_message_parse_error(msg, &e, &dbg);
      out = std::string(GST_MESSAGE_SRC_NAME(msg) ? GST_MESSAGE_SRC_NAME(msg) : "?") + ": " + e->message;
      // The detail often names the cause (a session limit, a missing device): keep its first line.
      if (dbg && *dbg) {
        std::string detail = dbg;
        detail = detail.substr(detail.rfind(":\n") == std::string::npos ? 0 : detail.rfind(":\n") + 2);
        detail = detail.substr(0, std::min<size_t>(detail.find('\n'), 200));
        if (!detail.empty()) out += " (" + detail + ")";
      }
      g_error_free(e);
      g_free(dbg);
    }
    gst_message_unref(msg);
  }
  return out;
}

double ms_since(gint64 t0) { return double(g_get_monotonic_time() - t0) / 1000.0; }

}  // namespace

namespace {

// What the probe's thread says of itself to the caller watching it.
struct Watch {
  std::atomic<bool> inside{true};     // in a call into the encoder (not in the probe's own wait)
  std::atomic<unsigned> returned{0};  // calls into the encoder that have returned: progress
  std::atomic<bool> stop{false};      // the caller has given up: end the probe's own waits
};

// The test encode itself, in the probe's own thread. Its own wait (for the output,
// once the frame is in) is bounded by `output_wait` (0: none) and `stop`; the calls
// into the encoder (push, events, state changes) are not, which is why it runs where
// the caller can watch it and leave it behind.
ProbeResult test_encode(GstElement* encoder, std::chrono::milliseconds output_wait, Watch& watch) {
  const gint64 t0 = g_get_monotonic_time();
  const auto progress = [&] { watch.returned++; };
  const std::atomic<bool>& stop = watch.stop;
  ProbeResult result;
  GstElement* pipeline = gst_pipeline_new("ccm-probe");
  GstElement* convert = gst_element_factory_make("videoconvert", nullptr);
  gst_bin_add_many(GST_BIN(pipeline), convert, encoder, nullptr);
  GstBus* bus = gst_element_get_bus(pipeline);

  Outcome outcome;
  GstPad* src = gst_pad_new("probe_src", GST_PAD_SRC);
  GstPad* sink = gst_pad_new("probe_sink", GST_PAD_SINK);
  gst_pad_set_element_private(sink, &outcome);
  gst_pad_set_chain_function(sink, collect_chain);
  gst_pad_set_event_function(sink, collect_event);
  gst_pad_set_query_function(sink, collect_query);
  GstPad* convert_sink = gst_element_get_static_pad(convert, "sink");
  GstPad* encoder_src = gst_element_get_static_pad(encoder, "src");

  auto finish = [&](std::string reason) {
    progress();
    watch.inside = true;
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_pad_set_active(src, FALSE);
    gst_pad_set_active(sink, FALSE);
    if (encoder_src) {
      gst_pad_unlink(encoder_src, sink);
      gst_object_unref(encoder_src);
    }
    gst_pad_unlink(src, convert_sink);
    gst_object_unref(convert_sink);
    gst_object_unref(src);
    gst_object_unref(sink);
    gst_bus_set_flushing(bus, TRUE);
    gst_object_unref(bus);
    gst_object_unref(pipeline);
    result.ok = reason.empty();
    result.reason = std::move(reason);
    result.ms = ms_since(t0);
    return result;
  };

  if (!encoder_src) return finish("has no src pad");
  if (!gst_element_link(convert, encoder)) return finish("takes no raw video videoconvert can make");
  progress();
  if (gst_pad_link(src, convert_sink) != GST_PAD_LINK_OK || gst_pad_link(encoder_src, sink) != GST_PAD_LINK_OK)
    return finish("could not be linked");
  gst_pad_set_active(src, TRUE);
  gst_pad_set_active(sink, TRUE);
  progress();
  if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    const std::string why = first_error(bus);
    return finish("could not start" + (why.empty() ? std::string() : ": " + why));
  }
  progress();

  gchar* stream_id = g_strdup_printf("ccm-probe-%p", (void*)pipeline);
  gst_pad_push_event(src, gst_event_new_stream_start(stream_id));
  g_free(stream_id);
  GstCaps* caps = gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, "I420", "width", G_TYPE_INT, kWidth,
                                      "height", G_TYPE_INT, kHeight, "framerate", GST_TYPE_FRACTION, 30, 1,
                                      "pixel-aspect-ratio", GST_TYPE_FRACTION, 1, 1, nullptr);
  const bool caps_ok = gst_pad_push_event(src, gst_event_new_caps(caps));
  gst_caps_unref(caps);
  progress();
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  gst_pad_push_event(src, gst_event_new_segment(&segment));
  if (!caps_ok) {
    const std::string why = first_error(bus);
    return finish("refused the test frame's caps" + (why.empty() ? std::string() : ": " + why));
  }
  progress();
  const GstFlowReturn flow = gst_pad_push(src, probe_frame());
  progress();
  if (flow != GST_FLOW_OK) {
    const std::string why = first_error(bus);
    return finish(std::string("test encode failed (") + gst_flow_get_name(flow) + ")" +
                  (why.empty() ? std::string() : ": " + why));
  }
  gst_pad_push_event(src, gst_event_new_eos());
  progress();
  watch.inside = false;

  // Encoders with an output thread of their own answer later: wait for the first
  // buffer or the drain, watching the bus for an error meanwhile.
  const auto deadline = std::chrono::steady_clock::now() + output_wait;
  std::string error;
  {
    std::unique_lock lock(outcome.lock);
    while (!outcome.got_buffer && !outcome.eos && !stop &&
           (output_wait.count() == 0 || std::chrono::steady_clock::now() < deadline)) {
      outcome.cond.wait_for(lock, std::chrono::milliseconds(5));
      lock.unlock();
      error = first_error(bus);
      lock.lock();
      if (!error.empty()) break;
    }
  }
  if (error.empty()) error = first_error(bus);
  if (!error.empty()) return finish("test encode failed: " + error);
  if (!outcome.got_buffer)
    return finish(outcome.eos ? "test encode gave no output"
                              : "no output within " + std::to_string(output_wait.count()) + " ms");
  if (!outcome.first_is_key) return finish("the first output of the test encode was not a key frame");
  return finish("");
}

// What the probe's thread and its caller share; the thread keeps it alive when
// the caller has left it behind.
struct ProbeRun {
  std::mutex lock;
  std::condition_variable cond;
  bool done = false;
  ProbeResult result;
  Watch watch;
};

// Busy (running or ready to run) less than this share of the time, summed over the
// probe's and the encoder's threads, a probe inside a call is blocked, not working.
constexpr double kIdleBusyShare = 0.05;
// A well-behaved encoder closes in a few ms once told to stop.
constexpr auto kCloseGrace = std::chrono::milliseconds(250);
// Stopping, a call blocked this long (or `bound` when shorter) is taken for wedged:
// a stop stays short whatever the bound (32 s at 8K, none for 0).
constexpr auto kStopBound = std::chrono::milliseconds(2000);

// Time the threads of this process born since it was made spent running or ready
// to run (waiting for a CPU: on a loaded machine most of a working thread's time):
// the probe's thread and those the encoder starts in its open (x265's pool,
// libvpx's, a driver's), whose work the probe's thread often only waits for
// (x265enc's push: 300 ms with the probe's thread blocked). A thread blocked in a
// call that never returns adds nothing. Threads that end keep their share. From
// /proc/self/task/*/schedstat (ns on the CPU, ns waiting for one).
class NewThreadsBusy {
 public:
  NewThreadsBusy() {
    for (const long tid : tids()) old_.insert(tid);
  }
  // The sum in ns; -1 when /proc cannot be read (no verdict on idleness then).
  gint64 ns() {
    const std::vector<long> now = tids();
    if (now.empty()) return -1;
    for (const long tid : now)
      if (!old_.contains(tid)) {
        const gint64 busy = busy_of(tid);
        if (busy < 0) return -1;
        gint64& last = seen_[tid];
        last = std::max(last, busy);
      }
    gint64 sum = 0;
    for (const auto& [tid, busy] : seen_) sum += busy;
    return sum;
  }

 private:
  static std::vector<long> tids() {
    std::vector<long> out;
    GDir* dir = g_dir_open("/proc/self/task", 0, nullptr);
    if (!dir) return out;
    while (const gchar* name = g_dir_read_name(dir)) out.push_back(std::atol(name));
    g_dir_close(dir);
    return out;
  }
  static gint64 busy_of(long tid) {
    gchar* text = nullptr;
    const std::string path = "/proc/self/task/" + std::to_string(tid) + "/schedstat";
    if (!g_file_get_contents(path.c_str(), &text, nullptr, nullptr)) return 0;  // ended meanwhile
    long long running = 0, waiting = 0;
    const bool ok = std::sscanf(text, "%lld %lld", &running, &waiting) == 2;
    g_free(text);
    return ok ? gint64(running + waiting) : -1;
  }
  std::set<long> old_;
  std::map<long, gint64> seen_;
};

// The caller's view of the probe: how long its thread has been inside the current
// call into the encoder, and how long it and the encoder's threads were busy there.
class CallClock {
 public:
  // Restarts the clock when the thread has returned from a call (or is in the probe's own wait).
  void observe(const Watch& w, std::chrono::steady_clock::time_point now) {
    const unsigned returned = w.returned;
    if (w.inside && returned == seen_ && started_) return;
    // What tells slow from wedged, for the calls that take long (GST_DEBUG=ccmprobe:5).
    if (started_ && now - since_ > std::chrono::milliseconds(100))
      GST_DEBUG("a call of the test encode took %lld ms, the encoder's threads busy %.0f%% of it",
                (long long)inside_for(now).count(), 100.0 * cpu_share(now));
    seen_ = returned;
    started_ = true;
    since_ = now;
    sampled_ = {};
    cpu_since_ns_ = cpu_ns(now);
  }
  std::chrono::milliseconds inside_for(std::chrono::steady_clock::time_point now) const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(now - since_);
  }
  // Blocked rather than working over the current call (no CPU figures: taken for
  // working); over its first 50 ms, not yet seen working.
  bool idle(std::chrono::steady_clock::time_point now) {
    if (now - since_ < std::chrono::milliseconds(50)) return true;
    const double share = cpu_share(now);
    return share >= 0 && share < kIdleBusyShare;
  }

 private:
  // Busy time over wall time since the call began (1 = one thread all the time); -1 unknown.
  double cpu_share(std::chrono::steady_clock::time_point now) {
    const gint64 cpu = cpu_ns(now);
    const auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(now - since_).count();
    if (cpu < 0 || cpu_since_ns_ < 0 || wall <= 0) return -1;
    return double(cpu - cpu_since_ns_) / double(wall);
  }
  // Read from /proc at most every 20 ms (the watcher polls every 5 ms).
  gint64 cpu_ns(std::chrono::steady_clock::time_point now) {
    if (now - sampled_ >= std::chrono::milliseconds(20)) {
      sampled_ = now;
      cpu_ = threads_.ns();
    }
    return cpu_;
  }
  NewThreadsBusy threads_;
  bool started_ = false;
  unsigned seen_ = 0;
  std::chrono::steady_clock::time_point since_{}, sampled_{};
  gint64 cpu_since_ns_ = 0, cpu_ = -1;
};

// Why a probe's thread is taken for wedged (see probe.h), or "" while it is not.
std::string wedged(CallClock& clock, const Watch& w, std::chrono::milliseconds bound,
                   std::chrono::steady_clock::time_point now) {
  if (bound.count() == 0 || !w.inside) return "";
  const auto in_call = clock.inside_for(now);
  if (in_call >= bound && clock.idle(now))
    return "did not return from a call of its test encode within " + std::to_string(bound.count()) +
           " ms, idle (wedged): left behind";
  if (in_call >= 3 * bound)
    return "did not return from a call of its test encode within " + std::to_string(3 * bound.count()) +
           " ms (wedged): left behind";
  return "";
}

}  // namespace

ProbeResult probe_encoder(const EncoderMaker& make, std::chrono::milliseconds bound,
                          const std::function<bool()>& cancelled) {
  init_debug();
  const gint64 t0 = g_get_monotonic_time();
  GstElement* encoder = make();
  if (!encoder) {
    ProbeResult result;
    result.reason = "could not be created";
    return result;
  }
  gst_object_ref_sink(encoder);
  auto run = std::make_shared<ProbeRun>();
  CallClock clock;  // before the thread: every thread born from here on is the probe's
  std::thread worker([run, encoder, output_wait = 3 * bound] {
    ProbeResult r = test_encode(encoder, output_wait, run->watch);
    gst_object_unref(encoder);
    {
      std::lock_guard lk(run->lock);
      run->result = std::move(r);
      run->done = true;
    }
    run->cond.notify_all();
  });
  std::optional<std::chrono::steady_clock::time_point> cancelled_at;
  std::string wedge;
  bool left_busy = false;  // stopped while still working: finishes in the background
  auto verdict_bound = bound;
  std::unique_lock lk(run->lock);
  while (!run->done) {
    const auto now = std::chrono::steady_clock::now();
    clock.observe(run->watch, now);
    wedge = wedged(clock, run->watch, verdict_bound, now);
    if (!wedge.empty()) break;
    if (!cancelled_at && cancelled && cancelled()) {
      cancelled_at = now;
      run->watch.stop = true;  // its own waits end now
      if (verdict_bound.count() == 0 || verdict_bound > kStopBound) verdict_bound = kStopBound;
    }
    // Stopping: a thread still working in a call past the grace is not wedged (it
    // would be spurious to count it), only slow: it is left to finish on its own.
    // One blocked in a call waits for the verdict above (kStopBound at most); one in
    // the probe's own wait ends it at once.
    if (cancelled_at && now - *cancelled_at >= kCloseGrace && run->watch.inside && !clock.idle(now)) {
      left_busy = true;
      break;
    }
    run->cond.wait_for(lk, std::chrono::milliseconds(5));
  }
  if (run->done) {
    lk.unlock();
    worker.join();
    ProbeResult r = run->result;
    if (cancelled_at && !r.ok) {
      r.cancelled = true;
      r.reason = "not finished: the stream is stopping";
    }
    return r;
  }
  lk.unlock();
  run->watch.stop = true;
  worker.detach();  // inside the encoder: it and its pipeline stay behind
  ProbeResult r;
  r.ms = ms_since(t0);
  r.cancelled = cancelled_at.has_value();
  if (left_busy) {
    r.reason = "not finished: the stream is stopping (still working: it finishes in the background)";
    GST_INFO("%s", r.reason.c_str());
    return r;
  }
  r.abandoned = true;
  r.reason = wedge;
  GST_WARNING("%s", r.reason.c_str());
  return r;
}

// ---- the cache -------------------------------------------------------------------

namespace {

std::string file_signature(const char* path) {
  struct stat st {};
  if (!path || ::stat(path, &st) != 0) return "?";
  return std::string(path) + ":" + std::to_string((long long)st.st_mtim.tv_sec) + "." +
         std::to_string((long long)st.st_mtim.tv_nsec) + ":" + std::to_string((long long)st.st_size);
}

std::string program_signature() {
  static const std::string sig = [] {
    gchar* exe = g_file_read_link("/proc/self/exe", nullptr);
    std::string s = "program=" + file_signature(exe);
    g_free(exe);
    return s;
  }();
  return sig;
}

// What the registry records about the plugin that provides `factory`.
std::string registry_signature(std::string_view factory) {
  const std::string name(factory);
  GstPluginFeature* feature = gst_registry_lookup_feature(gst_registry_get(), name.c_str());
  std::string sig = "gst=" + std::to_string(GST_VERSION_MAJOR) + "." + std::to_string(GST_VERSION_MINOR);
  if (!feature) return sig + ";missing";
  GstPlugin* plugin = gst_plugin_feature_get_plugin(feature);
  if (plugin && gst_plugin_get_filename(plugin)) {
    sig += ";plugin=" + file_signature(gst_plugin_get_filename(plugin)) + ":" + gst_plugin_get_version(plugin);
  } else {
    // Registered by the program itself (static plugins, test elements).
    sig += ";" + program_signature();
  }
  if (plugin) gst_object_unref(plugin);
  gst_object_unref(feature);
  return sig;
}

// A key is a GKeyFile group name: no control characters, no brackets.
std::string clean(std::string s) {
  for (char& c : s) {
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
    if (c == '[') c = '(';
    if (c == ']') c = ')';
  }
  return s;
}

// The cache file as GKeyFile reads it: a group per key with result (ok, fail),
// when (seconds since 1970), ms and reason. A missing or unreadable file is empty.
struct KeyFileDeleter {
  void operator()(GKeyFile* k) const { g_key_file_unref(k); }
};
using KeyFilePtr = std::unique_ptr<GKeyFile, KeyFileDeleter>;

KeyFilePtr load(const fs::path& file) {
  KeyFilePtr kf(g_key_file_new());
  g_key_file_load_from_file(kf.get(), file.c_str(), G_KEY_FILE_KEEP_COMMENTS, nullptr);
  return kf;
}

}  // namespace

std::string probe_key(std::string_view factory, catalog::Codec codec, std::string_view device) {
  return clean(std::string(factory) + "|" + catalog::to_string(codec) + "|" + std::string(device) + "|" +
               registry_signature(factory));
}

fs::path ProbeCache::default_path() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const fs::path base = (xdg && *xdg) ? fs::path(xdg) : fs::path(g_get_user_cache_dir());
  return base / "gst-ccm" / "probe-cache.v2";
}

std::optional<ProbeResult> ProbeCache::lookup(const std::string& key) const {
  const KeyFilePtr kf = load(file_);
  const char* group = key.c_str();
  if (!g_key_file_has_group(kf.get(), group)) return std::nullopt;
  gchar* result = g_key_file_get_string(kf.get(), group, "result", nullptr);
  const bool ok = result && std::string_view(result) == "ok";
  g_free(result);
  const gint64 when = g_key_file_get_int64(kf.get(), group, "when", nullptr);
  if (!ok && std::time(nullptr) - when > kFailureTtl.count()) return std::nullopt;
  ProbeResult r;
  r.ok = ok;
  gchar* reason = g_key_file_get_string(kf.get(), group, "reason", nullptr);
  r.reason = reason ? reason : "";
  g_free(reason);
  r.ms = g_key_file_get_double(kf.get(), group, "ms", nullptr);
  r.cached = true;
  return r;
}

void ProbeCache::store(const std::string& key, const ProbeResult& result) const {
  std::error_code ec;
  fs::create_directories(file_.parent_path(), ec);
  const fs::path lock_path = file_.string() + ".lock";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd >= 0) ::flock(lock_fd, LOCK_EX);
  // GKeyFile writes the whole file to a temporary and renames it into place
  // (g_file_set_contents); the lock keeps concurrent writers' entries.
  const KeyFilePtr kf = load(file_);
  const char* group = key.c_str();
  g_key_file_set_string(kf.get(), group, "result", result.ok ? "ok" : "fail");
  g_key_file_set_int64(kf.get(), group, "when", gint64(std::time(nullptr)));
  g_key_file_set_double(kf.get(), group, "ms", result.ms);
  g_key_file_set_string(kf.get(), group, "reason", result.reason.c_str());
  GError* err = nullptr;
  if (!g_key_file_save_to_file(kf.get(), file_.c_str(), &err)) {
    init_debug();
    GST_WARNING("probe cache %s not written: %s", file_.c_str(), err->message);
    g_error_free(err);
  }
  if (lock_fd >= 0) ::close(lock_fd);
}

}  // namespace ccm::gst
