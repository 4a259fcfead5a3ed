// GstCcmVideoEnc: what ccmx265enc and ccmsvtav1enc share. See ccmvideoenc.h for the
// contract with subclasses.
//
// Live changes: property setters only record the new value (any thread, under the
// object lock) and bump a serial number. The streaming thread compares serials in
// handle_frame and applies the change at that frame boundary, in place through
// reconfigure() or, when the library cannot, by drain + close + open. So a change
// never races with an encode call and never needs a lock around the library.
#include "enc/ccmvideoenc.h"

#include "common/qp_meta.h"

#include <cstring>

GST_DEBUG_CATEGORY_STATIC(ccm_video_enc_debug);
#define GST_CAT_DEFAULT ccm_video_enc_debug

namespace {

constexpr guint kDefaultBitrate = 2000;  // kbit/s, as ccmencbin
constexpr guint kMaxBitrate = 2000000;   // kbit/s; x265 clips VBV there too
constexpr gint kNominalFpsN = 30;

enum {
  PROP_0,
  PROP_BITRATE,
  PROP_RATE_CONTROL,
  PROP_QUANTIZER,
  PROP_KEYFRAME_INTERVAL,
  PROP_SPEED_PRESET,
  PROP_THREADS,
  PROP_LOW_LATENCY,
};
static_assert(PROP_LOW_LATENCY < GST_CCM_VIDEO_ENC_PROP_LAST);

GType rate_control_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {GST_CCM_RATE_CONTROL_CBR, "Constant bitrate (tight VBV)", "cbr"},
      {GST_CCM_RATE_CONTROL_VBR, "Variable bitrate (average bitrate, looser VBV)", "vbr"},
      {GST_CCM_RATE_CONTROL_CQP, "Constant quantizer (see quantizer)", "cqp"},
      {0, nullptr, nullptr}};
  // Not "GstCcmRateControl": that is the ccmratecontrol element's type.
  if (g_once_init_enter(&type))
    g_once_init_leave(&type, g_enum_register_static("GstCcmVideoEncRateControl", values));
  return type;
}

}  // namespace

typedef struct {
  // Written by property setters (object lock); read by the streaming thread.
  GstCcmEncSettings settings;
  guint settings_serial;

  // Streaming thread only.
  gboolean opened;
  GstCcmEncSettings applied;
  guint applied_serial;
  GstVideoCodecState* input_state;
  GstVideoInfo open_info;  // input info with a nominal framerate where the caps had 0/1
  GstCcmHdrInfo hdr;
  guint64 frames_since_key;
  gboolean first_after_open;
  GstClockTime next_pts;  // for untimed frames
} GstCcmVideoEncPrivate;

G_DEFINE_ABSTRACT_TYPE_WITH_CODE(GstCcmVideoEnc, gst_ccm_video_enc, GST_TYPE_VIDEO_ENCODER,
                                 G_ADD_PRIVATE(GstCcmVideoEnc)
                                 GST_DEBUG_CATEGORY_INIT(ccm_video_enc_debug, "ccmvideoenc", 0,
                                                         "gst-ccm encoder base"))

static GstCcmVideoEncPrivate* priv_of(GstCcmVideoEnc* self) {
  return static_cast<GstCcmVideoEncPrivate*>(gst_ccm_video_enc_get_instance_private(self));
}

void gst_ccm_video_enc_get_settings(GstCcmVideoEnc* enc, GstCcmEncSettings* out) {
  g_return_if_fail(GST_IS_CCM_VIDEO_ENC(enc) && out);
  GST_OBJECT_LOCK(enc);
  *out = priv_of(enc)->settings;
  GST_OBJECT_UNLOCK(enc);
}

// ---- helpers run in the streaming thread -------------------------------------------

static GstClockTime frame_duration(const GstVideoInfo& info) {
  if (GST_VIDEO_INFO_FPS_N(&info) <= 0) return GST_CLOCK_TIME_NONE;
  return gst_util_uint64_scale_int(GST_SECOND, GST_VIDEO_INFO_FPS_D(&info), GST_VIDEO_INFO_FPS_N(&info));
}

static void update_latency(GstCcmVideoEnc* self) {
  auto* priv = priv_of(self);
  auto* klass = GST_CCM_VIDEO_ENC_GET_CLASS(self);
  const guint frames = klass->delay_frames ? klass->delay_frames(self) : 0;
  const GstClockTime duration = frame_duration(priv->open_info);
  const GstClockTime latency = GST_CLOCK_TIME_IS_VALID(duration) ? frames * duration : 0;
  GST_INFO_OBJECT(self, "latency %u frames = %" GST_TIME_FORMAT, frames, GST_TIME_ARGS(latency));
  gst_video_encoder_set_latency(GST_VIDEO_ENCODER(self), latency, latency);
}

void gst_ccm_video_enc_delay_changed(GstCcmVideoEnc* enc) {
  g_return_if_fail(GST_IS_CCM_VIDEO_ENC(enc));
  update_latency(enc);  // gst_video_encoder_set_latency posts the latency message
}

static gboolean open_encoder(GstCcmVideoEnc* self) {
  auto* priv = priv_of(self);
  auto* klass = GST_CCM_VIDEO_ENC_GET_CLASS(self);
  GST_OBJECT_LOCK(self);
  const GstCcmEncSettings settings = priv->settings;
  const guint serial = priv->settings_serial;
  GST_OBJECT_UNLOCK(self);
  if (!klass->open(self, &priv->open_info, &settings, &priv->hdr)) {
    GST_WARNING_OBJECT(self, "open failed");
    return FALSE;
  }
  priv->opened = TRUE;
  priv->applied = settings;
  priv->applied_serial = serial;
  priv->frames_since_key = 0;
  priv->first_after_open = TRUE;
  update_latency(self);
  return TRUE;
}

static void close_encoder(GstCcmVideoEnc* self) {
  auto* priv = priv_of(self);
  if (!priv->opened) return;
  GST_CCM_VIDEO_ENC_GET_CLASS(self)->close(self);
  priv->opened = FALSE;
}

static GstFlowReturn drain_encoder(GstCcmVideoEnc* self) {
  auto* priv = priv_of(self);
  if (!priv->opened) return GST_FLOW_OK;
  auto* klass = GST_CCM_VIDEO_ENC_GET_CLASS(self);
  return klass->drain ? klass->drain(self) : GST_FLOW_OK;
}

// Applies settings changed since the encoder was opened (or last reconfigured).
static GstFlowReturn apply_pending_settings(GstCcmVideoEnc* self) {
  auto* priv = priv_of(self);
  GST_OBJECT_LOCK(self);
  const guint serial = priv->settings_serial;
  const GstCcmEncSettings wanted = priv->settings;
  GST_OBJECT_UNLOCK(self);
  if (serial == priv->applied_serial) return GST_FLOW_OK;
  priv->applied_serial = serial;
  if (std::memcmp(&wanted, &priv->applied, sizeof wanted) == 0) return GST_FLOW_OK;

  auto* klass = GST_CCM_VIDEO_ENC_GET_CLASS(self);
  if (klass->reconfigure && klass->reconfigure(self, &wanted)) {
    GST_INFO_OBJECT(self, "reconfigured in place: bitrate %u -> %u kbit/s", priv->applied.bitrate, wanted.bitrate);
    priv->applied = wanted;
    update_latency(self);
    return GST_FLOW_OK;
  }
  GST_INFO_OBJECT(self, "library cannot apply the change in place: drain, close and reopen");
  const GstFlowReturn ret = drain_encoder(self);
  close_encoder(self);
  if (ret != GST_FLOW_OK && ret != GST_FLOW_EOS) return ret;
  return open_encoder(self) ? GST_FLOW_OK : GST_FLOW_ERROR;
}

// ---- GstVideoEncoder vfuncs -----------------------------------------------------------

static gboolean gst_ccm_video_enc_start(GstVideoEncoder* venc) {
  auto* priv = priv_of(GST_CCM_VIDEO_ENC(venc));
  priv->opened = FALSE;
  priv->next_pts = GST_CLOCK_TIME_NONE;
  return TRUE;
}

static gboolean gst_ccm_video_enc_stop(GstVideoEncoder* venc) {
  auto* self = GST_CCM_VIDEO_ENC(venc);
  auto* priv = priv_of(self);
  close_encoder(self);
  g_clear_pointer(&priv->input_state, gst_video_codec_state_unref);
  return TRUE;
}

static void parse_hdr(GstCaps* caps, GstCcmHdrInfo* hdr) {
  *hdr = GstCcmHdrInfo{};
  hdr->has_mastering_display = gst_video_mastering_display_info_from_caps(&hdr->mastering_display, caps);
  hdr->has_content_light_level = gst_video_content_light_level_from_caps(&hdr->content_light_level, caps);
}

static gboolean gst_ccm_video_enc_set_format(GstVideoEncoder* venc, GstVideoCodecState* state) {
  auto* self = GST_CCM_VIDEO_ENC(venc);
  auto* priv = priv_of(self);
  GST_DEBUG_OBJECT(self, "input caps %" GST_PTR_FORMAT, state->caps);
  if (priv->opened) {
    // New caps mid-stream: what is inside was encoded for the old format.
    drain_encoder(self);
    close_encoder(self);
  }
  g_clear_pointer(&priv->input_state, gst_video_codec_state_unref);
  priv->input_state = gst_video_codec_state_ref(state);
  priv->open_info = state->info;
  if (GST_VIDEO_INFO_FPS_N(&priv->open_info) <= 0) {
    // Variable or unknown rate (a raw .h264 decoded by GStreamer says 0/1): the
    // libraries need a rate for rate control, take the caps' maximum or 30/1.
    gint n = 0, d = 1;
    const GstStructure* s = gst_caps_get_structure(state->caps, 0);
    if (!gst_structure_get_fraction(s, "max-framerate", &n, &d) || n <= 0 || d <= 0) {
      n = kNominalFpsN;
      d = 1;
    }
    GST_INFO_OBJECT(self, "framerate 0/1: encoding at a nominal %d/%d", n, d);
    GST_VIDEO_INFO_FPS_N(&priv->open_info) = n;
    GST_VIDEO_INFO_FPS_D(&priv->open_info) = d;
  }
  parse_hdr(state->caps, &priv->hdr);
  return open_encoder(self);
}

static GstFlowReturn gst_ccm_video_enc_handle_frame(GstVideoEncoder* venc, GstVideoCodecFrame* frame) {
  auto* self = GST_CCM_VIDEO_ENC(venc);
  auto* priv = priv_of(self);
  if (!priv->opened) {
    gst_video_encoder_finish_frame(venc, frame);  // drops it: nothing to encode with
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("encoder is not open"), ("a frame arrived before usable caps"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  GstFlowReturn ret = apply_pending_settings(self);
  if (ret != GST_FLOW_OK) {
    gst_video_encoder_finish_frame(venc, frame);
    return ret;
  }

  // Untimed frames (variable-rate sources without timestamps) continue at the
  // nominal rate from the previous frame, so rate control and muxers see time.
  const GstClockTime duration = frame_duration(priv->open_info);
  if (!GST_CLOCK_TIME_IS_VALID(frame->pts))
    frame->pts = GST_CLOCK_TIME_IS_VALID(priv->next_pts) ? priv->next_pts : 0;
  if (!GST_CLOCK_TIME_IS_VALID(frame->duration)) frame->duration = duration;
  priv->next_pts = frame->pts + (GST_CLOCK_TIME_IS_VALID(frame->duration) ? frame->duration : 0);

  GstCcmFrameParams params{};
  params.qp = -1;
  const guint interval = priv->applied.keyframe_interval;
  params.force_key_frame = GST_VIDEO_CODEC_FRAME_IS_FORCE_KEYFRAME(frame) ||
                           (interval > 0 && !priv->first_after_open && priv->frames_since_key >= interval);
  if (const GstCcmQpMeta* meta = gst_buffer_get_ccm_qp_meta(frame->input_buffer)) {
    params.qp = meta->frame_qp;
    if (meta->offsets && meta->blocks_x && meta->blocks_y && meta->block_size) {
      params.qp_offsets = meta->offsets;
      params.qp_block_size = meta->block_size;
      params.qp_blocks_x = meta->blocks_x;
      params.qp_blocks_y = meta->blocks_y;
    }
  }
  // The first frame after open is a key frame whatever we ask; count it as one.
  priv->frames_since_key = (params.force_key_frame || priv->first_after_open) ? 1 : priv->frames_since_key + 1;
  priv->first_after_open = FALSE;
  if (params.force_key_frame)
    GST_DEBUG_OBJECT(self, "key frame requested on frame %u", frame->system_frame_number);

  return GST_CCM_VIDEO_ENC_GET_CLASS(self)->encode(self, frame, &params);
}

static GstFlowReturn gst_ccm_video_enc_finish(GstVideoEncoder* venc) {
  return drain_encoder(GST_CCM_VIDEO_ENC(venc));
}

static gboolean gst_ccm_video_enc_flush(GstVideoEncoder* venc) {
  auto* self = GST_CCM_VIDEO_ENC(venc);
  auto* priv = priv_of(self);
  priv->next_pts = GST_CLOCK_TIME_NONE;
  if (!priv->opened) return TRUE;
  // The base class drops the pending frames; the library's copies go with a close.
  close_encoder(self);
  return open_encoder(self);
}

// The proxy intersects with the peer's filter first, so a source that lists 4:4:4
// 10-bit before I420 (videotestsrc does) would get it: keep our template's order
// (cheapest, most widely decodable format first) in front.
static GstCaps* gst_ccm_video_enc_getcaps(GstVideoEncoder* venc, GstCaps* filter) {
  GstCaps* caps = gst_video_encoder_proxy_getcaps(venc, nullptr, nullptr);
  if (!filter) return caps;
  GstCaps* ordered = gst_caps_intersect_full(caps, filter, GST_CAPS_INTERSECT_FIRST);
  gst_caps_unref(caps);
  return ordered;
}

static gboolean gst_ccm_video_enc_propose_allocation(GstVideoEncoder* venc, GstQuery* query) {
  // Frames are mapped through GstVideoFrame, so any stride/offset layout works.
  gst_query_add_allocation_meta(query, GST_VIDEO_META_API_TYPE, nullptr);
  return GST_VIDEO_ENCODER_CLASS(gst_ccm_video_enc_parent_class)->propose_allocation(venc, query);
}

// ---- properties ---------------------------------------------------------------------------

static void gst_ccm_video_enc_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  auto* self = GST_CCM_VIDEO_ENC(object);
  auto* priv = priv_of(self);
  GST_OBJECT_LOCK(self);
  GstCcmEncSettings& s = priv->settings;
  switch (id) {
    case PROP_BITRATE: s.bitrate = g_value_get_uint(value); break;
    case PROP_RATE_CONTROL: s.rate_control = GstCcmRateControl(g_value_get_enum(value)); break;
    case PROP_QUANTIZER: s.quantizer = g_value_get_uint(value); break;
    case PROP_KEYFRAME_INTERVAL: s.keyframe_interval = g_value_get_uint(value); break;
    case PROP_SPEED_PRESET:
      s.speed_preset = G_VALUE_HOLDS_ENUM(value) ? g_value_get_enum(value) : g_value_get_int(value);
      break;
    case PROP_THREADS: s.threads = g_value_get_uint(value); break;
    case PROP_LOW_LATENCY: s.low_latency = g_value_get_boolean(value); break;
    default:
      GST_OBJECT_UNLOCK(self);
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
      return;
  }
  priv->settings_serial++;
  GST_OBJECT_UNLOCK(self);
}

static void gst_ccm_video_enc_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  auto* self = GST_CCM_VIDEO_ENC(object);
  auto* priv = priv_of(self);
  GST_OBJECT_LOCK(self);
  const GstCcmEncSettings s = priv->settings;
  GST_OBJECT_UNLOCK(self);
  switch (id) {
    case PROP_BITRATE: g_value_set_uint(value, s.bitrate); break;
    case PROP_RATE_CONTROL: g_value_set_enum(value, s.rate_control); break;
    case PROP_QUANTIZER: g_value_set_uint(value, s.quantizer); break;
    case PROP_KEYFRAME_INTERVAL: g_value_set_uint(value, s.keyframe_interval); break;
    case PROP_SPEED_PRESET:
      if (G_VALUE_HOLDS_ENUM(value)) g_value_set_enum(value, s.speed_preset);
      else g_value_set_int(value, s.speed_preset);
      break;
    case PROP_THREADS: g_value_set_uint(value, s.threads); break;
    case PROP_LOW_LATENCY: g_value_set_boolean(value, s.low_latency); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
}

static constexpr GParamFlags kLive =
    GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING);

// GObject does not inherit set/get_property into subclasses (g_object_base_class_init
// clears them), and a subclass-installed property is dispatched to the subclass's
// functions: route them to ours unless the subclass has its own (which chain up).
static void route_properties_to_base(GObjectClass* klass) {
  if (!klass->set_property) klass->set_property = gst_ccm_video_enc_set_property;
  if (!klass->get_property) klass->get_property = gst_ccm_video_enc_get_property;
}

void gst_ccm_video_enc_class_install_speed_preset(GstCcmVideoEncClass* klass, gint min, gint max, gint def,
                                                  const gchar* blurb) {
  route_properties_to_base(G_OBJECT_CLASS(klass));
  g_object_class_install_property(G_OBJECT_CLASS(klass), PROP_SPEED_PRESET,
                                  g_param_spec_int("speed-preset", "Speed preset", blurb, min, max, def, kLive));
}

void gst_ccm_video_enc_class_install_speed_preset_enum(GstCcmVideoEncClass* klass, GType type, gint def,
                                                       const gchar* blurb) {
  route_properties_to_base(G_OBJECT_CLASS(klass));
  g_object_class_install_property(G_OBJECT_CLASS(klass), PROP_SPEED_PRESET,
                                  g_param_spec_enum("speed-preset", "Speed preset", blurb, type, def, kLive));
}

void gst_ccm_video_enc_class_install_quantizer(GstCcmVideoEncClass* klass, guint max, guint def) {
  gchar* blurb = g_strdup_printf("Quantizer for rate-control=cqp, in the codec's scale (0-%u)", max);
  // The blurb lives as long as the class (forever): a static string would need
  // one per subclass, so intern it.
  const gchar* interned = g_intern_string(blurb);
  g_free(blurb);
  route_properties_to_base(G_OBJECT_CLASS(klass));
  g_object_class_install_property(
      G_OBJECT_CLASS(klass), PROP_QUANTIZER,
      g_param_spec_uint("quantizer", "Quantizer", interned, 0, max, MIN(def, max), kLive));
}

static void gst_ccm_video_enc_init(GstCcmVideoEnc* self) {
  auto* priv = priv_of(self);
  priv->settings.bitrate = kDefaultBitrate;
  priv->settings.rate_control = GST_CCM_RATE_CONTROL_CBR;
  priv->settings.quantizer = 28;
  priv->settings.keyframe_interval = 0;
  priv->settings.threads = 0;
  priv->settings.low_latency = TRUE;
  // speed_preset and quantizer: the subclass's defaults, read from its pspecs.
  if (GParamSpec* p = g_object_class_find_property(G_OBJECT_GET_CLASS(self), "speed-preset"))
    priv->settings.speed_preset =
        G_IS_PARAM_SPEC_ENUM(p) ? G_PARAM_SPEC_ENUM(p)->default_value : G_PARAM_SPEC_INT(p)->default_value;
  if (GParamSpec* p = g_object_class_find_property(G_OBJECT_GET_CLASS(self), "quantizer"))
    priv->settings.quantizer = G_PARAM_SPEC_UINT(p)->default_value;
  priv->next_pts = GST_CLOCK_TIME_NONE;
}

static void gst_ccm_video_enc_class_init(GstCcmVideoEncClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstVideoEncoderClass* venc_class = GST_VIDEO_ENCODER_CLASS(klass);
  gobject_class->set_property = gst_ccm_video_enc_set_property;
  gobject_class->get_property = gst_ccm_video_enc_get_property;

  venc_class->start = gst_ccm_video_enc_start;
  venc_class->stop = gst_ccm_video_enc_stop;
  venc_class->set_format = gst_ccm_video_enc_set_format;
  venc_class->handle_frame = gst_ccm_video_enc_handle_frame;
  venc_class->finish = gst_ccm_video_enc_finish;
  venc_class->flush = gst_ccm_video_enc_flush;
  venc_class->propose_allocation = gst_ccm_video_enc_propose_allocation;
  venc_class->getcaps = gst_ccm_video_enc_getcaps;

  g_object_class_install_property(
      gobject_class, PROP_BITRATE,
      g_param_spec_uint("bitrate", "Bitrate",
                        "Target bitrate in kbit/s for cbr and vbr; changes apply while PLAYING", 1, kMaxBitrate,
                        kDefaultBitrate, kLive));
  g_object_class_install_property(
      gobject_class, PROP_RATE_CONTROL,
      g_param_spec_enum("rate-control", "Rate control", "Rate-control mode", rate_control_get_type(),
                        GST_CCM_RATE_CONTROL_CBR, kLive));
  g_object_class_install_property(
      gobject_class, PROP_KEYFRAME_INTERVAL,
      g_param_spec_uint("keyframe-interval", "Key-frame interval",
                        "Frames between key frames (0 = the library's default); force-key-unit events ask for more",
                        0, G_MAXINT, 0, kLive));
  g_object_class_install_property(
      gobject_class, PROP_THREADS,
      g_param_spec_uint("threads", "Threads", "Worker threads (0 = the library's choice)", 0, 256, 0,
                        GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(
      gobject_class, PROP_LOW_LATENCY,
      g_param_spec_boolean("low-latency", "Low latency",
                           "No look-ahead, no frame reordering: every frame leaves as soon as it is encoded", TRUE,
                           GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)));

  gst_type_mark_as_plugin_api(GST_TYPE_CCM_VIDEO_ENC, GstPluginAPIFlags(0));
  gst_type_mark_as_plugin_api(rate_control_get_type(), GstPluginAPIFlags(0));
}
