// ccmencbin's private state, shared by the files of gst/encbin/ that make up the
// element (ccmencbin.cpp is the element; the other files are its jobs, each with
// a header of its own): the settings, the sessions (one per encoder in use or
// ready), the frames still owed downstream, all in GstCcmEncBin::Private under
// one mutex. Everything here is internal to the plugin (namespace ccm::encbin).
// The files share the element's debug category, "ccmencbin".
#pragma once

#include "encbin/ccmencbin.h"

#include "catalog/rank.h"
#include "encbin/gpu_sessions.h"

#include <gst/gst.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

GST_DEBUG_CATEGORY_EXTERN(ccm_enc_bin_debug);
#define GST_CAT_DEFAULT ccm_enc_bin_debug

namespace ccm::encbin {

using ccm::catalog::Codec;
using ccm::catalog::HardwarePolicy;
using ccm::catalog::RateControl;

// ---- enums exposed as properties (their GTypes: ccmencbin.cpp) -------------------

enum class CodecChoice : int { Auto = 0, AV1, H265, VP9, H264 };

// Who keeps the rate at rate-control=cbr.
enum class RateController : int { Ccm = 0, Encoder };

inline std::optional<Codec> to_codec(CodecChoice c) {
  switch (c) {
    case CodecChoice::AV1: return Codec::AV1;
    case CodecChoice::H265: return Codec::H265;
    case CodecChoice::VP9: return Codec::VP9;
    case CodecChoice::H264: return Codec::H264;
    case CodecChoice::Auto: break;
  }
  return std::nullopt;
}

// ---- defaults -------------------------------------------------------------------

constexpr guint kDefaultBitrate = 2000;  // kbit/s
// Above any encoder's range (x264enc's 2048000 kbit/s is the widest); more is a
// mistake, most often a negative number from gst-launch read as unsigned
// (bitrate=-5 arrives as 4294967291): clamped here with a warning.
constexpr guint kMaxBitrate = 2048000;  // kbit/s
constexpr guint kDefaultQuantizer = 28;
// Variable-framerate input (framerate=0/1) is given this nominal rate for encoders
// that refuse 0/1 (x265enc) or need a rate for their bit budget; timestamps stay real.
constexpr int kAssumedFpsN = 30;
// keyframe-interval=0: one key frame every this many seconds of frames, the same
// for every encoder (their own defaults range from 1 s for av1enc to 10 s for
// x264enc); streams that need one sooner ask with force-key-unit.
constexpr int kAutoKeyframeSeconds = 10;

// A session that takes longer than this over one frame, or leaves frames
// without output for this long while frames keep going in, is taken for dead.
constexpr guint kDefaultStallTimeoutMs = 2000;
// A test encode is bounded by the same stall bound (probe.h says how).
// Shutting down (PAUSED to READY), a retired encoder that has not stopped within
// this long is left behind: its thread stays blocked, its memory is not freed.
// An encoder already seen stalled inside a push is not waited for at all.
constexpr auto kShutdownBound = std::chrono::milliseconds(3000);

constexpr const char* kCudaMemory = "memory:CUDAMemory";

struct Settings {
  CodecChoice codec = CodecChoice::Auto;
  guint bitrate = kDefaultBitrate;
  RateControl rate_control = RateControl::Cbr;
  guint quantizer = kDefaultQuantizer;
  guint keyframe_interval = 0;
  gboolean low_latency = TRUE;
  HardwarePolicy hardware = HardwarePolicy::Auto;
  gint gpu = -1;
  std::string candidates;
  gint bframes = -1;
  gint min_quantizer = -1;
  gint max_quantizer = -1;
  gboolean hdr = FALSE;
  gboolean dmabuf_pool = TRUE;
  gboolean probe = TRUE;
  gboolean standby = FALSE;
  guint stall_timeout_ms = kDefaultStallTimeoutMs;
  RateController rate_controller = RateController::Ccm;
  guint rate_message_interval = 0;  // ccm-ratecontrol messages: none unless asked for
};

// A raw frame or a serialized event on its way into a session, in stream order.
struct Item {
  guint64 seq = 0;
  GstMiniObject* obj = nullptr;  // owned
  Item() = default;
  Item(guint64 s, GstMiniObject* o) : seq(s), obj(o) {}
  Item(Item&& o) noexcept : seq(o.seq), obj(o.obj) { o.obj = nullptr; }
  Item& operator=(Item&& o) noexcept {
    if (this != &o) {
      reset();
      seq = o.seq;
      obj = o.obj;
      o.obj = nullptr;
    }
    return *this;
  }
  Item(const Item&) = delete;
  Item& operator=(const Item&) = delete;
  ~Item() { reset(); }
  void reset() {
    if (obj) gst_mini_object_unref(obj);
    obj = nullptr;
  }
  GstMiniObject* release() {
    GstMiniObject* r = obj;
    obj = nullptr;
    return r;
  }
  bool is_buffer() const { return obj && GST_IS_BUFFER(obj); }
  bool is_event(GstEventType t) const { return obj && GST_IS_EVENT(obj) && GST_EVENT_TYPE(GST_EVENT(obj)) == t; }
};

// The elements of one session, in link order.
struct Chain {
  GstElement* download = nullptr;       // cudadownload, for input in CUDA memory
  GstElement* convert = nullptr;
  GstElement* format_filter = nullptr;  // 4:2:0 (or 10-bit, or 4:4:4 for odd H.26x sizes)
  // ccmratecontrol, right before the encoder: it sees the frames as the encoder
  // gets them and finds the encoder as its downstream peer. Errors and failover
  // as the rest of the session.
  GstElement* rate_controller = nullptr;
  // Who keeps the rate: "ccmratecontrol", "ccmratecontrol upstream" or "encoder".
  std::string rate_kept_by = "encoder";
  GstElement* encoder = nullptr;
  GstElement* parser = nullptr;
  // After an H.264/H.265 parser, for downstream that takes no byte-stream (matroskamux,
  // mp4mux): avc3/hev1, parameter sets in band, so another encoder can take over.
  GstElement* stream_filter = nullptr;
  const ccm::catalog::EncoderEntry* entry = nullptr;
  std::string factory;
  Codec codec = Codec::H264;
  bool hardware = false;
  int gpu = -1;
  std::vector<GstElement*> elements() const {
    std::vector<GstElement*> out;
    for (GstElement* e : {download, convert, format_filter, rate_controller, encoder, parser, stream_filter})
      if (e) out.push_back(e);
    return out;
  }
};

struct Session;

struct Stats {
  std::atomic<guint64> frames_in{0}, frames_out{0}, bytes_out{0}, key_frames{0};
  std::atomic<gint64> first_in_wall_us{-1}, last_out_wall_us{-1};
  std::atomic<guint64> first_out_pts{GST_CLOCK_TIME_NONE}, last_out_end{GST_CLOCK_TIME_NONE};
  std::atomic<guint64> switches{0}, failovers{0}, frames_reencoded{0};
  std::atomic<double> last_switch_ms{-1}, start_ms{-1};
  // Encoders left behind because they never returned (test encodes included):
  // over the element's life, not reset per stream, since their threads stay.
  std::atomic<guint64> abandoned{0};
  // The last second, for bitrate-kbps (stream time) and fps (wall-clock time),
  // and the periodic ccm-stats message (stats-interval).
  std::atomic<guint> interval_ms{1000};
  std::mutex window_lock;
  std::deque<std::pair<GstClockTime, guint64>> window;  // end pts and bytes of each output
  std::deque<gint64> window_wall_us;                    // when each output left
  gint64 last_post_us = -1;
  void reset() {
    frames_in = frames_out = bytes_out = key_frames = 0;
    first_in_wall_us = last_out_wall_us = -1;
    first_out_pts = last_out_end = GST_CLOCK_TIME_NONE;
    switches = failovers = frames_reencoded = 0;
    last_switch_ms = start_ms = -1;
    std::lock_guard lk(window_lock);
    window.clear();
    window_wall_us.clear();
    last_post_us = -1;
  }
};

// What a start walk settled on: the codec and the candidates in the order they
// are tried, for failover and standby.
struct Plan {
  Codec codec = Codec::H264;
  ccm::catalog::Ranking ranking;
};

}  // namespace ccm::encbin

struct _GstCcmEncBin {
  GstBin parent;
  GstPad* sinkpad;
  GstPad* srcpad;

  // C++ state; guarded by `lock` unless atomic. Lock order: output_lock, then lock.
  struct Private {
    std::mutex lock;
    std::condition_variable cond;  // any change of a session, the pending frames or the flags
    // Serialises pushes out of the src pad, and makes "is this the current
    // session" + "push" one step against a switch.
    std::mutex output_lock;
    ccm::encbin::Settings settings;
    ccm::encbin::Stats stats;

    std::shared_ptr<ccm::encbin::Session> current;             // the session whose output goes out
    std::shared_ptr<ccm::encbin::Session> standby;             // the next candidate, ready (standby=true)
    std::vector<std::shared_ptr<ccm::encbin::Session>> attached;  // every session whose elements are in the bin
    std::optional<ccm::encbin::Plan> plan;
    std::set<std::string> failed;                 // factories that failed in this stream
    std::vector<std::string> failures;            // "factory: why", for the final error
    std::deque<ccm::encbin::Item> pending;                     // raw frames in, not out yet
    guint64 next_seq = 0;
    GstCaps* input_caps = nullptr;                // as the encoders get them (nominal framerate)
    GstBuffer* last_input = nullptr;              // the newest raw frame, to warm a standby up with
    double bandwidth_estimate_bps = 0;            // last ccm-bandwidth-estimate; 0 = none since `bitrate`
    bool flushing = false;
    bool final_eos = false;                       // upstream's EOS is on its way through
    std::string settings_warning;                 // set before there was a bus: posted at the start
    std::atomic<bool> shutting_down{false};       // PAUSED to READY: walks and test encodes give up
    bool fatal = false;                           // no candidate left; the error was posted
    std::atomic<bool> switch_requested{false};
    std::string switch_reason;
    gint64 switch_requested_us = -1;
    int next_session_id = 0;
    guint64 standby_generation = 0;
    std::thread standby_builder;
    struct Reaper {
      std::thread thread;
      std::shared_ptr<std::atomic<bool>> done;
      std::string factory;
      bool wedged = false;  // seen stalled inside a push: not waited for
    };
    std::vector<Reaper> reapers;

    // Timestamps for input that has none (raw .h264 decoded by GStreamer):
    // frame duration from the (nominal) framerate, next expected pts.
    GstClockTime frame_duration = GST_CLOCK_TIME_NONE;
    gint64 frame_pixels = 0;  // of the input, for the stall bound
    GstClockTime next_pts = GST_CLOCK_TIME_NONE;

    // Presets (see "presets" below): the properties the application set itself,
    // which a preset leaves alone, and whether a preset is being loaded.
    std::set<guint> user_set;
    bool loading_preset = false;
  }* priv;
};

namespace ccm::encbin {

using Self = ::GstCcmEncBin;

// One encoder in use (or ready to be): its elements in the bin, a pad of ours
// feeding them, one collecting from them, and a thread that pushes into them so
// that an encoder that hangs cannot hang the stream.
struct Session {
  GstCcmEncBin* bin = nullptr;
  int id = 0;
  Chain chain;
  GstPad* feed = nullptr;     // our src pad -> first element
  GstPad* collect = nullptr;  // last element -> our sink pad
  std::thread pusher;
  std::optional<ccm::gst::GpuSessions::Lease> lease;
  std::string setup_report;   // settings line for messages
  std::string probe = "off";  // where its test encode's answer came from: off, cached, ran
  std::vector<std::string> not_set;  // settings the encoder could not take, one line each

  // Guarded by the bin's lock.
  bool building = true;       // ccm_enc_bin_make_session is still setting it up (its pusher not started)
  std::deque<Item> queue;
  bool busy = false;          // the pusher is inside a push
  gint64 busy_since = 0;
  bool in_downstream = false; // ...and that push is in downstream's hands (preroll, clock wait)
  bool stop = false;
  bool retired = false;
  bool failed = false;
  std::string failure;
  bool drained = false;       // the EOS we pushed came out
  gint64 stall_reported = -1; // when a stall with no candidate left was warned about
  bool warming = false;          // a warm-up frame is inside; its output is not for downstream
  bool switch_measured = false;  // last-switch-ms taken
  bool produced = false;      // at least one output buffer
  guint64 frames_pushed = 0;  // raw frames pushed in
  // Encoders may move timestamps by a constant (GstVideoEncoder's minimum pts:
  // x265enc starts every stream at 1000 h). The first output is the oldest frame
  // waiting for output, whatever the encoder, which gives the constant
  // (first_output_reference, session_pads.cpp); outputs go out with the timestamps
  // that came in, in the segment that came in.
  GstClockTime first_pushed_pts = GST_CLOCK_TIME_NONE;
  bool offset_known = false;
  gint64 pts_offset = 0;
  guint64 frames_out = 0;     // encoded frames out
  GstFlowReturn downstream = GST_FLOW_OK;  // what downstream answered to our last push
  gint64 waiting_since = -1;  // oldest moment since which output is due
  gint64 last_push = -1;
  gint64 switch_started = -1; // the switch that made it current, for last-switch-ms

  Session() = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() {
    if (feed) gst_object_unref(feed);
    if (collect) gst_object_unref(collect);
  }
};

// RAII owner of a GObject reference.
template <typename T>
struct Ref {
  T* p = nullptr;
  Ref() = default;
  explicit Ref(T* take) : p(take) {}
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  ~Ref() { if (p) gst_mini_object_or_object_unref(); }
  void gst_mini_object_or_object_unref() {
    if constexpr (std::is_same_v<T, GstCaps>) gst_caps_unref(p);
    else if constexpr (std::is_same_v<T, GstEvent>) gst_event_unref(p);
    else gst_object_unref(p);
  }
  T* get() const { return p; }
  T* release() { T* r = p; p = nullptr; return r; }
  explicit operator bool() const { return p != nullptr; }
};

inline std::string join(const std::vector<std::string>& lines, const char* sep) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += sep;
    out += l;
  }
  return out;
}

inline gint64 now_us() { return g_get_monotonic_time(); }

}  // namespace ccm::encbin
