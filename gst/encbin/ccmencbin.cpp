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
 * <parser> (ccmratecontrol steers the encoder at rate-control=cbr, see
 * docs/ratecontrol.md; rate-controller=encoder leaves the rate to the encoder), fed from
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

#include "encbin/encbin_private.h"
#include "encbin/failover.h"
#include "encbin/live_rate.h"
#include "encbin/messages.h"
#include "encbin/pads.h"
#include "encbin/presets.h"

#include <algorithm>
#include <string>

GST_DEBUG_CATEGORY(ccm_enc_bin_debug);

using namespace ccm::encbin;

namespace {

// ---- enums exposed as properties -------------------------------------------------

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

}  // namespace

G_DEFINE_TYPE_WITH_CODE(GstCcmEncBin, gst_ccm_enc_bin, GST_TYPE_BIN,
                        G_IMPLEMENT_INTERFACE(GST_TYPE_PRESET, ccm::encbin::gst_ccm_enc_bin_preset_init);
                        GST_DEBUG_CATEGORY_INIT(ccm_enc_bin_debug, "ccmencbin", 0,
                                                "ccm encoder selection bin"))

// CUDA memory is taken where nvcodec's cudadownload exists (the CAPS query
// offers it only there, ccm_enc_bin_sink_caps); the template says it can be.
static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("video/x-raw; video/x-raw(memory:CUDAMemory)"));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("video/x-av1; video/x-h265; video/x-vp9; video/x-h264"));

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

// ---- GObject --------------------------------------------------------------------

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
                        "At rate-control=cbr, ccm: ccmratecontrol (mode auto) steers the encoder from frame "
                        "analysis, encoded sizes, QoS and ccm-bandwidth-estimate events: x264enc's bitrate frame "
                        "by frame, x265's and libvpx's own CBR with its bitrate corrected to deliver the target "
                        "and key frames at cuts, ccmsvtav1enc's own controller given the target, other encoders' "
                        "QP or bitrate per frame; encoder: the "
                        "encoder's own rate control alone (applies from the next encoder session)",
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
                         "start-ms, at-min-qp (the bitrate is out of reach: the built-in rate controller's last frame was at "
                         "the lowest QP allowed, or the encoder's own CBR stays under it with the most room given), encoders-abandoned (encoders that never "
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
