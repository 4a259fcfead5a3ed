/**
 * SECTION:element-ccmratecontrol
 * @title: ccmratecontrol
 *
 * Rate control in front of an encoder: looks at every raw frame (SAD of 16x16
 * luma blocks against the previous frame, 64x64 block classes, complexity, scene
 * cuts; AVX2/AVX-512 chosen at run time), reads the size of every encoded frame
 * on the encoder's source pad, and steers the encoder to target-bitrate. With
 * mode=auto (the default) encoders whose own CBR does better at equal quality
 * (ccmx265enc, vp9enc: the catalogue's encoder-rate-first) keep it, with the
 * bitrate corrected by what they delivered against what they were given, and
 * key frames at our QP (ccmx265enc); the others get an R-λ model that sets each
 * frame's QP (mode=rlambda: GstCcmQpMeta for ccmx265enc/ccmsvtav1enc, min = max
 * quantizer for vp9enc/vp8enc) or the encoder's bitrate (x264enc frame by frame,
 * other encoders when the rate changes). Scene cuts force a key unit. Upstream QoS
 * (frames later than latency-budget) cuts the rate by 5% per late frame and
 * raises the encoder's speed preset; a custom event "ccm-bandwidth-estimate"
 * (field bitrate, bit/s) from either direction sets the target from the next
 * frame. Posts "ccm-ratecontrol" element messages (every message-interval
 * frames) with the numbers behind each decision.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 -m videotestsrc num-buffers=300 ! ccmratecontrol target-bitrate=1500 ! ccmx265enc ! h265parse ! matroskamux ! filesink location=out.mkv
 * gst-launch-1.0 videotestsrc num-buffers=300 ! ccmratecontrol target-bitrate=800 ! vp9enc deadline=1 cpu-used=8 ! webmmux ! filesink location=out.webm
 * gst-launch-1.0 videotestsrc num-buffers=300 ! ccmratecontrol target-bitrate=800 ! x264enc tune=zerolatency ! h264parse ! fakesink
 * ]|
 */
#include "ratecontrol/ccmratecontrol.h"

#include <gst/video/video.h>

#include <algorithm>
#include <cmath>

#include "memory/ccmdmabufpool.h"
#include "ratecontrol/luma_plane.h"
#include "ratecontrol/ratecontrol_private.h"
#if CCM_HAVE_GST_CUDA
#include <gst/cuda/gstcudamemory.h>
#endif

GST_DEBUG_CATEGORY(ccm_rate_control_debug);
#define GST_CAT_DEFAULT ccm_rate_control_debug

using namespace ccm::ratecontrol;

namespace {

constexpr double kQosCut = 0.95;             // per frame later than the budget, as specified
constexpr double kQosRecover = 1.02;         // per frame on time
constexpr double kQosFloor = 0.2;
constexpr int kQosLateFramesPerBoost = 3;    // late frames in a row before the preset speeds up
constexpr int kQosOnTimeFramesPerUnboost = 60;
constexpr int kMaxSpeedBoost = 3;

enum {
  PROP_0,
  PROP_TARGET_BITRATE,
  PROP_MIN_BITRATE,
  PROP_MAX_BITRATE,
  PROP_LATENCY_BUDGET,
  PROP_WINDOW,
  PROP_MAX_PSNR,
  PROP_SCENE_CUT,
  PROP_SCENE_CUT_THRESHOLD,
  PROP_MODE,
  PROP_MESSAGE_INTERVAL,
  PROP_ANALYSIS_ROW_STEP,
  PROP_ANALYSIS_THREADS,
  PROP_DMABUF_POOL,
  PROP_STATS,
  PROP_QOS,
};

}  // namespace

// The GType is named after the element, GstCcmRateControl, so that instances
// (ccmencbin's rate-control enum is GstCcmEncBinRateControl)
// are named ccmratecontrol0, ccmratecontrol1... as gst-launch users expect.
typedef GstCcmRateController GstCcmRateControl;
typedef GstCcmRateControllerClass GstCcmRateControlClass;

G_DEFINE_TYPE_WITH_CODE(GstCcmRateControl, gst_ccm_rate_controller, GST_TYPE_BASE_TRANSFORM,
                        GST_DEBUG_CATEGORY_INIT(ccm_rate_control_debug, "ccmratecontrol", 0,
                                                "gst-ccm rate control"))

// 4:2:0 as encoders take it, and 4:4:4 (ccmencbin's format for odd sizes on H.26x):
// only the luma plane is read.
#define FORMATS_STR "{ I420, NV12, Y444, I420_10LE, P010_10LE, Y444_10LE }"
#if CCM_HAVE_GST_CUDA
// CUDA memory first: when upstream can keep the frames on the GPU, the analysis runs there.
#define CAPS_STR                                                                          \
  GST_VIDEO_CAPS_MAKE_WITH_FEATURES(GST_CAPS_FEATURE_MEMORY_CUDA_MEMORY, FORMATS_STR) ";" \
  GST_VIDEO_CAPS_MAKE(FORMATS_STR)
#else
#define CAPS_STR GST_VIDEO_CAPS_MAKE(FORMATS_STR)
#endif

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(CAPS_STR));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(CAPS_STR));

static GType gst_ccm_rate_controller_mode_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {GST_CCM_RATE_CONTROLLER_MODE_RLAMBDA, "R-λ model sets each frame's QP or the encoder's bitrate", "rlambda"},
      {GST_CCM_RATE_CONTROLLER_MODE_PASSTHROUGH, "Analyse and report only; the encoder's own rate control decides",
       "passthrough"},
      {GST_CCM_RATE_CONTROLLER_MODE_ENCODER_RATE,
       "The encoder's own CBR (its adaptive quantisation, its frame QPs), its bitrate corrected until the target "
       "is spent; key frames on scene cuts",
       "encoder-rate"},
      {GST_CCM_RATE_CONTROLLER_MODE_AUTO,
       "encoder-rate where the catalogue measured it better for the encoder downstream, rlambda elsewhere", "auto"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstCcmRateControllerMode", values));
  return type;
}

// ---- helpers -------------------------------------------------------------------

static void drop_previous(Private* p) {
#if CCM_HAVE_GST_CUDA
  if (p->cuda) p->cuda->drop_previous();
#endif
  if (p->prev_buffer) {
    gst_video_frame_unmap(&p->prev_frame);
    gst_buffer_unref(p->prev_buffer);
    p->prev_buffer = nullptr;
  }
}

// ---- streaming ---------------------------------------------------------------------

// The frame's analysis (this thread's state only): 16x16 SAD and activity against
// the previous frame, in CUDA memory or in system memory, then the scene-cut test.
// False after posting an error.
static bool analyse_frame(GstCcmRateController* self, GstBuffer* buf, bool on_gpu, GstVideoFrame* frame,
                          const Settings& settings, bool* cut) {
  Private* p = self->priv;
  ccm::analysis::AnalysisOptions options;
  options.row_step = static_cast<int>(settings.row_step);
  options.threads = static_cast<int>(settings.threads);
  if (on_gpu) {
#if CCM_HAVE_GST_CUDA
    std::string error;
    if (!p->cuda->analyse(buf, p->info, options, p->analysis, error)) {
      p->cuda->drop_previous();
      GST_ELEMENT_ERROR(self, STREAM, FAILED, ("analysis of a frame in CUDA memory failed"), ("%s", error.c_str()));
      return false;
    }
#endif
  } else {
    const ccm::analysis::LumaPlane cur = ccm::gst::luma_plane_of(*frame);
    std::optional<ccm::analysis::LumaPlane> prev;
    if (p->prev_buffer) prev = ccm::gst::luma_plane_of(p->prev_frame);
    ccm::analysis::analyse_frame(cur, prev ? &*prev : nullptr, options, p->analysis);
  }
  ccm::analysis::SceneCutOptions sc = p->scene_cuts.options();
  sc.threshold_percent = settings.scene_threshold;
  p->scene_cuts.set_options(sc);
  *cut = p->scene_cuts.push(p->analysis).cut && settings.scene_cut;
  return true;
}

// Every mode but passthrough steers; which way is the adapter's family, set here
// before the frame's decision (outside the lock: properties are set). Returns
// whether the encoder is steered through its own rate control.
static bool take_or_release_control(Private* p, EncoderAdapter* adapter, const Settings& settings, double rate_bps) {
  const bool rlambda = settings.mode != GST_CCM_RATE_CONTROLLER_MODE_PASSTHROUGH;
  // auto: the encoder's own CBR where the catalogue measured it better, unless a
  // max-psnr cap asks for a QP floor only a per-frame QP can hold.
  const bool encoder_rate = settings.mode == GST_CCM_RATE_CONTROLLER_MODE_ENCODER_RATE ||
                            (settings.mode == GST_CCM_RATE_CONTROLLER_MODE_AUTO && adapter &&
                             adapter->prefers_encoder_rate() && settings.max_psnr <= 0);
  if (adapter && (p->applied_mode != settings.mode || !p->control_taken ||
                  (rlambda && p->applied_encoder_rate != encoder_rate))) {
    if (rlambda)
      adapter->take_control(rate_bps, encoder_rate);
    else if (p->control_taken)
      adapter->release_control(rate_bps);
    p->control_taken = rlambda;
    p->applied_mode = settings.mode;
    p->applied_encoder_rate = encoder_rate;
  }
  return encoder_rate;
}

// The frame's decision (p->lock held): its QP, its budget as a rate, whether it is
// a key frame. Fills rec; returns the rate to give the encoder for this frame.
static double decide_locked(Private* p, EncoderAdapter& adapter, FrameRecord& rec, bool cut, double rate_bps,
                            bool* force_key) {
  ccm::rc::FrameInfo fi;
  fi.id = rec.number;
  fi.complexity = rec.complexity;
  fi.activity = rec.activity;
  fi.scene_cut = cut;
  *force_key = cut && adapter.honours_key_units() && !adapter.hands_off();
  // The encoder makes its first frame a key frame whatever we ask.
  fi.key = *force_key || rec.number == 0;
  rec.decision = p->rc->decide(fi);
  rec.controlled = true;
  // Under encoder-rate key frames (the first and the cuts') still get our QP
  // where the encoder takes one per frame: x265's own CBR made the first one 15
  // frame shares and a cut's 6, and BD-rate on three of the four validation
  // clips was 2-14% better with ours (the static camera's 42% worse: a scene
  // that lives on a fine first picture; docs/benchmarks.md).
  rec.qp_applied = adapter.per_frame_qp() || (adapter.key_frame_qp() && rec.decision.key);
  // x264enc's bitrate follows each frame's budget; an encoder on its own CBR
  // gets the rate in force; both corrected by the measured gain.
  const bool per_budget = adapter.family() == EncoderFamily::Bitrate && !rec.decision.key;
  const double frame_rate_bps = (per_budget ? rec.decision.target_bits * p->rc->config().fps : rate_bps) * p->bitrate_gain;
  rec.given_bps = frame_rate_bps;
  p->last_target_bps = rate_bps;
  return frame_rate_bps;
}

// A scene cut the encoder should start with a key frame: a downstream
// force-key-unit event for this frame, ahead of it.
static void push_key_unit(GstCcmRateController* self, GstClockTime pts) {
  GstBaseTransform* trans = GST_BASE_TRANSFORM(self);
  GstSegment* seg = &trans->segment;
  const GstClockTime running = gst_segment_to_running_time(seg, GST_FORMAT_TIME, pts);
  const GstClockTime stream = gst_segment_to_stream_time(seg, GST_FORMAT_TIME, pts);
  GST_DEBUG_OBJECT(self, "scene cut at %" GST_TIME_FORMAT ": forcing a key unit", GST_TIME_ARGS(pts));
  gst_pad_push_event(GST_BASE_TRANSFORM_SRC_PAD(trans),
                     gst_video_event_new_downstream_force_key_unit(pts, stream, running, TRUE, 0));
}

// Analysis, decision (applied to the encoder after it: see
// EncoderAdapter::apply_frame), the record the encoded size is matched to later.
static GstFlowReturn gst_ccm_rate_controller_transform_ip(GstBaseTransform* trans, GstBuffer* buf) {
  auto* self = GST_CCM_RATE_CONTROLLER(trans);
  Private* p = self->priv;
  if (!p->have_info) return GST_FLOW_NOT_NEGOTIATED;

  if (!p->adapter && p->frames_in >= p->next_search) find_encoder(self);

  bool on_gpu = false;
#if CCM_HAVE_GST_CUDA
  on_gpu = ccm::gst::CudaFrameAnalyser::is_cuda_buffer(buf);
  if (on_gpu && !p->cuda) p->cuda = std::make_unique<ccm::gst::CudaFrameAnalyser>();
#endif
  GstVideoFrame frame;
  // NO_REF: a mapped frame otherwise holds a second ref, and the buffer would not
  // be writable when the QP meta goes on it. prev_buffer holds our own ref.
  if (!on_gpu && !gst_video_frame_map(&frame, &p->info, buf, static_cast<GstMapFlags>(GST_MAP_READ | static_cast<int>(GST_VIDEO_FRAME_MAP_FLAG_NO_REF)))) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("could not map the video frame"), (nullptr));
    return GST_FLOW_ERROR;
  }
  Settings settings;
  {
    std::lock_guard<std::mutex> guard(p->lock);
    settings = p->settings;
  }

  const gint64 t0 = g_get_monotonic_time();
  bool cut = false;
  if (!analyse_frame(self, buf, on_gpu, &frame, settings, &cut)) return GST_FLOW_ERROR;
  const gint64 t1 = g_get_monotonic_time();

  const GstClockTime pts = GST_BUFFER_PTS(buf);
  FrameRecord rec;
  rec.number = p->frames_in++;
  rec.pts = pts;
  rec.t_in_us = t1;
  rec.mafd = p->analysis.mafd;
  rec.complexity = p->analysis.complexity;
  rec.activity = p->analysis.spatial_activity;
  rec.skip = p->analysis.skip_blocks;
  rec.fast = p->analysis.fast_blocks;
  rec.full = p->analysis.full_blocks;
  rec.scene_cut = cut;
  std::shared_ptr<EncoderAdapter> adapter;
  GstStructure* no_encoder_message = nullptr;
  bool force_key = false;
  int boost = 0;
  double rate_bps = 0, frame_rate_bps = 0;
  {
    std::lock_guard<std::mutex> guard(p->lock);
    adapter = p->adapter;
    if (p->rc && p->settings_dirty) apply_settings_locked(self);
    if (p->rc) p->rc->set_rate_scale(p->qos_scale);
    rate_bps = p->rc ? p->rc->effective_bitrate() : requested_bps(p);
  }
  const bool rlambda = settings.mode != GST_CCM_RATE_CONTROLLER_MODE_PASSTHROUGH;
  take_or_release_control(p, adapter.get(), settings, rate_bps);
  {
    std::lock_guard<std::mutex> guard(p->lock);
    p->analysis_us_total += static_cast<double>(t1 - t0);
    p->analysed_on_gpu = on_gpu;
    if (cut) ++p->scene_cut_count;
    boost = p->wanted_boost;
    if (adapter && rlambda && p->rc) frame_rate_bps = decide_locked(p, *adapter, rec, cut, rate_bps, &force_key);
    rec.rate_bps = rate_bps;
    if (adapter) p->in_flight.push_back(rec);
    while (p->in_flight.size() > 512) p->in_flight.pop_front();
    // Without an encoder there is no encoded size to wait for: report the analysis now.
    if (!adapter && p->settings.message_interval > 0 && rec.number % p->settings.message_interval == 0)
      no_encoder_message = frame_message_locked(self, rec, 0, false, t1);
  }
  if (no_encoder_message)
    gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), no_encoder_message));

  if (adapter && rlambda) {
    adapter->apply_frame(buf, rec.qp_applied ? rec.decision.qp : -1, frame_rate_bps, rate_bps);
    if (boost != p->applied_boost) p->applied_boost = adapter->set_speed_boost(boost);
  }
  if (force_key && rlambda) push_key_unit(self, pts);

  // The frame stays mapped as the next one's previous: no copy of its pixels.
  // Our ref is taken only now, after the meta went on (the buffer must be writable).
#if CCM_HAVE_GST_CUDA
  if (on_gpu) {
    p->cuda->keep_as_previous(buf);
    return GST_FLOW_OK;
  }
#endif
  drop_previous(p);
  p->prev_buffer = gst_buffer_ref(buf);
  p->prev_frame = frame;
  return GST_FLOW_OK;
}

static gboolean gst_ccm_rate_controller_set_caps(GstBaseTransform* trans, GstCaps* incaps, GstCaps*) {
  auto* self = GST_CCM_RATE_CONTROLLER(trans);
  Private* p = self->priv;
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, incaps)) return FALSE;
  drop_previous(p);
  p->scene_cuts.reset();
  p->info = info;
  p->have_info = true;
  const double raw_kbps = GST_VIDEO_INFO_WIDTH(&info) * GST_VIDEO_INFO_HEIGHT(&info) * 1.5 *
                          (GST_VIDEO_INFO_COMP_DEPTH(&info, 0) > 8 ? 16 : 8) * nominal_fps(info) / 1000.0;
  guint target_kbps;
  {
    std::lock_guard<std::mutex> guard(p->lock);
    target_kbps = p->settings.target_kbps;
    if (p->rc) make_controller_locked(self);
  }
  if (target_kbps > raw_kbps)
    GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
                        ("target-bitrate=%u kbit/s is more than the raw video (%.0f kbit/s)", target_kbps, raw_kbps),
                        ("the encoder will run at its best quality and the rate will stay below the target"));
  return TRUE;
}

// A bandwidth estimate event: the new target from the next frame.
static void handle_bandwidth_estimate(GstCcmRateController* self, GstEvent* event) {
  double bps = -1;
  if (!gst_ccm_bandwidth_estimate_parse(event, &bps)) return;
  if (!gst_ccm_bandwidth_estimate_valid(bps)) {
    GST_ELEMENT_WARNING(self, STREAM, FAILED, ("ignoring a " GST_CCM_BANDWIDTH_ESTIMATE_EVENT " event"),
                        ("bitrate must be a number of bit/s between %.0f and %.0f (got %s); the target stays",
                         GST_CCM_BANDWIDTH_ESTIMATE_MIN_BPS, GST_CCM_BANDWIDTH_ESTIMATE_MAX_BPS,
                         bps < 0 ? "no usable bitrate field" : "a value out of range"));
    return;
  }
  Private* p = self->priv;
  std::lock_guard<std::mutex> guard(p->lock);
  GST_DEBUG_OBJECT(self, "bandwidth estimate %.0f bit/s", bps);
  p->estimate_bps = bps;
  p->settings_dirty = true;
}

static gboolean gst_ccm_rate_controller_sink_event(GstBaseTransform* trans, GstEvent* event) {
  auto* self = GST_CCM_RATE_CONTROLLER(trans);
  Private* p = self->priv;
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_OOB:
    case GST_EVENT_CUSTOM_BOTH:
    case GST_EVENT_CUSTOM_BOTH_OOB:
      handle_bandwidth_estimate(self, event);
      break;
    case GST_EVENT_FLUSH_STOP: {
      drop_previous(p);
      p->scene_cuts.reset();
      std::lock_guard<std::mutex> guard(p->lock);
      p->in_flight.clear();
      if (p->rc) p->rc->clear_pending();
      break;
    }
    default: break;
  }
  return GST_BASE_TRANSFORM_CLASS(gst_ccm_rate_controller_parent_class)->sink_event(trans, event);
}

static gboolean gst_ccm_rate_controller_src_event(GstBaseTransform* trans, GstEvent* event) {
  auto* self = GST_CCM_RATE_CONTROLLER(trans);
  Private* p = self->priv;
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CUSTOM_UPSTREAM:
    case GST_EVENT_CUSTOM_BOTH:
    case GST_EVENT_CUSTOM_BOTH_OOB:
      handle_bandwidth_estimate(self, event);
      break;
    case GST_EVENT_QOS: {
      GstQOSType type;
      gdouble proportion;
      GstClockTimeDiff diff;
      GstClockTime timestamp;
      gst_event_parse_qos(event, &type, &proportion, &diff, &timestamp);
      std::lock_guard<std::mutex> guard(p->lock);
      if (!p->settings.qos) break;
      const GstClockTimeDiff budget = static_cast<GstClockTimeDiff>(p->settings.latency_ms) * GST_MSECOND;
      if (diff > budget) {
        // Late beyond the budget: 5% less rate for every such frame, and after a
        // few in a row a faster encoder preset.
        p->qos_scale = std::max(kQosFloor, p->qos_scale * kQosCut);
        p->on_time_streak = 0;
        if (++p->late_streak >= kQosLateFramesPerBoost && p->wanted_boost < kMaxSpeedBoost) {
          ++p->wanted_boost;
          p->late_streak = 0;
        }
      } else {
        p->late_streak = 0;
        p->qos_scale = std::min(1.0, p->qos_scale * kQosRecover);
        if (++p->on_time_streak >= kQosOnTimeFramesPerUnboost && p->wanted_boost > 0) {
          --p->wanted_boost;
          p->on_time_streak = 0;
        }
      }
      GST_LOG_OBJECT(self, "QoS diff %" G_GINT64_FORMAT " ns: rate scale %.3f, speed boost %d", diff, p->qos_scale,
                     p->wanted_boost);
      break;
    }
    default: break;
  }
  return GST_BASE_TRANSFORM_CLASS(gst_ccm_rate_controller_parent_class)->src_event(trans, event);
}

// In place: the allocation query belongs to downstream (the encoder's pool, a
// DMABuf pool), not to us. Where the encoder offers only a generic system-memory
// pool (or none), we offer ccmdmabufpool so the source writes aligned fd memory the
// encoder reads as it is. We keep the previous frame, so one more buffer.
static gboolean gst_ccm_rate_controller_propose_allocation(GstBaseTransform* trans, GstQuery*, GstQuery* query) {
  if (!gst_pad_peer_query(GST_BASE_TRANSFORM_SRC_PAD(trans), query)) return FALSE;
  bool offer_pool;
  {
    std::lock_guard<std::mutex> guard(GST_CCM_RATE_CONTROLLER(trans)->priv->lock);
    offer_pool = GST_CCM_RATE_CONTROLLER(trans)->priv->settings.dmabuf_pool;
  }
  if (offer_pool) ccm_propose_dmabuf_pool(GST_OBJECT(trans), query, -1);
  for (guint i = 0; i < gst_query_get_n_allocation_pools(query); ++i) {
    GstBufferPool* pool = nullptr;
    guint size = 0, min = 0, max = 0;
    gst_query_parse_nth_allocation_pool(query, i, &pool, &size, &min, &max);
    gst_query_set_nth_allocation_pool(query, i, pool, size, min + 1, max == 0 ? 0 : std::max(max, min + 1));
    if (pool) gst_object_unref(pool);
  }
  if (gst_query_get_n_allocation_pools(query) == 0) {
    // Nobody proposed a pool: ask for one more buffer in upstream's own.
    GstCaps* caps = nullptr;
    gboolean need_pool = FALSE;
    gst_query_parse_allocation(query, &caps, &need_pool);
    GstVideoInfo info;
    if (caps && gst_video_info_from_caps(&info, caps))
      gst_query_add_allocation_pool(query, nullptr, static_cast<guint>(GST_VIDEO_INFO_SIZE(&info)), 1, 0);
  }
  return TRUE;
}

static gboolean gst_ccm_rate_controller_start(GstBaseTransform* trans) {
  auto* self = GST_CCM_RATE_CONTROLLER(trans);
  Private* p = self->priv;
  p->frames_in = 0;
  p->next_search = 0;
  p->warned_no_encoder = false;
  p->control_taken = false;
  p->applied_boost = 0;
  std::lock_guard<std::mutex> guard(p->lock);
  p->frames_out = p->key_frames = p->scene_cut_count = p->bytes_out = 0;
  p->window_bits.clear();
  p->window_wall.clear();
  p->first_pts = GST_CLOCK_TIME_NONE;
  p->qos_scale = 1.0;
  p->wanted_boost = 0;
  p->bitrate_gain = 1.0;
  p->delivered_bits = p->given_bits = 0;
  p->delivery_frames = 0;
  p->gain_rate_bps = 0;
  p->gain_rate_since = GST_CLOCK_TIME_NONE;
  p->analysis_us_total = 0;
  p->rc.reset();
  return TRUE;
}

static gboolean gst_ccm_rate_controller_stop(GstBaseTransform* trans) {
  auto* self = GST_CCM_RATE_CONTROLLER(trans);
  Private* p = self->priv;
  remove_probe(self);
  drop_previous(p);
#if CCM_HAVE_GST_CUDA
  p->cuda.reset();  // its device memory and context
#endif
  p->have_info = false;
  p->scene_cuts.reset();
  return TRUE;
}

// ---- properties ------------------------------------------------------------------

static GstStructure* make_stats(GstCcmRateController* self) {
  Private* p = self->priv;
  std::lock_guard<std::mutex> guard(p->lock);
  const double analysis_ms = p->frames_in ? p->analysis_us_total / p->frames_in / 1000.0 : 0.0;
  return gst_structure_new(
      "ccm-ratecontrol-stats", "encoder", G_TYPE_STRING, p->adapter ? p->adapter->factory().c_str() : "",
      "family", G_TYPE_STRING, p->adapter ? ccm::gst::to_string(p->adapter->family()) : "none", "codec",
      G_TYPE_STRING, p->adapter ? ccm::catalog::to_string(p->adapter->codec()) : "", "isa", G_TYPE_STRING,
      p->analysed_on_gpu ? "cuda" : ccm::analysis::to_string(ccm::analysis::best_isa()), "frames-in", G_TYPE_UINT64, p->frames_in, "frames-out",
      G_TYPE_UINT64, p->frames_out, "key-frames", G_TYPE_UINT64, p->key_frames, "scene-cuts", G_TYPE_UINT64,
      p->scene_cut_count, "bytes-out", G_TYPE_UINT64, p->bytes_out, "target-kbps", G_TYPE_DOUBLE,
      (p->rc ? p->rc->effective_bitrate() : requested_bps(p)) / 1000.0, "bitrate-kbps", G_TYPE_DOUBLE,
      p->bitrate_kbps, "fps", G_TYPE_DOUBLE, p->out_fps, "qp", G_TYPE_INT, p->last_qp, "lambda", G_TYPE_DOUBLE,
      p->last_lambda, "buffer-bits", G_TYPE_DOUBLE, p->last_buffer, "qos-rate-scale", G_TYPE_DOUBLE, p->qos_scale,
      "speed-boost", G_TYPE_INT, p->wanted_boost, "analysis-ms", G_TYPE_DOUBLE, analysis_ms, "at-min-qp",
      G_TYPE_BOOLEAN, p->last_at_min_qp, nullptr);
}

static void gst_ccm_rate_controller_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  auto* self = GST_CCM_RATE_CONTROLLER(object);
  Private* p = self->priv;
  std::unique_lock<std::mutex> guard(p->lock);
  Settings& s = p->settings;
  switch (id) {
    case PROP_TARGET_BITRATE: {
      s.target_kbps = g_value_get_uint(value);  // 1..kAbsurdKbps: GObject refuses the rest (the pspec's range)
      p->estimate_bps = 0;  // the user's word replaces the last estimate
      break;
    }
    case PROP_MIN_BITRATE: s.min_kbps = g_value_get_uint(value); break;
    case PROP_MAX_BITRATE: s.max_kbps = g_value_get_uint(value); break;
    case PROP_LATENCY_BUDGET: s.latency_ms = g_value_get_uint(value); break;
    case PROP_WINDOW: s.window = g_value_get_uint(value); break;
    case PROP_MAX_PSNR: s.max_psnr = g_value_get_double(value); break;
    case PROP_SCENE_CUT: s.scene_cut = g_value_get_boolean(value); break;
    case PROP_SCENE_CUT_THRESHOLD: s.scene_threshold = g_value_get_double(value); break;
    case PROP_MODE: s.mode = static_cast<GstCcmRateControllerMode>(g_value_get_enum(value)); break;
    case PROP_MESSAGE_INTERVAL: s.message_interval = g_value_get_uint(value); break;
    case PROP_ANALYSIS_ROW_STEP: s.row_step = g_value_get_uint(value); break;
    case PROP_ANALYSIS_THREADS: s.threads = g_value_get_uint(value); break;
    case PROP_DMABUF_POOL: s.dmabuf_pool = g_value_get_boolean(value); break;
    case PROP_QOS: s.qos = g_value_get_boolean(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); return;
  }
  if (s.min_kbps > 0 && s.max_kbps > 0 && s.min_kbps > s.max_kbps) {
    const guint lo = s.max_kbps, hi = s.min_kbps;
    s.min_kbps = lo;
    s.max_kbps = hi;
    guard.unlock();
    GST_ELEMENT_WARNING(self, RESOURCE, SETTINGS,
                        ("min-bitrate was above max-bitrate: using %u..%u kbit/s", lo, hi), (nullptr));
    guard.lock();
  }
  p->settings_dirty = true;
}

static void gst_ccm_rate_controller_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  auto* self = GST_CCM_RATE_CONTROLLER(object);
  Private* p = self->priv;
  if (id == PROP_STATS) {
    g_value_take_boxed(value, make_stats(self));
    return;
  }
  std::lock_guard<std::mutex> guard(p->lock);
  const Settings& s = p->settings;
  switch (id) {
    case PROP_TARGET_BITRATE: g_value_set_uint(value, s.target_kbps); break;
    case PROP_MIN_BITRATE: g_value_set_uint(value, s.min_kbps); break;
    case PROP_MAX_BITRATE: g_value_set_uint(value, s.max_kbps); break;
    case PROP_LATENCY_BUDGET: g_value_set_uint(value, s.latency_ms); break;
    case PROP_WINDOW: g_value_set_uint(value, s.window); break;
    case PROP_MAX_PSNR: g_value_set_double(value, s.max_psnr); break;
    case PROP_SCENE_CUT: g_value_set_boolean(value, s.scene_cut); break;
    case PROP_SCENE_CUT_THRESHOLD: g_value_set_double(value, s.scene_threshold); break;
    case PROP_MODE: g_value_set_enum(value, s.mode); break;
    case PROP_MESSAGE_INTERVAL: g_value_set_uint(value, s.message_interval); break;
    case PROP_ANALYSIS_ROW_STEP: g_value_set_uint(value, s.row_step); break;
    case PROP_ANALYSIS_THREADS: g_value_set_uint(value, s.threads); break;
    case PROP_DMABUF_POOL: g_value_set_boolean(value, s.dmabuf_pool); break;
    case PROP_QOS: g_value_set_boolean(value, s.qos); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
}

static void gst_ccm_rate_controller_finalize(GObject* object) {
  auto* self = GST_CCM_RATE_CONTROLLER(object);
  remove_probe(self);
  drop_previous(self->priv);
  delete self->priv;
  G_OBJECT_CLASS(gst_ccm_rate_controller_parent_class)->finalize(object);
}

static void gst_ccm_rate_controller_class_init(GstCcmRateControllerClass* klass) {
  auto* gobject_class = G_OBJECT_CLASS(klass);
  auto* element_class = GST_ELEMENT_CLASS(klass);
  auto* trans_class = GST_BASE_TRANSFORM_CLASS(klass);
  gobject_class->set_property = gst_ccm_rate_controller_set_property;
  gobject_class->get_property = gst_ccm_rate_controller_get_property;
  gobject_class->finalize = gst_ccm_rate_controller_finalize;

  const auto live = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(
      gobject_class, PROP_TARGET_BITRATE,
      g_param_spec_uint("target-bitrate", "Target bitrate",
                        "Target rate in kbit/s (up to 10 Gbit/s); a ccm-bandwidth-estimate event replaces it "
                        "until the next change",
                        1, kAbsurdKbps, kDefaultTargetKbps, live));
  g_object_class_install_property(
      gobject_class, PROP_MIN_BITRATE,
      g_param_spec_uint("min-bitrate", "Minimum bitrate",
                        "Lowest rate in kbit/s that estimates and QoS may push the target to (0 = none)", 0,
                        G_MAXUINT, 0, live));
  g_object_class_install_property(
      gobject_class, PROP_MAX_BITRATE,
      g_param_spec_uint("max-bitrate", "Maximum bitrate",
                        "Highest rate in kbit/s that estimates may raise the target to (0 = none)", 0, G_MAXUINT, 0,
                        live));
  g_object_class_install_property(
      gobject_class, PROP_LATENCY_BUDGET,
      g_param_spec_uint("latency-budget", "Latency budget",
                        "Milliseconds of sending time a frame may queue: bounds the leaky bucket (rate x budget) and "
                        "the QoS lateness beyond which the rate is cut",
                        1, 10000, kDefaultLatencyMs, live));
  g_object_class_install_property(
      gobject_class, PROP_WINDOW,
      g_param_spec_uint("window", "Smoothing window", "Frames over which a surplus or deficit of bits is spread", 1,
                        3000, kDefaultWindow, live));
  g_object_class_install_property(
      gobject_class, PROP_MAX_PSNR,
      g_param_spec_double("max-psnr", "Maximum PSNR",
                          "Stop spending bits once the estimated PSNR-Y passes this many dB (0 = no cap)", 0, 100, 0,
                          live));
  g_object_class_install_property(
      gobject_class, PROP_SCENE_CUT,
      g_param_spec_boolean("scene-cut", "Scene cuts", "Force a key unit and reset the model at scene cuts", TRUE,
                           live));
  g_object_class_install_property(
      gobject_class, PROP_SCENE_CUT_THRESHOLD,
      g_param_spec_double("scene-cut-threshold", "Scene-cut threshold",
                          "Scene score in percent (FFmpeg scdet's scale) at which a frame can be a cut", 0, 100,
                          kDefaultSceneThreshold, live));
  g_object_class_install_property(
      gobject_class, PROP_MODE,
      g_param_spec_enum("mode", "Mode",
                        "rlambda: set each frame's QP (or the encoder's bitrate frame by frame); encoder-rate: the "
                        "encoder's own CBR with its bitrate corrected; auto: whichever measured better for the "
                        "encoder downstream; passthrough: analyse and report only",
                        gst_ccm_rate_controller_mode_get_type(), GST_CCM_RATE_CONTROLLER_MODE_AUTO, live));
  g_object_class_install_property(
      gobject_class, PROP_MESSAGE_INTERVAL,
      g_param_spec_uint("message-interval", "Message interval",
                        "Post a ccm-ratecontrol element message every this many frames (0 = none)", 0, G_MAXUINT,
                        kDefaultMessageInterval, live));
  g_object_class_install_property(
      gobject_class, PROP_ANALYSIS_ROW_STEP,
      g_param_spec_uint("analysis-row-step", "Analysis row step",
                        "Analyse every Nth luma row of each block (1 = all; 2 or 4 read half or a quarter of the "
                        "bytes, for 4K and above)",
                        1, 16, 1, live));
  g_object_class_install_property(
      gobject_class, PROP_ANALYSIS_THREADS,
      g_param_spec_uint("analysis-threads", "Analysis threads",
                        "Threads sharing one frame's analysis (identical results; one core reads about 9 GB/s, "
                        "a 4K60 frame pair is 16.6 MB)",
                        1, 64, 1, live));
  g_object_class_install_property(
      gobject_class, PROP_DMABUF_POOL,
      g_param_spec_boolean("dmabuf-pool", "DMABuf pool",
                           "Offer upstream a pool of 256-byte aligned DMABuf/memfd frames (ccmdmabufpool) when the "
                           "encoder downstream has no pool of its own",
                           TRUE, static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)));
  // GstBaseTransform's own "qos" (drop late frames, off) would tell a lie: we
  // always read QoS events, to cut the rate and speed the encoder up, and never
  // drop a frame for them. This one says so, and turns it off.
  g_object_class_install_property(
      gobject_class, PROP_QOS,
      g_param_spec_boolean("qos", "QoS",
                           "React to QoS events from downstream: frames later than latency-budget cut the rate "
                           "(5% each, down to 20%) and speed the encoder up; no frame is ever dropped",
                           TRUE, static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                                          GST_PARAM_MUTABLE_PLAYING)));
  g_object_class_install_property(
      gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "ccm-ratecontrol-stats: encoder, family, codec, isa, frames-in, frames-out, key-frames, "
                         "scene-cuts, bytes-out, target-kbps, bitrate-kbps, fps, qp, lambda, buffer-bits, "
                         "qos-rate-scale, speed-boost, analysis-ms",
                         GST_TYPE_STRUCTURE, static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "ccm rate control", "Filter/Analyzer/Video",
      "Per-frame R-λ rate control from SIMD frame analysis, encoded sizes, QoS and bandwidth estimates",
      "gst-ccm");

  trans_class->transform_ip = gst_ccm_rate_controller_transform_ip;
  trans_class->set_caps = gst_ccm_rate_controller_set_caps;
  trans_class->sink_event = gst_ccm_rate_controller_sink_event;
  trans_class->src_event = gst_ccm_rate_controller_src_event;
  trans_class->propose_allocation = gst_ccm_rate_controller_propose_allocation;
  trans_class->start = gst_ccm_rate_controller_start;
  trans_class->stop = gst_ccm_rate_controller_stop;
  trans_class->passthrough_on_same_caps = FALSE;
  trans_class->transform_ip_on_passthrough = FALSE;
}

static void gst_ccm_rate_controller_init(GstCcmRateController* self) {
  self->priv = new Private();
  gst_base_transform_set_in_place(GST_BASE_TRANSFORM(self), TRUE);
  gst_base_transform_set_passthrough(GST_BASE_TRANSFORM(self), FALSE);
  // QoS events are ours to read (src_event); we never drop frames for them.
  gst_base_transform_set_qos_enabled(GST_BASE_TRANSFORM(self), FALSE);
}
