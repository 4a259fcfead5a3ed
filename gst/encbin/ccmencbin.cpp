/**
 * SECTION:element-ccmencbin
 * @title: ccmencbin
 *
 * One encoder element for every machine, that keeps encoding when its encoder
 * does not. ccmencbin looks at the GPUs and CPU of this machine and the encoder
 * elements this GStreamer has, picks the best encoder for the codec downstream
 * accepts (hardware first, the least loaded GPU first, then software),
 * test-encodes a frame with it before committing (answers cached on disk), and
 * configures it for low latency, with one set of properties whatever the
 * encoder underneath: `bitrate` is always kbit/s, `rate-control` is always
 * cbr/vbr/cqp.
 *
 * Inside, one "session" per encoder in use:
 * [cudadownload] ! videoconvert ! [capsfilter] ! [ccmratecontrol] ! <encoder> !
 * <parser> (ccmratecontrol sets per-frame QP at rate-control=cbr for encoders it
 * can steer; rate-controller=encoder leaves the rate to the encoder), fed from
 * the real sink pad through a pad of our own by a thread of the session, and
 * collected by another pad of ours that pushes out of the real src pad. Raw
 * frames are kept until their encoded output is seen, so when the encoder
 * fails (an error message, a flow error, no output for `stall-timeout` ms) the
 * next candidate takes over and re-encodes every frame that had not come out,
 * starting on a key frame; `ccm-encoder-switched` says so. Setting `codec`,
 * `hardware`, `gpu` or `candidates` while PLAYING switches the same way at the
 * next frame, after draining the old encoder.
 *
 * A `ccm-bandwidth-estimate` event (field bitrate, bit/s) sent upstream into the
 * src pad or downstream into the sink pad sets the rate from the next frame.
 *
 * Messages: `ccm-encoder-selected` (factory, codec, hardware, device, reason, rate-controller,
 * passed-over: every candidate not taken and why), `ccm-encoder-switched`
 * (from, to, reason, frames-reencoded, standby).
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=300 ! ccmencbin codec=h265 bitrate=800 ! matroskamux ! filesink location=out.mkv
 * gst-launch-1.0 videotestsrc num-buffers=300 ! ccmencbin bitrate=2000 ! video/x-vp9 ! webmmux ! filesink location=out.webm
 * gst-launch-1.0 -m filesrc location=in.h264 ! h264parse ! avdec_h264 ! ccmencbin codec=av1 ! av1parse ! matroskamux ! filesink location=out.mkv
 * ]|
 */
#include "encbin/ccmencbin.h"

#include "config.h"

#include "catalog/rank.h"
#include "encbin/encoder_setup.h"
#include "encbin/gpu_sessions.h"
#include "encbin/probe.h"
#include "common/registry_probe.h"
#include "hw/nvml.h"
#include "memory/ccmdmabufpool.h"
#include "ratecontrol/ccmratecontrol.h"
#include "ratecontrol/encoder_adapters.h"

#include <gst/video/video.h>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

GST_DEBUG_CATEGORY(ccm_enc_bin_debug);
#define GST_CAT_DEFAULT ccm_enc_bin_debug

using ccm::catalog::Codec;
using ccm::catalog::HardwarePolicy;
using ccm::catalog::RateControl;

namespace {

// ---- enums exposed as properties -------------------------------------------------

enum class CodecChoice : int { Auto = 0, AV1, H265, VP9, H264 };

GType codec_choice_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {(int)CodecChoice::Auto, "Whatever downstream accepts (AV1, H.265, VP9, H.264 in that order)", "auto"},
      {(int)CodecChoice::AV1, "AV1", "av1"},
      {(int)CodecChoice::H265, "H.265 / HEVC", "h265"},
      {(int)CodecChoice::VP9, "VP9", "vp9"},
      {(int)CodecChoice::H264, "H.264 / AVC", "h264"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstCcmCodec", values));
  return type;
}

GType rate_control_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {(int)RateControl::Cbr, "Constant bitrate", "cbr"},
      {(int)RateControl::Vbr, "Variable bitrate", "vbr"},
      {(int)RateControl::Cqp, "Constant quantizer (see quantizer)", "cqp"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstCcmEncBinRateControl", values));
  return type;
}

// Who keeps the rate at rate-control=cbr.
enum class RateController : int { Ccm = 0, Encoder };

GType rate_controller_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {(int)RateController::Ccm,
       "ccmratecontrol in front of encoders it can steer per frame (QP meta, quantizer, x264enc's bitrate)", "ccm"},
      {(int)RateController::Encoder, "The encoder's own rate control only", "encoder"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GstCcmEncBinRateController", values));
  return type;
}

GType hardware_policy_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {(int)HardwarePolicy::Auto, "Hardware encoders first, then software", "auto"},
      {(int)HardwarePolicy::HardwareOnly, "Only hardware encoders; fail without one", "hardware-only"},
      {(int)HardwarePolicy::SoftwareOnly, "Only software encoders", "software-only"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstCcmHardware", values));
  return type;
}

std::optional<Codec> to_codec(CodecChoice c) {
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

enum {
  PROP_0,
  PROP_CODEC,
  PROP_BITRATE,
  PROP_RATE_CONTROL,
  PROP_QUANTIZER,
  PROP_KEYFRAME_INTERVAL,
  PROP_LOW_LATENCY,
  PROP_HARDWARE,
  PROP_GPU,
  PROP_CANDIDATES,
  PROP_BFRAMES,
  PROP_MIN_QUANTIZER,
  PROP_MAX_QUANTIZER,
  PROP_HDR,
  PROP_ENCODER,
  PROP_STATS,
  PROP_DMABUF_POOL,
  PROP_PROBE,
  PROP_STANDBY,
  PROP_STALL_TIMEOUT,
  PROP_RATE_CONTROLLER,
  PROP_RATE_MESSAGE_INTERVAL,
  PROP_STATS_INTERVAL,
};

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

}  // namespace

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
    Settings settings;
    Stats stats;

    std::shared_ptr<Session> current;             // the session whose output goes out
    std::shared_ptr<Session> standby;             // the next candidate, ready (standby=true)
    std::vector<std::shared_ptr<Session>> attached;  // every session whose elements are in the bin
    std::optional<Plan> plan;
    std::set<std::string> failed;                 // factories that failed in this stream
    std::vector<std::string> failures;            // "factory: why", for the final error
    std::deque<Item> pending;                     // raw frames in, not out yet
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

namespace {

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
  // x265enc starts every stream at 1000 h). The first output is the first frame
  // in, whatever the encoder, which gives the constant; outputs go out with the
  // timestamps that came in, in the segment that came in.
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

}  // namespace


static void gst_ccm_enc_bin_preset_init(gpointer iface, gpointer data);

G_DEFINE_TYPE_WITH_CODE(GstCcmEncBin, gst_ccm_enc_bin, GST_TYPE_BIN,
                        G_IMPLEMENT_INTERFACE(GST_TYPE_PRESET, gst_ccm_enc_bin_preset_init);
                        GST_DEBUG_CATEGORY_INIT(ccm_enc_bin_debug, "ccmencbin", 0,
                                                "ccm encoder selection bin"))

// CUDA memory is taken where nvcodec's cudadownload exists (the CAPS query
// offers it only there, ccm_enc_bin_sink_caps); the template says it can be.
static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("video/x-raw; video/x-raw(memory:CUDAMemory)"));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("video/x-av1; video/x-h265; video/x-vp9; video/x-h264"));

namespace {

using Self = GstCcmEncBin;
using Lock = std::lock_guard<std::mutex>;

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

// Raw formats offered upstream before the encoder is chosen: 4:2:0 first, so a
// source that can produce it does, and videoconvert stays in passthrough.
GstCaps* preferred_raw_caps() {
  GValue list = G_VALUE_INIT;
  g_value_init(&list, GST_TYPE_LIST);
  auto append = [&](GstVideoFormat f) {
    GValue v = G_VALUE_INIT;
    g_value_init(&v, G_TYPE_STRING);
    g_value_set_string(&v, gst_video_format_to_string(f));
    gst_value_list_append_and_take_value(&list, &v);
  };
  const GstVideoFormat first[] = {GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_NV12,
                                  GST_VIDEO_FORMAT_I420_10LE, GST_VIDEO_FORMAT_P010_10LE};
  for (auto f : first) append(f);
  guint n = 0;
  const GstVideoFormat* all = gst_video_formats_raw(&n);
  for (guint i = 0; i < n; i++)
    if (std::find(std::begin(first), std::end(first), all[i]) == std::end(first)) append(all[i]);
  GstCaps* caps = gst_caps_new_empty_simple("video/x-raw");
  gst_caps_set_value(caps, "format", &list);
  g_value_unset(&list);
  return caps;
}

// Why these caps cannot be taken, or "" when they can.
std::string refuse_reason(GstCaps* caps) {
  if (!caps || gst_caps_get_size(caps) != 1) return "caps are not fixed";
  GstStructure* s = gst_caps_get_structure(caps, 0);
  if (!gst_structure_has_name(s, "video/x-raw"))
    return std::string("ccmencbin takes raw video, not ") + gst_structure_get_name(s) +
           ": decode first (decodebin)";
  GstCapsFeatures* f = gst_caps_get_features(caps, 0);
  // CUDA memory (cudaupload, nvdec upstream) is downloaded inside when cudadownload exists.
  const bool cuda_ok = f && gst_caps_features_contains(f, "memory:CUDAMemory") &&
                       ccm::gst::registry_has_element("cudadownload");
  if (f && !gst_caps_features_is_any(f) && !cuda_ok &&
      !gst_caps_features_is_equal(f, GST_CAPS_FEATURES_MEMORY_SYSTEM_MEMORY)) {
    gchar* fs = gst_caps_features_to_string(f);
    std::string why = std::string("ccmencbin cannot convert video in ") + fs +
                      ": download it to system memory first (gldownload, cudadownload, "
                      "vapostproc ! video/x-raw)";
    g_free(fs);
    return why;
  }
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, caps))
    return "incomplete or unknown raw video caps (format, width and height are required)";
  if (GST_VIDEO_INFO_FORMAT(&info) == GST_VIDEO_FORMAT_ENCODED ||
      GST_VIDEO_INFO_FORMAT(&info) == GST_VIDEO_FORMAT_UNKNOWN)
    return "raw format has no converter to a format encoders take";
  if (info.width < 1 || info.height < 1) return "frame size must be at least 1x1";
  // No encoder element takes more (AV1, HEVC and H.264 levels end below it), and
  // some reserve memory for the whole frame at open (vp9enc: ~13 GB at 16385x16385).
  constexpr int kMaxSide = 16384;
  if (info.width > kMaxSide || info.height > kMaxSide)
    return std::to_string(info.width) + "x" + std::to_string(info.height) +
           " is larger than any encoder takes (" + std::to_string(kMaxSide) +
           " per side at most): scale it down first (videoscale)";
  return {};
}

// Encoders need a nominal framerate; see kAssumedFpsN.
GstCaps* with_nominal_framerate(GstCaps* caps, bool* changed) {
  *changed = false;
  GstStructure* s = gst_caps_get_structure(caps, 0);
  gint n = 0, d = 1;
  if (gst_structure_get_fraction(s, "framerate", &n, &d) && n > 0 && d > 0) return gst_caps_ref(caps);
  gint mn = 0, md = 1;
  if (!gst_structure_get_fraction(s, "max-framerate", &mn, &md) || mn <= 0 || md <= 0) {
    mn = kAssumedFpsN;
    md = 1;
  }
  GstCaps* fixed = gst_caps_copy(caps);
  gst_caps_set_simple(fixed, "framerate", GST_TYPE_FRACTION, mn, md, nullptr);
  *changed = true;
  return fixed;
}

std::string join(const std::vector<std::string>& lines, const char* sep) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) out += sep;
    out += l;
  }
  return out;
}

std::vector<std::string> split_candidates(const std::string& text) {
  std::vector<std::string> out;
  gchar** parts = g_strsplit_set(text.c_str(), ", ", -1);
  for (gchar** p = parts; p && *p; p++)
    if (**p) out.emplace_back(*p);
  g_strfreev(parts);
  return out;
}

std::string gpu_description(int gpu) {
  const auto& gpus = ccm::gst::detected_gpus();
  if (gpu < 0 || gpu >= (int)gpus.size()) return "cpu";
  return ccm::hw::describe(gpus[gpu]);
}

// The codecs downstream takes, in our preference order.
std::vector<Codec> codecs_downstream_accepts(GstPad* srcpad) {
  Ref<GstCaps> peer(gst_pad_peer_query_caps(srcpad, nullptr));
  std::vector<Codec> out;
  for (Codec c : ccm::catalog::kAllCodecs) {
    if (!peer || gst_caps_is_any(peer.get())) {
      out.push_back(c);
      continue;
    }
    Ref<GstCaps> codec_caps(gst_caps_new_empty_simple(ccm::catalog::caps_name(c)));
    if (gst_caps_can_intersect(peer.get(), codec_caps.get())) out.push_back(c);
  }
  return out;
}

std::string downstream_caps_string(GstPad* srcpad) {
  Ref<GstCaps> peer(gst_pad_peer_query_caps(srcpad, nullptr));
  if (!peer) return "nothing (not linked)";
  gchar* s = gst_caps_to_string(peer.get());
  std::string out = s;
  g_free(s);
  return out;
}

ccm::catalog::Ranking rank_for(Codec codec, const Settings& s) {
  static const std::vector<std::string> none;
  std::vector<std::string> candidates = split_candidates(s.candidates);
  ccm::catalog::RankRequest request;
  request.codec = codec;
  request.policy = s.hardware;
  request.gpu = s.gpu;
  request.gpus = ccm::gst::detected_gpus();
  request.gst_version = ccm::gst::running_gst_version();
  request.has_factory = [](std::string_view f) { return ccm::gst::registry_has_element(f); };
  request.candidates = candidates;
  return ccm::catalog::rank(request);
}

ccm::gst::EncodeSettings encode_settings(Codec codec, const Settings& s, GstCaps* input_caps) {
  ccm::gst::EncodeSettings e;
  e.codec = codec;
  e.bitrate_kbps = s.bitrate;
  e.rate_control = s.rate_control;
  e.quantizer = s.quantizer;
  e.keyframe_interval = s.keyframe_interval;
  if (e.keyframe_interval == 0) {
    gint n = kAssumedFpsN, d = 1;
    gst_structure_get_fraction(gst_caps_get_structure(input_caps, 0), "framerate", &n, &d);
    e.keyframe_interval = (guint)std::max<gint64>(1, gst_util_uint64_scale_int(kAutoKeyframeSeconds, n, std::max(d, 1)));
  }
  e.low_latency = s.low_latency;
  e.bframes = s.bframes;
  e.min_quantizer = s.min_quantizer;
  e.max_quantizer = s.max_quantizer;
  const GstStructure* in = gst_caps_get_structure(input_caps, 0);
  gint w = 0, h = 0, fn = 0, fd = 1;
  if (gst_structure_get_int(in, "width", &w) && gst_structure_get_int(in, "height", &h) &&
      gst_structure_get_fraction(in, "framerate", &fn, &fd) && w > 0 && h > 0 && fn > 0 && fd > 0)
    e.pixel_rate = gst_util_uint64_scale_int(guint64(w) * guint64(h), fn, fd);
  e.cpus = g_get_num_processors();
  return e;
}

// The 4:2:0 formats the encoder takes, 8-bit or (hdr) 10-bit, as caps for a
// capsfilter in front of it. 4:2:0 because that is what players, browsers and
// hardware decoders take: left alone, some encoders (av1enc) would negotiate
// 4:4:4 and a renegotiation would change the profile mid-stream.
// H.264 and H.265 cannot carry an odd width or height in 4:2:0 (their cropping
// works in chroma units), so odd sizes go in as 4:4:4 and keep their exact size.
GstCaps* encoder_input_caps(GstElement* encoder, bool hdr, bool full_chroma) {
  GstPad* pad = gst_element_get_static_pad(encoder, "sink");
  if (!pad) return nullptr;
  Ref<GstCaps> accepted(gst_pad_query_caps(pad, nullptr));
  gst_object_unref(pad);
  const char* const eight_bit[] = {"I420", "NV12", "YV12"};
  const char* const ten_bit[] = {"I420_10LE", "P010_10LE", "NV12_10LE32"};
  const char* const eight_bit_444[] = {"Y444"};
  const char* const ten_bit_444[] = {"Y444_10LE"};
  GValue list = G_VALUE_INIT;
  g_value_init(&list, GST_TYPE_LIST);
  std::span<const char* const> formats = hdr ? std::span<const char* const>(ten_bit) : std::span<const char* const>(eight_bit);
  if (full_chroma) formats = hdr ? std::span<const char* const>(ten_bit_444) : std::span<const char* const>(eight_bit_444);
  for (const char* fmt : formats) {
    Ref<GstCaps> want(gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, fmt, nullptr));
    if (!accepted || !gst_caps_can_intersect(accepted.get(), want.get())) continue;
    GValue v = G_VALUE_INIT;
    g_value_init(&v, G_TYPE_STRING);
    g_value_set_string(&v, fmt);
    gst_value_list_append_and_take_value(&list, &v);
  }
  if (gst_value_list_get_size(&list) == 0) {
    g_value_unset(&list);
    return nullptr;
  }
  GstCaps* caps = gst_caps_new_empty_simple("video/x-raw");
  gst_caps_set_value(caps, "format", &list);
  g_value_unset(&list);
  return caps;
}

// Some encoders refuse sizes their caps cannot express (ccmsvtav1enc: odd sizes,
// SVT-AV1 needs even ones for 4:2:0) in the accept-caps query. Asked with the input
// as the encoder would get it; only a refusal of caps its template takes counts,
// so elements with other memory or fields are not judged here.
bool encoder_takes_size(GstElement* encoder, GstCaps* input_caps, GstCaps* formats) {
  GstPad* pad = gst_element_get_static_pad(encoder, "sink");
  if (!pad) return true;
  Ref<GstCaps> caps(gst_caps_copy(input_caps));
  if (formats && gst_caps_get_size(formats) > 0) {
    const GValue* list = gst_structure_get_value(gst_caps_get_structure(formats, 0), "format");
    const GValue* first = list && GST_VALUE_HOLDS_LIST(list) ? gst_value_list_get_value(list, 0) : list;
    if (first) gst_caps_set_value(caps.get(), "format", first);
  }
  Ref<GstCaps> templ(gst_pad_get_pad_template_caps(pad));
  const bool refused = gst_caps_is_fixed(caps.get()) && gst_caps_can_intersect(templ.get(), caps.get()) &&
                       !gst_pad_query_accept_caps(pad, caps.get());
  gst_object_unref(pad);
  return !refused;
}

// The smallest frame the encoder's sink template takes, when `w`x`h` is below it:
// "takes frames of at least 4x4, not 1x1"; "" when the size is not too small.
// Elements refuse such frames at linking, which would otherwise only say "could
// not be linked".
std::string below_minimum_size(GstElement* encoder, int w, int h) {
  GstPad* pad = gst_element_get_static_pad(encoder, "sink");
  if (!pad) return {};
  GstCaps* templ = gst_pad_get_pad_template_caps(pad);
  gst_object_unref(pad);
  auto min_of = [](const GValue* v) {
    if (v && GST_VALUE_HOLDS_INT_RANGE(v)) return gst_value_get_int_range_min(v);
    if (v && G_VALUE_HOLDS_INT(v)) return g_value_get_int(v);
    return 1;
  };
  int min_w = G_MAXINT, min_h = G_MAXINT;
  for (guint i = 0; i < gst_caps_get_size(templ); i++) {
    const GstStructure* st = gst_caps_get_structure(templ, i);
    min_w = std::min(min_w, min_of(gst_structure_get_value(st, "width")));
    min_h = std::min(min_h, min_of(gst_structure_get_value(st, "height")));
  }
  gst_caps_unref(templ);
  if (min_w == G_MAXINT || (w >= min_w && h >= min_h)) return {};
  return "takes frames of at least " + std::to_string(min_w) + "x" + std::to_string(min_h) + ", not " +
         std::to_string(w) + "x" + std::to_string(h);
}

gint64 now_us() { return g_get_monotonic_time(); }

constexpr const char* kCudaMemory = "memory:CUDAMemory";

bool caps_in_cuda_memory(GstCaps* caps) {
  GstCapsFeatures* f = caps && gst_caps_get_size(caps) > 0 ? gst_caps_get_features(caps, 0) : nullptr;
  return f && gst_caps_features_contains(f, kCudaMemory);
}

bool can_download_cuda() { return ccm::gst::registry_has_element("cudadownload"); }

// NVML, opened once per process, only where detection reads the real machine.
const ccm::hw::NvmlSession* nvml() {
  static const std::optional<ccm::hw::NvmlSession> session = []() -> std::optional<ccm::hw::NvmlSession> {
    const char* root = g_getenv("CCM_SYSFS_ROOT");
    if (root && *root && !g_str_equal(root, "/")) return std::nullopt;
    const auto& gpus = ccm::gst::detected_gpus();
    if (std::none_of(gpus.begin(), gpus.end(), [](const auto& g) { return g.vendor == ccm::hw::GpuVendor::Nvidia; }))
      return std::nullopt;
    return ccm::hw::NvmlSession::open();
  }();
  return session ? &*session : nullptr;
}

std::string gpu_key(int gpu) {
  const auto& gpus = ccm::gst::detected_gpus();
  return gpu >= 0 && gpu < (int)gpus.size() ? gpus[gpu].pci_address : std::string();
}

// Load of a GPU for choosing where a new session goes: live sessions (all
// processes) first, NVML encoder utilisation (percent) to break ties.
long gpu_load(int gpu, const std::map<std::string, int>& sessions) {
  const std::string key = gpu_key(gpu);
  if (key.empty()) return 0;
  const auto it = sessions.find(key);
  long load = it == sessions.end() ? 0 : 1000L * it->second;
  if (const auto* n = nvml())
    if (auto util = n->encoder_utilization(key)) load += *util;
  return load;
}

bool any_hardware(const std::vector<ccm::catalog::Candidate>& cands) {
  return std::any_of(cands.begin(), cands.end(), [](const auto& c) { return c.hardware; });
}

// Hardware candidates, least loaded GPU first (rank order among equals); the
// device-choosing nvautogpu elements get the least loaded NVIDIA GPU with an encoder.
void order_by_load(std::vector<ccm::catalog::Candidate>& cands, const std::map<std::string, int>& sessions) {
  const auto& gpus = ccm::gst::detected_gpus();
  int best_nvidia = -1;
  long best_load = 0;
  for (int i = 0; i < (int)gpus.size(); i++) {
    if (gpus[i].vendor != ccm::hw::GpuVendor::Nvidia || !gpus[i].has_encoder.value_or(true)) continue;
    const long l = gpu_load(i, sessions);
    if (best_nvidia < 0 || l < best_load) best_nvidia = i, best_load = l;
  }
  for (auto& c : cands)
    if (c.hardware && c.gpu < 0 && c.entry && c.entry->api == ccm::catalog::Api::NvencAutoGpu) c.gpu = best_nvidia;
  std::stable_sort(cands.begin(), cands.end(), [&](const auto& a, const auto& b) {
    if (a.hardware != b.hardware) return a.hardware;
    if (!a.hardware) return false;
    return gpu_load(a.gpu, sessions) < gpu_load(b.gpu, sessions);
  });
}

std::string device_of(const ccm::catalog::Candidate& c) {
  const auto& gpus = ccm::gst::detected_gpus();
  if (c.gpu < 0 || c.gpu >= (int)gpus.size()) return c.hardware ? "gpu?" : "cpu";
  return gpus[c.gpu].pci_address + " " + (gpus[c.gpu].name.empty() ? ccm::hw::to_string(gpus[c.gpu].vendor) : gpus[c.gpu].name);
}

// The candidate's element with every unified setting applied (floating).
GstElement* create_encoder(const ccm::catalog::Candidate& cand, Codec codec, const Settings& s, GstCaps* caps,
                           ccm::gst::SetupReport* report) {
  GstElement* e = gst_element_factory_make(cand.factory.c_str(), nullptr);
  if (!e) return nullptr;
  auto r = ccm::gst::configure_encoder(e, cand.entry, encode_settings(codec, s, caps));
  // nvautogpu elements pick their GPU by property: the balancer's choice.
  if (cand.entry && cand.entry->api == ccm::catalog::Api::NvencAutoGpu && cand.gpu >= 0) {
    const int ordinal = ccm::gst::detected_gpus()[cand.gpu].vendor_index;
    std::string why;
    if (ccm::gst::set_property_from_string(e, "cuda-device-id", std::to_string(ordinal), &why))
      r.applied.push_back("cuda-device-id=" + std::to_string(ordinal));
    else
      r.skipped.push_back("cuda-device-id: " + why);
  }
  if (report) *report = std::move(r);
  return e;
}

ccm::gst::ProbeResult probe_candidate(const ccm::catalog::Candidate& cand, Codec codec, const Settings& s,
                                      GstCaps* caps, std::chrono::milliseconds bound,
                                      const std::function<bool()>& cancelled) {
  if (!s.probe) return ccm::gst::ProbeResult{.ok = true, .cached = true};
  const ccm::gst::ProbeCache cache(ccm::gst::ProbeCache::default_path());
  const std::string key = ccm::gst::probe_key(cand.factory, codec, device_of(cand));
  if (auto hit = cache.lookup(key)) return *hit;
  auto result =
      ccm::gst::probe_encoder([&] { return create_encoder(cand, codec, s, caps, nullptr); }, bound, cancelled);
  if (result.cancelled) return result;  // no answer: asked again next time
  cache.store(key, result);
  GST_INFO("test encode with %s: %s (%.1f ms)", cand.factory.c_str(), result.ok ? "ok" : result.reason.c_str(),
           result.ms);
  return result;
}

Session* session_of(GstPad* pad) { return static_cast<Session*>(gst_pad_get_element_private(pad)); }

// stall-timeout is for frames up to 1080p; a software encoder spends about
// proportionally longer on larger ones (4K x4, 8K x16), which is slow, not dead.
gint64 stall_bound_us(const Self::Private* p) {
  constexpr gint64 k1080p = 1920 * 1080;
  const gint64 bound = gint64(p->settings.stall_timeout_ms) * 1000;
  return p->frame_pixels > k1080p ? bound * p->frame_pixels / k1080p : bound;
}

bool healthy(const Self::Private* p, const Session& s, gint64 now, std::string* why) {
  if (s.failed) {
    *why = s.failure;
    return false;
  }
  const gint64 bound = stall_bound_us(p);
  if (bound <= 0 || s.in_downstream) return true;
  // Before its first output an encoder is still opening (threads, look-ahead, a
  // hardware session): it gets longer.
  const gint64 first = s.produced ? bound : 3 * bound;
  if (s.busy && now - s.busy_since > first) {
    *why = "stalled: inside one push for more than " + std::to_string(first / 1000) + " ms";
    return false;
  }
  if (s.waiting_since >= 0 && now - s.waiting_since > first) {
    *why = "stalled: no output for more than " + std::to_string(first / 1000) + " ms";
    return false;
  }
  return true;
}

// Frames whose output has come out are not needed any more: the one with this
// pts, and every frame with a pts below the output's dts (pts >= dts for every
// frame, so those are out already, with or without reordering).
void forget_pending(Self::Private* p, GstBuffer* out) {
  const GstClockTime pts = GST_BUFFER_PTS(out), dts = GST_BUFFER_DTS(out);
  for (auto it = p->pending.begin(); it != p->pending.end();) {
    const GstClockTime fp = GST_BUFFER_PTS(GST_BUFFER(it->obj));
    if ((GST_CLOCK_TIME_IS_VALID(pts) && fp == pts) || (GST_CLOCK_TIME_IS_VALID(dts) && fp < dts))
      it = p->pending.erase(it);
    else
      ++it;
  }
}

void post_message(Self* self, GstStructure* s) {
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

GValue string_array(const std::vector<std::string>& lines) {
  GValue arr = G_VALUE_INIT;
  gst_value_array_init(&arr, lines.size());
  for (const auto& l : lines) {
    GValue v = G_VALUE_INIT;
    g_value_init(&v, G_TYPE_STRING);
    g_value_set_string(&v, l.c_str());
    gst_value_array_append_and_take_value(&arr, &v);
  }
  return arr;
}

void post_selected(Self* self, const Session& sess, const std::vector<std::string>& passed_over,
                   const std::string& reason, double start_ms) {
  const Chain& chain = sess.chain;
  const std::string device = gpu_description(chain.gpu);
  GstStructure* s = gst_structure_new(
      "ccm-encoder-selected", "factory", G_TYPE_STRING, chain.factory.c_str(), "codec", G_TYPE_STRING,
      ccm::catalog::to_string(chain.codec), "hardware", G_TYPE_BOOLEAN, chain.hardware, "device",
      G_TYPE_STRING, device.c_str(), "gpu", G_TYPE_INT, chain.gpu, "api", G_TYPE_STRING,
      chain.entry ? ccm::catalog::to_string(chain.entry->api) : "unknown", "reason", G_TYPE_STRING,
      reason.c_str(), "settings", G_TYPE_STRING, sess.setup_report.c_str(), "start-ms", G_TYPE_DOUBLE, start_ms,
      "rate-controller", G_TYPE_STRING, chain.rate_kept_by.c_str(), nullptr);
  GValue passed = string_array(passed_over);
  gst_structure_take_value(s, "passed-over", &passed);
  GValue not_set = string_array(sess.not_set);
  gst_structure_take_value(s, "not-set", &not_set);
  // The same for programs: one structure per candidate, its factory and reason apart.
  GValue details = G_VALUE_INIT;
  gst_value_array_init(&details, passed_over.size());
  for (const auto& line : passed_over) {
    const size_t colon = line.find(": ");
    const std::string factory = line.substr(0, colon);
    const std::string why = colon == std::string::npos ? "" : line.substr(colon + 2);
    GValue v = G_VALUE_INIT;
    g_value_init(&v, GST_TYPE_STRUCTURE);
    g_value_take_boxed(&v, gst_structure_new("passed-over", "factory", G_TYPE_STRING, factory.c_str(), "reason",
                                             G_TYPE_STRING, why.c_str(), nullptr));
    gst_value_array_append_and_take_value(&details, &v);
  }
  gst_structure_take_value(s, "passed-over-details", &details);
  GST_INFO_OBJECT(self, "selected %s (%s): %s", chain.factory.c_str(), device.c_str(), reason.c_str());
  post_message(self, s);
}

void post_switched(Self* self, const Chain& from, const Chain& to, const std::string& reason, guint frames,
                   bool requested, bool standby) {
  GstStructure* s = gst_structure_new(
      "ccm-encoder-switched", "from", G_TYPE_STRING, from.factory.c_str(), "to", G_TYPE_STRING,
      to.factory.c_str(), "from-codec", G_TYPE_STRING, ccm::catalog::to_string(from.codec), "codec", G_TYPE_STRING,
      ccm::catalog::to_string(to.codec), "hardware", G_TYPE_BOOLEAN, to.hardware, "device", G_TYPE_STRING,
      gpu_description(to.gpu).c_str(), "gpu", G_TYPE_INT, to.gpu, "reason", G_TYPE_STRING, reason.c_str(),
      "frames-reencoded", G_TYPE_UINT64, (guint64)frames, "requested", G_TYPE_BOOLEAN, requested, "standby", G_TYPE_BOOLEAN,
      standby, nullptr);
  GST_INFO_OBJECT(self, "switched %s -> %s (%s), %u frame(s) re-encoded", from.factory.c_str(), to.factory.c_str(),
                  reason.c_str(), frames);
  post_message(self, s);
}

}  // namespace

// ---- sessions -------------------------------------------------------------------

static GstFlowReturn ccm_enc_bin_collect_chain(GstPad* pad, GstObject*, GstBuffer* buffer);
static gboolean ccm_enc_bin_collect_event(GstPad* pad, GstObject*, GstEvent* event);
static gboolean ccm_enc_bin_collect_query(GstPad* pad, GstObject*, GstQuery* query);
static gboolean ccm_enc_bin_feed_event(GstPad* pad, GstObject*, GstEvent* event);
static gboolean ccm_enc_bin_feed_query(GstPad* pad, GstObject*, GstQuery* query);

// The pusher: takes items off the session's queue and pushes them in. Holds a
// reference on the bin so that a pusher stuck in a broken element never outlives it.
static void ccm_enc_bin_pusher(Self* self, std::shared_ptr<Session> s) {
  auto* p = self->priv;
  std::unique_lock lk(p->lock);
  for (;;) {
    p->cond.wait(lk, [&] { return s->stop || (!s->queue.empty() && !s->failed); });
    if (s->stop) break;
    Item item = std::move(s->queue.front());
    s->queue.pop_front();
    const gint64 t = now_us();
    const gint64 bound = stall_bound_us(p);
    s->busy = true;
    s->busy_since = t;
    const bool is_buffer = item.is_buffer();
    const bool is_eos = item.is_event(GST_EVENT_EOS);
    // Output is due from now on; a gap in the input (a paused live source) is
    // not the encoder's fault, so the clock restarts after one.
    if ((is_buffer || is_eos) && (s->waiting_since < 0 || (s->last_push >= 0 && t - s->last_push > bound)))
      s->waiting_since = t;
    if (is_buffer) {
      s->last_push = t;
      if (s->frames_pushed++ == 0) s->first_pushed_pts = GST_BUFFER_PTS(GST_BUFFER(item.obj));
    }
    lk.unlock();
    GstFlowReturn flow = GST_FLOW_OK;
    if (is_buffer) {
      flow = gst_pad_push(s->feed, GST_BUFFER(item.release()));
    } else {
      GstEvent* ev = GST_EVENT(item.release());
      const GstEventType type = GST_EVENT_TYPE(ev);
      if (!gst_pad_push_event(s->feed, ev) && type == GST_EVENT_CAPS) flow = GST_FLOW_NOT_NEGOTIATED;
    }
    lk.lock();
    s->busy = false;
    if (flow < GST_FLOW_OK && !s->stop && !s->failed) {
      // Downstream's answer passed back through the encoder is not the encoder's failure.
      const bool from_downstream = s->downstream == flow;
      const bool flushing = flow == GST_FLOW_FLUSHING && p->flushing;
      if (!from_downstream && !flushing) {
        s->failed = true;
        s->failure = std::string("returned ") + gst_flow_get_name(flow);
      }
    }
    p->cond.notify_all();
  }
  lk.unlock();
  gst_object_unref(self);
}

// An encoder that never returned is left behind: said on the bus, counted in stats.
// `finalizing`: no message (it would take a reference on an object being finalized).
static void ccm_enc_bin_left_behind(Self* self, const std::string& factory, const std::string& why,
                                    bool finalizing = false) {
  self->priv->stats.abandoned++;
  if (finalizing) {
    GST_WARNING("%s did not return and was left behind: %s", factory.c_str(), why.c_str());
    return;
  }
  GST_ELEMENT_WARNING(self, CORE, STATE_CHANGE,
                      ("%s did not return and was left behind: %s", factory.c_str(), why.c_str()),
                      ("its thread stays blocked and its memory is not freed until the process ends; "
                       "%" G_GUINT64_FORMAT " encoder(s) left behind by this element",
                       self->priv->stats.abandoned.load()));
}

// Takes a session out of the bin and out of service. Its pusher is unblocked
// with a flush; a thread of its own joins it and sets the elements to NULL, so
// an encoder that hangs never hangs the stream. Lock not held.
static void ccm_enc_bin_retire(Self* self, const std::shared_ptr<Session>& s) {
  auto* p = self->priv;
  bool wedged = false;
  {
    std::lock_guard out(p->output_lock);
    std::lock_guard lk(p->lock);
    if (s->retired) return;
    const gint64 bound = stall_bound_us(p);
    wedged = s->busy && !s->in_downstream && bound > 0 && now_us() - s->busy_since > bound;
    s->retired = true;
    s->stop = true;
    std::erase(p->attached, s);
    if (p->current == s) p->current = nullptr;
    if (p->standby == s) p->standby = nullptr;
    s->queue.clear();
  }
  p->cond.notify_all();
  s->lease.reset();
  GST_DEBUG_OBJECT(self, "retiring session %d (%s)", s->id, s->chain.factory.c_str());
  gst_pad_push_event(s->feed, gst_event_new_flush_start());
  const auto elements = s->chain.elements();
  for (GstElement* e : elements) {
    gst_object_ref(e);
    gst_bin_remove(GST_BIN(self), e);
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread reaper([s, elements, done] {
    if (s->pusher.joinable()) s->pusher.join();
    for (GstElement* e : elements) gst_element_set_state(e, GST_STATE_NULL);
    gst_pad_set_active(s->feed, FALSE);
    gst_pad_set_active(s->collect, FALSE);
    if (GstPad* peer = gst_pad_get_peer(s->feed)) {
      gst_pad_unlink(s->feed, peer);
      gst_object_unref(peer);
    }
    if (GstPad* peer = gst_pad_get_peer(s->collect)) {
      gst_pad_unlink(peer, s->collect);
      gst_object_unref(peer);
    }
    for (GstElement* e : elements) gst_object_unref(e);
    *done = true;
  });
  std::lock_guard lk(p->lock);
  p->reapers.push_back({std::move(reaper), done, s->chain.factory, wedged});
}

// Waits for retired sessions to be gone; one that stays stuck past `bound` (an
// element that never returns), or one already seen stalled inside a push, is left
// behind: its thread detached, a warning naming it, counted in stats.
static void ccm_enc_bin_join_reapers(Self* self, std::chrono::milliseconds bound, bool finalizing) {
  auto* p = self->priv;
  std::vector<Self::Private::Reaper> reapers;
  {
    std::lock_guard lk(p->lock);
    reapers.swap(p->reapers);
  }
  const auto deadline = std::chrono::steady_clock::now() + bound;
  auto waiting = [&] {
    return std::any_of(reapers.begin(), reapers.end(), [](const auto& r) { return !*r.done && !r.wedged; });
  };
  while (waiting() && std::chrono::steady_clock::now() < deadline) g_usleep(2000);
  for (auto& r : reapers) {
    if (*r.done) {
      r.thread.join();
      continue;
    }
    r.thread.detach();
    ccm_enc_bin_left_behind(self, r.factory,
                            r.wedged ? std::string("it stalled inside a push and never came back")
                                     : "it did not stop within " + std::to_string(bound.count()) +
                                           " ms of being shut down",
                            finalizing);
  }
}

// Whether the application put a ccmratecontrol in front of us (through queues,
// capsfilters, converters and bin boundaries): that one steers, ours would fight it.
static bool rate_controller_upstream(GstPad* sinkpad) {
  GstElement* element = ccm::gst::linked_element(sinkpad);
  for (int hops = 0; element && hops < 32; ++hops) {
    if (GST_IS_CCM_RATE_CONTROLLER(element)) {
      gst_object_unref(element);
      return true;
    }
    GstPad* sink = ccm::gst::only_pad(element, GST_PAD_SINK);
    gst_object_unref(element);
    element = nullptr;
    if (!sink) break;
    element = ccm::gst::linked_element(sink);
    gst_object_unref(sink);
  }
  if (element) gst_object_unref(element);
  return false;
}

// ccmratecontrol goes in front of encoders it can steer frame by frame (QP meta,
// a live quantizer, x264enc's bitrate) when the rate is to be constant. Encoders
// that only take a new bitrate now and then (hardware, x265enc) keep their own
// rate control; bandwidth estimates set their bitrate (ccm_enc_bin_follow_estimate).
static bool wants_rate_controller(Self* self, Chain& c, const Settings& s) {
  if (rate_controller_upstream(self->sinkpad)) {
    GST_INFO_OBJECT(self, "a ccmratecontrol upstream steers the rate: none of our own");
    c.rate_kept_by = "ccmratecontrol upstream";
    return false;
  }
  if (s.rate_controller != RateController::Ccm || s.rate_control != RateControl::Cbr) return false;
  switch (ccm::gst::make_adapter(c.encoder)->family()) {
    case ccm::gst::EncoderFamily::QpMeta:
    case ccm::gst::EncoderFamily::Quantizer:
    case ccm::gst::EncoderFamily::Bitrate: return true;
    default: return false;
  }
}

// The in-band stream format of H.264/H.265 (avc3, hev1) when downstream takes it
// but no byte-stream (matroskamux, mp4mux, qtmux); nullptr otherwise, where the
// parser's own negotiation is kept (byte-stream carries parameter sets in band).
// Parsers (and queues) downstream convert to whatever follows them, and would
// turn a failover's new parameter sets into new caps: what follows them decides.
// The sink pad of the first element past them (a new reference), nullptr when unlinked.
static GstPad* pad_past_parsers(GstPad* srcpad) {
  GstPad* pad = gst_pad_get_peer(srcpad);  // a sink pad downstream
  for (int hops = 0; pad && hops < 8; hops++) {
    GstElement* element = gst_pad_get_parent_element(pad);
    GstElementFactory* factory = element ? gst_element_get_factory(element) : nullptr;
    const gchar* klass = factory ? gst_element_factory_get_metadata(factory, GST_ELEMENT_METADATA_KLASS) : nullptr;
    const bool see_through =
        klass && (strstr(klass, "Parser") || g_str_equal(GST_OBJECT_NAME(factory), "queue"));
    GstPad* next = see_through ? ccm::gst::only_pad(element, GST_PAD_SRC) : nullptr;
    GstPad* next_peer = next ? gst_pad_get_peer(next) : nullptr;
    if (next) gst_object_unref(next);
    if (element) gst_object_unref(element);
    if (!next_peer) break;
    gst_object_unref(pad);
    pad = next_peer;
  }
  return pad;
}

static GstCaps* caps_past_parsers(GstPad* srcpad) {
  GstPad* pad = pad_past_parsers(srcpad);
  if (!pad) return nullptr;
  GstCaps* caps = gst_pad_query_caps(pad, nullptr);
  gst_object_unref(pad);
  return caps;
}

// The muxer downstream (past parsers and queues) that already took a stream, by
// name, or "": none of GStreamer 1.22's muxers takes another codec mid-stream
// (matroskamux, webmmux, mp4mux: "Caps changes are not supported"; mpegtsmux:
// "Stream type change ... not supported"), so a codec switch would end the recording.
static std::string muxer_downstream(GstPad* srcpad) {
  GstPad* pad = pad_past_parsers(srcpad);
  if (!pad) return {};
  std::string name;
  GstElement* element = gst_pad_get_parent_element(pad);
  GstElementFactory* factory = element ? gst_element_get_factory(element) : nullptr;
  const gchar* klass = factory ? gst_element_factory_get_metadata(factory, GST_ELEMENT_METADATA_KLASS) : nullptr;
  if (klass && strstr(klass, "Muxer") && gst_pad_has_current_caps(pad)) name = GST_OBJECT_NAME(element);
  if (element) gst_object_unref(element);
  gst_object_unref(pad);
  return name;
}

static const char* in_band_stream_format(GstPad* srcpad, Codec codec) {
  if (codec != Codec::H264 && codec != Codec::H265) return nullptr;
  const char* in_band = codec == Codec::H264 ? "avc3" : "hev1";
  Ref<GstCaps> peer(caps_past_parsers(srcpad));
  if (!peer || gst_caps_is_any(peer.get())) return nullptr;
  auto takes = [&](const char* format) {
    Ref<GstCaps> c(gst_caps_new_simple(ccm::catalog::caps_name(codec), "stream-format", G_TYPE_STRING, format,
                                       "alignment", G_TYPE_STRING, "au", nullptr));
    return gst_caps_can_intersect(peer.get(), c.get());
  };
  return !takes("byte-stream") && takes(in_band) ? in_band : nullptr;
}

// Whether caps from another encoder of the same stream describe a stream
// downstream can go on taking under its current caps: the same codec, size and
// stream format, with the parameter sets in band (byte-stream, avc3, hev1, AV1's
// OBU stream, VP9), differing only in what the stream itself carries at its next
// key frame (codec_data, profile, level, tier). Muxers that refuse any caps change
// (matroskamux, webmmux, mp4mux) then keep recording.
static bool same_stream_in_band(GstCaps* next, GstCaps* current) {
  if (gst_caps_get_size(next) != 1 || gst_caps_get_size(current) != 1) return false;
  const GstStructure* a = gst_caps_get_structure(next, 0);
  const GstStructure* b = gst_caps_get_structure(current, 0);
  if (!gst_structure_has_name(a, gst_structure_get_name(b))) return false;
  const char* format = gst_structure_get_string(b, "stream-format");
  const bool in_band = gst_structure_has_name(b, "video/x-vp9") || gst_structure_has_name(b, "video/x-av1") ||
                       (format && (g_str_equal(format, "byte-stream") || g_str_equal(format, "avc3") ||
                                   g_str_equal(format, "hev1")));
  if (!in_band) return false;
  GstStructure* x = gst_structure_copy(a);
  GstStructure* y = gst_structure_copy(b);
  for (GstStructure* st : {x, y}) gst_structure_remove_fields(st, "codec_data", "profile", "level", "tier", nullptr);
  const bool same = gst_structure_is_equal(x, y);
  gst_structure_free(x);
  gst_structure_free(y);
  return same;
}

// GStreamer 1.22's av1parse takes SVT-AV1's frames at 7680x2160 but rejects them
// at 6144x3456 and 7680x4320 ("Parse obu need more data", then "No valid frames
// found"), while dav1d and ffmpeg decode them: past 7680x2160 AV1 goes out unparsed
// (1.24 is not checked here; it keeps the parser). Width counts on its own: it
// rejects libaom's 8192x16 too, while 7696x16 and 16x8192 pass, so frames wider
// than 7680 go out unparsed as well.
static bool av1parse_breaks_on(Codec codec, const GstVideoInfo& info) {
  constexpr gint64 kLargestParsed = 7680 * 2160;
  constexpr gint kWidestParsed = 7680;
  return codec == Codec::AV1 && ccm::gst::running_gst_version() < ccm::catalog::GstVersion{1, 24} &&
         (gint64(GST_VIDEO_INFO_WIDTH(&info)) * GST_VIDEO_INFO_HEIGHT(&info) > kLargestParsed ||
          GST_VIDEO_INFO_WIDTH(&info) > kWidestParsed);
}

static GstEvent* bandwidth_estimate_event(double bps) {
  return gst_ccm_bandwidth_estimate_new(GST_EVENT_CUSTOM_UPSTREAM, bps);
}

static void ccm_enc_bin_follow_estimate(Self* self, double bps, const Session* skip);

// Builds one session: elements configured, linked and in the bin, our pads on
// both ends, the sticky events (stream-start, caps, segment) pushed in so the
// encoder opens now, and its pusher started. nullptr and the reason when the
// candidate cannot take this input.
static std::shared_ptr<Session> ccm_enc_bin_make_session(Self* self, const ccm::catalog::Candidate& cand, Codec codec,
                                                         const Settings& s, GstCaps* input_caps, std::string* why) {
  auto* p = self->priv;
  auto sess = std::make_shared<Session>();
  sess->bin = self;
  {
    std::lock_guard lk(p->lock);
    sess->id = p->next_session_id++;
  }
  Chain& c = sess->chain;
  c.factory = cand.factory;
  c.entry = cand.entry;
  c.codec = codec;
  c.hardware = cand.hardware;
  c.gpu = cand.gpu;
  ccm::gst::SetupReport report;
  c.encoder = create_encoder(cand, codec, s, input_caps, &report);
  if (!c.encoder) {
    *why = "could not be created";
    return nullptr;
  }
  gst_object_ref_sink(c.encoder);
  std::vector<GstElement*> owned{c.encoder};
  auto discard = [&](std::string reason) {
    for (GstElement* e : owned) gst_object_unref(e);
    *why = std::move(reason);
    return nullptr;
  };
  auto make = [&](const char* factory) {
    GstElement* e = gst_element_factory_make(factory, nullptr);
    if (e) owned.push_back(GST_ELEMENT(gst_object_ref_sink(e)));
    return e;
  };
  if (caps_in_cuda_memory(input_caps) && !(c.download = make("cudadownload")))
    return discard("input is in CUDA memory and cudadownload is missing");
  if (!(c.convert = make("videoconvert"))) return discard("videoconvert is missing (gstreamer1.0-plugins-base)");

  GstVideoInfo vinfo;
  gst_video_info_from_caps(&vinfo, input_caps);
  const bool odd = (GST_VIDEO_INFO_WIDTH(&vinfo) | GST_VIDEO_INFO_HEIGHT(&vinfo)) & 1;
  const bool full_chroma = odd && (codec == Codec::H264 || codec == Codec::H265);
  Ref<GstCaps> input(encoder_input_caps(c.encoder, s.hdr, full_chroma));
  if (!input && s.hdr) {
    GST_ELEMENT_WARNING(self, STREAM, FORMAT, ("%s cannot encode 10-bit video", cand.factory.c_str()),
                        ("hdr=true ignored: the stream is 8-bit"));
    input.p = encoder_input_caps(c.encoder, false, full_chroma);
  }
  if (!input && full_chroma)
    return discard("cannot encode an odd size (4:2:0 " + std::string(ccm::catalog::to_string(codec)) +
                   " cannot carry it, and the element takes no 4:4:4)");
  if (std::string small = below_minimum_size(c.encoder, GST_VIDEO_INFO_WIDTH(&vinfo), GST_VIDEO_INFO_HEIGHT(&vinfo));
      !small.empty())
    return discard(small);
  {
    // The size as the encoder would get it (the converter keeps it).
    Ref<GstCaps> sized(gst_caps_copy(input_caps));
    gst_caps_set_features(sized.get(), 0, nullptr);
    if (!encoder_takes_size(c.encoder, sized.get(), input.get()))
      return discard("refuses " + std::to_string(GST_VIDEO_INFO_WIDTH(&vinfo)) + "x" +
                     std::to_string(GST_VIDEO_INFO_HEIGHT(&vinfo)) + " (its library cannot encode that size)");
  }
  if (full_chroma)
    GST_INFO_OBJECT(self, "odd size %dx%d: encoding 4:4:4 to keep the exact size", GST_VIDEO_INFO_WIDTH(&vinfo),
                    GST_VIDEO_INFO_HEIGHT(&vinfo));
  if (input) {
    c.format_filter = make("capsfilter");
    g_object_set(c.format_filter, "caps", input.get(), nullptr);
  }
  if (wants_rate_controller(self, c, s) && (c.rate_controller = make("ccmratecontrol"))) {
    // The bin answers allocation queries itself (with the GPU in mind).
    c.rate_kept_by = "ccmratecontrol";
    // Clamped: ccmratecontrol takes up to 10 Gbit/s, our bitrate any guint.
    ccm::gst::set_property_from_string(c.rate_controller, "target-bitrate", std::to_string(s.bitrate));
    g_object_set(c.rate_controller, "dmabuf-pool", FALSE, "message-interval", s.rate_message_interval, nullptr);
    // At 4K and above every other row tells the same story for half the bytes
    // (docs/ratecontrol.md, "Analysis cost").
    if ((gint64)GST_VIDEO_INFO_WIDTH(&vinfo) * GST_VIDEO_INFO_HEIGHT(&vinfo) >= 3840 * 2160)
      g_object_set(c.rate_controller, "analysis-row-step", 2u, nullptr);
  }
  if (av1parse_breaks_on(codec, vinfo)) {
    // The encoders' output is already OBU stream, one temporal unit per buffer.
    GST_INFO_OBJECT(self, "%dx%d AV1: no av1parse (GStreamer 1.22's drops frames this large as invalid)",
                    GST_VIDEO_INFO_WIDTH(&vinfo), GST_VIDEO_INFO_HEIGHT(&vinfo));
  } else if (!(c.parser = make(ccm::catalog::parser_factory(codec)))) {
    GST_WARNING_OBJECT(self, "%s missing (gstreamer1.0-plugins-bad): output is not parsed",
                       ccm::catalog::parser_factory(codec));
  } else if (const char* format = in_band_stream_format(self->srcpad, codec)) {
    // Parameter sets with every key frame, and a stream format that says so: a
    // muxer keeps the first encoder's header (codec_data) and the stream carries
    // each encoder's own, so a failover or switch needs no caps change downstream.
    g_object_set(c.parser, "config-interval", -1, nullptr);
    c.stream_filter = make("capsfilter");
    Ref<GstCaps> caps(gst_caps_new_simple(ccm::catalog::caps_name(codec), "stream-format", G_TYPE_STRING, format,
                                          "alignment", G_TYPE_STRING, "au", nullptr));
    g_object_set(c.stream_filter, "caps", caps.get(), nullptr);
  }
  sess->setup_report = join(report.applied, ", ");
  if (!report.skipped.empty()) sess->setup_report += "; not set: " + join(report.skipped, "; ");
  sess->not_set = report.skipped;

  gchar* name = g_strdup_printf("feed%d", sess->id);
  sess->feed = GST_PAD(gst_object_ref_sink(gst_pad_new(name, GST_PAD_SRC)));
  g_free(name);
  name = g_strdup_printf("collect%d", sess->id);
  sess->collect = GST_PAD(gst_object_ref_sink(gst_pad_new(name, GST_PAD_SINK)));
  g_free(name);
  gst_pad_set_element_private(sess->feed, sess.get());
  gst_pad_set_element_private(sess->collect, sess.get());
  gst_pad_set_event_function(sess->feed, ccm_enc_bin_feed_event);
  gst_pad_set_query_function(sess->feed, ccm_enc_bin_feed_query);
  gst_pad_set_chain_function(sess->collect, ccm_enc_bin_collect_chain);
  gst_pad_set_event_function(sess->collect, ccm_enc_bin_collect_event);
  gst_pad_set_query_function(sess->collect, ccm_enc_bin_collect_query);

  // From here on errors of its elements are attributed to it (handle_message).
  {
    std::lock_guard lk(p->lock);
    p->attached.push_back(sess);
  }
  const auto elements = c.elements();
  for (GstElement* e : elements) gst_bin_add(GST_BIN(self), e);
  for (GstElement* e : owned) gst_object_unref(e);  // the bin holds them now
  owned.clear();
  auto undo = [&](std::string reason) {
    {
      std::lock_guard lk(p->lock);
      std::erase(p->attached, sess);
    }
    gst_pad_set_active(sess->feed, FALSE);
    gst_pad_set_active(sess->collect, FALSE);
    for (GstElement* e : elements) {
      gst_element_set_state(e, GST_STATE_NULL);
      gst_bin_remove(GST_BIN(self), e);
    }
    *why = std::move(reason);
    return nullptr;
  };
  bool linked = true;
  for (size_t k = 0; k + 1 < elements.size(); k++) linked = linked && gst_element_link(elements[k], elements[k + 1]);
  if (!linked) return undo("could not be linked (caps do not match)");
  {
    GstPad* first = gst_element_get_static_pad(elements.front(), "sink");
    GstPad* last = gst_element_get_static_pad(elements.back(), "src");
    const bool ok = first && last && gst_pad_link(sess->feed, first) == GST_PAD_LINK_OK &&
                    gst_pad_link(last, sess->collect) == GST_PAD_LINK_OK;
    if (first) gst_object_unref(first);
    if (last) gst_object_unref(last);
    if (!ok) return undo("could not be linked to ccmencbin's pads");
  }
  gst_pad_set_active(sess->feed, TRUE);
  gst_pad_set_active(sess->collect, TRUE);
  for (GstElement* e : elements) gst_element_sync_state_with_parent(e);
  if (c.rate_controller) {
    double estimate = 0;
    {
      std::lock_guard lk(p->lock);
      estimate = p->bandwidth_estimate_bps;
    }
    // A new encoder starts from the network's latest word, not from `bitrate`.
    if (estimate > 0) gst_element_send_event(c.rate_controller, bandwidth_estimate_event(estimate));
  }

  // The stream so far, so the encoder opens now (errors show here, not on the first frame).
  GstEvent* start = gst_pad_get_sticky_event(self->sinkpad, GST_EVENT_STREAM_START, 0);
  if (!start) {
    gchar* id = gst_pad_create_stream_id(self->srcpad, GST_ELEMENT(self), nullptr);
    start = gst_event_new_stream_start(id);
    g_free(id);
  }
  gst_pad_push_event(sess->feed, start);
  const bool caps_ok = gst_pad_push_event(sess->feed, gst_event_new_caps(input_caps));
  if (GstEvent* segment = gst_pad_get_sticky_event(self->sinkpad, GST_EVENT_SEGMENT, 0))
    gst_pad_push_event(sess->feed, segment);
  std::string failure;
  {
    std::lock_guard lk(p->lock);
    if (sess->failed) failure = sess->failure;
  }
  if (!failure.empty()) return undo(failure);
  if (!caps_ok) return undo("refused the input caps");

  {
    // A stop (PAUSED to READY) may have retired it meanwhile: its reaper has the
    // elements then, and a pusher started now would never be joined.
    std::lock_guard lk(p->lock);
    if (sess->retired) {
      *why = "not started: the stream is stopping";
      return nullptr;
    }
    gst_object_ref(self);  // released by the pusher
    sess->pusher = std::thread(ccm_enc_bin_pusher, self, sess);
    sess->building = false;
  }
  return sess;
}

// Tries the candidates in order (least loaded GPU first unless the order is the
// user's or a GPU is pinned): the probe (cached), then a session on this input.
// Every candidate not taken is added to `passed` with its reason.
static std::shared_ptr<Session> ccm_enc_bin_walk(Self* self, std::vector<ccm::catalog::Candidate> cands, Codec codec,
                                                 const Settings& s, GstCaps* caps, std::vector<std::string>& passed) {
  auto* p = self->priv;
  const bool balance = s.gpu < 0 && s.candidates.empty();
  while (!cands.empty()) {
    std::optional<ccm::gst::GpuSessions::Lease> lease;
    if (any_hardware(cands)) {
      // Count, choose and take in one step, so concurrent starters spread out.
      const ccm::gst::GpuSessions registry(ccm::gst::GpuSessions::default_dir());
      const auto guard = registry.lock();
      if (balance) order_by_load(cands, guard.counts());
      if (cands.front().hardware && cands.front().gpu >= 0) lease = guard.acquire(gpu_key(cands.front().gpu));
    }
    const ccm::catalog::Candidate cand = cands.front();
    cands.erase(cands.begin());
    if (p->shutting_down) {
      passed.push_back(cand.factory + ": not tried, the stream is stopping");
      continue;
    }
    {
      std::lock_guard lk(p->lock);
      if (p->failed.contains(cand.factory)) {
        passed.push_back(cand.factory + ": failed earlier in this stream");
        continue;
      }
    }
    std::chrono::milliseconds bound;
    {
      std::lock_guard lk(p->lock);
      bound = std::chrono::milliseconds(stall_bound_us(p) / 1000);
    }
    const auto probe = probe_candidate(cand, codec, s, caps, bound, [p] { return p->shutting_down.load(); });
    if (probe.abandoned) ccm_enc_bin_left_behind(self, cand.factory, probe.reason);
    if (!probe.ok) {
      passed.push_back(cand.factory + ": test encode failed" + (probe.cached ? " (cached)" : "") + ": " + probe.reason);
      continue;
    }
    std::string why;
    auto sess = ccm_enc_bin_make_session(self, cand, codec, s, caps, &why);
    if (!sess) {
      passed.push_back(cand.factory + ": " + why);
      continue;
    }
    sess->lease = std::move(lease);
    return sess;
  }
  return nullptr;
}

// Frames not out yet, and events not pushed yet, into a new session in stream
// order; the EOS again when it was on its way. Lock held. Returns frames re-encoded.
static guint ccm_enc_bin_requeue(Self* self, Session& next, std::deque<Item> leftovers) {
  auto* p = self->priv;
  std::vector<Item> items;
  for (const Item& f : p->pending) items.emplace_back(f.seq, gst_mini_object_ref(f.obj));
  const guint frames = items.size();
  for (Item& it : leftovers)
    if (!it.is_buffer() && !it.is_event(GST_EVENT_EOS)) items.push_back(std::move(it));
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.seq < b.seq; });
  for (Item& it : items) next.queue.push_back(std::move(it));
  if (p->final_eos) next.queue.emplace_back(p->next_seq++, GST_MINI_OBJECT(gst_event_new_eos()));
  p->cond.notify_all();
  return frames;
}

static void ccm_enc_bin_build_standby(Self* self);

// The session in use failed: the next candidate (the standby when there is one)
// takes over and re-encodes what had not come out. Upstream streaming thread.
// False when nothing is left; the error naming every failure was posted.
static bool ccm_enc_bin_fail_over(Self* self, const std::shared_ptr<Session>& failed, const std::string& why) {
  auto* p = self->priv;
  const gint64 t0 = now_us();
  Settings s;
  std::optional<Plan> plan;
  Ref<GstCaps> caps;
  std::shared_ptr<Session> standby;
  {
    std::lock_guard lk(p->lock);
    if (p->current != failed) return !p->fatal;  // already dealt with
    s = p->settings;
    plan = p->plan;
    caps.p = p->input_caps ? gst_caps_ref(p->input_caps) : nullptr;
    p->failed.insert(failed->chain.factory);
    p->failures.push_back(failed->chain.factory + ": " + why);
    standby = p->standby;
    p->standby = nullptr;
  }
  GST_WARNING_OBJECT(self, "%s failed (%s): failing over", failed->chain.factory.c_str(), why.c_str());
  std::deque<Item> leftovers;
  {
    // No output of the failed session after this point.
    std::lock_guard out(p->output_lock);
    std::lock_guard lk(p->lock);
    leftovers = std::move(failed->queue);
    failed->queue.clear();
    failed->stop = true;
  }
  ccm_enc_bin_retire(self, failed);

  std::shared_ptr<Session> next;
  bool used_standby = false;
  std::string standby_trouble;
  if (standby) {
    std::lock_guard lk(p->lock);
    if (!standby->warming && healthy(p, *standby, now_us(), &standby_trouble) &&
        !p->failed.contains(standby->chain.factory)) {
      next = standby;
      used_standby = true;
      if (standby->frames_pushed > 0)  // it encoded its warm-up frame: the takeover starts on a key frame
        standby->queue.emplace_back(0, GST_MINI_OBJECT(gst_video_event_new_downstream_force_key_unit(
                                           GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE, TRUE, 0)));
    }
  }
  if (standby && !used_standby) ccm_enc_bin_retire(self, standby);
  std::vector<std::string> passed;
  if (!next && plan && caps) next = ccm_enc_bin_walk(self, plan->ranking.candidates, plan->codec, s, caps.get(), passed);
  if (!next) {
    std::string all;
    {
      std::lock_guard lk(p->lock);
      p->fatal = true;
      all = join(p->failures, "; ");
    }
    p->cond.notify_all();
    if (p->shutting_down) return false;  // stopped while choosing the next one
    GST_ELEMENT_ERROR(self, STREAM, ENCODE,
                      ("every encoder failed (%s); no candidate is left", all.c_str()),
                      ("failures in this stream: %s; not tried: %s", all.c_str(),
                       passed.empty() ? "none" : join(passed, "; ").c_str()));
    return false;
  }
  guint frames = 0;
  {
    std::lock_guard out(p->output_lock);
    std::lock_guard lk(p->lock);
    p->current = next;
    next->switch_started = t0;
    frames = ccm_enc_bin_requeue(self, *next, std::move(leftovers));
  }
  GST_INFO_OBJECT(self, "failover to %s ready after %.1f ms", next->chain.factory.c_str(),
                  double(now_us() - t0) / 1000.0);
  p->stats.failovers++;
  p->stats.switches++;
  p->stats.frames_reencoded += frames;
  post_switched(self, failed->chain, next->chain, why, frames, false, used_standby);
  ccm_enc_bin_build_standby(self);
  return true;
}

// Whether a candidate other than the one in use is left to fail over to. Lock held.
static bool ccm_enc_bin_has_alternative(const Self::Private* p, const Session& in_use) {
  if (p->standby && !p->standby->failed) return true;
  if (!p->plan) return false;
  for (const auto& c : p->plan->ranking.candidates)
    if (c.factory != in_use.chain.factory && !p->failed.contains(c.factory)) return true;
  return false;
}

// Waits, in the upstream streaming thread, until `done` holds; fails over
// whenever the session in use turns out dead meanwhile. False when flushing or
// when nothing is left.
template <typename Done>
static bool ccm_enc_bin_wait(Self* self, std::unique_lock<std::mutex>& lk, Done done) {
  auto* p = self->priv;
  for (;;) {
    if (p->fatal || p->flushing || !p->current) return false;
    std::string why;
    auto cur = p->current;
    if (!healthy(p, *cur, now_us(), &why)) {
      // A slow encoder is better than none: with nowhere to move to, a stall is
      // a warning first, and the end of the stream (an error naming the encoder)
      // only once it has lasted as long again; errors always move on (and end
      // the stream without a candidate left).
      if (!cur->failed && !ccm_enc_bin_has_alternative(p, *cur)) {
        const gint64 now = now_us();
        const gint64 grace = stall_bound_us(p) * (cur->produced ? 1 : 3);
        if (cur->stall_reported < 0) {
          cur->stall_reported = now;
          const std::string factory = cur->chain.factory;
          lk.unlock();
          GST_ELEMENT_WARNING(self, STREAM, ENCODE,
                              ("%s is %s, and no other candidate is left: waiting %" G_GINT64_FORMAT
                               " ms more before giving up on it", factory.c_str(), why.c_str(), grace / 1000),
                              ("stall-timeout=0 waits for ever"));
          lk.lock();
          continue;
        }
        if (now - cur->stall_reported <= grace) {
          if (done()) return true;
          p->cond.wait_for(lk, std::chrono::milliseconds(5));
          continue;
        }
        why += ", and still after " + std::to_string(grace / 1000) + " ms more";
      }
      lk.unlock();
      const bool ok = ccm_enc_bin_fail_over(self, cur, why);
      lk.lock();
      if (!ok) return false;
      continue;
    }
    cur->stall_reported = -1;
    if (done()) return true;
    p->cond.wait_for(lk, std::chrono::milliseconds(5));
  }
}

// Prepares the next candidate in the background (standby=true), so a failover
// only has to hand the frames over.
static void ccm_enc_bin_build_standby(Self* self) {
  auto* p = self->priv;
  guint64 generation;
  {
    std::lock_guard lk(p->lock);
    if (!p->settings.standby || p->fatal || p->flushing || !p->plan || !p->current || p->standby || !p->input_caps)
      return;
    generation = ++p->standby_generation;
  }
  if (p->standby_builder.joinable()) p->standby_builder.join();
  p->standby_builder = std::thread([self, generation] {
    auto* p = self->priv;
    Settings s;
    Plan plan;
    Ref<GstCaps> caps;
    std::string in_use;
    {
      std::lock_guard lk(p->lock);
      if (generation != p->standby_generation || !p->plan || !p->current) return;
      s = p->settings;
      plan = *p->plan;
      caps.p = gst_caps_ref(p->input_caps);
      in_use = p->current->chain.factory;
    }
    std::vector<ccm::catalog::Candidate> rest;
    for (const auto& c : plan.ranking.candidates)
      if (c.factory != in_use) rest.push_back(c);
    std::vector<std::string> passed;
    auto sess = ccm_enc_bin_walk(self, rest, plan.codec, s, caps.get(), passed);
    if (!sess) {
      GST_INFO_OBJECT(self, "no standby: %s", join(passed, "; ").c_str());
      return;
    }
    // Encoders do much of their opening on the first frame (threads, look-ahead,
    // a hardware session's first submission): one frame, dropped on the way out,
    // gets that done now. Only where a forced key unit is honoured, since the
    // stream it takes over must start on one (libaom ignores the request).
    const bool warm_up = sess->chain.entry && sess->chain.entry->key_unit == ccm::catalog::KeyUnit::Event;
    bool keep = false;
    {
      std::lock_guard lk(p->lock);
      if (generation == p->standby_generation && !p->standby && !p->flushing && !p->fatal) {
        p->standby = sess;
        keep = true;
        if (warm_up && p->last_input) {
          GstBuffer* frame = gst_buffer_copy(p->last_input);  // metadata only; the memory is shared
          // Earlier than any frame it may re-encode later, so its timestamps keep going up.
          const GstSegment* segment = nullptr;
          GstEvent* seg = gst_pad_get_sticky_event(sess->feed, GST_EVENT_SEGMENT, 0);
          if (seg) gst_event_parse_segment(seg, &segment);
          GST_BUFFER_PTS(frame) = segment && segment->format == GST_FORMAT_TIME ? segment->start : 0;
          GST_BUFFER_DTS(frame) = GST_CLOCK_TIME_NONE;
          if (seg) gst_event_unref(seg);
          sess->warming = true;
          sess->queue.emplace_back(0, GST_MINI_OBJECT(frame));
          p->cond.notify_all();
        }
      }
    }
    if (keep)
      GST_INFO_OBJECT(self, "standby ready: %s%s", sess->chain.factory.c_str(), warm_up ? " (warming up)" : "");
    else
      ccm_enc_bin_retire(self, sess);
  });
}

// ---- choosing at the start ---------------------------------------------------------

// What nvcodec registered, when an NVIDIA GPU is here: a GPU without NVENC (H100,
// A100) or a driver that cannot open an encode session leaves nvcodec with
// decoders and memory elements only, which is worth saying next to the per-element
// reasons. "" without an NVIDIA GPU.
static std::string ccm_enc_bin_nvcodec_note() {
  const auto& gpus = ccm::gst::detected_gpus();
  const auto nvidia = std::find_if(gpus.begin(), gpus.end(),
                                   [](const auto& g) { return g.vendor == ccm::hw::GpuVendor::Nvidia; });
  if (nvidia == gpus.end()) return {};
  GstPlugin* plugin = gst_registry_find_plugin(gst_registry_get(), "nvcodec");
  if (!plugin) return "nvcodec: the plugin is not in the registry (gstreamer1.0-plugins-bad)";
  gst_object_unref(plugin);
  std::vector<std::string> elements, encoders;
  GList* features = gst_registry_get_feature_list_by_plugin(gst_registry_get(), "nvcodec");
  for (GList* l = features; l; l = l->next) {
    if (!GST_IS_ELEMENT_FACTORY(l->data)) continue;
    GstElementFactory* f = GST_ELEMENT_FACTORY(l->data);
    const std::string name = GST_OBJECT_NAME(f);
    elements.push_back(name);
    const gchar* klass = gst_element_factory_get_metadata(f, GST_ELEMENT_METADATA_KLASS);
    if (klass && strstr(klass, "Encoder")) encoders.push_back(name);
  }
  gst_plugin_feature_list_free(features);
  if (!encoders.empty()) return {};
  if (elements.empty()) return "nvcodec: registered no element (no usable CUDA driver in this process)";
  std::sort(elements.begin(), elements.end());
  const std::string gpu = nvidia->name.empty() ? "the NVIDIA GPU" : nvidia->name;
  return "nvcodec: registered " + std::to_string(elements.size()) + " element(s) (" + join(elements, ", ") +
         ") and no encoder: " + gpu + (nvidia->has_encoder == false ? " has no NVENC" : " could not open NVENC");
}

// Picks the codec and the first candidate that passes its test encode and takes
// this input. Called from the streaming thread on the first CAPS event; posts an
// element error naming cause and fix on failure.
static bool ccm_enc_bin_start(Self* self, GstCaps* input_caps) {
  auto* p = self->priv;
  const gint64 t0 = now_us();
  Settings s;
  {
    std::lock_guard lk(p->lock);
    s = p->settings;
  }

  std::string settings_warning;
  {
    std::lock_guard lk(p->lock);
    settings_warning.swap(p->settings_warning);
  }
  if (!settings_warning.empty())
    GST_ELEMENT_WARNING(self, LIBRARY, SETTINGS, ("%s", settings_warning.c_str()),
                        ("set bitrate in kbit/s, 1 to %u", kMaxBitrate));

  if (s.rate_control != RateControl::Cqp && s.bitrate == 0) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("bitrate=0 kbit/s cannot be encoded"),
                      ("set bitrate to at least 1 (kbit/s), or use rate-control=cqp with a quantizer"));
    return false;
  }

  // Which codecs could we produce, in preference order?
  std::vector<Codec> accepted = codecs_downstream_accepts(self->srcpad);
  std::vector<Codec> wanted;
  if (auto forced = to_codec(s.codec)) {
    if (std::find(accepted.begin(), accepted.end(), *forced) == accepted.end()) {
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                        ("codec=%s but downstream does not accept %s", ccm::catalog::to_string(*forced),
                         ccm::catalog::caps_name(*forced)),
                        ("downstream accepts %s; set codec=auto or a codec downstream takes",
                         downstream_caps_string(self->srcpad).c_str()));
      return false;
    }
    wanted.push_back(*forced);
  } else {
    wanted = accepted;
  }
  if (wanted.empty()) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("downstream accepts none of AV1, H.265, VP9, H.264"),
                      ("downstream accepts %s; link ccmencbin to a muxer, parser or payloader for one "
                       "of video/x-av1, video/x-h265, video/x-vp9, video/x-h264",
                       downstream_caps_string(self->srcpad).c_str()));
    return false;
  }

  // Rank each wanted codec; with codec=auto prefer a codec a hardware encoder
  // makes, then the first codec with any encoder at all.
  std::vector<Plan> plans;
  for (Codec c : wanted) plans.push_back({c, rank_for(c, s)});
  std::stable_sort(plans.begin(), plans.end(), [](const Plan& a, const Plan& b) {
    auto score = [](const Plan& p) {
      if (p.ranking.candidates.empty()) return 2;
      return p.ranking.candidates.front().hardware ? 0 : 1;
    };
    return score(a) < score(b);
  });

  std::vector<std::string> failures;  // for the error when nothing works
  for (Plan& plan : plans) {
    std::vector<std::string> passed;
    for (const auto& po : plan.ranking.passed_over) passed.push_back(po.factory + ": " + po.reason);
    if (plan.codec != Codec::VP9)  // NVENC has no VP9
      if (std::string note = ccm_enc_bin_nvcodec_note(); !note.empty()) passed.push_back(std::move(note));
    const size_t ranked_out = passed.size();
    auto sess = ccm_enc_bin_walk(self, plan.ranking.candidates, plan.codec, s, input_caps, passed);
    if (sess) {
      std::string reason;
      if (s.candidates.empty())
        reason = std::string(sess->chain.hardware ? "best-ranked hardware encoder" : "best-ranked software encoder") +
                 " for " + ccm::catalog::to_string(plan.codec);
      else
        reason = "first usable element of candidates=" + s.candidates;
      if (sess->chain.hardware && s.gpu < 0 && s.candidates.empty())
        reason += ", on the least loaded GPU";
      if (passed.size() > ranked_out) reason += " that passed its test encode";
      // Why it ranks above a peer that was there too (catalogue data, measured).
      if (const auto* e = sess->chain.entry; e && !e->ranked_above.empty())
        for (const auto& c : plan.ranking.candidates)
          if (c.factory == e->ranked_above) {
            reason += "; ranked above " + c.factory + ": " + std::string(e->ranked_above_why);
            break;
          }
      if (!to_codec(s.codec))
        reason += std::string("; codec=auto chose ") + ccm::catalog::to_string(plan.codec) +
                  (sess->chain.hardware ? " (a hardware encoder makes it)"
                                        : " (first codec downstream accepts with an encoder)");
      const double start_ms = double(now_us() - t0) / 1000.0;
      {
        std::lock_guard lk(p->lock);
        p->current = sess;
        p->plan = plan;
      }
      p->stats.start_ms = start_ms;
      post_selected(self, *sess, passed, reason, start_ms);
      GST_INFO_OBJECT(self, "input %" GST_PTR_FORMAT, input_caps);
      return true;
    }
    for (const auto& line : passed) failures.push_back(std::string(ccm::catalog::to_string(plan.codec)) + " " + line);
  }

  if (p->shutting_down) return false;  // stopped while choosing: not the encoders' fault
  // Nothing usable: name the fix.
  std::string fix;
  if (s.hardware == HardwarePolicy::HardwareOnly) {
    fix = "no hardware encoder is usable here (" + std::to_string(ccm::gst::detected_gpus().size()) +
          " GPU(s) detected); set hardware=auto to allow software encoders";
  } else {
    GstVideoInfo vinfo;
    gst_video_info_from_caps(&vinfo, input_caps);
    for (const Plan& pl : plans) {
      if (!fix.empty()) fix += "; ";
      if (pl.ranking.candidates.empty() && !s.candidates.empty()) {
        // The user's list named nothing usable: say which names and why, not a package.
        std::vector<std::string> why;
        for (const auto& po : pl.ranking.passed_over) why.push_back(po.factory + ": " + po.reason);
        fix += "candidates=" + s.candidates + " names no usable " + ccm::catalog::to_string(pl.codec) +
               " encoder (" + join(why, "; ") +
               "); check the names with gst-inspect-1.0, or leave candidates empty for the catalogue's order";
        continue;
      }
      if (pl.ranking.candidates.empty()) {  // nothing installed: the package is the fix
        fix += std::string("for ") + ccm::catalog::to_string(pl.codec) + " install " +
               std::string(ccm::catalog::debian_package_for(pl.codec));
        continue;
      }
      // Installed, and each refused this input: say so, the reasons are in the debug text;
      // a frame below an encoder's smallest size is said here, with the size.
      std::vector<std::string> names, too_small;
      for (const auto& c : pl.ranking.candidates) names.push_back(c.factory);
      for (const auto& f : failures)
        if (f.find("takes frames of at least") != std::string::npos) too_small.push_back(f);
      fix += "none of " + join(names, ", ") + " takes " + std::to_string(GST_VIDEO_INFO_WIDTH(&vinfo)) + "x" +
             std::to_string(GST_VIDEO_INFO_HEIGHT(&vinfo)) + " " +
             gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&vinfo)) +
             (too_small.empty() ? " (see why below)"
                                : " (" + join(too_small, "; ") + "): scale it up first (videoscale)");
    }
  }
  std::string codecs;
  for (const Plan& pl : plans) codecs += std::string(codecs.empty() ? "" : ", ") + ccm::catalog::to_string(pl.codec);
  GST_ELEMENT_ERROR(self, CORE, MISSING_PLUGIN, ("no usable encoder for %s: %s", codecs.c_str(), fix.c_str()),
                    ("tried: %s", failures.empty() ? "nothing" : join(failures, "; ").c_str()));
  return false;
}

// ---- switching on request -----------------------------------------------------------

// Settings that choose the encoder changed while streaming: at this frame
// boundary, build the new session, drain the old one, and hand over. The old
// one stays when no new candidate can start (a warning says why).
static void ccm_enc_bin_switch(Self* self) {
  auto* p = self->priv;
  Settings s;
  std::string reason;
  gint64 t0;
  std::shared_ptr<Session> old;
  Ref<GstCaps> caps;
  {
    std::lock_guard lk(p->lock);
    if (!p->current || p->fatal || !p->input_caps) return;
    s = p->settings;
    reason = p->switch_reason;
    t0 = p->switch_requested_us;
    old = p->current;
    caps.p = gst_caps_ref(p->input_caps);
  }
  Codec codec = old->chain.codec;
  if (auto forced = to_codec(s.codec)) codec = *forced;
  if (codec != old->chain.codec) {
    const auto accepted = codecs_downstream_accepts(self->srcpad);
    if (std::find(accepted.begin(), accepted.end(), codec) == accepted.end()) {
      GST_ELEMENT_WARNING(self, CORE, NEGOTIATION,
                          ("codec=%s requested but downstream does not accept %s: keeping %s",
                           ccm::catalog::to_string(codec), ccm::catalog::caps_name(codec),
                           ccm::catalog::to_string(old->chain.codec)),
                          ("downstream accepts %s", downstream_caps_string(self->srcpad).c_str()));
      return;
    }
    if (const std::string muxer = muxer_downstream(self->srcpad); !muxer.empty()) {
      GST_ELEMENT_WARNING(self, CORE, NEGOTIATION,
                          ("codec=%s requested but %s cannot change codec mid-stream: keeping %s",
                           ccm::catalog::to_string(codec), muxer.c_str(),
                           ccm::catalog::to_string(old->chain.codec)),
                          ("a muxer takes one codec per stream; to switch codecs, give each codec an output of "
                           "its own (see docs/ccmencbin.md, What downstream must take)"));
      return;
    }
  }
  Plan plan{codec, rank_for(codec, s)};
  std::vector<std::string> passed;
  auto next = ccm_enc_bin_walk(self, plan.ranking.candidates, codec, s, caps.get(), passed);
  if (!next) {
    for (const auto& po : plan.ranking.passed_over) passed.push_back(po.factory + ": " + po.reason);
    GST_ELEMENT_WARNING(self, STREAM, ENCODE, ("%s: no encoder can start with it, keeping %s", reason.c_str(),
                                               old->chain.factory.c_str()),
                        ("%s", join(passed, "; ").c_str()));
    return;
  }

  // Drain the old encoder: every frame it took comes out before the new one starts.
  {
    std::unique_lock lk(p->lock);
    old->queue.emplace_back(p->next_seq++, GST_MINI_OBJECT(gst_event_new_eos()));
    p->cond.notify_all();
    std::string why;
    while (!old->drained && !p->flushing && healthy(p, *old, now_us(), &why))
      p->cond.wait_for(lk, std::chrono::milliseconds(5));
    if (!old->drained) GST_WARNING_OBJECT(self, "%s did not drain (%s)", old->chain.factory.c_str(), why.c_str());
  }
  std::shared_ptr<Session> standby;
  guint frames = 0;
  {
    std::lock_guard out(p->output_lock);
    std::lock_guard lk(p->lock);
    std::deque<Item> leftovers = std::move(old->queue);
    old->queue.clear();
    old->stop = true;
    p->current = next;
    p->plan = plan;
    next->switch_started = t0;
    frames = ccm_enc_bin_requeue(self, *next, std::move(leftovers));
    standby = p->standby;  // prepared for the old settings
    p->standby = nullptr;
    p->standby_generation++;
  }
  ccm_enc_bin_retire(self, old);
  if (standby) ccm_enc_bin_retire(self, standby);
  p->stats.switches++;
  p->stats.frames_reencoded += frames;
  post_switched(self, old->chain, next->chain, reason, frames, true, false);
  ccm_enc_bin_build_standby(self);
}

// Everything back to before the first caps (PAUSED to READY, finalize).
static void ccm_enc_bin_teardown(Self* self, bool finalizing = false) {
  auto* p = self->priv;
  if (finalizing) p->shutting_down = true;  // a standby still being built gives up now
  {
    std::lock_guard lk(p->lock);
    p->standby_generation++;
  }
  if (p->standby_builder.joinable()) p->standby_builder.join();
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard lk(p->lock);
    sessions = p->attached;
  }
  for (const auto& s : sessions) ccm_enc_bin_retire(self, s);
  ccm_enc_bin_join_reapers(self, kShutdownBound, finalizing);
  std::lock_guard lk(p->lock);
  p->current = nullptr;
  p->standby = nullptr;
  p->plan.reset();
  p->failed.clear();
  p->failures.clear();
  p->pending.clear();
  if (p->input_caps) gst_caps_unref(p->input_caps);
  p->input_caps = nullptr;
  gst_buffer_replace(&p->last_input, nullptr);
  p->final_eos = false;
  p->fatal = false;
  p->switch_requested = false;
}

static bool ccm_enc_bin_is_built(Self* self) {
  std::lock_guard lk(self->priv->lock);
  return self->priv->current != nullptr || self->priv->fatal;
}

// ---- the session's pads -----------------------------------------------------------

// Sticky events the session produced (caps, segment, tags) that downstream has
// not seen, before its first buffer out: a new codec or new parameters reach
// downstream as new caps.
static GstFlowReturn ccm_enc_bin_sync_sticky(Self* self, Session* s) {
  // Another codec is another stream: a new stream-start ahead of the new caps, so
  // that decoders and decodebin3 rebuild instead of taking VP9 for more H.265.
  if (GstCaps* ours = gst_pad_get_current_caps(s->collect)) {
    if (GstCaps* theirs = gst_pad_get_current_caps(self->srcpad)) {
      if (!gst_structure_has_name(gst_caps_get_structure(theirs, 0),
                                  gst_structure_get_name(gst_caps_get_structure(ours, 0)))) {
        GstEvent* old_start = gst_pad_get_sticky_event(self->srcpad, GST_EVENT_STREAM_START, 0);
        gchar* id = gst_pad_create_stream_id_printf(self->srcpad, GST_ELEMENT(self), "%s-%d",
                                                    ccm::catalog::to_string(s->chain.codec), s->id);
        GstEvent* start = gst_event_new_stream_start(id);
        g_free(id);
        guint group = 0;
        if (old_start && gst_event_parse_group_id(old_start, &group)) gst_event_set_group_id(start, group);
        if (old_start) gst_event_unref(old_start);
        gst_pad_push_event(self->srcpad, start);
      }
      gst_caps_unref(theirs);
    }
    gst_caps_unref(ours);
  }
  for (GstEventType type : {GST_EVENT_STREAM_START, GST_EVENT_CAPS, GST_EVENT_SEGMENT, GST_EVENT_TAG}) {
    // The segment is the one that came in: outputs carry the timestamps that came in.
    GstEvent* mine = gst_pad_get_sticky_event(type == GST_EVENT_SEGMENT ? s->feed : s->collect, type, 0);
    if (!mine) continue;
    GstEvent* theirs = gst_pad_get_sticky_event(self->srcpad, type, 0);
    bool same = false;
    if (theirs) {
      switch (type) {
        case GST_EVENT_STREAM_START: same = true; break;  // one stream for downstream, whatever encodes it
        case GST_EVENT_CAPS: {
          GstCaps *a = nullptr, *b = nullptr;
          gst_event_parse_caps(mine, &a);
          gst_event_parse_caps(theirs, &b);
          same = gst_caps_is_equal(a, b) || same_stream_in_band(a, b);
          if (same && !gst_caps_is_equal(a, b))
            GST_INFO_OBJECT(self, "%s: downstream keeps its caps %" GST_PTR_FORMAT " (parameter sets in band); "
                            "the new encoder's are %" GST_PTR_FORMAT, s->chain.factory.c_str(), b, a);
          break;
        }
        case GST_EVENT_SEGMENT: {
          const GstSegment *a = nullptr, *b = nullptr;
          gst_event_parse_segment(mine, &a);
          gst_event_parse_segment(theirs, &b);
          same = gst_segment_is_equal(a, b);
          break;
        }
        default: {
          GstTagList *a = nullptr, *b = nullptr;
          gst_event_parse_tag(mine, &a);
          gst_event_parse_tag(theirs, &b);
          same = gst_tag_list_is_equal(a, b);
          break;
        }
      }
      gst_event_unref(theirs);
    }
    const bool ok = same || gst_pad_push_event(self->srcpad, gst_event_ref(mine));
    gst_event_unref(mine);
    if (!ok && type == GST_EVENT_CAPS) return GST_FLOW_NOT_NEGOTIATED;
  }
  return GST_FLOW_OK;
}

static GstStructure* ccm_enc_bin_stats(Self* self);

static void ccm_enc_bin_count_output(Self* self, GstBuffer* b) {
  auto& st = self->priv->stats;
  const gint64 now = now_us();
  st.frames_out++;
  st.bytes_out += gst_buffer_get_size(b);
  if (!GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DELTA_UNIT)) st.key_frames++;
  st.last_out_wall_us = now;
  bool post = false;
  {
    std::lock_guard lk(st.window_lock);
    if (GST_BUFFER_PTS_IS_VALID(b)) {
      if (st.first_out_pts.load() == GST_CLOCK_TIME_NONE) st.first_out_pts = GST_BUFFER_PTS(b);
      const GstClockTime end = GST_BUFFER_PTS(b) + (GST_BUFFER_DURATION_IS_VALID(b) ? GST_BUFFER_DURATION(b) : 0);
      if (st.last_out_end.load() == GST_CLOCK_TIME_NONE || end > st.last_out_end) st.last_out_end = end;
      st.window.emplace_back(end, gst_buffer_get_size(b));
      while (!st.window.empty() && st.window.front().first + GST_SECOND <= st.last_out_end) st.window.pop_front();
    }
    st.window_wall_us.push_back(now);
    while (st.window_wall_us.front() + 1000000 <= now) st.window_wall_us.pop_front();
    // One ccm-stats message every stats-interval of wall-clock time, the first
    // one interval after the first output.
    const guint interval = st.interval_ms;
    if (st.last_post_us < 0) st.last_post_us = now;
    if (interval > 0 && now - st.last_post_us >= gint64(interval) * 1000) {
      st.last_post_us = now;
      post = true;
    }
  }
  if (post) post_message(self, ccm_enc_bin_stats(self));
}

static GstFlowReturn ccm_enc_bin_collect_chain(GstPad* pad, GstObject*, GstBuffer* buffer) {
  Session* s = session_of(pad);
  Self* self = s->bin;
  auto* p = self->priv;
  std::lock_guard out(p->output_lock);
  {
    std::lock_guard lk(p->lock);
    if (!s->offset_known && GST_BUFFER_PTS_IS_VALID(buffer) && GST_CLOCK_TIME_IS_VALID(s->first_pushed_pts)) {
      s->offset_known = true;
      s->pts_offset = gint64(GST_BUFFER_PTS(buffer)) - gint64(s->first_pushed_pts);
      if (s->pts_offset != 0)
        GST_DEBUG_OBJECT(self, "%s moves timestamps by %" G_GINT64_FORMAT " ns: undone on output",
                         s->chain.factory.c_str(), s->pts_offset);
    }
    if (s->warming) {
      // The standby's warm-up frame: its encoder is open and running now.
      s->warming = false;
      s->frames_out++;
      s->waiting_since = -1;
      gst_buffer_unref(buffer);
      p->cond.notify_all();
      return GST_FLOW_OK;
    }
    if (s->retired || s != p->current.get()) {
      GST_DEBUG_OBJECT(self, "dropping output of %s (no longer in use)", s->chain.factory.c_str());
      gst_buffer_unref(buffer);
      return s->retired ? GST_FLOW_FLUSHING : GST_FLOW_OK;
    }
    if (s->pts_offset != 0) {
      buffer = gst_buffer_make_writable(buffer);
      auto undo = [&](GstClockTime t) -> GstClockTime {
        if (!GST_CLOCK_TIME_IS_VALID(t)) return t;
        const gint64 v = gint64(t) - s->pts_offset;
        return v >= 0 ? GstClockTime(v) : GST_CLOCK_TIME_NONE;
      };
      GST_BUFFER_PTS(buffer) = undo(GST_BUFFER_PTS(buffer));
      GST_BUFFER_DTS(buffer) = undo(GST_BUFFER_DTS(buffer));
    }
    forget_pending(p, buffer);
    s->frames_out++;
    GST_LOG_OBJECT(self, "%s output pts %" GST_TIME_FORMAT " dts %" GST_TIME_FORMAT ", %zu frame(s) pending",
                   s->chain.factory.c_str(), GST_TIME_ARGS(GST_BUFFER_PTS(buffer)),
                   GST_TIME_ARGS(GST_BUFFER_DTS(buffer)), p->pending.size());
    const gint64 now = now_us();
    s->produced = true;
    if (!s->switch_measured && s->switch_started >= 0) {
      s->switch_measured = true;
      p->stats.last_switch_ms = double(now - s->switch_started) / 1000.0;
    }
    s->waiting_since = p->pending.empty() ? -1 : now;
    s->in_downstream = true;
  }
  p->cond.notify_all();
  GstFlowReturn flow = ccm_enc_bin_sync_sticky(self, s);
  if (flow == GST_FLOW_OK) {
    ccm_enc_bin_count_output(self, buffer);
    flow = gst_pad_push(self->srcpad, buffer);
  } else {
    gst_buffer_unref(buffer);
  }
  {
    std::lock_guard lk(p->lock);
    s->in_downstream = false;
    s->downstream = flow;
    if (s->busy) s->busy_since = now_us();
  }
  p->cond.notify_all();
  return flow;
}

static gboolean ccm_enc_bin_collect_event(GstPad* pad, GstObject*, GstEvent* event) {
  Session* s = session_of(pad);
  Self* self = s->bin;
  auto* p = self->priv;
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_EOS: {
      // Our drain of this session came through. Downstream gets it only when it
      // is upstream's EOS; a drain for a switch stays inside.
      {
        std::lock_guard out(p->output_lock);
        bool forward = false;
        {
          std::lock_guard lk(p->lock);
          forward = !s->retired && s == p->current.get() && p->final_eos;
          // Frames went in, fewer came out, and some are still waiting: the
          // encoder lost them (an output thread that died). Not the end of the
          // stream, a failure: the next encoder re-encodes them, then ends it.
          if (forward && !p->pending.empty() && s->frames_out < s->frames_pushed && !s->failed) {
            s->failed = true;
            s->failure = "ended the stream with " + std::to_string(s->frames_pushed - s->frames_out) +
                         " frame(s) never output";
            gst_event_unref(event);
            p->cond.notify_all();
            return TRUE;
          }
        }
        if (forward) {
          ccm_enc_bin_sync_sticky(self, s);
          gst_pad_push_event(self->srcpad, event);
        } else {
          gst_event_unref(event);
        }
        std::lock_guard lk(p->lock);
        s->drained = true;
        s->waiting_since = -1;
        if (forward) p->pending.clear();  // what is left, the encoder dropped
      }
      p->cond.notify_all();
      return TRUE;
    }
    case GST_EVENT_FLUSH_START:
    case GST_EVENT_FLUSH_STOP:
      // Flushes reach downstream from our sink pad, once.
      gst_event_unref(event);
      return TRUE;
    default:
      break;
  }
  // The flags through gst_event_type_get_flags(), not GST_EVENT_IS_STICKY/SERIALIZED (and
  // gst_query_type_get_flags() below): those macros AND two enum types, deprecated in C++20
  // (GCC 14 warns).
  if (gst_event_type_get_flags(GST_EVENT_TYPE(event)) & GST_EVENT_TYPE_STICKY) {
    // Kept on this pad (returning TRUE stores it) and sent with the session's first buffer.
    gst_event_unref(event);
    return TRUE;
  }
  bool current;
  {
    std::lock_guard lk(p->lock);
    current = !s->retired && s == p->current.get();
  }
  if (!current) {
    gst_event_unref(event);
    return TRUE;
  }
  return gst_pad_push_event(self->srcpad, event);
}

static gboolean ccm_enc_bin_collect_query(GstPad* pad, GstObject*, GstQuery* query) {
  Session* s = session_of(pad);
  Self* self = s->bin;
  bool current;
  {
    std::lock_guard lk(self->priv->lock);
    if (s->retired) return FALSE;
    current = s == self->priv->current.get();
  }
  if (GST_QUERY_TYPE(query) == GST_QUERY_ALLOCATION) {
    // Only for what downstream was told: a session that is still to take over
    // (other caps, maybe another codec) would confuse it. Encoders then use their own.
    GstCaps* caps = nullptr;
    gst_query_parse_allocation(query, &caps, nullptr);
    GstCaps* theirs = gst_pad_get_current_caps(self->srcpad);
    const bool same = current && caps && theirs && gst_caps_is_equal(caps, theirs);
    if (theirs) gst_caps_unref(theirs);
    if (!same) return FALSE;
  }
  if (gst_pad_peer_query(self->srcpad, query)) {
    if (GST_QUERY_TYPE(query) == GST_QUERY_ACCEPT_CAPS) {
      gboolean accepted = FALSE;
      gst_query_parse_accept_caps_result(query, &accepted);
      if (!accepted) {
        std::lock_guard lk(self->priv->lock);
        s->downstream = GST_FLOW_NOT_NEGOTIATED;  // downstream's refusal, not the encoder's failure
      }
    }
    return TRUE;
  }
  // Not linked yet (webrtcbin links late): anything goes until it is.
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS: {
      GstCaps* filter = nullptr;
      gst_query_parse_caps(query, &filter);
      Ref<GstCaps> templ(gst_pad_get_pad_template_caps(self->srcpad));
      Ref<GstCaps> result(filter ? gst_caps_intersect_full(filter, templ.get(), GST_CAPS_INTERSECT_FIRST)
                                 : gst_caps_ref(templ.get()));
      gst_query_set_caps_result(query, result.get());
      return TRUE;
    }
    case GST_QUERY_ACCEPT_CAPS:
      gst_query_set_accept_caps_result(query, TRUE);
      return TRUE;
    default:
      return FALSE;
  }
}

static gboolean ccm_enc_bin_feed_event(GstPad* pad, GstObject*, GstEvent* event) {
  // Upstream events out of the session (QoS, reconfigure, seek): on to our
  // upstream when the session is the one in use.
  Session* s = session_of(pad);
  Self* self = s->bin;
  bool current;
  {
    std::lock_guard lk(self->priv->lock);
    current = !s->retired && s == self->priv->current.get();
  }
  if (!current && GST_EVENT_TYPE(event) != GST_EVENT_RECONFIGURE) {
    gst_event_unref(event);
    return TRUE;
  }
  return gst_pad_push_event(self->sinkpad, event);
}

static gboolean ccm_enc_bin_feed_query(GstPad* pad, GstObject*, GstQuery* query) {
  Session* s = session_of(pad);
  return gst_pad_peer_query(s->bin->sinkpad, query);
}

// ---- our pads -----------------------------------------------------------------------

static gboolean ccm_enc_bin_sink_event(GstPad*, GstObject* parent, GstEvent* event) {
  Self* self = GST_CCM_ENC_BIN(parent);
  auto* p = self->priv;
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps = nullptr;
      gst_event_parse_caps(event, &caps);
      std::string refused = refuse_reason(caps);
      if (!refused.empty()) {
        gchar* cs = gst_caps_to_string(caps);
        GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("%s", refused.c_str()), ("input caps: %s", cs));
        g_free(cs);
        gst_event_unref(event);
        return FALSE;
      }
      bool changed = false;
      Ref<GstCaps> nominal(with_nominal_framerate(caps, &changed));
      if (changed)
        GST_INFO_OBJECT(self, "variable framerate input: encoders get %" GST_PTR_FORMAT, nominal.get());
      {
        GstStructure* st = gst_caps_get_structure(nominal.get(), 0);
        gint n = 0, d = 1;
        gst_structure_get_fraction(st, "framerate", &n, &d);
        std::lock_guard lk(p->lock);
        p->frame_duration = n > 0 ? gst_util_uint64_scale_int(GST_SECOND, d, n) : GST_CLOCK_TIME_NONE;
        gint w = 0, h = 0;
        gst_structure_get_int(st, "width", &w);
        gst_structure_get_int(st, "height", &h);
        p->frame_pixels = gint64(w) * h;
        gst_caps_replace(&p->input_caps, nominal.get());
      }
      if (!ccm_enc_bin_is_built(self)) {
        // The session gets the caps (and what came before them) when it is built.
        const bool ok = ccm_enc_bin_start(self, nominal.get());
        if (!ok) {
          std::lock_guard lk(p->lock);
          p->fatal = true;
        }
        gst_event_unref(event);
        return ok;
      }
      GstEvent* replaced = gst_event_new_caps(nominal.get());
      GST_EVENT_SEQNUM(replaced) = GST_EVENT_SEQNUM(event);
      gst_event_unref(event);
      event = replaced;
      break;
    }
    case GST_EVENT_FLUSH_START: {
      std::shared_ptr<Session> cur;
      {
        std::lock_guard lk(p->lock);
        p->flushing = true;
        cur = p->current;
      }
      p->cond.notify_all();
      if (cur) gst_pad_push_event(cur->feed, gst_event_ref(event));
      return gst_pad_push_event(self->srcpad, event);
    }
    case GST_EVENT_FLUSH_STOP: {
      std::shared_ptr<Session> cur;
      {
        std::unique_lock lk(p->lock);
        cur = p->current;
        if (cur) {
          p->cond.wait_for(lk, std::chrono::seconds(2), [&] { return !cur->busy; });
          cur->queue.clear();
        }
        p->pending.clear();
      }
      if (cur) gst_pad_push_event(cur->feed, gst_event_ref(event));
      {
        std::lock_guard lk(p->lock);
        p->flushing = false;
        p->final_eos = false;
        p->next_pts = GST_CLOCK_TIME_NONE;
        if (cur) {
          cur->drained = false;
          cur->downstream = GST_FLOW_OK;
          cur->waiting_since = -1;
        }
      }
      return gst_pad_push_event(self->srcpad, event);
    }
    case GST_EVENT_SEGMENT: {
      // A new segment: untimed frames count again from its start.
      const GstSegment* segment = nullptr;
      gst_event_parse_segment(event, &segment);
      std::lock_guard lk(p->lock);
      p->next_pts = segment->format == GST_FORMAT_TIME ? segment->start : GST_CLOCK_TIME_NONE;
      break;
    }
    case GST_EVENT_EOS: {
      if (!ccm_enc_bin_is_built(self)) {
        // Nothing was ever negotiated: pass EOS straight on so the pipeline ends.
        return gst_pad_push_event(self->srcpad, event);
      }
      std::unique_lock lk(p->lock);
      if (p->fatal || !p->current) {
        gst_event_unref(event);
        return FALSE;
      }
      p->final_eos = true;
      p->current->queue.emplace_back(p->next_seq++, GST_MINI_OBJECT(event));
      p->cond.notify_all();
      // Returns once the drain came out (after any failover on the way).
      return ccm_enc_bin_wait(self, lk, [&] { return p->current->drained; });
    }
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_OOB:
    case GST_EVENT_CUSTOM_BOTH:
    case GST_EVENT_CUSTOM_BOTH_OOB: {
      double bps = -1;
      if (!gst_ccm_bandwidth_estimate_parse(event, &bps)) break;
      std::shared_ptr<Session> cur;
      {
        std::lock_guard lk(p->lock);
        cur = p->current;
      }
      // The event itself goes on into the session in use, in order with the frames.
      ccm_enc_bin_follow_estimate(self, bps, cur && cur->chain.rate_controller ? cur.get() : nullptr);
      break;
    }
    default:
      break;
  }
  if (!ccm_enc_bin_is_built(self)) {
    // Kept as sticky on our pad (returning TRUE stores it) and pushed into the
    // session when it is built; other events before caps have nowhere to go.
    gst_event_unref(event);
    return TRUE;
  }
  if (!(gst_event_type_get_flags(GST_EVENT_TYPE(event)) & GST_EVENT_TYPE_SERIALIZED)) {
    std::shared_ptr<Session> cur;
    {
      std::lock_guard lk(p->lock);
      cur = p->current;
    }
    if (!cur) {
      gst_event_unref(event);
      return FALSE;
    }
    return gst_pad_push_event(cur->feed, event);
  }
  // In stream order with the frames.
  std::lock_guard lk(p->lock);
  if (!p->current) {
    gst_event_unref(event);
    return FALSE;
  }
  p->current->queue.emplace_back(p->next_seq++, GST_MINI_OBJECT(event));
  p->cond.notify_all();
  return TRUE;
}

// Encoders and muxers need a pts on every frame; frames without one get the
// previous frame's end, at the nominal framerate.
static GstBuffer* ccm_enc_bin_complete_timestamps(Self* self, GstBuffer* buffer) {
  auto* p = self->priv;
  std::lock_guard lk(p->lock);
  if (!GST_BUFFER_PTS_IS_VALID(buffer) || !GST_BUFFER_DURATION_IS_VALID(buffer)) {
    buffer = gst_buffer_make_writable(buffer);
    if (!GST_BUFFER_PTS_IS_VALID(buffer))
      GST_BUFFER_PTS(buffer) = GST_CLOCK_TIME_IS_VALID(p->next_pts) ? p->next_pts : 0;
    if (!GST_BUFFER_DURATION_IS_VALID(buffer)) GST_BUFFER_DURATION(buffer) = p->frame_duration;
  }
  p->next_pts = GST_BUFFER_PTS(buffer) + (GST_BUFFER_DURATION_IS_VALID(buffer) ? GST_BUFFER_DURATION(buffer) : 0);
  return buffer;
}

static GstFlowReturn ccm_enc_bin_sink_chain(GstPad*, GstObject* parent, GstBuffer* buffer) {
  Self* self = GST_CCM_ENC_BIN(parent);
  auto* p = self->priv;
  if (p->shutting_down) {
    // Stopping: the sessions are gone already (see change_state), which is no error.
    gst_buffer_unref(buffer);
    return GST_FLOW_FLUSHING;
  }
  if (!ccm_enc_bin_is_built(self)) {
    gst_buffer_unref(buffer);
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("data arrived before caps"),
                      ("the upstream element must send caps (video/x-raw) before buffers"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  auto& st = p->stats;
  if (st.frames_in.fetch_add(1) == 0) st.first_in_wall_us = now_us();
  buffer = ccm_enc_bin_complete_timestamps(self, buffer);
  if (p->switch_requested.exchange(false)) ccm_enc_bin_switch(self);

  std::unique_lock lk(p->lock);
  GstFlowReturn ret = GST_FLOW_OK;
  if (p->flushing) ret = GST_FLOW_FLUSHING;
  else if (p->fatal || !p->current) ret = GST_FLOW_ERROR;
  else if (p->final_eos) ret = GST_FLOW_EOS;
  if (ret != GST_FLOW_OK) {
    gst_buffer_unref(buffer);
    return ret;
  }
  const guint64 seq = p->next_seq++;
  if (p->settings.standby) gst_buffer_replace(&p->last_input, buffer);  // one more frame held, only for standby
  p->pending.emplace_back(seq, GST_MINI_OBJECT(gst_buffer_ref(buffer)));
  p->current->queue.emplace_back(seq, GST_MINI_OBJECT(buffer));
  p->cond.notify_all();
  // Hand-over: return once the pusher took the frame, so encoding overlaps
  // with upstream's next frame and flow returns come back one frame late, as
  // through a queue of one.
  if (!ccm_enc_bin_wait(self, lk, [&] { return p->current->queue.empty(); }))
    return p->fatal ? GST_FLOW_ERROR : GST_FLOW_FLUSHING;
  const GstFlowReturn down = p->current->downstream;
  const bool want_standby = p->settings.standby && !p->standby && p->standby_generation == 0;
  lk.unlock();
  if (want_standby) ccm_enc_bin_build_standby(self);
  return down < GST_FLOW_OK || down == GST_FLOW_EOS ? down : GST_FLOW_OK;
}

static GstCaps* ccm_enc_bin_sink_caps() {
  GstCaps* caps = preferred_raw_caps();
  if (can_download_cuda()) {
    // After system memory: elements that can give either give that.
    GstCaps* cuda = gst_caps_copy(caps);
    gst_caps_set_features(cuda, 0, gst_caps_features_new(kCudaMemory, nullptr));
    gst_caps_append(caps, cuda);
  }
  return caps;
}

static gboolean ccm_enc_bin_sink_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  Self* self = GST_CCM_ENC_BIN(parent);
  auto* p = self->priv;
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS: {
      // Whatever the encoder, videoconvert inside takes any raw format; 4:2:0 first.
      GstCaps* filter = nullptr;
      gst_query_parse_caps(query, &filter);
      Ref<GstCaps> caps(ccm_enc_bin_sink_caps());
      if (filter) {
        Ref<GstCaps> i(gst_caps_intersect_full(filter, caps.get(), GST_CAPS_INTERSECT_FIRST));
        gst_query_set_caps_result(query, i.get());
      } else {
        gst_query_set_caps_result(query, caps.get());
      }
      return TRUE;
    }
    case GST_QUERY_ACCEPT_CAPS: {
      GstCaps* caps = nullptr;
      gst_query_parse_accept_caps(query, &caps);
      // Any raw video is "accepted" here so that caps we cannot take reach the
      // CAPS event, which refuses them with an error that names the fix;
      // the CAPS query above only offers what we can take.
      gst_query_set_accept_caps_result(
          query, caps && gst_caps_get_size(caps) == 1 &&
                     gst_structure_has_name(gst_caps_get_structure(caps, 0), "video/x-raw"));
      return TRUE;
    }
    default:
      break;
  }
  std::shared_ptr<Session> cur;
  {
    std::unique_lock lk(p->lock);
    if ((gst_query_type_get_flags(GST_QUERY_TYPE(query)) & GST_QUERY_TYPE_SERIALIZED) && p->current) {
      // In stream order: once the session has taken everything before it.
      if (!ccm_enc_bin_wait(self, lk, [&] { return p->current->queue.empty() && !p->current->busy; })) return FALSE;
    }
    cur = p->current;
  }
  if (!cur) return gst_pad_query_default(pad, parent, query);
  const gboolean answered = gst_pad_peer_query(cur->feed, query);
  if (GST_QUERY_TYPE(query) == GST_QUERY_ALLOCATION) {
    // The session answers first; a generic answer becomes our aligned DMABuf pool.
    Settings s;
    {
      std::lock_guard lk(p->lock);
      s = p->settings;
    }
    if (answered && s.dmabuf_pool) ccm_propose_dmabuf_pool(GST_OBJECT(self), query, cur->chain.gpu);
  }
  return answered;
}

static gboolean ccm_enc_bin_src_event(GstPad*, GstObject* parent, GstEvent* event) {
  // Upstream events from downstream (force-key-unit, QoS, seek): into the
  // session in use, which passes what it does not handle on upstream.
  Self* self = GST_CCM_ENC_BIN(parent);
  double bps = -1;
  if (GST_EVENT_TYPE(event) == GST_EVENT_CUSTOM_UPSTREAM && gst_ccm_bandwidth_estimate_parse(event, &bps)) {
    // Every session's rate control, including one in standby; then on upstream,
    // for a ccmratecontrol the application put in front of us.
    ccm_enc_bin_follow_estimate(self, bps, nullptr);
    gst_pad_push_event(self->sinkpad, event);
    return TRUE;
  }
  std::shared_ptr<Session> cur;
  {
    std::lock_guard lk(self->priv->lock);
    cur = self->priv->current;
  }
  if (cur) return gst_pad_push_event(cur->collect, event);
  return gst_pad_push_event(self->sinkpad, event);
}

static gboolean ccm_enc_bin_src_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  Self* self = GST_CCM_ENC_BIN(parent);
  std::shared_ptr<Session> cur;
  {
    std::lock_guard lk(self->priv->lock);
    cur = self->priv->current;
  }
  if (cur) return gst_pad_peer_query(cur->collect, query);
  if (GST_QUERY_TYPE(query) == GST_QUERY_CAPS) {
    // Before the first caps: every codec we make, even with codec= set, so that
    // linking succeeds and a refusal comes with our message naming the fix.
    GstCaps* filter = nullptr;
    gst_query_parse_caps(query, &filter);
    Ref<GstCaps> caps(gst_pad_get_pad_template_caps(pad));
    Ref<GstCaps> result(filter ? gst_caps_intersect_full(filter, caps.get(), GST_CAPS_INTERSECT_FIRST)
                               : gst_caps_ref(caps.get()));
    gst_query_set_caps_result(query, result.get());
    return TRUE;
  }
  return gst_pad_peer_query(self->sinkpad, query);
}

// Errors of a session's elements are the session's failure, not the
// application's: they start a failover. The rest goes up as usual.
static void gst_ccm_enc_bin_handle_message(GstBin* bin, GstMessage* message) {
  Self* self = GST_CCM_ENC_BIN(bin);
  auto* p = self->priv;
  if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR && GST_MESSAGE_SRC(message)) {
    // The child of ours the message comes from (the source may be deep inside it).
    GstObject* child = GST_OBJECT(gst_object_ref(GST_MESSAGE_SRC(message)));
    while (child) {
      GstObject* parent = gst_object_get_parent(child);
      if (!parent || parent == GST_OBJECT(self)) {
        if (parent) gst_object_unref(parent);
        break;
      }
      gst_object_unref(child);
      child = parent;
    }
    std::shared_ptr<Session> owner;
    if (child) {
      std::lock_guard lk(p->lock);
      for (const auto& s : p->attached) {
        const auto elements = s->chain.elements();
        if (std::find(elements.begin(), elements.end(), GST_ELEMENT(child)) != elements.end()) owner = s;
      }
      gst_object_unref(child);
    }
    if (owner) {
      GError* err = nullptr;
      gchar* dbg = nullptr;
      gst_message_parse_error(message, &err, &dbg);
      const std::string what = std::string(GST_MESSAGE_SRC_NAME(message)) + ": " + err->message;
      GST_INFO_OBJECT(self, "error from %s kept from the application: %s (%s)", owner->chain.factory.c_str(),
                      what.c_str(), dbg ? dbg : "");
      g_error_free(err);
      g_free(dbg);
      {
        std::lock_guard lk(p->lock);
        if (!owner->failed) {
          owner->failed = true;
          owner->failure = what;
        }
      }
      p->cond.notify_all();
      gst_message_unref(message);
      return;
    }
  }
  GST_BIN_CLASS(gst_ccm_enc_bin_parent_class)->handle_message(bin, message);
}

// ---- stats ----------------------------------------------------------------------

static GstStructure* ccm_enc_bin_stats(Self* self) {
  auto& st = self->priv->stats;
  std::string factory, codec, rate_kept_by;
  bool hardware = false;
  GstElement* rc = nullptr;  // a reference, dropped below
  {
    std::lock_guard lk(self->priv->lock);
    if (const auto& cur = self->priv->current) {
      factory = cur->chain.factory;
      codec = ccm::catalog::to_string(cur->chain.codec);
      hardware = cur->chain.hardware;
      rate_kept_by = cur->chain.rate_kept_by;
      if (cur->chain.rate_controller) rc = GST_ELEMENT(gst_object_ref(cur->chain.rate_controller));
    }
  }
  // The built-in rate controller's word on whether the target is reachable: the
  // last frame at the lowest QP the settings allow (docs/ratecontrol.md).
  gboolean at_min_qp = FALSE;
  if (rc) {
    Ref<GstElement> owned(rc);
    GstStructure* rs = nullptr;
    g_object_get(rc, "stats", &rs, nullptr);
    if (rs) {
      gst_structure_get_boolean(rs, "at-min-qp", &at_min_qp);
      gst_structure_free(rs);
    }
  }
  const guint64 out = st.frames_out, bytes = st.bytes_out;
  double mean_fps = 0, mean_kbps = 0, fps = 0, kbps = 0;
  const gint64 t0 = st.first_in_wall_us, t1 = st.last_out_wall_us;
  if (t0 >= 0 && t1 > t0 && out > 1) mean_fps = (double)out * 1e6 / (double)(t1 - t0);
  const guint64 p0 = st.first_out_pts, p1 = st.last_out_end;
  if (p0 != GST_CLOCK_TIME_NONE && p1 != GST_CLOCK_TIME_NONE && p1 > p0)
    mean_kbps = (double)bytes * 8.0 / ((double)(p1 - p0) / GST_SECOND) / 1000.0;
  {
    // The last second, as ccmratecontrol reports it: bits over the last second
    // of stream time (or the stream so far), frames over the last wall second.
    std::lock_guard lk(st.window_lock);
    guint64 window_bytes = 0;
    for (const auto& [end, size] : st.window) window_bytes += size;
    if (p0 != GST_CLOCK_TIME_NONE && p1 != GST_CLOCK_TIME_NONE && p1 > p0)
      kbps = (double)window_bytes * 8.0 / ((double)std::min<guint64>(p1 - p0, GST_SECOND) / GST_SECOND) / 1000.0;
    if (!st.window_wall_us.empty() && t0 >= 0 && t1 > t0)
      fps = (double)st.window_wall_us.size() / std::min(1.0, (double)(t1 - t0) / 1e6);
  }
  return gst_structure_new(
      "ccm-stats", "encoder", G_TYPE_STRING, factory.c_str(), "codec", G_TYPE_STRING, codec.c_str(),
      "rate-controller", G_TYPE_STRING, rate_kept_by.c_str(), "hardware",
      G_TYPE_BOOLEAN, hardware, "frames-in", G_TYPE_UINT64, (guint64)st.frames_in, "frames-out", G_TYPE_UINT64, out,
      "key-frames", G_TYPE_UINT64, (guint64)st.key_frames, "bytes-out", G_TYPE_UINT64, bytes, "bitrate-kbps",
      G_TYPE_DOUBLE, kbps, "fps", G_TYPE_DOUBLE, fps, "mean-bitrate-kbps", G_TYPE_DOUBLE, mean_kbps, "mean-fps",
      G_TYPE_DOUBLE, mean_fps, "switches", G_TYPE_UINT64, (guint64)st.switches, "failovers",
      G_TYPE_UINT64, (guint64)st.failovers, "frames-reencoded", G_TYPE_UINT64, (guint64)st.frames_reencoded,
      "last-switch-ms", G_TYPE_DOUBLE, st.last_switch_ms.load(), "start-ms", G_TYPE_DOUBLE, st.start_ms.load(),
      "at-min-qp", G_TYPE_BOOLEAN, at_min_qp, "encoders-abandoned", G_TYPE_UINT64, (guint64)st.abandoned, nullptr);
}

// ---- GObject --------------------------------------------------------------------

static void ccm_enc_bin_apply_live_bitrate(Self* self, guint kbps) {
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard lk(self->priv->lock);
    sessions = self->priv->attached;
  }
  for (const auto& s : sessions) {
    if (s->chain.rate_controller) {  // it owns the encoder's rate
      ccm::gst::set_property_from_string(s->chain.rate_controller, "target-bitrate", std::to_string(kbps));
      continue;
    }
    std::string applied;
    if (ccm::gst::apply_bitrate(s->chain.encoder, s->chain.entry, kbps, &applied)) {
      GST_INFO_OBJECT(self, "live bitrate change: %s%s", applied.c_str(),
                      s->chain.entry && s->chain.entry->bitrate_change == ccm::catalog::BitrateChange::Reopen
                          ? " (this encoder reopens itself: new headers and a key frame)" : "");
    }
  }
}

// A ccm-bandwidth-estimate (from downstream, e.g. WebRTC glue, or the application):
// remembered for sessions still to come, handed to every session's ccmratecontrol
// but `skip` (the one the event itself flows through), and, where a session has
// none, made the encoder's bitrate until the next estimate or `bitrate` change.
static void ccm_enc_bin_follow_estimate(Self* self, double bps, const Session* skip) {
  if (!gst_ccm_bandwidth_estimate_valid(bps)) {
    GST_ELEMENT_WARNING(self, STREAM, FAILED, ("ignoring a " GST_CCM_BANDWIDTH_ESTIMATE_EVENT " event"),
                        ("bitrate must be a number of bit/s between %.0f and %.0f (got %.0f); the target stays",
                         GST_CCM_BANDWIDTH_ESTIMATE_MIN_BPS, GST_CCM_BANDWIDTH_ESTIMATE_MAX_BPS, bps));
    return;
  }
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard lk(self->priv->lock);
    self->priv->bandwidth_estimate_bps = bps;
    sessions = self->priv->attached;
  }
  for (const auto& s : sessions) {
    if (s.get() == skip) continue;
    if (s->chain.rate_controller) {
      gst_element_send_event(s->chain.rate_controller, bandwidth_estimate_event(bps));
    } else {
      std::string applied;
      if (ccm::gst::apply_bitrate(s->chain.encoder, s->chain.entry, (guint)std::max(1.0, bps / 1000.0), &applied))
        GST_INFO_OBJECT(self, "bandwidth estimate %.0f bit/s: %s", bps, applied.c_str());
    }
  }
}

static void gst_ccm_enc_bin_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  Self* self = GST_CCM_ENC_BIN(object);
  auto* p = self->priv;
  auto& s = p->settings;
  std::unique_lock lock(p->lock);
  // A preset never overrides what the application set, whatever the order.
  if (p->loading_preset && p->user_set.count(id)) return;
  if (!p->loading_preset) p->user_set.insert(id);
  // Settings that choose the encoder: while streaming, a switch at the next frame.
  auto request_switch = [&](const char* what) {
    if (!p->current) return;
    std::string text;
    if (G_VALUE_HOLDS_ENUM(value)) {
      GEnumClass* klass = G_ENUM_CLASS(g_type_class_peek(G_VALUE_TYPE(value)));
      const GEnumValue* v = klass ? g_enum_get_value(klass, g_value_get_enum(value)) : nullptr;
      text = v ? v->value_nick : "?";
    } else if (G_VALUE_HOLDS_STRING(value)) {
      text = g_value_get_string(value) ? g_value_get_string(value) : "";
    } else {
      gchar* t = g_strdup_value_contents(value);
      text = t;
      g_free(t);
    }
    p->switch_reason = std::string("requested: ") + what + "=" + text;
    p->switch_requested_us = now_us();
    p->switch_requested = true;
  };
  switch (id) {
    case PROP_CODEC:
      s.codec = (CodecChoice)g_value_get_enum(value);
      request_switch("codec");
      break;
    case PROP_BITRATE: {
      guint kbps = g_value_get_uint(value);
      if (kbps > kMaxBitrate) {
        const std::string note =
            "bitrate=" + std::to_string(kbps) + " kbit/s is out of range" +
            (kbps > (guint)G_MAXINT ? " (" + std::to_string((gint)kbps) + " read as unsigned?)" : std::string()) +
            ": clamped to " + std::to_string(kMaxBitrate) + " kbit/s";
        kbps = kMaxBitrate;
        GST_WARNING_OBJECT(self, "%s", note.c_str());
        if (!p->current) {
          p->settings_warning = note;  // gst-launch sets properties before there is a bus
        } else {
          lock.unlock();
          GST_ELEMENT_WARNING(self, LIBRARY, SETTINGS, ("%s", note.c_str()), ("set bitrate in kbit/s, 1 to %u",
                                                                               kMaxBitrate));
          lock.lock();
        }
      }
      s.bitrate = kbps;  // at least 1: GObject refuses 0 (the pspec's range)
      p->bandwidth_estimate_bps = 0;  // the application's word replaces the network's
      lock.unlock();
      ccm_enc_bin_apply_live_bitrate(self, kbps);
      return;
    }
    case PROP_RATE_CONTROL: s.rate_control = (RateControl)g_value_get_enum(value); break;
    case PROP_QUANTIZER: s.quantizer = g_value_get_uint(value); break;
    case PROP_KEYFRAME_INTERVAL: s.keyframe_interval = g_value_get_uint(value); break;
    case PROP_LOW_LATENCY: s.low_latency = g_value_get_boolean(value); break;
    case PROP_HARDWARE:
      s.hardware = (HardwarePolicy)g_value_get_enum(value);
      request_switch("hardware");
      break;
    case PROP_GPU:
      s.gpu = g_value_get_int(value);
      request_switch("gpu");
      break;
    case PROP_CANDIDATES:
      s.candidates = g_value_get_string(value) ? g_value_get_string(value) : "";
      request_switch("candidates");
      break;
    case PROP_BFRAMES: s.bframes = g_value_get_int(value); break;
    case PROP_MIN_QUANTIZER: s.min_quantizer = g_value_get_int(value); break;
    case PROP_MAX_QUANTIZER: s.max_quantizer = g_value_get_int(value); break;
    case PROP_HDR: s.hdr = g_value_get_boolean(value); break;
    case PROP_DMABUF_POOL: s.dmabuf_pool = g_value_get_boolean(value); break;
    case PROP_PROBE: s.probe = g_value_get_boolean(value); break;
    case PROP_STANDBY: s.standby = g_value_get_boolean(value); break;
    case PROP_STALL_TIMEOUT: s.stall_timeout_ms = g_value_get_uint(value); break;
    case PROP_RATE_CONTROLLER: s.rate_controller = (RateController)g_value_get_enum(value); break;
    case PROP_RATE_MESSAGE_INTERVAL: s.rate_message_interval = g_value_get_uint(value); break;
    case PROP_STATS_INTERVAL: p->stats.interval_ms = g_value_get_uint(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
}

static void gst_ccm_enc_bin_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  Self* self = GST_CCM_ENC_BIN(object);
  if (id == PROP_STATS) {
    g_value_take_boxed(value, ccm_enc_bin_stats(self));
    return;
  }
  std::lock_guard lock(self->priv->lock);
  const auto& s = self->priv->settings;
  switch (id) {
    case PROP_CODEC: g_value_set_enum(value, (int)s.codec); break;
    case PROP_BITRATE: g_value_set_uint(value, s.bitrate); break;
    case PROP_RATE_CONTROL: g_value_set_enum(value, (int)s.rate_control); break;
    case PROP_QUANTIZER: g_value_set_uint(value, s.quantizer); break;
    case PROP_KEYFRAME_INTERVAL: g_value_set_uint(value, s.keyframe_interval); break;
    case PROP_LOW_LATENCY: g_value_set_boolean(value, s.low_latency); break;
    case PROP_HARDWARE: g_value_set_enum(value, (int)s.hardware); break;
    case PROP_GPU: g_value_set_int(value, s.gpu); break;
    case PROP_CANDIDATES: g_value_set_string(value, s.candidates.c_str()); break;
    case PROP_BFRAMES: g_value_set_int(value, s.bframes); break;
    case PROP_MIN_QUANTIZER: g_value_set_int(value, s.min_quantizer); break;
    case PROP_MAX_QUANTIZER: g_value_set_int(value, s.max_quantizer); break;
    case PROP_HDR: g_value_set_boolean(value, s.hdr); break;
    case PROP_DMABUF_POOL: g_value_set_boolean(value, s.dmabuf_pool); break;
    case PROP_PROBE: g_value_set_boolean(value, s.probe); break;
    case PROP_STANDBY: g_value_set_boolean(value, s.standby); break;
    case PROP_STALL_TIMEOUT: g_value_set_uint(value, s.stall_timeout_ms); break;
    case PROP_RATE_CONTROLLER: g_value_set_enum(value, (int)s.rate_controller); break;
    case PROP_RATE_MESSAGE_INTERVAL: g_value_set_uint(value, s.rate_message_interval); break;
    case PROP_STATS_INTERVAL: g_value_set_uint(value, self->priv->stats.interval_ms); break;
    case PROP_ENCODER:
      g_value_set_string(value, self->priv->current ? self->priv->current->chain.factory.c_str() : nullptr);
      break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
}

static GstStateChangeReturn gst_ccm_enc_bin_change_state(GstElement* element, GstStateChange transition) {
  Self* self = GST_CCM_ENC_BIN(element);
  auto* p = self->priv;
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) {
    p->stats.reset();
    std::lock_guard lk(p->lock);
    p->next_pts = GST_CLOCK_TIME_NONE;
    p->flushing = false;
    p->final_eos = false;
    p->fatal = false;
    p->standby_generation = 0;
    p->shutting_down = false;
  }
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) {
    // Unblock the streaming thread (waiting on a session, or in a test encode)
    // and every session's pusher, and take every session out of the bin before
    // the bin changes its children's state: an encoder that never returns (a
    // wedged driver call) would hold that state change, and this one, for ever.
    // Retired sessions are stopped by threads of their own (ccm_enc_bin_retire).
    // A session still being built is left to the bin and to the teardown below
    // (its builder uses its elements; the stream lock and the standby join wait for it).
    std::vector<std::shared_ptr<Session>> sessions;
    {
      std::lock_guard lk(p->lock);
      p->flushing = true;
      p->shutting_down = true;
      for (const auto& s : p->attached)
        if (!s->building) sessions.push_back(s);
    }
    p->cond.notify_all();
    for (const auto& s : sessions) ccm_enc_bin_retire(self, s);
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_ccm_enc_bin_parent_class)->change_state(element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE) return ret;
  // A new stream may go to another codec or encoder: choose again from scratch.
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) ccm_enc_bin_teardown(self);
  return ret;
}

static void gst_ccm_enc_bin_finalize(GObject* object) {
  Self* self = GST_CCM_ENC_BIN(object);
  ccm_enc_bin_teardown(self, true);
  delete self->priv;
  G_OBJECT_CLASS(gst_ccm_enc_bin_parent_class)->finalize(object);
}

static void gst_ccm_enc_bin_init(Self* self) {
  self->priv = new Self::Private();

  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_event_function(self->sinkpad, ccm_enc_bin_sink_event);
  gst_pad_set_chain_function(self->sinkpad, ccm_enc_bin_sink_chain);
  gst_pad_set_query_function(self->sinkpad, ccm_enc_bin_sink_query);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);

  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_event_function(self->srcpad, ccm_enc_bin_src_event);
  gst_pad_set_query_function(self->srcpad, ccm_enc_bin_src_query);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
}

static void gst_ccm_enc_bin_class_init(GstCcmEncBinClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstBinClass* bin_class = GST_BIN_CLASS(klass);
  gobject_class->set_property = gst_ccm_enc_bin_set_property;
  gobject_class->get_property = gst_ccm_enc_bin_get_property;
  gobject_class->finalize = gst_ccm_enc_bin_finalize;
  element_class->change_state = gst_ccm_enc_bin_change_state;
  bin_class->handle_message = gst_ccm_enc_bin_handle_message;

  const auto rw = GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  const auto live = GParamFlags(rw | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(gobject_class, PROP_CODEC,
      g_param_spec_enum("codec", "Codec",
                        "Codec to produce; auto follows what downstream accepts. Changing it while PLAYING "
                        "switches encoder at the next frame (new caps downstream)",
                        codec_choice_get_type(), (int)CodecChoice::Auto, live));
  g_object_class_install_property(gobject_class, PROP_BITRATE,
      g_param_spec_uint("bitrate", "Bitrate", "Target bitrate in kbit/s (applies live while PLAYING)",
                        1, G_MAXUINT, kDefaultBitrate, live));
  g_object_class_install_property(gobject_class, PROP_RATE_CONTROL,
      g_param_spec_enum("rate-control", "Rate control", "Rate-control mode", rate_control_get_type(),
                        (int)RateControl::Cbr, rw));
  g_object_class_install_property(gobject_class, PROP_QUANTIZER,
      g_param_spec_uint("quantizer", "Quantizer",
                        "Constant quantizer for rate-control=cqp, in the codec's scale (H.26x 0-51, VP9/AV1 0-63)",
                        0, 63, kDefaultQuantizer, rw));
  g_object_class_install_property(gobject_class, PROP_KEYFRAME_INTERVAL,
      g_param_spec_uint("keyframe-interval", "Key-frame interval",
                        "Maximum distance between key frames in frames (0 = 10 seconds of frames)", 0, G_MAXINT, 0, rw));
  g_object_class_install_property(gobject_class, PROP_LOW_LATENCY,
      g_param_spec_boolean("low-latency", "Low latency",
                           "Configure the encoder for low latency (no look-ahead, no B-frames)", TRUE, rw));
  g_object_class_install_property(gobject_class, PROP_HARDWARE,
      g_param_spec_enum("hardware", "Hardware",
                        "Which encoders may be used (changing it while PLAYING switches at the next frame)",
                        hardware_policy_get_type(), (int)HardwarePolicy::Auto, live));
  g_object_class_install_property(gobject_class, PROP_GPU,
      g_param_spec_int("gpu", "GPU",
                       "Index of the GPU to encode on (-1 = the least loaded; changing it while PLAYING switches)",
                       -1, 255, -1, live));
  g_object_class_install_property(gobject_class, PROP_CANDIDATES,
      g_param_spec_string("candidates", "Candidates",
                          "Comma-separated encoder element names to try in order, replacing the catalogue's order "
                          "(changing it while PLAYING switches at the next frame)",
                          "", live));
  g_object_class_install_property(gobject_class, PROP_BFRAMES,
      g_param_spec_int("b-frames", "B-frames",
                       "B-frames between references (-1 = encoder default; 0 when low-latency)", -1, 16, -1, rw));
  g_object_class_install_property(gobject_class, PROP_MIN_QUANTIZER,
      g_param_spec_int("min-quantizer", "Minimum quantizer",
                       "Lowest quantizer in the codec's scale (-1 = encoder default)", -1, 63, -1, rw));
  g_object_class_install_property(gobject_class, PROP_MAX_QUANTIZER,
      g_param_spec_int("max-quantizer", "Maximum quantizer",
                       "Highest quantizer in the codec's scale (-1 = encoder default)", -1, 63, -1, rw));
  g_object_class_install_property(gobject_class, PROP_HDR,
      g_param_spec_boolean("hdr", "HDR", "Encode 10-bit (HDR) where the encoder can", FALSE, rw));
  g_object_class_install_property(gobject_class, PROP_DMABUF_POOL,
      g_param_spec_boolean("dmabuf-pool", "DMABuf pool",
                           "Offer upstream a pool of 256-byte aligned DMABuf/memfd frames (ccmdmabufpool) "
                           "when the encoder has no pool of its own", TRUE, rw));
  g_object_class_install_property(gobject_class, PROP_PROBE,
      g_param_spec_boolean("probe", "Probe",
                           "Test-encode one frame with a candidate before using it (answers cached in "
                           "$XDG_CACHE_HOME/gst-ccm)", TRUE, rw));
  g_object_class_install_property(gobject_class, PROP_STANDBY,
      g_param_spec_boolean("standby", "Standby",
                           "Keep the next candidate initialised, so a failover costs at most about a frame", FALSE,
                           rw));
  g_object_class_install_property(gobject_class, PROP_STALL_TIMEOUT,
      g_param_spec_uint("stall-timeout", "Stall timeout",
                        "An encoder that gives no output for this long while frames go in, or spends this long "
                        "on one frame, is taken for dead (ms for frames up to 1080p, proportionally longer for "
                        "larger ones; 0 = never); also each call of a candidate's test encode",
                        0, G_MAXUINT, kDefaultStallTimeoutMs, rw));
  g_object_class_install_property(gobject_class, PROP_RATE_CONTROLLER,
      g_param_spec_enum("rate-controller", "Rate controller",
                        "At rate-control=cbr, ccm: ccmratecontrol sets each frame's QP (or x264enc's bitrate) from "
                        "frame analysis, encoded sizes, QoS and ccm-bandwidth-estimate events; encoder: the "
                        "encoder's own rate control (applies from the next encoder session)",
                        rate_controller_get_type(), (int)RateController::Ccm, rw));
  g_object_class_install_property(gobject_class, PROP_RATE_MESSAGE_INTERVAL,
      g_param_spec_uint("rate-message-interval", "Rate-control message interval",
                        "Post a ccm-ratecontrol element message every N frames from the built-in rate controller "
                        "(frames; 0 = none; applies from the next encoder session)",
                        0, G_MAXUINT, 0, rw));
  g_object_class_install_property(gobject_class, PROP_ENCODER,
      g_param_spec_string("encoder", "Encoder", "Factory name of the encoder element in use (NULL before caps)",
                          nullptr, GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(gobject_class, PROP_STATS_INTERVAL,
      g_param_spec_uint("stats-interval", "Stats interval",
                        "Post the stats as a ccm-stats element message every N ms of wall-clock time while "
                        "frames come out, whatever the encoder and rate controller (ms; 0 = never)",
                        0, G_MAXUINT, 1000, live));
  g_object_class_install_property(gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "ccm-stats: encoder, codec, rate-controller, hardware, frames-in, frames-out, key-frames, "
                         "bytes-out, bitrate-kbps (kbit/s over the last second of stream time), fps (output "
                         "frames over the last wall-clock second), mean-bitrate-kbps and mean-fps (the same "
                         "over the whole stream), switches, failovers, frames-reencoded, last-switch-ms, "
                         "start-ms, at-min-qp (the built-in rate controller's last frame was at the lowest QP "
                         "allowed: the bitrate may not be reachable), encoders-abandoned (encoders that never "
                         "returned from a call and were left behind, over the element's life); see docs/ccmencbin.md",
                         GST_TYPE_STRUCTURE, GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "CCM encoder bin", "Codec/Encoder/Video",
      "Picks, tests, configures and runs the best AV1/H.265/VP9/H.264 encoder on this machine, and moves to "
      "the next one when it fails",
      "gst-ccm developers");

  gst_type_mark_as_plugin_api(codec_choice_get_type(), GstPluginAPIFlags(0));
  gst_type_mark_as_plugin_api(rate_control_get_type(), GstPluginAPIFlags(0));
  gst_type_mark_as_plugin_api(rate_controller_get_type(), GstPluginAPIFlags(0));
  gst_type_mark_as_plugin_api(hardware_policy_get_type(), GstPluginAPIFlags(0));
}

// ---- presets --------------------------------------------------------------------
//
// GStreamer reads GstCcmEncBin.prs from its own data folder, the user's and
// GST_PRESET_PATH. gst-ccm installed under another prefix (/usr/local) puts its
// presets where GStreamer does not look, so the names and values there are added
// to GStreamer's own: CCM_PRESETS_DIR (the environment variable, else the install
// folder compiled in). User-saved presets of the same name win.
//
// A preset sets only what the application has not set itself: gst-launch's
// `@preset=` is loaded after every property on the line, whatever the order,
// and `codec=h264 @preset=screen-share` must keep H.264. set_property records
// each property the application sets and, while a preset loads, skips those.

namespace {

struct PresetDefaults {
  gchar** (*get_preset_names)(GstPreset*) = nullptr;
  gboolean (*load_preset)(GstPreset*, const gchar*) = nullptr;
} preset_defaults;

GKeyFile* installed_presets() {
  const char* env = g_getenv("CCM_PRESETS_DIR");
  gchar* path = g_build_filename(env && *env ? env : CCM_PRESETS_DIR, "GstCcmEncBin.prs", nullptr);
  GKeyFile* file = g_key_file_new();
  const bool ok = g_key_file_load_from_file(file, path, G_KEY_FILE_NONE, nullptr);
  g_free(path);
  if (!ok) {
    g_key_file_unref(file);
    return nullptr;
  }
  return file;
}

gchar** ccm_enc_bin_get_preset_names(GstPreset* preset) {
  gchar** names = preset_defaults.get_preset_names(preset);
  GKeyFile* file = installed_presets();
  if (!file) return names;
  GStrvBuilder* all = g_strv_builder_new();
  if (names) g_strv_builder_addv(all, (const char**)names);
  gchar** groups = g_key_file_get_groups(file, nullptr);
  for (gchar** g = groups; *g; g++)
    if (!g_str_equal(*g, "_presets_") && !(names && g_strv_contains(names, *g))) g_strv_builder_add(all, *g);
  g_strfreev(groups);
  g_strfreev(names);
  g_key_file_unref(file);
  return g_strv_builder_end(all);
}

gboolean load_preset_values(GstPreset* preset, const gchar* name) {
  if (preset_defaults.load_preset(preset, name)) return TRUE;
  GKeyFile* file = installed_presets();
  if (!file) return FALSE;
  gboolean found = g_key_file_has_group(file, name);
  if (found) {
    gchar** keys = g_key_file_get_keys(file, name, nullptr, nullptr);
    for (gchar** k = keys; keys && *k; k++) {
      if (g_str_has_prefix(*k, "_meta/")) continue;
      gchar* value = g_key_file_get_value(file, name, *k, nullptr);
      if (value && g_object_class_find_property(G_OBJECT_GET_CLASS(preset), *k))
        gst_util_set_object_arg(G_OBJECT(preset), *k, value);
      g_free(value);
    }
    g_strfreev(keys);
  }
  g_key_file_unref(file);
  return found;
}

gboolean ccm_enc_bin_load_preset(GstPreset* preset, const gchar* name) {
  auto* p = GST_CCM_ENC_BIN(preset)->priv;
  {
    std::lock_guard lock(p->lock);
    p->loading_preset = true;
  }
  const gboolean found = load_preset_values(preset, name);
  std::lock_guard lock(p->lock);
  p->loading_preset = false;
  return found;
}

}  // namespace

static void gst_ccm_enc_bin_preset_init(gpointer g_iface, gpointer) {
  // GObject hands us the interface with GStreamer's default implementation
  // filled in: keep it and add the installed presets on top.
  auto* iface = static_cast<GstPresetInterface*>(g_iface);
  preset_defaults.get_preset_names = iface->get_preset_names;
  preset_defaults.load_preset = iface->load_preset;
  iface->get_preset_names = ccm_enc_bin_get_preset_names;
  iface->load_preset = ccm_enc_bin_load_preset;
}

