// See svt_session.h.
#include "enc/svt_session.h"

#include <algorithm>
#include <cmath>

namespace ccm::svt {

namespace {

constexpr guint kRandomAccessLevels = 4;
constexpr guint kRandomAccessLookAhead = 16;
// keyframe-interval=0: a key frame every 5 seconds, as SVT's own "auto" (-2) aims
// for; explicit, so that the rate controller knows which pictures are key frames.
constexpr double kDefaultKeySeconds = 5.0;

// The HDR structures of EbSvtAv1EncConfiguration are written to the bitstream as
// stored, and the bitstream is big-endian ("values are stored in BE format").
uint16_t be16(uint32_t v) { return GUINT16_TO_BE(uint16_t(std::min<uint32_t>(v, 0xffff))); }
uint32_t be32(uint32_t v) { return GUINT32_TO_BE(v); }

}  // namespace

const char* error_name(EbErrorType e) {
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

SvtSession::~SvtSession() {
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

std::unique_ptr<SvtSession> SvtSession::open(const std::vector<ConfigField>& fields, std::string* what,
                                             std::string* detail) {
  auto s = std::make_unique<SvtSession>();
  EbSvtAv1EncConfiguration defaults{};
  EbErrorType r = svt_av1_enc_init_handle(&s->handle_, nullptr, &defaults);
  if (r != EB_ErrorNone) {
    s->handle_ = nullptr;
    *what = "SVT-AV1 could not create an encoder (svt_av1_enc_init_handle)";
    *detail = error_name(r);
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
    *detail = std::string(error_name(r)) + "; SVT-AV1 prints its reason on stderr (Svt[error])";
    return nullptr;
  }
  r = svt_av1_enc_init(s->handle_);
  if (r != EB_ErrorNone) {
    *what = "SVT-AV1 could not start the encoder (svt_av1_enc_init)";
    *detail = std::string(error_name(r)) + " (out of memory or threads?)";
    return nullptr;
  }
  s->initialised_ = true;
  return s;
}

EbErrorType SvtSession::send(EbBufferHeaderType& in, uint32_t new_target_bps) {
#if SVT_AV1_CHECK_VERSION(2, 0, 0)
  // The node and its data are copied by the library during the call.
  SvtAv1RateInfo rate{};
  EbPrivDataNode node{};
  if (new_target_bps > 0) {
    rate.target_bit_rate = new_target_bps;
    node.node_type = RATE_CHANGE_EVENT;
    node.data = &rate;
    node.size = sizeof(rate);
    in.p_app_private = &node;
    in.pic_type = EB_AV1_KEY_PICTURE;  // the only picture that may carry it
  }
#else
  g_assert(new_target_bps == 0);  // 1.4.1 has no RATE_CHANGE_EVENT: the caller reopens
#endif
  const EbErrorType r = svt_av1_enc_send_picture(handle_, &in);
  in.p_app_private = nullptr;
  if (r == EB_ErrorNone) ++pictures_;
  return r;
}

bool SvtSession::send_blank_picture() {
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

Plan make_plan(const GstVideoInfo& info, const GstCcmEncSettings& s, const GstCcmHdrInfo& hdr, bool library_rate) {
  Plan plan;
  plan.low_delay = s.low_latency;
  const bool cqp = s.rate_control == GST_CCM_RATE_CONTROL_CQP;
  plan.library_rate = library_rate && plan.low_delay && !cqp;
  plan.per_picture_qp = (plan.low_delay && !plan.library_rate) || cqp;
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
    if (mode == SVT_AV1_RC_MODE_CBR && !plan.low_delay && !kRandomAccessCbr) {
      mode = SVT_AV1_RC_MODE_VBR;
      why = " (vbr for cbr: SVT-AV1 2.x has no cbr in random access)";
    }
    add("rate_control_mode", std::to_string(mode) + why, [=](auto& c) { c.rate_control_mode = mode; });
    const uint32_t bps = uint32_t(std::min<guint64>(guint64(s.bitrate) * 1000, G_MAXUINT32));
    add("target_bit_rate", std::to_string(bps), [=](auto& c) { c.target_bit_rate = bps; });
  }
  if (plan.low_delay) {
    // The pattern kLowDelayLayerQpOffset is measured for, whatever the default;
    // SVT's own rate control keeps the library's default structure.
    if (plan.per_picture_qp)
      add("hierarchical_levels", std::to_string(kLowDelayLevels),
          [](auto& c) { c.hierarchical_levels = kLowDelayLevels; });
    // Scene-change detection would not add key frames in low delay, but off it
    // keeps the key-frame schedule exactly the one we told the library.
    if (plan.per_picture_qp) add("scene_change_detection", "0", [](auto& c) { c.scene_change_detection = 0; });
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

}  // namespace ccm::svt
