/**
 * SECTION:element-ccmsvtav1enc
 * @title: ccmsvtav1enc
 *
 * AV1 encoder on SVT-AV1 for live use: low-delay prediction, a QP per picture
 * from our own rate controller (so `bitrate` changes apply at the next picture,
 * without a key frame), GstCcmQpMeta above it, key frames on request.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=60 ! video/x-raw,width=640,height=360 ! ccmsvtav1enc bitrate=1000 ! av1parse ! matroskamux ! filesink location=out.mkv
 * ]|
 */
// ccmsvtav1enc: GstCcmVideoEnc on SVT-AV1 1.4. See ccmsvtav1enc.h for the why,
// docs/encoders.md for the measurements behind the choices.
//
// Two ways to run the library:
// - low-latency=true (default): low-delay prediction (no reordering, no look-ahead),
//   library in constant-QP mode with a QP per picture (use_qp_file) chosen by
//   QpRateController for cbr/vbr (a slow base QP, the layer offsets on top),
//   `quantizer` for cqp, GstCcmQpMeta above both.
//   SVT keeps exactly one picture before releasing the previous one; behind a live
//   source we wait for it, so the element's delay is one frame (behind a file,
//   four: throughput). A requested key frame that is not the library's own
//   periodic one restarts the library at that picture.
// - low-latency=false: random access (mini-GOP 16, look-ahead 16) with SVT's own
//   rate control; a bitrate change reopens the library (the base does it).
//
// Packets are matched to frames by pts: the library gets the frame's
// system_frame_number as pts (p_app_private must stay NULL: SVT parses it as a
// private-data list).
#include "enc/ccmsvtav1enc.h"

#include "rc/qp_rate_controller.h"

// SVT-AV1 defines TRUE and FALSE as glib does, in its own words: keep glib's.
#pragma push_macro("TRUE")
#pragma push_macro("FALSE")
#undef TRUE
#undef FALSE
#include <EbSvtAv1Enc.h>
#undef TRUE
#undef FALSE
#pragma pop_macro("TRUE")
#pragma pop_macro("FALSE")
#include <gst/video/video.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(ccm_svt_av1_enc_debug);
#define GST_CAT_DEFAULT ccm_svt_av1_enc_debug

namespace {

// 1080p at 25-30 fps in real time on 2 cores needs preset 12 (measured: preset 10
// gives 26-33 fps, 12 gives 45-59 fps on the street clip); see docs/encoders.md.
constexpr gint kDefaultPreset = 12;
constexpr guint kQpMax = 63;
constexpr guint kDefaultQuantizer = 35;
// SVT-AV1 1.4.1 limits (svt_av1_verify_settings): 4:2:0 needs even sizes.
constexpr gint kMinSize = 64;
constexpr gint kMaxWidth = 16384;
constexpr gint kMaxHeight = 8704;
// Pictures SVT-AV1 1.4.1 holds before releasing a packet, measured by feeding one
// picture at a time: low delay 1; random access with mini-GOP 16 and look-ahead 16:
// 19 in CQP, 36 with its own rate control (it extends the look-ahead).
constexpr guint kLowDelayHeld = 1;
// In low delay we wait for the library down to this many pictures inside: one
// behind a live source (the latency it reports), four behind a non-live one (a
// file), where nobody waits for a picture and SVT needs several in flight to keep
// every core busy (measured at 1080p preset 12: 1 -> 35-41 fps, 2 -> 45-49,
// 4 -> 54-55, unbounded -> 53-55).
constexpr guint kOfflineInFlight = 4;
constexpr guint kRandomAccessHeldCqp = 19;
constexpr guint kRandomAccessHeldRc = 36;
constexpr guint kRandomAccessLevels = 4;
constexpr guint kRandomAccessLookAhead = 16;
// Low delay codes pictures in temporal layers: with 3 levels an 8-picture pattern
// whose base layer (every 8th picture after a key frame; the pattern restarts at
// every key frame, periodic or forced) the later pictures reference. SVT's own CQP
// gives each layer a QP offset; with a QP per picture (use_qp_file) it takes ours
// flat, which cost 18-31% BD-rate (PSNR-Y) against its own CQP on the validation
// clips (broadcast, slideshow at 640x360, preset 12: docs/benchmarks.md). Adding
// these offsets to the QP of every picture but a key frame gives that back (-4% to
// +0% against its own CQP). Measured, not taken from SVT's tables: its own vary with
// the QP and come from rate factors.
constexpr guint kLowDelayLevels = 3;
constexpr std::array<int, kLowDelayLevels + 1> kLowDelayLayerQpOffset = {-6, -2, 1, 3};

// The temporal layer of the picture `since_key` pictures after a key frame (>= 1)
// in the low-delay pattern: 0 every 8th, 1 halfway, 2 at the quarters, 3 between.
guint low_delay_layer(guint64 since_key) {
  const guint64 pos = since_key % (guint64(1) << kLowDelayLevels);
  if (pos == 0) return 0;
  guint trailing = 0;
  for (guint64 p = pos; (p & 1) == 0; p >>= 1) trailing++;
  return kLowDelayLevels - trailing;
}

// Longest wait for a packet the library owes us before we stop waiting (and log):
// a guard against a library that holds more than measured, never reached normally.
constexpr gint64 kPacketWaitUs = 2 * G_USEC_PER_SEC;
constexpr gulong kPollUs = 200;
// keyframe-interval=0: a key frame every 5 seconds, as SVT's own "auto" (-2) aims
// for; explicit, so that the rate controller knows which pictures are key frames.
constexpr double kDefaultKeySeconds = 5.0;

GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("video/x-raw, format=(string){ I420, I420_10LE }, width=(int)[ 64, 16384 ], "
                    "height=(int)[ 64, 8704 ], framerate=(fraction)[ 0/1, MAX ]"));

GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("video/x-av1, stream-format=(string)obu-stream, alignment=(string)tu, profile=(string)main"));

enum { PROP_RESTARTS = GST_CCM_VIDEO_ENC_PROP_LAST };

const char* svt_error_name(EbErrorType e) {
  switch (e) {
    case EB_ErrorNone: return "EB_ErrorNone";
    case EB_ErrorInsufficientResources: return "EB_ErrorInsufficientResources";
    case EB_ErrorUndefined: return "EB_ErrorUndefined";
    case EB_ErrorInvalidComponent: return "EB_ErrorInvalidComponent";
    case EB_ErrorBadParameter: return "EB_ErrorBadParameter";
    case EB_NoErrorEmptyQueue: return "EB_NoErrorEmptyQueue";
    default: return "error";
  }
}

// The HDR structures of EbSvtAv1EncConfiguration are written to the bitstream as
// stored, and the bitstream is big-endian ("values are stored in BE format").
uint16_t be16(uint32_t v) { return GUINT16_TO_BE(uint16_t(std::min<uint32_t>(v, 0xffff))); }
uint32_t be32(uint32_t v) { return GUINT32_TO_BE(v); }

// One assignment to the library's configuration, kept with its name so that a
// refusal can be traced to the field at fault.
struct ConfigField {
  std::string name;
  std::string value;
  std::function<void(EbSvtAv1EncConfiguration&)> apply;
};

// How the library is run for the current settings.
struct Plan {
  bool low_delay = true;
  bool per_picture_qp = true;  // library in CQP with use_qp_file: we choose every QP
  bool own_rc = true;          // per_picture_qp and cbr/vbr: QpRateController decides
  guint key_period = 0;        // frames from one periodic key frame to the next, 0 = none
  std::vector<ConfigField> fields;
};

// RAII owner of one initialised library instance.
class SvtSession {
 public:
  SvtSession() = default;
  SvtSession(const SvtSession&) = delete;
  SvtSession& operator=(const SvtSession&) = delete;
  ~SvtSession() {
    // SVT-AV1 1.4.1 never ends a stream that had no picture: svt_av1_enc_deinit
    // without an EOS ("deinit called without sending EOS!") and an EOS after zero
    // pictures both block for ever (found by fuzz_capi_configure: a session opened
    // on caps and closed before any frame). So end the stream here when nobody
    // did, after one blank picture if none went in, and throw away what comes out.
    if (initialised_ && !eos_sent_ && (pictures_ > 0 || send_blank_picture())) {
      EbBufferHeaderType eos{};
      eos.size = sizeof(eos);
      eos.flags = EB_BUFFERFLAG_EOS;
      eos.pic_type = EB_AV1_INVALID_PICTURE;
      if (svt_av1_enc_send_picture(handle_, &eos) == EB_ErrorNone) {
        for (;;) {
          EbBufferHeaderType* pkt = nullptr;
          if (svt_av1_enc_get_packet(handle_, &pkt, 1) != EB_ErrorNone || !pkt) break;
          const bool last = pkt->flags & EB_BUFFERFLAG_EOS;
          svt_av1_enc_release_out_buffer(&pkt);
          if (last) break;
        }
      }
    }
    if (initialised_) svt_av1_enc_deinit(handle_);
    if (handle_) svt_av1_enc_deinit_handle(handle_);
  }
  // What the destructor needs to end a stream on its own.
  void set_picture_format(guint width, guint height, guint bytes_per_sample) {
    width_ = width;
    height_ = height;
    bytes_per_sample_ = bytes_per_sample;
  }
  void note_picture_sent() { ++pictures_; }
  // The stream's EOS went in (drain_session): the destructor need not send one.
  void note_eos_sent() { eos_sent_ = true; }
  guint64 pictures_sent() const { return pictures_; }

  // On failure fills `what` (user-facing, names the parameter) and `detail`.
  static std::unique_ptr<SvtSession> open(const std::vector<ConfigField>& fields, std::string* what,
                                          std::string* detail) {
    auto s = std::make_unique<SvtSession>();
    EbSvtAv1EncConfiguration defaults{};
    EbErrorType r = svt_av1_enc_init_handle(&s->handle_, nullptr, &defaults);
    if (r != EB_ErrorNone) {
      s->handle_ = nullptr;
      *what = "SVT-AV1 could not create an encoder (svt_av1_enc_init_handle)";
      *detail = svt_error_name(r);
      return nullptr;
    }
    EbSvtAv1EncConfiguration cfg = defaults;
    for (const ConfigField& f : fields) f.apply(cfg);
    r = svt_av1_enc_set_parameter(s->handle_, &cfg);
    if (r != EB_ErrorNone) {
      // Find the field at fault: apply ours one by one onto the defaults (the
      // library takes repeated set_parameter calls before init) and stop at the
      // first one the library refuses.
      EbSvtAv1EncConfiguration probe = defaults;
      const ConfigField* culprit = nullptr;
      for (const ConfigField& f : fields) {
        f.apply(probe);
        if (svt_av1_enc_set_parameter(s->handle_, &probe) != EB_ErrorNone) {
          culprit = &f;
          break;
        }
      }
      if (culprit)
        *what = "SVT-AV1 refused " + culprit->name + "=" + culprit->value + " (svt_av1_enc_set_parameter)";
      else
        *what = "SVT-AV1 refused the combination of settings (svt_av1_enc_set_parameter)";
      *detail = std::string(svt_error_name(r)) + "; SVT-AV1 prints its reason on stderr (Svt[error])";
      return nullptr;
    }
    r = svt_av1_enc_init(s->handle_);
    if (r != EB_ErrorNone) {
      *what = "SVT-AV1 could not start the encoder (svt_av1_enc_init)";
      *detail = std::string(svt_error_name(r)) + " (out of memory or threads?)";
      return nullptr;
    }
    s->initialised_ = true;
    return s;
  }

  EbComponentType* handle() const { return handle_; }

 private:
  EbComponentType* handle_ = nullptr;
  bool send_blank_picture() {
    if (width_ == 0 || height_ == 0) return false;
    const guint cw = (width_ + 1) / 2, ch = (height_ + 1) / 2;
    std::vector<uint8_t> luma(size_t(width_) * height_ * bytes_per_sample_, 0);
    std::vector<uint8_t> chroma(size_t(cw) * ch * bytes_per_sample_, 0);
    EbSvtIOFormat pic{};
    pic.luma = luma.data();
    pic.cb = pic.cr = chroma.data();
    pic.y_stride = width_;
    pic.cb_stride = pic.cr_stride = cw;
    pic.width = width_;
    pic.height = height_;
    pic.color_fmt = EB_YUV420;
    pic.bit_depth = bytes_per_sample_ == 2 ? EB_TEN_BIT : EB_EIGHT_BIT;
    EbBufferHeaderType in{};
    in.size = sizeof(in);
    in.p_buffer = reinterpret_cast<uint8_t*>(&pic);
    in.n_filled_len = guint32(luma.size() + 2 * chroma.size());
    in.n_alloc_len = in.n_filled_len;
    in.pic_type = EB_AV1_INVALID_PICTURE;
    in.qp = 63;  // per-picture QP mode reads it; the cheapest picture
    return svt_av1_enc_send_picture(handle_, &in) == EB_ErrorNone;
  }

  bool initialised_ = false;
  bool eos_sent_ = false;
  guint64 pictures_ = 0;
  guint width_ = 0, height_ = 0, bytes_per_sample_ = 1;
};

}  // namespace

// All the element's state lives in the streaming thread (the base calls every
// virtual from there), except `restarts`, read by the property getter.
struct SvtState {
  GstVideoInfo info{};
  GstCcmEncSettings settings{};
  GstCcmHdrInfo hdr{};
  Plan plan;
  std::unique_ptr<SvtSession> session;
  bool drained = false;     // EOS went in: the library takes no more pictures
  guint64 sent_since_open = 0;
  guint64 last_key = 0;     // sent_since_open of the last key picture
  guint in_flight = 0;      // pictures sent whose packet has not come out
  guint max_in_flight = kLowDelayHeld;  // low delay: we wait for the library above this
  std::optional<ccm::rc::QpRateController> rc;
  bool warned_offsets = false;
  bool warned_meta_qp = false;
};

struct _GstCcmSvtAv1Enc {
  GstCcmVideoEnc parent;
  SvtState* state;
  guint restarts;  // library restarts for requested key frames (atomic)
  gint size_error_posted;  // the accept-caps refusal was reported (atomic)
};

G_DEFINE_TYPE(GstCcmSvtAv1Enc, gst_ccm_svt_av1_enc, GST_TYPE_CCM_VIDEO_ENC)

namespace {

void post_error(GstCcmSvtAv1Enc* self, const std::string& what, const std::string& detail) {
  GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("%s", what.c_str()), ("%s", detail.c_str()));
}

// Rate controller parameters from the settings: cbr spreads an excess over two
// seconds (with the QP held while it is more than half a second over: see
// QpRateController::Params), vbr over four.
ccm::rc::QpRateController::Params rc_params(const GstVideoInfo& info, const GstCcmEncSettings& s) {
  ccm::rc::QpRateController::Params p;
  p.bitrate_bps = double(s.bitrate) * 1000.0;
  p.fps = double(GST_VIDEO_INFO_FPS_N(&info)) / std::max(1, GST_VIDEO_INFO_FPS_D(&info));
  p.pixels = double(GST_VIDEO_INFO_WIDTH(&info)) * GST_VIDEO_INFO_HEIGHT(&info);
  p.reaction_s = s.rate_control == GST_CCM_RATE_CONTROL_VBR ? 4.0 : 2.0;
  p.min_qp = 1;
  p.max_qp = int(kQpMax);
  return p;
}

guint key_period(const GstVideoInfo& info, const GstCcmEncSettings& s) {
  if (s.keyframe_interval > 0) return s.keyframe_interval;
  const double fps = double(GST_VIDEO_INFO_FPS_N(&info)) / std::max(1, GST_VIDEO_INFO_FPS_D(&info));
  return guint(std::max(1.0, std::round(fps * kDefaultKeySeconds)));
}

// SVT-AV1 2.x refuses CBR in random access ("CBR Rate control is currently not
// supported for SVT_AV1_PRED_RANDOM_ACCESS, use VBR mode": 2.3); 1.4.1 takes it.
// There a cbr request (low-latency=false) runs SVT's VBR at the same target.
#if SVT_AV1_CHECK_VERSION(2, 0, 0)
constexpr bool kRandomAccessCbr = false;
#else
constexpr bool kRandomAccessCbr = true;
#endif

Plan make_plan(const GstVideoInfo& info, const GstCcmEncSettings& s, const GstCcmHdrInfo& hdr) {
  Plan plan;
  plan.low_delay = s.low_latency;
  const bool cqp = s.rate_control == GST_CCM_RATE_CONTROL_CQP;
  plan.per_picture_qp = plan.low_delay || cqp;
  plan.own_rc = plan.per_picture_qp && !cqp;
  plan.key_period = key_period(info, s);

  auto& f = plan.fields;
  auto add = [&f](std::string name, std::string value, std::function<void(EbSvtAv1EncConfiguration&)> apply) {
    f.push_back({std::move(name), std::move(value), std::move(apply)});
  };
  const guint w = GST_VIDEO_INFO_WIDTH(&info), h = GST_VIDEO_INFO_HEIGHT(&info);
  const guint fps_n = GST_VIDEO_INFO_FPS_N(&info), fps_d = GST_VIDEO_INFO_FPS_D(&info);
  // Size and rate first and together: the defaults (0x0, no rate) are refused on
  // their own, so the search for a refused field starts from here.
  add("source_width x source_height @ frame_rate", std::to_string(w) + "x" + std::to_string(h) + " @ " +
                                                       std::to_string(fps_n) + "/" + std::to_string(fps_d),
      [=](auto& c) {
        c.source_width = w;
        c.source_height = h;
        c.frame_rate_numerator = fps_n;
        c.frame_rate_denominator = fps_d;
      });
  const guint depth = GST_VIDEO_INFO_COMP_DEPTH(&info, 0);
  add("encoder_bit_depth", std::to_string(depth), [=](auto& c) { c.encoder_bit_depth = depth; });
  const gint preset = s.speed_preset;
  add("enc_mode", std::to_string(preset), [=](auto& c) { c.enc_mode = int8_t(preset); });
  const uint8_t pred = plan.low_delay ? SVT_AV1_PRED_LOW_DELAY_B : SVT_AV1_PRED_RANDOM_ACCESS;
  add("pred_structure", std::to_string(pred), [=](auto& c) { c.pred_structure = pred; });

  if (plan.per_picture_qp) {
    const guint qp = std::min(s.quantizer, kQpMax);
    add("rate_control_mode", "0 (cqp)", [](auto& c) { c.rate_control_mode = SVT_AV1_RC_MODE_CQP_OR_CRF; });
    // 0 = plain CQP (no CRF-style adaptive quantisation): the QP we hand over is
    // the picture's QP, which keeps the rate controller's model honest.
    add("enable_adaptive_quantization", "0", [](auto& c) { c.enable_adaptive_quantization = 0; });
    add("qp", std::to_string(qp), [=](auto& c) { c.qp = qp; });
    add("use_qp_file", "1", [](auto& c) { c.use_qp_file = 1; });
  } else {
    uint32_t mode = s.rate_control == GST_CCM_RATE_CONTROL_VBR ? SVT_AV1_RC_MODE_VBR : SVT_AV1_RC_MODE_CBR;
    std::string why;
    if (mode == SVT_AV1_RC_MODE_CBR && !kRandomAccessCbr) {
      mode = SVT_AV1_RC_MODE_VBR;
      why = " (vbr for cbr: SVT-AV1 2.x has no cbr in random access)";
    }
    add("rate_control_mode", std::to_string(mode) + why, [=](auto& c) { c.rate_control_mode = mode; });
    const uint32_t bps = uint32_t(std::min<guint64>(guint64(s.bitrate) * 1000, G_MAXUINT32));
    add("target_bit_rate", std::to_string(bps), [=](auto& c) { c.target_bit_rate = bps; });
  }
  if (plan.low_delay) {
    // The pattern kLowDelayLayerQpOffset is measured for, whatever the default.
    add("hierarchical_levels", std::to_string(kLowDelayLevels),
        [](auto& c) { c.hierarchical_levels = kLowDelayLevels; });
    // Scene-change detection would not add key frames in low delay, but off it
    // keeps the key-frame schedule exactly the one we told the library.
    add("scene_change_detection", "0", [](auto& c) { c.scene_change_detection = 0; });
  } else {
    add("hierarchical_levels", std::to_string(kRandomAccessLevels),
        [](auto& c) { c.hierarchical_levels = kRandomAccessLevels; });
    add("look_ahead_distance", std::to_string(kRandomAccessLookAhead),
        [](auto& c) { c.look_ahead_distance = kRandomAccessLookAhead; });
    if (plan.per_picture_qp)  // random access + CQP is where SVT 1.4 forces key pictures
      add("force_key_frames", "1", [](auto& c) { c.force_key_frames = 1; });
  }
  const int32_t intra = int32_t(std::min<guint>(plan.key_period, G_MAXINT32)) - 1;
  add("intra_period_length", std::to_string(intra), [=](auto& c) { c.intra_period_length = intra; });
  if (s.threads > 0) {
    const guint threads = s.threads;
    add("logical_processors", std::to_string(threads), [=](auto& c) { c.logical_processors = threads; });
  }

  // Colour description from the caps (ISO/IEC 23091-4 code points, as AV1 takes them).
  const GstVideoColorimetry& cm = info.colorimetry;
  const guint primaries = gst_video_color_primaries_to_iso(cm.primaries);
  const guint transfer = gst_video_transfer_function_to_iso(cm.transfer);
  const guint matrix = gst_video_color_matrix_to_iso(cm.matrix);
  if (primaries || transfer || matrix) {
    add("color_primaries/transfer_characteristics/matrix_coefficients",
        std::to_string(primaries) + "/" + std::to_string(transfer) + "/" + std::to_string(matrix), [=](auto& c) {
          c.color_description_present_flag = 1;
          if (primaries) c.color_primaries = EbColorPrimaries(primaries);
          if (transfer) c.transfer_characteristics = EbTransferCharacteristics(transfer);
          if (matrix) c.matrix_coefficients = EbMatrixCoefficients(matrix);
        });
  }
  if (cm.range == GST_VIDEO_COLOR_RANGE_0_255)
    add("color_range", "1 (full)", [](auto& c) { c.color_range = EB_CR_FULL_RANGE; });

  if (hdr.has_mastering_display || hdr.has_content_light_level) {
    add("high_dynamic_range_input", "1", [](auto& c) { c.high_dynamic_range_input = 1; });
  }
  if (hdr.has_mastering_display) {
    // GStreamer: chromaticities in 0.00002 units, luminance in 0.0001 cd/m2.
    // AV1 metadata_hdr_mdcv: chromaticities 0.16 fixed point, max luminance 24.8,
    // min luminance 18.14.
    const GstVideoMasteringDisplayInfo md = hdr.mastering_display;
    auto xy = [](guint16 v) { return be16(uint32_t(std::lround(v * 65536.0 / 50000.0))); };
    add("mastering_display", "from caps", [=](auto& c) {
      EbSvtAv1MasteringDisplayInfo& m = c.mastering_display;
      m.r = {xy(md.display_primaries[0].x), xy(md.display_primaries[0].y)};
      m.g = {xy(md.display_primaries[1].x), xy(md.display_primaries[1].y)};
      m.b = {xy(md.display_primaries[2].x), xy(md.display_primaries[2].y)};
      m.white_point = {xy(md.white_point.x), xy(md.white_point.y)};
      m.max_luma = be32(uint32_t(std::llround(md.max_display_mastering_luminance * 256.0 / 10000.0)));
      m.min_luma = be32(uint32_t(std::llround(md.min_display_mastering_luminance * 16384.0 / 10000.0)));
    });
  }
  if (hdr.has_content_light_level) {
    const GstVideoContentLightLevel cll = hdr.content_light_level;
    add("content_light_level",
        std::to_string(cll.max_content_light_level) + "/" + std::to_string(cll.max_frame_average_light_level),
        [=](auto& c) {
          c.content_light_level.max_cll = be16(cll.max_content_light_level);
          c.content_light_level.max_fall = be16(cll.max_frame_average_light_level);
        });
  }
  return plan;
}

// Sizes the library refuses, as a message that names the limit.
std::optional<std::string> size_problem(gint w, gint h) {
  if (w < kMinSize || h < kMinSize)
    return "SVT-AV1 cannot encode " + std::to_string(w) + "x" + std::to_string(h) + ": width and height must be at least " +
           std::to_string(kMinSize);
  if (w > kMaxWidth || h > kMaxHeight)
    return "SVT-AV1 cannot encode " + std::to_string(w) + "x" + std::to_string(h) + ": the largest size is " +
           std::to_string(kMaxWidth) + "x" + std::to_string(kMaxHeight);
  if ((w | h) & 1)
    return "SVT-AV1 cannot encode " + std::to_string(w) + "x" + std::to_string(h) +
           ": width and height must be even for 4:2:0";
  return std::nullopt;
}

bool open_session(GstCcmSvtAv1Enc* self) {
  SvtState& st = *self->state;
  std::string what, detail;
  const gint64 t0 = g_get_monotonic_time();
  st.session = SvtSession::open(st.plan.fields, &what, &detail);
  if (!st.session) {
    post_error(self, what, detail);
    return false;
  }
  st.session->set_picture_format(GST_VIDEO_INFO_WIDTH(&st.info), GST_VIDEO_INFO_HEIGHT(&st.info),
                                 GST_VIDEO_INFO_COMP_DEPTH(&st.info, 0) > 8 ? 2 : 1);
  st.drained = false;
  st.sent_since_open = 0;
  st.in_flight = 0;
  GST_DEBUG_OBJECT(self, "SVT-AV1 opened in %.1f ms", (g_get_monotonic_time() - t0) / 1000.0);
  return true;
}

GstFlowReturn finish_packet(GstCcmSvtAv1Enc* self, EbBufferHeaderType* pkt) {
  SvtState& st = *self->state;
  auto* venc = GST_VIDEO_ENCODER(self);
  const bool key = pkt->pic_type == EB_AV1_KEY_PICTURE;
  if (st.in_flight > 0) st.in_flight--;
  if (st.rc && st.plan.per_picture_qp) st.rc->on_encoded(double(pkt->n_filled_len) * 8.0, key, int(pkt->qp));

  GstVideoCodecFrame* frame = gst_video_encoder_get_frame(venc, int(pkt->pts));
  if (!frame) {
    GST_WARNING_OBJECT(self, "SVT-AV1 returned %u bytes for frame %" G_GINT64_FORMAT " that is gone",
                       pkt->n_filled_len, pkt->pts);
    return GST_FLOW_OK;
  }
  GstBuffer* buffer = gst_video_encoder_allocate_output_buffer(venc, pkt->n_filled_len);
  gst_buffer_fill(buffer, 0, pkt->p_buffer, pkt->n_filled_len);
  frame->output_buffer = buffer;
  // Only key pictures are random-access points (they carry the sequence header);
  // intra-only pictures are not.
  if (key)
    GST_VIDEO_CODEC_FRAME_SET_SYNC_POINT(frame);
  else
    GST_VIDEO_CODEC_FRAME_UNSET_SYNC_POINT(frame);
  GST_LOG_OBJECT(self, "frame %u: %u bytes, qp %u, type %d", frame->system_frame_number, pkt->n_filled_len, pkt->qp,
                 int(pkt->pic_type));
  return gst_video_encoder_finish_frame(venc, frame);
}

// SVT-AV1 2.x (2.3 in Debian 13): in low delay svt_av1_enc_get_packet blocks until
// a packet comes, whatever pic_send_done says (EbSvtAv1Enc.h, "Step 5"), and every
// picture comes out without waiting for the next one (2.3: none held). A call with
// no picture inside would wait forever, so take exactly one packet per picture we
// let out: down to max_in_flight, or one more with `wait_for_one`. 1.4.1's call
// never blocks there (the polling collect() below).
#if SVT_AV1_CHECK_VERSION(2, 0, 0)
constexpr bool kLowDelayGetBlocks = true;
#else
constexpr bool kLowDelayGetBlocks = false;
#endif

GstFlowReturn collect_blocking(GstCcmSvtAv1Enc* self, bool wait_for_one) {
  SvtState& st = *self->state;
  GstFlowReturn ret = GST_FLOW_OK;
  while (st.in_flight > st.max_in_flight || (wait_for_one && st.in_flight > 0)) {
    wait_for_one = false;
    EbBufferHeaderType* pkt = nullptr;
    const EbErrorType r = svt_av1_enc_get_packet(st.session->handle(), &pkt, 0);
    if (r != EB_ErrorNone || !pkt || (pkt->flags & EB_BUFFERFLAG_ERROR_MASK)) {
      if (pkt) svt_av1_enc_release_out_buffer(&pkt);
      GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("SVT-AV1 failed to encode a picture"),
                        ("svt_av1_enc_get_packet: %s (0x%x)", svt_error_name(r), unsigned(r)));
      return GST_FLOW_ERROR;
    }
    const guint before = st.in_flight;
    GstFlowReturn fr = GST_FLOW_OK;
    if (pkt->n_filled_len > 0) fr = finish_packet(self, pkt);
    svt_av1_enc_release_out_buffer(&pkt);
    if (st.in_flight == before && st.in_flight > 0) st.in_flight--;  // an empty packet still answers a picture
    if (fr != GST_FLOW_OK && ret == GST_FLOW_OK) ret = fr;
  }
  return ret;
}

// Takes every packet the library has ready; with `wait_for_one`, first waits
// (polling: the library's blocking call has no timeout) until at least one came.
GstFlowReturn collect(GstCcmSvtAv1Enc* self, bool wait_for_one) {
  SvtState& st = *self->state;
  if (kLowDelayGetBlocks && st.plan.low_delay) return collect_blocking(self, wait_for_one);
  const gint64 deadline = g_get_monotonic_time() + kPacketWaitUs;
  GstFlowReturn ret = GST_FLOW_OK;
  for (;;) {
    EbBufferHeaderType* pkt = nullptr;
    const EbErrorType r = svt_av1_enc_get_packet(st.session->handle(), &pkt, 0);
    if (r == EB_NoErrorEmptyQueue) {
      if (!wait_for_one) return ret;
      if (g_get_monotonic_time() > deadline) {
        GST_WARNING_OBJECT(self, "SVT-AV1 holds %u pictures, more than the %u expected", st.in_flight,
                           st.max_in_flight);
        return ret;
      }
      g_usleep(kPollUs);
      continue;
    }
    if (r != EB_ErrorNone || !pkt || (pkt->flags & EB_BUFFERFLAG_ERROR_MASK)) {
      if (pkt) svt_av1_enc_release_out_buffer(&pkt);
      GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("SVT-AV1 failed to encode a picture"),
                        ("svt_av1_enc_get_packet: %s (0x%x)", svt_error_name(r), unsigned(r)));
      return GST_FLOW_ERROR;
    }
    wait_for_one = false;
    GstFlowReturn fr = GST_FLOW_OK;
    if (pkt->n_filled_len > 0) fr = finish_packet(self, pkt);
    svt_av1_enc_release_out_buffer(&pkt);
    if (fr != GST_FLOW_OK && ret == GST_FLOW_OK) ret = fr;
  }
}

GstFlowReturn drain_session(GstCcmSvtAv1Enc* self) {
  SvtState& st = *self->state;
  if (!st.session || st.drained) return GST_FLOW_OK;
  st.drained = true;
  // Nothing inside, and an EOS after zero pictures never comes out (see ~SvtSession).
  if (st.session->pictures_sent() == 0) return GST_FLOW_OK;
  EbBufferHeaderType eos{};
  eos.size = sizeof(eos);
  eos.flags = EB_BUFFERFLAG_EOS;
  eos.pic_type = EB_AV1_INVALID_PICTURE;
  EbErrorType r = svt_av1_enc_send_picture(st.session->handle(), &eos);
  st.session->note_eos_sent();
  if (r != EB_ErrorNone) {
    GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("SVT-AV1 refused the end of stream"),
                      ("svt_av1_enc_send_picture(EOS): %s", svt_error_name(r)));
    return GST_FLOW_ERROR;
  }
  GstFlowReturn ret = GST_FLOW_OK;
  for (;;) {
    EbBufferHeaderType* pkt = nullptr;
    // After EOS the call blocks until the next packet; the last one has the EOS flag.
    r = svt_av1_enc_get_packet(st.session->handle(), &pkt, 1);
    if (r != EB_ErrorNone || !pkt) {
      if (r != EB_NoErrorEmptyQueue)
        GST_WARNING_OBJECT(self, "SVT-AV1 failed while draining: %s", svt_error_name(r));
      break;
    }
    const bool last = pkt->flags & EB_BUFFERFLAG_EOS;
    GstFlowReturn fr = GST_FLOW_OK;
    if (pkt->n_filled_len > 0 && !(pkt->flags & EB_BUFFERFLAG_ERROR_MASK)) fr = finish_packet(self, pkt);
    svt_av1_enc_release_out_buffer(&pkt);
    if (fr != GST_FLOW_OK && ret == GST_FLOW_OK) ret = fr;
    if (last) break;
  }
  if (st.in_flight)
    GST_WARNING_OBJECT(self, "%u pictures never came out of SVT-AV1", st.in_flight);
  st.in_flight = 0;
  if (st.rc) st.rc->drop_in_flight();
  return ret;
}

// Restarts the library so that the next picture is a key frame: the only way to
// get one on request in low delay (SVT 1.4 refuses forced key pictures there).
// Every picture already inside comes out first.
GstFlowReturn restart_for_key(GstCcmSvtAv1Enc* self) {
  SvtState& st = *self->state;
  const gint64 t0 = g_get_monotonic_time();
  const GstFlowReturn ret = drain_session(self);
  st.session.reset();
  if (!open_session(self)) return GST_FLOW_ERROR;
  g_atomic_int_inc(&self->restarts);
  GST_INFO_OBJECT(self, "restarted SVT-AV1 for a requested key frame in %.1f ms",
                  (g_get_monotonic_time() - t0) / 1000.0);
  return ret;  // downstream's answer to the pictures that came out (flushing, not linked ...)
}

// Whether upstream is live (its latency query says so). Unknown counts as live:
// the cautious answer keeps the element's delay at one picture.
bool upstream_is_live(GstCcmSvtAv1Enc* self) {
  GstQuery* q = gst_query_new_latency();
  gboolean live = TRUE;
  if (gst_pad_peer_query(GST_VIDEO_ENCODER_SINK_PAD(self), q)) gst_query_parse_latency(q, &live, nullptr, nullptr);
  gst_query_unref(q);
  return live;
}

}  // namespace

// ---- GstCcmVideoEnc virtuals ------------------------------------------------------

static void gst_ccm_svt_av1_enc_close(GstCcmVideoEnc* enc) {
  SvtState& st = *GST_CCM_SVT_AV1_ENC(enc)->state;
  st.session.reset();
  st.in_flight = 0;
  if (st.rc) st.rc->drop_in_flight();
}

static gboolean gst_ccm_svt_av1_enc_open(GstCcmVideoEnc* enc, const GstVideoInfo* info,
                                         const GstCcmEncSettings* settings, const GstCcmHdrInfo* hdr) {
  auto* self = GST_CCM_SVT_AV1_ENC(enc);
  SvtState& st = *self->state;
  gst_ccm_svt_av1_enc_close(enc);

  const gint w = GST_VIDEO_INFO_WIDTH(info), h = GST_VIDEO_INFO_HEIGHT(info);
  if (auto problem = size_problem(w, h)) {
    GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("%s", problem->c_str()),
                      ("scale or crop the video first, or use another AV1 encoder (av1enc)"));
    return FALSE;
  }
  st.info = *info;
  st.settings = *settings;
  st.hdr = *hdr;
  st.plan = make_plan(*info, *settings, *hdr);
  if (st.plan.own_rc) {
    if (st.rc)
      st.rc->set_params(rc_params(*info, *settings));
    else
      st.rc.emplace(rc_params(*info, *settings));
  } else {
    st.rc.reset();
  }
  st.max_in_flight = upstream_is_live(self) ? kLowDelayHeld : kOfflineInFlight;
  if (!open_session(self)) return FALSE;

  GstCaps* caps = gst_caps_from_string(
      "video/x-av1, stream-format=(string)obu-stream, alignment=(string)tu, profile=(string)main");
  if (hdr->has_mastering_display) gst_video_mastering_display_info_add_to_caps(&hdr->mastering_display, caps);
  if (hdr->has_content_light_level) gst_video_content_light_level_add_to_caps(&hdr->content_light_level, caps);
  GstVideoCodecState* out = gst_video_encoder_set_output_state(GST_VIDEO_ENCODER(enc), caps, nullptr);
  // No reference state (the base keeps the input state): size, rate and
  // colorimetry of the output caps come from the info we encode.
  out->info = *info;
  gst_video_codec_state_unref(out);

  GST_INFO_OBJECT(self,
                  "SVT-AV1 %s: %dx%d %u-bit @ %d/%d, preset %d, %s, %s, bitrate %u kbit/s, quantizer %u, "
                  "key frame every %u, up to %u pictures inside",
                  svt_av1_get_version(), w, h, GST_VIDEO_INFO_COMP_DEPTH(info, 0), GST_VIDEO_INFO_FPS_N(info),
                  GST_VIDEO_INFO_FPS_D(info), settings->speed_preset,
                  st.plan.low_delay ? "low delay" : "random access",
                  st.plan.own_rc ? "per-picture QP from our rate controller"
                                 : (st.plan.per_picture_qp ? "constant QP" : "SVT rate control"),
                  settings->bitrate, settings->quantizer, st.plan.key_period, st.max_in_flight);
  return TRUE;
}

static GstFlowReturn gst_ccm_svt_av1_enc_encode(GstCcmVideoEnc* enc, GstVideoCodecFrame* frame,
                                                const GstCcmFrameParams* params) {
  auto* self = GST_CCM_SVT_AV1_ENC(enc);
  SvtState& st = *self->state;
  GstFlowReturn ret = GST_FLOW_OK;

  if (st.session && st.drained) {
    // Pictures after EOS (a new segment without a flush): the library takes no
    // more once drained, start a fresh one.
    st.session.reset();
    if (!open_session(self)) {
      gst_video_codec_frame_unref(frame);
      return GST_FLOW_ERROR;
    }
  }
  if (!st.session) {
    gst_video_codec_frame_unref(frame);
    return GST_FLOW_NOT_NEGOTIATED;
  }

  // Does the library make this picture a key frame by itself (its first, or its
  // periodic one)? A request for any other picture needs a restart in low delay.
  const guint period = st.plan.key_period;
  bool key = st.sent_since_open == 0 || (period > 0 && st.sent_since_open % period == 0);
  bool force_in_library = false;
  if (params->force_key_frame && !key) {
    if (st.plan.low_delay || !st.plan.per_picture_qp) {
      ret = restart_for_key(self);
      if (ret != GST_FLOW_OK) {
        gst_video_codec_frame_unref(frame);
        return ret;
      }
    } else {
      force_in_library = true;  // random access + CQP: the library takes pic_type
    }
    key = true;
  }

  int qp = -1;
  int layered_qp = -1;  // qp with the layer offset: what the library gets
  if (st.plan.per_picture_qp) {
    bool layered = true;
    if (params->qp >= 0) {
      qp = std::clamp(params->qp, 0, int(kQpMax));
    } else if (st.rc) {
      // Our own controller picks the base QP slowly and the layer offsets go on
      // top, as on a constant QP: flat per-picture QPs cost +27% to +48% in
      // BD-rate against SvtAv1EncApp's CBR (validation set, docs/benchmarks.md).
      qp = st.rc->pick_qp(key);
    } else {
      qp = int(std::min(st.settings.quantizer, kQpMax));
    }
    // Low delay: the picture's layer offset on top (see kLowDelayLayerQpOffset).
    // Whoever chose `qp` chose it for the average picture; key pictures keep it.
    if (key) {
      st.last_key = st.sent_since_open;
    } else if (st.plan.low_delay && layered) {
      const int offset = kLowDelayLayerQpOffset[low_delay_layer(st.sent_since_open - st.last_key)];
      layered_qp = std::clamp(qp + offset, 1, int(kQpMax));
    }
  } else if (params->qp >= 0 && !st.warned_meta_qp) {
    GST_WARNING_OBJECT(self, "per-frame QP ignored: with low-latency=false SVT-AV1 runs its own rate control; "
                             "use rate-control=cqp or low-latency=true");
    st.warned_meta_qp = true;
  }
  if (params->qp_offsets && !st.warned_offsets) {
    GST_WARNING_OBJECT(self, "per-block QP offsets ignored: SVT-AV1 1.4 takes no QP map");
    st.warned_offsets = true;
  }

  GstVideoFrame vframe;
  if (!gst_video_frame_map(&vframe, &st.info, frame->input_buffer, GST_MAP_READ)) {
    gst_video_codec_frame_unref(frame);
    GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("could not map the input frame"), (nullptr));
    return GST_FLOW_ERROR;
  }
  // Strides in samples: 16-bit samples for 10-bit input.
  const guint bytes_per_sample = GST_VIDEO_INFO_COMP_DEPTH(&st.info, 0) > 8 ? 2 : 1;
  EbSvtIOFormat pic{};
  pic.luma = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&vframe, 0));
  pic.cb = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&vframe, 1));
  pic.cr = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&vframe, 2));
  pic.y_stride = GST_VIDEO_FRAME_PLANE_STRIDE(&vframe, 0) / bytes_per_sample;
  pic.cb_stride = GST_VIDEO_FRAME_PLANE_STRIDE(&vframe, 1) / bytes_per_sample;
  pic.cr_stride = GST_VIDEO_FRAME_PLANE_STRIDE(&vframe, 2) / bytes_per_sample;
  pic.width = GST_VIDEO_FRAME_WIDTH(&vframe);
  pic.height = GST_VIDEO_FRAME_HEIGHT(&vframe);
  pic.color_fmt = EB_YUV420;
  pic.bit_depth = bytes_per_sample == 2 ? EB_TEN_BIT : EB_EIGHT_BIT;

  EbBufferHeaderType in{};
  in.size = sizeof(in);
  in.p_buffer = reinterpret_cast<uint8_t*>(&pic);
  in.n_filled_len = guint32(GST_VIDEO_FRAME_SIZE(&vframe));
  in.n_alloc_len = in.n_filled_len;
  in.p_app_private = nullptr;  // parsed by SVT as a private-data list
  in.pts = frame->system_frame_number;
  in.pic_type = force_in_library ? EB_AV1_KEY_PICTURE : EB_AV1_INVALID_PICTURE;
  in.qp = layered_qp >= 0 ? guint32(layered_qp) : qp >= 0 ? guint32(qp) : 0;
  const guint32 frame_number = frame->system_frame_number;
  // The library copies the picture during the call.
  const EbErrorType r = svt_av1_enc_send_picture(st.session->handle(), &in);
  gst_video_frame_unmap(&vframe);
  gst_video_codec_frame_unref(frame);
  if (r != EB_ErrorNone) {
    GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("SVT-AV1 refused a picture"),
                      ("svt_av1_enc_send_picture (frame %u): %s", frame_number, svt_error_name(r)));
    return GST_FLOW_ERROR;
  }
  st.session->note_picture_sent();
  st.sent_since_open++;
  st.in_flight++;
  if (st.rc && st.plan.per_picture_qp) st.rc->on_sent(key, layered_qp >= 0 ? layered_qp : qp, qp);

  // Low delay: the library releases picture N once N+1 is in; wait for it so the
  // element holds exactly max_in_flight pictures (what the latency query says).
  GstFlowReturn cr = collect(self, false);
  while (cr == GST_FLOW_OK && st.plan.low_delay && st.in_flight > st.max_in_flight) {
    const guint before = st.in_flight;
    cr = collect(self, true);
    if (st.in_flight == before) break;  // timed out (logged)
  }
  return cr;
}

static GstFlowReturn gst_ccm_svt_av1_enc_drain(GstCcmVideoEnc* enc) {
  return drain_session(GST_CCM_SVT_AV1_ENC(enc));
}

static gboolean gst_ccm_svt_av1_enc_reconfigure(GstCcmVideoEnc* enc, const GstCcmEncSettings* wanted) {
  auto* self = GST_CCM_SVT_AV1_ENC(enc);
  SvtState& st = *self->state;
  if (!st.session || st.drained || !st.plan.per_picture_qp) return FALSE;
  // In per-picture-QP mode the library never sees the bitrate, the rate-control
  // mode (between cbr, vbr and cqp) or the quantizer: those change here, on the
  // next picture. Anything else (preset, key-frame interval, threads, low-latency)
  // needs a new library instance.
  GstCcmEncSettings same = *wanted;
  same.bitrate = st.settings.bitrate;
  same.rate_control = st.settings.rate_control;
  same.quantizer = st.settings.quantizer;
  if (memcmp(&same, &st.settings, sizeof same) != 0) return FALSE;
  if (!st.plan.low_delay && wanted->rate_control != GST_CCM_RATE_CONTROL_CQP) return FALSE;

  st.settings = *wanted;
  st.plan.own_rc = wanted->rate_control != GST_CCM_RATE_CONTROL_CQP;
  if (st.plan.own_rc) {
    if (st.rc)
      st.rc->set_params(rc_params(st.info, *wanted));
    else
      st.rc.emplace(rc_params(st.info, *wanted));
  }
  GST_INFO_OBJECT(self, "now %s at %u kbit/s (quantizer %u), from the next picture",
                  wanted->rate_control == GST_CCM_RATE_CONTROL_CQP ? "cqp"
                  : wanted->rate_control == GST_CCM_RATE_CONTROL_VBR ? "vbr" : "cbr",
                  wanted->bitrate, wanted->quantizer);
  return TRUE;
}

static guint gst_ccm_svt_av1_enc_delay_frames(GstCcmVideoEnc* enc) {
  SvtState& st = *GST_CCM_SVT_AV1_ENC(enc)->state;
  if (st.plan.low_delay) return st.max_in_flight;
  return st.plan.per_picture_qp ? kRandomAccessHeldCqp : kRandomAccessHeldRc;
}

// ---- GObject ----------------------------------------------------------------------------

// Sizes the library refuses (odd ones: caps cannot say "even") are refused in the
// accept-caps query too, so that a bin choosing an encoder (ccmencbin) can ask
// before it commits to this one, and falls back to another. Once the element runs
// (PAUSED or PLAYING), such a query is a real negotiation: the refusal is then also
// an element error that names the limit, rather than a bare not-negotiated.
static gboolean gst_ccm_svt_av1_enc_sink_query(GstVideoEncoder* venc, GstQuery* query) {
  if (GST_QUERY_TYPE(query) == GST_QUERY_ACCEPT_CAPS) {
    GstCaps* caps = nullptr;
    gst_query_parse_accept_caps(query, &caps);
    const GstStructure* s = caps && gst_caps_get_size(caps) > 0 ? gst_caps_get_structure(caps, 0) : nullptr;
    gint w = 0, h = 0;
    if (s && gst_structure_get_int(s, "width", &w) && gst_structure_get_int(s, "height", &h)) {
      if (auto problem = size_problem(w, h)) {
        GST_DEBUG_OBJECT(venc, "refusing %dx%d: %s", w, h, problem->c_str());
        auto* self = GST_CCM_SVT_AV1_ENC(venc);
        if (GST_STATE(venc) >= GST_STATE_PAUSED && g_atomic_int_compare_and_exchange(&self->size_error_posted, 0, 1))
          GST_ELEMENT_ERROR(venc, STREAM, FORMAT, ("%s", problem->c_str()),
                            ("scale or crop the video first, or use another AV1 encoder (av1enc)"));
        gst_query_set_accept_caps_result(query, FALSE);
        return TRUE;
      }
    }
  }
  return GST_VIDEO_ENCODER_CLASS(gst_ccm_svt_av1_enc_parent_class)->sink_query(venc, query);
}

static void gst_ccm_svt_av1_enc_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  if (id == PROP_RESTARTS) {
    g_value_set_uint(value, guint(g_atomic_int_get(&GST_CCM_SVT_AV1_ENC(object)->restarts)));
    return;
  }
  G_OBJECT_CLASS(gst_ccm_svt_av1_enc_parent_class)->get_property(object, id, value, pspec);
}

static void gst_ccm_svt_av1_enc_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  G_OBJECT_CLASS(gst_ccm_svt_av1_enc_parent_class)->set_property(object, id, value, pspec);
}

static void gst_ccm_svt_av1_enc_finalize(GObject* object) {
  auto* self = GST_CCM_SVT_AV1_ENC(object);
  delete self->state;
  self->state = nullptr;
  G_OBJECT_CLASS(gst_ccm_svt_av1_enc_parent_class)->finalize(object);
}

static void gst_ccm_svt_av1_enc_init(GstCcmSvtAv1Enc* self) {
  self->state = new SvtState();
  self->restarts = 0;
  self->size_error_posted = 0;
  // The base reads these defaults from the pspecs in its own instance init, where
  // GObject still presents the base class (which has neither property): set ours.
  g_object_set(self, "speed-preset", kDefaultPreset, "quantizer", kDefaultQuantizer, nullptr);
}

void gst_ccm_svt_av1_enc_quiet_library(void) {
  // SVT-AV1 1.4 has no logging callback: it reads SVT_LOG at every
  // svt_av1_enc_init_handle (0 fatal .. 4 debug). 1: errors only; its warnings
  // are about the low-delay mode we chose, on every encoder it opens.
  g_setenv("SVT_LOG", "1", FALSE);
}

static void gst_ccm_svt_av1_enc_class_init(GstCcmSvtAv1EncClass* klass) {
  GST_DEBUG_CATEGORY_INIT(ccm_svt_av1_enc_debug, "ccmsvtav1enc", 0, "gst-ccm SVT-AV1 encoder");
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstVideoEncoderClass* venc_class = GST_VIDEO_ENCODER_CLASS(klass);
  GstCcmVideoEncClass* enc_class = GST_CCM_VIDEO_ENC_CLASS(klass);

  gobject_class->finalize = gst_ccm_svt_av1_enc_finalize;
  // Ours first, then the base's install functions (which leave them in place).
  gobject_class->set_property = gst_ccm_svt_av1_enc_set_property;
  gobject_class->get_property = gst_ccm_svt_av1_enc_get_property;
  venc_class->sink_query = gst_ccm_svt_av1_enc_sink_query;

  enc_class->open = gst_ccm_svt_av1_enc_open;
  enc_class->close = gst_ccm_svt_av1_enc_close;
  enc_class->encode = gst_ccm_svt_av1_enc_encode;
  enc_class->drain = gst_ccm_svt_av1_enc_drain;
  enc_class->reconfigure = gst_ccm_svt_av1_enc_reconfigure;
  enc_class->delay_frames = gst_ccm_svt_av1_enc_delay_frames;

  gst_ccm_video_enc_class_install_speed_preset(
      enc_class, 0, 13, kDefaultPreset,
      "SVT-AV1 preset (enc_mode): 0 slowest/best .. 13 fastest; low delay raises 0-7 to 8. "
      "12 runs 1080p in real time on 2 cores (a change while PLAYING restarts the encoder)");
  gst_ccm_video_enc_class_install_quantizer(enc_class, kQpMax, kDefaultQuantizer);

  g_object_class_install_property(
      gobject_class, PROP_RESTARTS,
      g_param_spec_uint("key-frame-restarts", "Key-frame restarts",
                        "How often the library was restarted to make a requested key frame (low delay)", 0,
                        G_MAXUINT, 0, GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "CCM SVT-AV1 encoder", "Codec/Encoder/Video",
      "AV1 on SVT-AV1 1.4 in low delay: live bitrate changes through per-picture QP (our rate controller), "
      "per-frame QP from GstCcmQpMeta, key frames on request, HDR10 metadata",
      "gst-ccm developers");
}
