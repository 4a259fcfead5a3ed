/**
 * SECTION:element-ccmx265enc
 * @title: ccmx265enc
 *
 * H.265 encoder on libx265 3.5 for live use:
 * - `bitrate` changes while PLAYING go through x265_encoder_reconfig: no reopen,
 *   no new headers, no extra IDR (stock x265enc reopens the encoder each time).
 * - GstCcmQpMeta on a frame sets that frame's QP (x265_picture.forceqp) and,
 *   optionally, per-block QP offsets (x265_picture.quantOffsets).
 * - Force-key-unit events make the requested frame an IDR; VPS/SPS/PPS are
 *   repeated on every key frame, so receivers can join at any key frame.
 * - zerolatency tuning by default (no look-ahead, no B-frames, one frame thread):
 *   each frame leaves as soon as it is encoded.
 * - HDR10: mastering display and content light level from the caps become SEI.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=300 ! video/x-raw,format=I420_10LE ! ccmx265enc bitrate=3000 ! h265parse ! matroskamux ! filesink location=out.mkv
 * ]|
 */
#include "enc/ccmx265enc.h"

#include "common/qp_meta.h"

#include <gst/codecparsers/gsth265parser.h>
#include <x265.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(ccm_x265_enc_debug);
#define GST_CAT_DEFAULT ccm_x265_enc_debug

namespace {

constexpr int kQpMax = 51;
constexpr int kDefaultPreset = 0;  // ultrafast: 1080p in real time on a few cores
constexpr int kMinSize = 16;       // one CTU of the smallest size x265 has

struct InputFormat {
  GstVideoFormat format;
  int depth;
  int csp;
  const char* profile;  // caps profile of what x265 signals for it
};

// 8-bit 4:2:2 has no profile of its own: x265 signals Main 4:2:2 10.
constexpr InputFormat kFormats[] = {
    {GST_VIDEO_FORMAT_I420, 8, X265_CSP_I420, "main"},
    {GST_VIDEO_FORMAT_I420_10LE, 10, X265_CSP_I420, "main-10"},
    {GST_VIDEO_FORMAT_Y42B, 8, X265_CSP_I422, "main-422-10"},
    {GST_VIDEO_FORMAT_I422_10LE, 10, X265_CSP_I422, "main-422-10"},
    {GST_VIDEO_FORMAT_Y444, 8, X265_CSP_I444, "main-444"},
    {GST_VIDEO_FORMAT_Y444_10LE, 10, X265_CSP_I444, "main-444-10"},
};

const InputFormat* find_format(GstVideoFormat f) {
  for (const auto& fmt : kFormats)
    if (fmt.format == f) return &fmt;
  return nullptr;
}

// HEVC general tier and level limits (ITU-T H.265 tables A.8 / A.9), Main tier.
// x265 derives the level from the rate-control settings and refuses (3.5: with a
// warning only, and a crash when no level fits) a reconfigure that would change it,
// so we pin the level at open and reopen when a new bitrate leaves it.
struct LevelLimits {
  int idc;                  // level * 30 in the bitstream, level * 10 in x265's levelIdc
  uint64_t max_luma_ps;     // samples per picture
  uint64_t max_luma_sr;     // samples per second
  unsigned max_br_main;     // kbit/s
  unsigned max_cpb_main;    // kbit
};
constexpr LevelLimits kLevels[] = {
    {10, 36864, 552960, 128, 350},
    {20, 122880, 3686400, 1500, 1500},
    {21, 245760, 7372800, 3000, 3000},
    {30, 552960, 16588800, 6000, 6000},
    {31, 983040, 33177600, 10000, 10000},
    {40, 2228224, 66846720, 12000, 12000},
    {41, 2228224, 133693440, 20000, 20000},
    {50, 8912896, 267386880, 25000, 25000},
    {51, 8912896, 534773760, 40000, 40000},
    {52, 8912896, 1069547520, 60000, 60000},
    {60, 35651584, 1069547520, 60000, 60000},
    {61, 35651584, 2139095040, 120000, 120000},
    {62, 35651584, 4278190080ull, 240000, 240000},
};

bool picture_fits(const LevelLimits& l, int w, int h, double fps) {
  const uint64_t luma = uint64_t(w) * uint64_t(h);
  const double side = std::sqrt(8.0 * double(l.max_luma_ps));
  return luma <= l.max_luma_ps && w <= side && h <= side && luma * fps <= double(l.max_luma_sr);
}

bool rate_fits(const LevelLimits& l, unsigned max_rate, unsigned cpb) {
  return max_rate <= l.max_br_main && cpb <= l.max_cpb_main;
}

// What x265's VBV gets for a mode and bitrate (kbit/s and kbit).
struct RcValues {
  int mode;
  int bitrate, vbv_max, vbv_buffer;
};

RcValues rc_values(const GstCcmEncSettings& s) {
  const int b = int(std::max(1u, s.bitrate));
  switch (s.rate_control) {
    case GST_CCM_RATE_CONTROL_CQP:
      return {X265_RC_CQP, 0, 0, 0};
    case GST_CCM_RATE_CONTROL_VBR:
      // Average on target, peaks up to 1.5x for up to 2 s of buffer.
      return {X265_RC_ABR, b, b + b / 2, 2 * b};
    case GST_CCM_RATE_CONTROL_CBR:
    default:
      // A full second of buffer lets a key frame through at normal quality; low
      // latency halves it so a burst drains within half a second.
      return {X265_RC_ABR, b, b, s.low_latency ? std::max(1, b / 2) : b};
  }
}

// Both read back with x265_encoder_parameters into defaulted structs, strings
// owned alike (own_strings): byte-equal means configure() left the parameters as
// they were, but for scenecutBias, which configure() divides by 100 every time.
bool same_configuration(const x265_param& a, const x265_param& b) {
  x265_param a2 = a;
  a2.scenecutBias = b.scenecutBias;
  return memcmp(&a2, &b, sizeof(x265_param)) == 0;
}

// A prefix SEI NAL unit (4-byte start code included) with the HDR10 static
// metadata the caps carry: mastering display colour volume (ITU-T H.265 D.2.28;
// primaries in the order green, blue, red) and content light level (D.2.35).
// codecparsers writes the NAL unit (header, payload sizes, emulation prevention,
// trailing bits). Empty when the caps carry neither.
std::vector<guint8> hdr10_sei(const GstCcmHdrInfo& hdr) {
  GArray* messages = g_array_new(FALSE, TRUE, sizeof(GstH265SEIMessage));
  if (hdr.has_mastering_display) {
    const GstVideoMasteringDisplayInfo& m = hdr.mastering_display;
    GstH265SEIMessage msg{};
    msg.payloadType = GST_H265_SEI_MASTERING_DISPLAY_COLOUR_VOLUME;
    GstH265MasteringDisplayColourVolume& v = msg.payload.mastering_display_colour_volume;
    constexpr int kGstIndex[3] = {1, 2, 0};  // GStreamer: 0 red, 1 green, 2 blue
    for (int i = 0; i < 3; ++i) {
      v.display_primaries_x[i] = m.display_primaries[kGstIndex[i]].x;
      v.display_primaries_y[i] = m.display_primaries[kGstIndex[i]].y;
    }
    v.white_point_x = m.white_point.x;
    v.white_point_y = m.white_point.y;
    v.max_display_mastering_luminance = m.max_display_mastering_luminance;  // 0.0001 cd/m2 both
    v.min_display_mastering_luminance = m.min_display_mastering_luminance;
    g_array_append_val(messages, msg);
  }
  if (hdr.has_content_light_level) {
    GstH265SEIMessage msg{};
    msg.payloadType = GST_H265_SEI_CONTENT_LIGHT_LEVEL;
    msg.payload.content_light_level.max_content_light_level = hdr.content_light_level.max_content_light_level;
    msg.payload.content_light_level.max_pic_average_light_level =
        hdr.content_light_level.max_frame_average_light_level;
    g_array_append_val(messages, msg);
  }
  std::vector<guint8> nal;
  if (messages->len > 0) {
    // Layer 0, temporal id 0 (nuh_temporal_id_plus1 = 1), start code 00 00 00 01.
    if (GstMemory* mem = gst_h265_create_sei_memory(0, 1, 4, messages)) {
      GstMapInfo map;
      if (gst_memory_map(mem, &map, GST_MAP_READ)) {
        nal.assign(map.data, map.data + map.size);
        gst_memory_unmap(mem, &map);
      }
      gst_memory_unref(mem);
    }
  }
  g_array_free(messages, TRUE);
  return nal;
}

// The whole per-stream state of one opened x265 encoder.
class X265Session {
 public:
  // block_offsets: frames carry per-block QP offsets (adaptive quantization on).
  static std::unique_ptr<X265Session> open(GstCcmX265Enc* element, const GstVideoInfo& info,
                                           const GstCcmEncSettings& settings, const GstCcmHdrInfo& hdr,
                                           bool block_offsets);
  ~X265Session();
  X265Session(const X265Session&) = delete;
  X265Session& operator=(const X265Session&) = delete;

  GstFlowReturn encode(GstVideoCodecFrame* frame, const GstCcmFrameParams& params);
  GstFlowReturn drain();
  bool reconfigure(const GstCcmEncSettings& wanted);
  guint delay_frames() const;
  bool drained() const { return drained_; }

 private:
  explicit X265Session(GstCcmX265Enc* element) : element_(element) {}
  bool configure(const GstVideoInfo& info, const GstCcmEncSettings& settings, const GstCcmHdrInfo& hdr);
  bool block_offsets_ = false;
  bool set_output_caps();
  GstFlowReturn push(x265_nal* nals, uint32_t count, const x265_picture& out);
  void fill_offsets(const GstCcmFrameParams& params);
  void warn_offsets_ignored();
  bool apply_rate(const GstCcmEncSettings& wanted);
  void own_strings(x265_param* p);
  void set_pools(x265_param* p);  // numaPools = pools_

  GstCcmX265Enc* element_;
  const x265_api* api_ = nullptr;
  const InputFormat* format_ = nullptr;
  GstVideoInfo info_{};
  GstCcmEncSettings settings_{};  // as applied to the library
  x265_param* param_ = nullptr;   // the encoder's parameters, read back after open
  x265_encoder* encoder_ = nullptr;
  x265_picture* picture_ = nullptr;
  std::optional<LevelLimits> level_;  // pinned level (ABR modes)
  std::vector<guint8> hdr_sei_;  // prefix SEI NAL (start code included), or empty
  std::string pools_;            // x265 keeps our pointer: must outlive the encoder
  std::vector<float> offsets_;   // x265's quant-offset grid, always passed (see fill_offsets)
  guint grid_block_ = 16, grid_x_ = 0, grid_y_ = 0;
  int quantizer_override_ = -1;  // cqp: a live quantizer change, applied per frame
  bool live_rate_ = false;       // bitrate changes in place (see configure())
  bool warned_offsets_ = false;
  bool drained_ = false;
};

void post_error(GstCcmX265Enc* element, const std::string& message, const std::string& debug) {
  GST_ELEMENT_ERROR(element, LIBRARY, SETTINGS, ("%s", message.c_str()), ("%s", debug.c_str()));
}

std::unique_ptr<X265Session> X265Session::open(GstCcmX265Enc* element, const GstVideoInfo& info,
                                               const GstCcmEncSettings& settings, const GstCcmHdrInfo& hdr,
                                               bool block_offsets) {
  std::unique_ptr<X265Session> s(new X265Session(element));
  s->block_offsets_ = block_offsets;
  if (!s->configure(info, settings, hdr)) return nullptr;
  return s;
}

bool X265Session::configure(const GstVideoInfo& info, const GstCcmEncSettings& settings,
                            const GstCcmHdrInfo& hdr) {
  info_ = info;
  settings_ = settings;
  format_ = find_format(GST_VIDEO_INFO_FORMAT(&info));
  const int w = GST_VIDEO_INFO_WIDTH(&info), h = GST_VIDEO_INFO_HEIGHT(&info);
  if (!format_) {
    post_error(element_, std::string("ccmx265enc cannot encode ") +
                             gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&info)),
               "inputs: I420, I420_10LE, Y42B, I422_10LE, Y444, Y444_10LE");
    return false;
  }
  // Limits x265 would refuse with a line on stderr only: name them here.
  if (w < kMinSize || h < kMinSize) {
    post_error(element_, "x265 needs at least 16x16 pixels, got " + std::to_string(w) + "x" + std::to_string(h),
               "the picture must hold one coding tree unit (16x16 is the smallest x265 has)");
    return false;
  }
  if (format_->csp == X265_CSP_I420 && (w % 2 || h % 2)) {
    post_error(element_,
               "x265 needs an even width and height for 4:2:0, got " + std::to_string(w) + "x" + std::to_string(h),
               "4:2:0 chroma has half the luma size in both directions; feed Y444 (4:4:4) for odd sizes, as "
               "ccmencbin does, or crop");
    return false;
  }
  if (format_->csp == X265_CSP_I422 && w % 2) {
    post_error(element_, "x265 needs an even width for 4:2:2, got " + std::to_string(w),
               "4:2:2 chroma has half the luma width; feed Y444 for odd widths");
    return false;
  }

  int err = 0;
  api_ = x265_api_query(format_->depth, X265_BUILD, &err);
  if (!api_) {
    const char* why = (err >= 0 && err < int(G_N_ELEMENTS(x265_api_query_errnames))) ? x265_api_query_errnames[err]
                                                                                      : "unknown";
    post_error(element_, "this libx265 has no " + std::to_string(format_->depth) + "-bit encoder",
               std::string("x265_api_query(") + std::to_string(format_->depth) + "): " + why);
    return false;
  }

  param_ = api_->param_alloc();
  const int preset = std::clamp(settings.speed_preset, 0, 9);
  const char* tune = settings.low_latency ? "zerolatency" : nullptr;
  if (api_->param_default_preset(param_, x265_preset_names[preset], tune) < 0) {
    post_error(element_, std::string("x265 refused speed-preset ") + x265_preset_names[preset],
               "x265_param_default_preset failed");
    return false;
  }
  x265_param* p = param_;
  p->logLevel = gst_debug_category_get_threshold(GST_CAT_DEFAULT) >= GST_LEVEL_INFO ? X265_LOG_INFO : X265_LOG_ERROR;
  p->internalCsp = format_->csp;
  p->sourceWidth = w;
  p->sourceHeight = h;
  p->fpsNum = guint32(GST_VIDEO_INFO_FPS_N(&info));
  p->fpsDenom = guint32(GST_VIDEO_INFO_FPS_D(&info));
  p->bRepeatHeaders = 1;  // VPS/SPS/PPS with every key frame: receivers join there
  p->bAnnexB = 1;
  p->bEmitInfoSEI = 0;    // the encoder's command line in every stream: bytes nobody reads
  p->bOpenGOP = 0;        // key frames are IDRs, decodable on their own
  // With an interval the base forces the key frames (so the interval can change
  // live); x265's own GOP is then unbounded.
  if (settings.keyframe_interval > 0) p->keyframeMax = -1;
  if (settings.threads > 0) {
    pools_ = std::to_string(settings.threads);
    set_pools(p);
  }
  // Pictures smaller than the preset's CTU need 16x16 CTUs.
  if (std::min(w, h) < int(p->maxCUSize)) {
    p->maxCUSize = 16;
    p->minCUSize = std::min(p->minCUSize, 8u);
    p->maxTUSize = std::min(p->maxTUSize, 16u);
    p->rc.qgSize = std::min(p->rc.qgSize, 16u);
  }
  // The preset's minimum CU size stays, also where x265 then pads the picture
  // (1080 is not a multiple of ultrafast's 16): 8x8 CUs to avoid the padding cost
  // ultrafast 38% more CPU per 1080p frame (x265 program, --min-cu-size 8, one
  // thread), and the reopen below keeps padded encoders' bitrate changes live.

  const RcValues rc = rc_values(settings);
  p->rc.rateControlMode = rc.mode;
  if (rc.mode == X265_RC_CQP) {
    p->rc.qp = int(std::min<guint>(settings.quantizer, kQpMax));
  } else {
    p->rc.bitrate = rc.bitrate;
    p->rc.vbvMaxBitrate = rc.vbv_max;
    p->rc.vbvBufferSize = rc.vbv_buffer;
    // Per-block offsets (quantOffsets) only act with adaptive quantization on;
    // ultrafast turns it off. A tiny strength keeps x265's own AQ out of the way.
    // Only once frames bring offsets (see gst_ccm_x265_enc_encode): the variance
    // pass costs ultrafast 16% more CPU per 1080p frame (x265 program, one thread).
    if (block_offsets_ && (p->rc.aqMode == X265_AQ_NONE || p->rc.aqStrength <= 0.0)) {
      p->rc.aqMode = X265_AQ_VARIANCE;
      p->rc.aqStrength = 0.01;
    }
    // Pin the level (see kLevels) with room for the bitrate to grow live: four
    // times the opening rate, and at least level 4.1's 20 Mbit/s, where a level
    // that fits the picture allows it. Decoders of any recent device take 4.1+.
    const double fps = double(p->fpsNum) / double(p->fpsDenom);
    const unsigned want_rate = std::max(4u * unsigned(rc.vbv_max), 20000u);
    const unsigned want_cpb = std::max(4u * unsigned(rc.vbv_buffer), 20000u);
    const LevelLimits* fit = nullptr;
    const LevelLimits* roomy = nullptr;
    for (const auto& l : kLevels) {
      if (!picture_fits(l, w, h, fps)) continue;
      if (l.idc >= 50 && p->maxCUSize < 32) break;  // levels 5+ need 32x32 CTUs: tiny pictures stay below
      if (!fit && rate_fits(l, unsigned(rc.vbv_max), unsigned(rc.vbv_buffer))) fit = &l;
      if (!roomy && rate_fits(l, want_rate, want_cpb)) roomy = &l;
    }
    if (const LevelLimits* chosen = roomy ? roomy : fit) {
      level_ = *chosen;
      p->levelIdc = chosen->idc;
    }
  }

  // HDR10 static metadata goes into an SEI we add ourselves (see push()): x265
  // 3.5 loses maxCLL/maxFALL when it copies its parameters (x265_copy_params has
  // no line for them) and strdup()s the mastering display string into copies it
  // never frees.
  // The SEI NAL unit itself comes from codecparsers (gst_h265_create_sei_memory).
  hdr_sei_ = hdr10_sei(hdr);
  if (hdr_sei_.empty() && (hdr.has_mastering_display || hdr.has_content_light_level))
    GST_WARNING_OBJECT(element_, "could not build the HDR10 SEI: the stream goes without it");

  // Colour description in the VUI, from the caps' colorimetry (GStreamer fills
  // in the usual default for the size when the caps have none).
  const GstVideoColorimetry& c = info.colorimetry;
  p->vui.bEnableVideoSignalTypePresentFlag = 1;
  p->vui.bEnableColorDescriptionPresentFlag = 1;
  p->vui.colorPrimaries = int(gst_video_color_primaries_to_iso(c.primaries));
  p->vui.transferCharacteristics = int(gst_video_transfer_function_to_iso(c.transfer));
  p->vui.matrixCoeffs = int(gst_video_color_matrix_to_iso(c.matrix));
  p->vui.bEnableVideoFullRangeFlag = c.range == GST_VIDEO_COLOR_RANGE_0_255;
  for (int* v : {&p->vui.colorPrimaries, &p->vui.transferCharacteristics, &p->vui.matrixCoeffs})
    if (*v <= 0) *v = 2;  // unspecified

  // Open twice. x265 3.5's x265_encoder_reconfig runs Encoder::configure() on its
  // copy of the caller's parameters, which repoints the encoder at that copy while
  // the rate controller keeps reading the original: bitrate, VBV and CRF changes
  // are accepted and never reach rate control (measured here: 4000 -> 1000 kbit/s
  // left the output at ~3900 for seconds). The other entry, taken when forceFlush
  // differs, skips configure(), and the change then lands on the next frame; but
  // it later copies that parameter copy over the live one, so the copy must hold
  // the configured values. Re-opening with the parameters read back from the first
  // open makes it so (configure() is idempotent on them but for scenecutBias).
  x265_encoder* probe = api_->encoder_open(p);
  if (!probe) {
    gchar* what = g_strdup_printf(
        "%dx%d %s at %u/%u fps, speed-preset %s%s, %s", w, h, gst_video_format_to_string(format_->format),
        p->fpsNum, p->fpsDenom, x265_preset_names[preset], settings.low_latency ? " zerolatency" : "",
        rc.mode == X265_RC_CQP ? ("qp " + std::to_string(p->rc.qp)).c_str()
                               : ("bitrate " + std::to_string(rc.bitrate) + " kbit/s").c_str());
    post_error(element_, "x265 refused to open an encoder for these settings",
               std::string(what) + " (x265 prints the parameter at fault on stderr)");
    g_free(what);
    return false;
  }
  // cqp encoders (their quantizer changes go through forceqp) keep the first open.
  if (rc.mode == X265_RC_CQP) {
    encoder_ = probe;
    live_rate_ = false;
  } else {
    // Defaults first: x265_encoder_parameters leaves some fields untouched.
    x265_param* configured = api_->param_alloc();
    api_->param_default(configured);
    api_->encoder_parameters(probe, configured);
    api_->encoder_close(probe);
    own_strings(configured);
    // A padded picture (a size that is not a multiple of the minimum CU) reads
    // back padded: reopen at the picture's own size, which x265 pads the same way
    // again (and crops again), then compare with what the first open read back.
    const int padded_w = configured->sourceWidth, padded_h = configured->sourceHeight;
    configured->sourceWidth = w;
    configured->sourceHeight = h;
    encoder_ = api_->encoder_open(configured);
    configured->sourceWidth = padded_w;
    configured->sourceHeight = padded_h;
    if (!encoder_) {
      api_->param_free(configured);
      post_error(element_, "x265 refused its own configured parameters", "second x265_encoder_open failed");
      return false;
    }
    api_->param_default(param_);
    api_->encoder_parameters(encoder_, param_);
    own_strings(param_);
    live_rate_ = same_configuration(*param_, *configured);
    if (!live_rate_)
      GST_WARNING_OBJECT(element_, "x265 changed its configuration on reopen: bitrate changes will reopen");
    api_->param_free(configured);
  }
  if (!live_rate_) {
    api_->param_default(param_);
    api_->encoder_parameters(encoder_, param_);
    own_strings(param_);
  }
  picture_ = api_->picture_alloc();
  api_->picture_init(param_, picture_);

  // quantOffsets grid: one value per 16x16 luma block (8x8 with qg-size 8),
  // rounded up, as x265's look-ahead lays it out.
  grid_block_ = param_->rc.qgSize == 8 ? 8 : 16;
  grid_x_ = guint((w + 15) / 16) * (16 / grid_block_);
  grid_y_ = guint((h + 15) / 16) * (16 / grid_block_);
  offsets_.assign(size_t(grid_x_) * grid_y_, 0.0f);

  GST_INFO_OBJECT(element_,
                  "x265 %s %d-bit %dx%d @ %u/%u, preset %s%s, rc %s bitrate %d vbv %d/%d qp %d, level %d, aq %d "
                  "qg %u, keyint %d",
                  api_->version_str, api_->bit_depth, w, h, p->fpsNum, p->fpsDenom, x265_preset_names[preset],
                  settings.low_latency ? " zerolatency" : "", rc.mode == X265_RC_CQP ? "cqp" : "abr",
                  param_->rc.bitrate, param_->rc.vbvMaxBitrate, param_->rc.vbvBufferSize, param_->rc.qp,
                  level_ ? level_->idc : 0, param_->rc.aqMode, param_->rc.qgSize, param_->keyframeMax);
  return set_output_caps();
}

bool X265Session::set_output_caps() {
  GstCaps* caps = gst_caps_new_simple("video/x-h265", "stream-format", G_TYPE_STRING, "byte-stream", "alignment",
                                      G_TYPE_STRING, "au", "profile", G_TYPE_STRING, format_->profile, nullptr);
  GstVideoCodecState* state = gst_video_encoder_set_output_state(GST_VIDEO_ENCODER(element_), caps, nullptr);
  // No reference state (the base keeps the input state): the size, rate and
  // colorimetry of the output caps come from the info we encode.
  GstVideoInfo out = info_;
  state->info = out;
  gst_video_codec_state_unref(state);
  return true;
}

X265Session::~X265Session() {
  if (encoder_) api_->encoder_close(encoder_);
  if (picture_) api_->picture_free(picture_);
  if (param_) api_->param_free(param_);
}

guint X265Session::delay_frames() const {
  if (!param_) return 0;
  // zerolatency: 0 + 0 + 1 - 1. Otherwise look-ahead, reordering and the frames
  // that other frame threads hold.
  return guint(std::max(0, param_->lookaheadDepth + param_->bframes + param_->frameNumThreads - 1));
}

// x265 keeps one offsets buffer per internal frame, allocated only if the first
// picture that created that frame carried offsets, and never clears it: a picture
// without offsets would reuse stale ones, and offsets on a recycled frame created
// without them would be written through a null pointer. So every picture carries
// the grid, zeros when the meta has none.
void X265Session::warn_offsets_ignored() {
  if (warned_offsets_) return;
  GST_WARNING_OBJECT(element_, "per-block QP offsets ignored: x265 turns adaptive quantization off in cqp; "
                               "use rate-control=cbr or vbr with a frame QP in the meta");
  warned_offsets_ = true;
}

void X265Session::fill_offsets(const GstCcmFrameParams& params) {
  if (!params.qp_offsets) {
    std::fill(offsets_.begin(), offsets_.end(), 0.0f);
    return;
  }
  if (param_->rc.aqMode == X265_AQ_NONE) warn_offsets_ignored();
  const guint mb = params.qp_block_size, mx_n = params.qp_blocks_x, my_n = params.qp_blocks_y;
  const std::span<const float> src(params.qp_offsets, size_t(mx_n) * my_n);
  // Mean of the meta blocks that overlap each x265 block (one block when the
  // meta's blocks are larger, several when smaller).
  for (guint by = 0; by < grid_y_; ++by) {
    const guint my0 = std::min(by * grid_block_ / mb, my_n - 1);
    const guint my1 = std::min(((by + 1) * grid_block_ - 1) / mb, my_n - 1);
    for (guint bx = 0; bx < grid_x_; ++bx) {
      const guint mx0 = std::min(bx * grid_block_ / mb, mx_n - 1);
      const guint mx1 = std::min(((bx + 1) * grid_block_ - 1) / mb, mx_n - 1);
      float sum = 0;
      for (guint y = my0; y <= my1; ++y)
        for (guint x = mx0; x <= mx1; ++x) sum += src[size_t(y) * mx_n + x];
      offsets_[size_t(by) * grid_x_ + bx] = sum / float((my1 - my0 + 1) * (mx1 - mx0 + 1));
    }
  }
}

GstFlowReturn X265Session::encode(GstVideoCodecFrame* frame, const GstCcmFrameParams& params) {
  GstVideoFrame vframe;
  if (!gst_video_frame_map(&vframe, &info_, frame->input_buffer, GST_MAP_READ)) {
    gst_video_codec_frame_unref(frame);
    GST_ELEMENT_ERROR(element_, STREAM, ENCODE, ("could not map the input frame"), (nullptr));
    return GST_FLOW_ERROR;
  }
  x265_picture* pic = picture_;
  api_->picture_init(param_, pic);
  for (int i = 0; i < 3; ++i) {
    pic->planes[i] = GST_VIDEO_FRAME_PLANE_DATA(&vframe, i);
    pic->stride[i] = GST_VIDEO_FRAME_PLANE_STRIDE(&vframe, i);
  }
  pic->bitDepth = format_->depth;
  pic->colorSpace = format_->csp;
  pic->pts = frame->system_frame_number;  // matches the packet to its frame
  pic->sliceType = params.force_key_frame ? X265_TYPE_IDR : X265_TYPE_AUTO;
  if (params.qp >= 0)
    pic->forceqp = std::min(params.qp, kQpMax) + 1;
  else if (quantizer_override_ >= 0)
    pic->forceqp = quantizer_override_ + 1;
  if (block_offsets_) {
    fill_offsets(params);
    pic->quantOffsets = offsets_.data();
  } else if (params.qp_offsets) {
    warn_offsets_ignored();
  }
  gst_video_codec_frame_unref(frame);

  x265_nal* nals = nullptr;
  uint32_t count = 0;
  x265_picture out;
  api_->picture_init(param_, &out);
  const int got = api_->encoder_encode(encoder_, &nals, &count, pic, &out);
  gst_video_frame_unmap(&vframe);
  if (got < 0) {
    GST_ELEMENT_ERROR(element_, STREAM, ENCODE, ("x265 failed to encode a frame"), ("x265_encoder_encode: %d", got));
    return GST_FLOW_ERROR;
  }
  return got > 0 ? push(nals, count, out) : GST_FLOW_OK;
}

GstFlowReturn X265Session::drain() {
  GstFlowReturn ret = GST_FLOW_OK;
  if (drained_) return ret;
  drained_ = true;
  for (;;) {
    x265_nal* nals = nullptr;
    uint32_t count = 0;
    x265_picture out;
    api_->picture_init(param_, &out);
    const int got = api_->encoder_encode(encoder_, &nals, &count, nullptr, &out);
    if (got <= 0) {
      if (got < 0) GST_WARNING_OBJECT(element_, "x265 failed while draining (%d)", got);
      break;
    }
    const GstFlowReturn r = push(nals, count, out);
    if (r != GST_FLOW_OK && ret == GST_FLOW_OK) ret = r;
  }
  return ret;
}

GstFlowReturn X265Session::push(x265_nal* nals, uint32_t count, const x265_picture& out) {
  auto* venc = GST_VIDEO_ENCODER(element_);
  GstVideoCodecFrame* frame = gst_video_encoder_get_frame(venc, int(out.pts));
  if (!frame) {
    GST_WARNING_OBJECT(element_, "x265 returned a picture for frame %" G_GINT64_FORMAT " that is gone", out.pts);
    return GST_FLOW_OK;
  }
  const bool key = out.sliceType == X265_TYPE_IDR;
  // Key frames carry the parameter sets (bRepeatHeaders) and, for HDR, our
  // HDR10 SEI after them, before the first slice.
  const bool with_sei = key && !hdr_sei_.empty();
  gsize size = with_sei ? hdr_sei_.size() : 0;
  for (uint32_t i = 0; i < count; ++i) size += nals[i].sizeBytes;
  GstBuffer* buffer = gst_video_encoder_allocate_output_buffer(venc, size);
  gsize offset = 0;
  bool sei_written = !with_sei;
  for (uint32_t i = 0; i < count; ++i) {
    if (!sei_written && nals[i].type < 32) {  // first VCL NAL unit
      gst_buffer_fill(buffer, offset, hdr_sei_.data(), hdr_sei_.size());
      offset += hdr_sei_.size();
      sei_written = true;
    }
    gst_buffer_fill(buffer, offset, nals[i].payload, nals[i].sizeBytes);
    offset += nals[i].sizeBytes;
  }
  gst_buffer_set_size(buffer, offset);
  frame->output_buffer = buffer;
  if (key)
    GST_VIDEO_CODEC_FRAME_SET_SYNC_POINT(frame);
  else
    GST_VIDEO_CODEC_FRAME_UNSET_SYNC_POINT(frame);
  return gst_video_encoder_finish_frame(venc, frame);
}

// x265 4.x (X265_BUILD 215 in Debian 13's 4.1) keeps the parameters' strings in
// char[X265_MAX_STRING_SIZE] arrays inside x265_param; 3.5 (build 199) points at
// strings. X265_MAX_STRING_SIZE comes with the arrays.
#ifdef X265_MAX_STRING_SIZE
// The arrays travel with every copy of the parameters: nothing to own.
void X265Session::own_strings(x265_param*) {}

void X265Session::set_pools(x265_param* p) { g_strlcpy(p->numaPools, pools_.c_str(), sizeof p->numaPools); }
#else
// x265_encoder_parameters strdup()s every string it copies and x265_param_free
// frees none: free them, and point numaPools back at our own string.
void X265Session::own_strings(x265_param* p) {
  for (const char** str : {&p->numaPools, &p->csvfn, &p->scalingLists, &p->analysisReuseFileName,
                           &p->rc.statFileName, &p->rc.lambdaFileName, &p->masteringDisplayColorVolume,
                           &p->toneMapFile, &p->analysisSave, &p->analysisLoad, &p->naluFile}) {
    free(const_cast<char*>(*str));
    *str = nullptr;
  }
  if (!pools_.empty()) set_pools(p);
}

void X265Session::set_pools(x265_param* p) { p->numaPools = pools_.c_str(); }
#endif

// Bitrate (and VBV) in place. False when the change leaves the pinned level (the
// caller reopens with a level that fits) or the encoder cannot change in place.
bool X265Session::apply_rate(const GstCcmEncSettings& wanted) {
  const RcValues rc = rc_values(wanted);
  if (!live_rate_ || !level_ || !rate_fits(*level_, unsigned(rc.vbv_max), unsigned(rc.vbv_buffer))) return false;
  x265_param* next = api_->param_alloc();
  memcpy(next, param_, sizeof(x265_param));
  next->rc.bitrate = rc.bitrate;
  next->rc.vbvMaxBitrate = rc.vbv_max;
  next->rc.vbvBufferSize = rc.vbv_buffer;
  // The entry that skips Encoder::configure() (see configure()). Its side effect,
  // a look-ahead refill request, is consumed by the very next picture, which the
  // base class sends right after this call.
  next->forceFlush = 1;
  const int r = api_->encoder_reconfig(encoder_, next);
  api_->param_free(next);
  GST_INFO_OBJECT(element_, "x265_encoder_reconfig bitrate %d vbv %d/%d -> %d", rc.bitrate, rc.vbv_max,
                  rc.vbv_buffer, r);
  if (r != 0) return false;
  param_->rc.bitrate = rc.bitrate;
  param_->rc.vbvMaxBitrate = rc.vbv_max;
  param_->rc.vbvBufferSize = rc.vbv_buffer;
  return true;
}

bool X265Session::reconfigure(const GstCcmEncSettings& wanted) {
  const GstCcmEncSettings& now = settings_;
  // Everything x265 fixes at open (preset, tune, threads, mode) needs a reopen,
  // as does switching between x265's own GOP and ours.
  if (wanted.rate_control != now.rate_control || wanted.speed_preset != now.speed_preset ||
      wanted.threads != now.threads || wanted.low_latency != now.low_latency ||
      (wanted.keyframe_interval > 0) != (now.keyframe_interval > 0))
    return false;
  if (wanted.rate_control == GST_CCM_RATE_CONTROL_CQP) {
    // x265 cannot change its CQP quantizer in place; forceqp on every frame can.
    quantizer_override_ =
        wanted.quantizer == guint(param_->rc.qp) ? -1 : int(std::min<guint>(wanted.quantizer, kQpMax));
  } else if (wanted.bitrate != now.bitrate && !apply_rate(wanted)) {
    return false;
  }
  settings_ = wanted;
  return true;
}

}  // namespace

struct _GstCcmX265Enc {
  GstCcmVideoEnc parent;
  X265Session* session;
  // What the session was opened with, to reopen after a drain.
  GstVideoInfo info;
  GstCcmEncSettings settings;
  GstCcmHdrInfo hdr;
  gboolean block_offsets;  // frames have carried per-block QP offsets: sessions open with adaptive quantization
};

G_DEFINE_TYPE_WITH_CODE(GstCcmX265Enc, gst_ccm_x265_enc, GST_TYPE_CCM_VIDEO_ENC,
                        GST_DEBUG_CATEGORY_INIT(ccm_x265_enc_debug, "ccmx265enc", 0, "gst-ccm x265 encoder"))

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("video/x-raw, format = (string) { I420, I420_10LE, Y42B, I422_10LE, Y444, Y444_10LE }, "
                    "width = (int) [ 1, 16384 ], height = (int) [ 1, 16384 ], "
                    "framerate = (fraction) [ 0/1, MAX ]"));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("video/x-h265, stream-format = (string) byte-stream, alignment = (string) au, "
                    "profile = (string) { main, main-10, main-422-10, main-444, main-444-10 }, "
                    "width = (int) [ 1, 16384 ], height = (int) [ 1, 16384 ], "
                    "framerate = (fraction) [ 0/1, MAX ]"));

static void close_session(GstCcmX265Enc* self) {
  delete self->session;
  self->session = nullptr;
}

static gboolean gst_ccm_x265_enc_open(GstCcmVideoEnc* enc, const GstVideoInfo* info,
                                      const GstCcmEncSettings* settings, const GstCcmHdrInfo* hdr) {
  auto* self = GST_CCM_X265_ENC(enc);
  close_session(self);
  self->info = *info;
  self->settings = *settings;
  self->hdr = *hdr;
  self->session = X265Session::open(self, *info, *settings, *hdr, self->block_offsets).release();
  return self->session != nullptr;
}

static void gst_ccm_x265_enc_close(GstCcmVideoEnc* enc) { close_session(GST_CCM_X265_ENC(enc)); }

static GstFlowReturn gst_ccm_x265_enc_encode(GstCcmVideoEnc* enc, GstVideoCodecFrame* frame,
                                             const GstCcmFrameParams* params) {
  auto* self = GST_CCM_X265_ENC(enc);
  if (self->session && self->session->drained()) {
    // More frames after EOS (a new segment without flush): x265 takes no new
    // pictures once flushed, start a fresh encoder.
    close_session(self);
    self->session = X265Session::open(self, self->info, self->settings, self->hdr, self->block_offsets).release();
  } else if (self->session && params->qp_offsets && !self->block_offsets &&
             self->settings.rate_control != GST_CCM_RATE_CONTROL_CQP) {
    // The first frame with per-block offsets: x265 takes them only with adaptive
    // quantization, left off until now for its cost. Drain, reopen with it (from
    // here on, also on later reopens); the frame becomes a key frame.
    self->block_offsets = TRUE;
    GstCcmEncSettings now;
    gst_ccm_video_enc_get_settings(enc, &now);
    const GstFlowReturn drained = self->session->drain();
    close_session(self);
    self->settings = now;
    self->session = X265Session::open(self, self->info, self->settings, self->hdr, true).release();
    if (drained != GST_FLOW_OK) {
      gst_video_codec_frame_unref(frame);
      return drained;
    }
  }
  if (!self->session) {
    gst_video_codec_frame_unref(frame);
    return GST_FLOW_NOT_NEGOTIATED;
  }
  return self->session->encode(frame, *params);
}

static GstFlowReturn gst_ccm_x265_enc_drain(GstCcmVideoEnc* enc) {
  auto* self = GST_CCM_X265_ENC(enc);
  return self->session ? self->session->drain() : GST_FLOW_OK;
}

static gboolean gst_ccm_x265_enc_reconfigure(GstCcmVideoEnc* enc, const GstCcmEncSettings* settings) {
  auto* self = GST_CCM_X265_ENC(enc);
  if (!self->session || self->session->drained() || !self->session->reconfigure(*settings)) return FALSE;
  self->settings = *settings;
  return TRUE;
}

static guint gst_ccm_x265_enc_delay_frames(GstCcmVideoEnc* enc) {
  auto* self = GST_CCM_X265_ENC(enc);
  return self->session ? self->session->delay_frames() : 0;
}

static void gst_ccm_x265_enc_finalize(GObject* object) {
  close_session(GST_CCM_X265_ENC(object));
  G_OBJECT_CLASS(gst_ccm_x265_enc_parent_class)->finalize(object);
}

static void gst_ccm_x265_enc_init(GstCcmX265Enc* self) { self->session = nullptr; }

// speed-preset as x265enc names it (nicks as upstream's); the values are
// x265_preset_names' indices, which the property took as a number before.
static GType speed_preset_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {0, "ultrafast", "ultrafast"}, {1, "superfast", "superfast"}, {2, "veryfast", "veryfast"},
      {3, "faster", "faster"},       {4, "fast", "fast"},           {5, "medium", "medium"},
      {6, "slow", "slow"},           {7, "slower", "slower"},       {8, "veryslow", "veryslow"},
      {9, "placebo", "placebo"},     {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstCcmX265SpeedPreset", values));
  return type;
}

static void gst_ccm_x265_enc_class_init(GstCcmX265EncClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstCcmVideoEncClass* enc_class = GST_CCM_VIDEO_ENC_CLASS(klass);
  gobject_class->finalize = gst_ccm_x265_enc_finalize;

  enc_class->open = gst_ccm_x265_enc_open;
  enc_class->close = gst_ccm_x265_enc_close;
  enc_class->encode = gst_ccm_x265_enc_encode;
  enc_class->drain = gst_ccm_x265_enc_drain;
  enc_class->reconfigure = gst_ccm_x265_enc_reconfigure;
  enc_class->delay_frames = gst_ccm_x265_enc_delay_frames;

  gst_ccm_video_enc_class_install_speed_preset_enum(
      enc_class, speed_preset_get_type(), kDefaultPreset,
      "x265 preset, by name as x265enc's (numbers 0-9 = ultrafast..placebo still work); a change while "
      "PLAYING reopens the encoder");
  gst_ccm_video_enc_class_install_quantizer(enc_class, kQpMax, 28);
  gst_type_mark_as_plugin_api(speed_preset_get_type(), GstPluginAPIFlags(0));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "CCM x265 H.265 encoder", "Codec/Encoder/Video",
      "H.265 on libx265 with live bitrate changes (no reopen, no extra IDR), per-frame QP and "
      "per-block QP offsets from GstCcmQpMeta, IDR on force-key-unit, HDR10 SEI",
      "gst-ccm developers");
}
