/**
 * SECTION:element-ccmencbin
 * @title: ccmencbin
 *
 * One encoder element for every machine. ccmencbin looks at the GPUs and CPU of
 * this machine and the encoder elements this GStreamer has, picks the best
 * encoder for the codec downstream accepts (hardware first, then software), and
 * configures it for low latency, with one set of properties whatever the encoder
 * underneath: `bitrate` is always kbit/s, `rate-control` is always cbr/vbr/cqp.
 *
 * Inside: videoconvert ! [capsfilter] ! <encoder> ! <parser>. The output is
 * parsed, so muxers and RTP payloaders take it as it is.
 *
 * It posts an element message `ccm-encoder-selected` (factory, codec, hardware,
 * device, reason, passed-over) when it has chosen.
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
#include "encbin/registry_probe.h"
#include "memory/ccmdmabufpool.h"

#include <gst/video/video.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <span>
#include <string>
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
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstCcmRateControl", values));
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
constexpr guint kDefaultQuantizer = 28;
// Variable-framerate input (framerate=0/1) is given this nominal rate for encoders
// that refuse 0/1 (x265enc) or need a rate for their bit budget; timestamps stay real.
constexpr int kAssumedFpsN = 30;
// keyframe-interval=0: one key frame every this many seconds of frames, the same
// for every encoder (their own defaults range from 1 s for av1enc to 10 s for
// x264enc); streams that need one sooner ask with force-key-unit.
constexpr int kAutoKeyframeSeconds = 10;

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
};

// The encoding chain in use; built on the first CAPS event, torn down in READY.
struct Chain {
  GstElement* convert = nullptr;
  GstElement* format_filter = nullptr;  // forces a 10-bit format for hdr
  GstElement* encoder = nullptr;
  GstElement* parser = nullptr;
  const ccm::catalog::EncoderEntry* entry = nullptr;
  std::string factory;
  Codec codec = Codec::H264;
  bool hardware = false;
  int gpu = -1;
  bool built() const { return encoder != nullptr; }
};

struct Stats {
  std::atomic<guint64> frames_in{0}, frames_out{0}, bytes_out{0}, key_frames{0};
  std::atomic<gint64> first_in_wall_us{-1}, last_out_wall_us{-1};
  std::atomic<guint64> first_out_pts{GST_CLOCK_TIME_NONE}, last_out_end{GST_CLOCK_TIME_NONE};
  void reset() {
    frames_in = frames_out = bytes_out = key_frames = 0;
    first_in_wall_us = last_out_wall_us = -1;
    first_out_pts = last_out_end = GST_CLOCK_TIME_NONE;
  }
};

}  // namespace

struct _GstCcmEncBin {
  GstBin parent;
  GstPad* sinkpad;
  GstPad* srcpad;

  // Private state, C++ objects; guarded by `lock` except the atomics.
  struct Private {
    std::mutex lock;
    Settings settings;
    Chain chain;
    Stats stats;
    // Timestamps for input that has none (raw .h264 decoded by GStreamer):
    // frame duration from the (nominal) framerate, next expected pts.
    GstClockTime frame_duration = GST_CLOCK_TIME_NONE;
    GstClockTime next_pts = GST_CLOCK_TIME_NONE;
  }* priv;
};

static void gst_ccm_enc_bin_preset_init(gpointer iface, gpointer data);

G_DEFINE_TYPE_WITH_CODE(GstCcmEncBin, gst_ccm_enc_bin, GST_TYPE_BIN,
                        G_IMPLEMENT_INTERFACE(GST_TYPE_PRESET, gst_ccm_enc_bin_preset_init);
                        GST_DEBUG_CATEGORY_INIT(ccm_enc_bin_debug, "ccmencbin", 0,
                                                "ccm encoder selection bin"))

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("video/x-raw"));

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
  if (f && !gst_caps_features_is_any(f) &&
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

void post_selected(Self* self, const Chain& chain, const ccm::catalog::Ranking& ranking,
                   const std::vector<ccm::catalog::PassedOver>& failed_here,
                   const ccm::gst::SetupReport& report, const std::string& reason) {
  GValue passed = G_VALUE_INIT;
  gst_value_array_init(&passed, 0);
  auto add = [&](const ccm::catalog::PassedOver& p) {
    GValue v = G_VALUE_INIT;
    g_value_init(&v, G_TYPE_STRING);
    g_value_take_string(&v, g_strdup_printf("%s: %s", p.factory.c_str(), p.reason.c_str()));
    gst_value_array_append_and_take_value(&passed, &v);
  };
  for (const auto& p : ranking.passed_over) add(p);
  for (const auto& p : failed_here) add(p);

  const std::string device = gpu_description(chain.gpu);
  GstStructure* s = gst_structure_new(
      "ccm-encoder-selected", "factory", G_TYPE_STRING, chain.factory.c_str(), "codec", G_TYPE_STRING,
      ccm::catalog::to_string(chain.codec), "hardware", G_TYPE_BOOLEAN, chain.hardware, "device",
      G_TYPE_STRING, device.c_str(), "gpu", G_TYPE_INT, chain.gpu, "api", G_TYPE_STRING,
      chain.entry ? ccm::catalog::to_string(chain.entry->api) : "unknown", "reason", G_TYPE_STRING,
      reason.c_str(), "settings", G_TYPE_STRING, join(report.applied, ", ").c_str(), "not-set",
      G_TYPE_STRING, join(report.skipped, "; ").c_str(), nullptr);
  gst_structure_take_value(s, "passed-over", &passed);
  GST_INFO_OBJECT(self, "selected %s (%s): %s", chain.factory.c_str(), device.c_str(), reason.c_str());
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

}  // namespace

// ---- building the chain ---------------------------------------------------------

static gboolean ccm_enc_bin_output_probe_install(Self* self, GstPad* pad);

// Picks the codec and the encoder, builds videoconvert ! [capsfilter] ! encoder !
// parser, and points the ghost pads at it. Called from the streaming thread on the
// first CAPS event; posts an element error naming cause and fix on failure.
static bool ccm_enc_bin_build(Self* self, GstCaps* input_caps) {
  Settings s;
  {
    Lock lock(self->priv->lock);
    s = self->priv->settings;
  }

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
  struct Plan {
    Codec codec;
    ccm::catalog::Ranking ranking;
  };
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
    std::vector<ccm::catalog::PassedOver> failed_here;
    for (size_t i = 0; i < plan.ranking.candidates.size(); i++) {
      const auto& cand = plan.ranking.candidates[i];
      GstElement* encoder = gst_element_factory_make(cand.factory.c_str(), nullptr);
      if (!encoder) {
        failed_here.push_back({cand.factory, "could not be created"});
        continue;
      }
      const auto report = ccm::gst::configure_encoder(encoder, cand.entry, encode_settings(plan.codec, s, input_caps));

      Chain chain;
      chain.encoder = encoder;
      chain.entry = cand.entry;
      chain.factory = cand.factory;
      chain.codec = plan.codec;
      chain.hardware = cand.hardware;
      chain.gpu = cand.gpu;
      chain.convert = gst_element_factory_make("videoconvert", nullptr);
      if (!chain.convert) {
        gst_object_unref(encoder);
        GST_ELEMENT_ERROR(self, CORE, MISSING_PLUGIN, ("videoconvert is missing"),
                          ("install gstreamer1.0-plugins-base"));
        return false;
      }
      GstVideoInfo vinfo;
      gst_video_info_from_caps(&vinfo, input_caps);
      const bool odd = (GST_VIDEO_INFO_WIDTH(&vinfo) | GST_VIDEO_INFO_HEIGHT(&vinfo)) & 1;
      const bool full_chroma = odd && (plan.codec == Codec::H264 || plan.codec == Codec::H265);
      Ref<GstCaps> input(encoder_input_caps(encoder, s.hdr, full_chroma));
      if (!input && s.hdr) {
        GST_ELEMENT_WARNING(self, STREAM, FORMAT, ("%s cannot encode 10-bit video", cand.factory.c_str()),
                            ("hdr=true ignored: the stream is 8-bit"));
        input.p = encoder_input_caps(encoder, false, full_chroma);
      }
      if (!input && full_chroma) {
        failed_here.push_back({cand.factory, "cannot encode an odd size (4:2:0 " + std::string(ccm::catalog::to_string(plan.codec)) +
                                                 " cannot carry it, and the element takes no 4:4:4)"});
        gst_object_unref(encoder);
        continue;
      }
      if (!encoder_takes_size(encoder, input_caps, input.get())) {
        failed_here.push_back({cand.factory, "refuses " + std::to_string(GST_VIDEO_INFO_WIDTH(&vinfo)) + "x" +
                                                 std::to_string(GST_VIDEO_INFO_HEIGHT(&vinfo)) +
                                                 " (its library cannot encode that size)"});
        gst_object_unref(encoder);
        continue;
      }
      if (full_chroma)
        GST_INFO_OBJECT(self, "odd size %dx%d: encoding 4:4:4 to keep the exact size", GST_VIDEO_INFO_WIDTH(&vinfo),
                        GST_VIDEO_INFO_HEIGHT(&vinfo));
      if (input) {
        chain.format_filter = gst_element_factory_make("capsfilter", nullptr);
        g_object_set(chain.format_filter, "caps", input.get(), nullptr);
      }
      chain.parser = gst_element_factory_make(ccm::catalog::parser_factory(plan.codec), nullptr);
      if (!chain.parser)
        GST_WARNING_OBJECT(self, "%s missing (gstreamer1.0-plugins-bad): output is not parsed",
                           ccm::catalog::parser_factory(plan.codec));

      std::vector<GstElement*> elements;
      for (GstElement* e : {chain.convert, chain.format_filter, chain.encoder, chain.parser})
        if (e) elements.push_back(e);
      for (GstElement* e : elements) gst_bin_add(GST_BIN(self), e);
      bool linked = true;
      for (size_t k = 0; k + 1 < elements.size(); k++)
        linked = linked && gst_element_link(elements[k], elements[k + 1]);
      if (!linked) {
        for (GstElement* e : elements) {
          gst_element_set_state(e, GST_STATE_NULL);
          gst_bin_remove(GST_BIN(self), e);
        }
        failed_here.push_back({cand.factory, "could not be linked (caps do not match)"});
        continue;
      }
      for (GstElement* e : elements) gst_element_sync_state_with_parent(e);

      GstPad* sink_target = gst_element_get_static_pad(elements.front(), "sink");
      GstPad* src_target = gst_element_get_static_pad(elements.back(), "src");
      gst_ghost_pad_set_target(GST_GHOST_PAD(self->sinkpad), sink_target);
      gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), src_target);
      gst_object_unref(sink_target);
      gst_object_unref(src_target);

      std::string reason;
      if (s.candidates.empty())
        reason = std::string(cand.hardware ? "best-ranked hardware encoder" : "best-ranked software encoder") +
                 " for " + ccm::catalog::to_string(plan.codec);
      else
        reason = "first usable element of candidates=" + s.candidates;
      if (!to_codec(s.codec))
        reason += std::string("; codec=auto chose ") + ccm::catalog::to_string(plan.codec) +
                  (cand.hardware ? " (a hardware encoder makes it)" : " (first codec downstream accepts with an encoder)");
      {
        Lock lock(self->priv->lock);
        self->priv->chain = chain;
      }
      post_selected(self, chain, plan.ranking, failed_here, report, reason);
      GST_INFO_OBJECT(self, "input %" GST_PTR_FORMAT, input_caps);
      return true;
    }
    for (const auto& p : plan.ranking.passed_over)
      failures.push_back(std::string(ccm::catalog::to_string(plan.codec)) + " " + p.factory + ": " + p.reason);
    for (const auto& p : failed_here)
      failures.push_back(std::string(ccm::catalog::to_string(plan.codec)) + " " + p.factory + ": " + p.reason);
  }

  // Nothing usable: name the fix.
  std::string fix;
  if (s.hardware == HardwarePolicy::HardwareOnly) {
    fix = "no hardware encoder is usable here (" +
          std::to_string(ccm::gst::detected_gpus().size()) +
          " GPU(s) detected); set hardware=auto to allow software encoders";
  } else {
    for (const Plan& p : plans) {
      if (!fix.empty()) fix += "; ";
      fix += std::string("for ") + ccm::catalog::to_string(p.codec) + " install " +
             std::string(ccm::catalog::debian_package_for(p.codec));
    }
  }
  std::string codecs;
  for (const Plan& p : plans) codecs += std::string(codecs.empty() ? "" : ", ") + ccm::catalog::to_string(p.codec);
  GST_ELEMENT_ERROR(self, CORE, MISSING_PLUGIN, ("no usable encoder for %s: %s", codecs.c_str(), fix.c_str()),
                    ("tried: %s", failures.empty() ? "nothing" : join(failures, "; ").c_str()));
  return false;
}

static void ccm_enc_bin_teardown(Self* self) {
  Chain chain;
  {
    Lock lock(self->priv->lock);
    chain = self->priv->chain;
    self->priv->chain = Chain{};
  }
  gst_ghost_pad_set_target(GST_GHOST_PAD(self->sinkpad), nullptr);
  gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), nullptr);
  for (GstElement* e : {chain.convert, chain.format_filter, chain.encoder, chain.parser}) {
    if (!e) continue;
    gst_element_set_state(e, GST_STATE_NULL);
    gst_bin_remove(GST_BIN(self), e);
  }
}

static bool ccm_enc_bin_is_built(Self* self) {
  Lock lock(self->priv->lock);
  return self->priv->chain.built();
}

// Sticky events that came before CAPS (stream-start) were kept on our sink pad;
// send them into the new chain ahead of the caps.
static void ccm_enc_bin_replay_sticky(Self* self) {
  GstPad* internal = GST_PAD(gst_proxy_pad_get_internal(GST_PROXY_PAD(self->sinkpad)));
  gst_pad_sticky_events_foreach(
      self->sinkpad,
      [](GstPad*, GstEvent** event, gpointer user) -> gboolean {
        if (GST_EVENT_TYPE(*event) < GST_EVENT_CAPS)
          gst_pad_push_event(GST_PAD(user), gst_event_ref(*event));
        return TRUE;
      },
      internal);
  gst_object_unref(internal);
}

// ---- pads -----------------------------------------------------------------------

static gboolean ccm_enc_bin_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  Self* self = GST_CCM_ENC_BIN(parent);
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps = nullptr;
      gst_event_parse_caps(event, &caps);
      const std::string refused = refuse_reason(caps);
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
      if (!ccm_enc_bin_is_built(self)) {
        if (!ccm_enc_bin_build(self, nominal.get())) {
          gst_event_unref(event);
          return FALSE;
        }
        ccm_enc_bin_replay_sticky(self);
      }
      {
        GstStructure* st = gst_caps_get_structure(nominal.get(), 0);
        gint n = 0, d = 1;
        gst_structure_get_fraction(st, "framerate", &n, &d);
        Lock lock(self->priv->lock);
        self->priv->frame_duration = n > 0 ? gst_util_uint64_scale_int(GST_SECOND, d, n) : GST_CLOCK_TIME_NONE;
      }
      if (changed) {
        GstEvent* replaced = gst_event_new_caps(nominal.get());
        GST_EVENT_SEQNUM(replaced) = GST_EVENT_SEQNUM(event);
        gst_event_unref(event);
        event = replaced;
      }
      return gst_pad_event_default(pad, parent, event);
    }
    case GST_EVENT_FLUSH_STOP:
    case GST_EVENT_SEGMENT: {
      // A seek or a new segment: untimed frames count again from its start.
      Lock lock(self->priv->lock);
      self->priv->next_pts = GST_CLOCK_TIME_NONE;
      if (GST_EVENT_TYPE(event) == GST_EVENT_SEGMENT) {
        const GstSegment* segment = nullptr;
        gst_event_parse_segment(event, &segment);
        if (segment->format == GST_FORMAT_TIME) self->priv->next_pts = segment->start;
      }
      if (!self->priv->chain.built()) {
        gst_event_unref(event);
        return TRUE;
      }
      break;
    }
    case GST_EVENT_EOS:
      if (!ccm_enc_bin_is_built(self)) {
        // Nothing was ever negotiated: pass EOS straight on so the pipeline ends.
        return gst_pad_push_event(self->srcpad, event);
      }
      break;
    default:
      if (!ccm_enc_bin_is_built(self)) {
        // Kept as sticky on our pad (returning TRUE stores it) and replayed at build.
        gst_event_unref(event);
        return TRUE;
      }
      break;
  }
  return gst_pad_event_default(pad, parent, event);
}

// Encoders and muxers need a pts on every frame; frames without one get the
// previous frame's end, at the nominal framerate.
static GstBuffer* ccm_enc_bin_complete_timestamps(Self* self, GstBuffer* buffer) {
  auto* p = self->priv;
  GstClockTime duration;
  {
    Lock lock(p->lock);
    duration = p->frame_duration;
  }
  if (!GST_BUFFER_PTS_IS_VALID(buffer) || !GST_BUFFER_DURATION_IS_VALID(buffer)) {
    buffer = gst_buffer_make_writable(buffer);
    if (!GST_BUFFER_PTS_IS_VALID(buffer))
      GST_BUFFER_PTS(buffer) = GST_CLOCK_TIME_IS_VALID(p->next_pts) ? p->next_pts : 0;
    if (!GST_BUFFER_DURATION_IS_VALID(buffer)) GST_BUFFER_DURATION(buffer) = duration;
  }
  p->next_pts = GST_BUFFER_PTS(buffer) + (GST_BUFFER_DURATION_IS_VALID(buffer) ? GST_BUFFER_DURATION(buffer) : 0);
  return buffer;
}

static GstFlowReturn ccm_enc_bin_sink_chain(GstPad* pad, GstObject* parent, GstBuffer* buffer) {
  Self* self = GST_CCM_ENC_BIN(parent);
  if (!ccm_enc_bin_is_built(self)) {
    gst_buffer_unref(buffer);
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("data arrived before caps"),
                      ("the upstream element must send caps (video/x-raw) before buffers"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  auto& st = self->priv->stats;
  if (st.frames_in.fetch_add(1) == 0) st.first_in_wall_us = g_get_monotonic_time();
  buffer = ccm_enc_bin_complete_timestamps(self, buffer);
  return gst_proxy_pad_chain_default(pad, parent, buffer);
}

static gboolean ccm_enc_bin_sink_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  Self* self = GST_CCM_ENC_BIN(parent);
  if (!ccm_enc_bin_is_built(self)) {
    switch (GST_QUERY_TYPE(query)) {
      case GST_QUERY_CAPS: {
        GstCaps* filter = nullptr;
        gst_query_parse_caps(query, &filter);
        Ref<GstCaps> caps(preferred_raw_caps());
        if (filter) {
          GstCaps* i = gst_caps_intersect_full(filter, caps.get(), GST_CAPS_INTERSECT_FIRST);
          gst_query_set_caps_result(query, i);
          gst_caps_unref(i);
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
        return gst_pad_query_default(pad, parent, query);
    }
  }
  if (GST_QUERY_TYPE(query) == GST_QUERY_ALLOCATION) {
    // The chain answers first; a generic answer becomes our aligned DMABuf pool.
    const gboolean answered = gst_pad_query_default(pad, parent, query);
    Settings s;
    int gpu = -1;
    {
      Lock lock(self->priv->lock);
      s = self->priv->settings;
      gpu = self->priv->chain.gpu;
    }
    if (answered && s.dmabuf_pool) ccm_propose_dmabuf_pool(GST_OBJECT(self), query, gpu);
    return answered;
  }
  return gst_pad_query_default(pad, parent, query);
}

static GstPadProbeReturn ccm_enc_bin_output_probe(GstPad*, GstPadProbeInfo* info, gpointer user) {
  Self* self = GST_CCM_ENC_BIN(user);
  auto& st = self->priv->stats;
  auto count = [&](GstBuffer* b) -> gboolean {
    st.frames_out++;
    st.bytes_out += gst_buffer_get_size(b);
    if (!GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DELTA_UNIT)) st.key_frames++;
    st.last_out_wall_us = g_get_monotonic_time();
    if (GST_BUFFER_PTS_IS_VALID(b)) {
      if (st.first_out_pts.load() == GST_CLOCK_TIME_NONE) st.first_out_pts = GST_BUFFER_PTS(b);
      GstClockTime end = GST_BUFFER_PTS(b) + (GST_BUFFER_DURATION_IS_VALID(b) ? GST_BUFFER_DURATION(b) : 0);
      if (st.last_out_end.load() == GST_CLOCK_TIME_NONE || end > st.last_out_end) st.last_out_end = end;
    }
    return TRUE;
  };
  if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
    count(GST_PAD_PROBE_INFO_BUFFER(info));
  } else if (info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
    gst_buffer_list_foreach(GST_PAD_PROBE_INFO_BUFFER_LIST(info),
                            [](GstBuffer** b, guint, gpointer f) -> gboolean {
                              return (*static_cast<decltype(count)*>(f))(*b);
                            },
                            &count);
  }
  return GST_PAD_PROBE_OK;
}

static gboolean ccm_enc_bin_output_probe_install(Self* self, GstPad* pad) {
  return gst_pad_add_probe(pad, GstPadProbeType(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST),
                           ccm_enc_bin_output_probe, self, nullptr) != 0;
}

// ---- stats ----------------------------------------------------------------------

static GstStructure* ccm_enc_bin_stats(Self* self) {
  auto& st = self->priv->stats;
  std::string factory, codec;
  bool hardware = false;
  {
    Lock lock(self->priv->lock);
    factory = self->priv->chain.factory;
    codec = self->priv->chain.built() ? ccm::catalog::to_string(self->priv->chain.codec) : "";
    hardware = self->priv->chain.hardware;
  }
  const guint64 out = st.frames_out, bytes = st.bytes_out;
  double fps = 0, kbps = 0;
  const gint64 t0 = st.first_in_wall_us, t1 = st.last_out_wall_us;
  if (t0 >= 0 && t1 > t0 && out > 1) fps = (double)out * 1e6 / (double)(t1 - t0);
  const guint64 p0 = st.first_out_pts, p1 = st.last_out_end;
  if (p0 != GST_CLOCK_TIME_NONE && p1 != GST_CLOCK_TIME_NONE && p1 > p0)
    kbps = (double)bytes * 8.0 / ((double)(p1 - p0) / GST_SECOND) / 1000.0;
  return gst_structure_new("ccm-stats", "encoder", G_TYPE_STRING, factory.c_str(), "codec", G_TYPE_STRING,
                           codec.c_str(), "hardware", G_TYPE_BOOLEAN, hardware, "frames-in", G_TYPE_UINT64,
                           (guint64)st.frames_in, "frames-out", G_TYPE_UINT64, out, "key-frames",
                           G_TYPE_UINT64, (guint64)st.key_frames, "bytes-out", G_TYPE_UINT64, bytes,
                           "bitrate-kbps", G_TYPE_DOUBLE, kbps, "fps", G_TYPE_DOUBLE, fps, nullptr);
}

// ---- GObject --------------------------------------------------------------------

static void ccm_enc_bin_apply_live_bitrate(Self* self, guint kbps) {
  GstElement* encoder = nullptr;
  const ccm::catalog::EncoderEntry* entry = nullptr;
  {
    Lock lock(self->priv->lock);
    if (!self->priv->chain.built()) return;
    encoder = GST_ELEMENT(gst_object_ref(self->priv->chain.encoder));
    entry = self->priv->chain.entry;
  }
  std::string applied;
  if (ccm::gst::apply_bitrate(encoder, entry, kbps, &applied)) {
    GST_INFO_OBJECT(self, "live bitrate change: %s%s", applied.c_str(),
                    entry && entry->bitrate_change == ccm::catalog::BitrateChange::Reopen
                        ? " (this encoder reopens itself: new headers and a key frame)" : "");
  }
  gst_object_unref(encoder);
}

static void gst_ccm_enc_bin_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  Self* self = GST_CCM_ENC_BIN(object);
  auto& s = self->priv->settings;
  std::unique_lock lock(self->priv->lock);
  switch (id) {
    case PROP_CODEC: s.codec = (CodecChoice)g_value_get_enum(value); break;
    case PROP_BITRATE: {
      const guint kbps = g_value_get_uint(value);
      if (kbps == 0 && self->priv->chain.built()) {
        lock.unlock();
        GST_ELEMENT_WARNING(self, LIBRARY, SETTINGS, ("bitrate=0 kbit/s ignored"),
                            ("the encoder keeps %u kbit/s; set at least 1", s.bitrate));
        return;
      }
      s.bitrate = kbps;
      lock.unlock();
      ccm_enc_bin_apply_live_bitrate(self, kbps);
      return;
    }
    case PROP_RATE_CONTROL: s.rate_control = (RateControl)g_value_get_enum(value); break;
    case PROP_QUANTIZER: s.quantizer = g_value_get_uint(value); break;
    case PROP_KEYFRAME_INTERVAL: s.keyframe_interval = g_value_get_uint(value); break;
    case PROP_LOW_LATENCY: s.low_latency = g_value_get_boolean(value); break;
    case PROP_HARDWARE: s.hardware = (HardwarePolicy)g_value_get_enum(value); break;
    case PROP_GPU: s.gpu = g_value_get_int(value); break;
    case PROP_CANDIDATES: s.candidates = g_value_get_string(value) ? g_value_get_string(value) : ""; break;
    case PROP_BFRAMES: s.bframes = g_value_get_int(value); break;
    case PROP_MIN_QUANTIZER: s.min_quantizer = g_value_get_int(value); break;
    case PROP_MAX_QUANTIZER: s.max_quantizer = g_value_get_int(value); break;
    case PROP_HDR: s.hdr = g_value_get_boolean(value); break;
    case PROP_DMABUF_POOL: s.dmabuf_pool = g_value_get_boolean(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
}

static void gst_ccm_enc_bin_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  Self* self = GST_CCM_ENC_BIN(object);
  if (id == PROP_STATS) {
    g_value_take_boxed(value, ccm_enc_bin_stats(self));
    return;
  }
  Lock lock(self->priv->lock);
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
    case PROP_ENCODER:
      g_value_set_string(value, self->priv->chain.built() ? self->priv->chain.factory.c_str() : nullptr);
      break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); break;
  }
}

static GstStateChangeReturn gst_ccm_enc_bin_change_state(GstElement* element, GstStateChange transition) {
  Self* self = GST_CCM_ENC_BIN(element);
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) {
    self->priv->stats.reset();
    self->priv->next_pts = GST_CLOCK_TIME_NONE;
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_ccm_enc_bin_parent_class)->change_state(element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE) return ret;
  // A new stream may go to another codec or encoder: choose again from scratch.
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) ccm_enc_bin_teardown(self);
  return ret;
}

static void gst_ccm_enc_bin_finalize(GObject* object) {
  Self* self = GST_CCM_ENC_BIN(object);
  delete self->priv;
  G_OBJECT_CLASS(gst_ccm_enc_bin_parent_class)->finalize(object);
}

static void gst_ccm_enc_bin_init(Self* self) {
  self->priv = new Self::Private();

  GstPadTemplate* sink_tmpl = gst_static_pad_template_get(&sink_template);
  self->sinkpad = gst_ghost_pad_new_no_target_from_template("sink", sink_tmpl);
  gst_object_unref(sink_tmpl);
  gst_pad_set_event_function(self->sinkpad, ccm_enc_bin_sink_event);
  gst_pad_set_chain_function(self->sinkpad, ccm_enc_bin_sink_chain);
  gst_pad_set_query_function(self->sinkpad, ccm_enc_bin_sink_query);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);

  GstPadTemplate* src_tmpl = gst_static_pad_template_get(&src_template);
  self->srcpad = gst_ghost_pad_new_no_target_from_template("src", src_tmpl);
  gst_object_unref(src_tmpl);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
  ccm_enc_bin_output_probe_install(self, self->srcpad);
}

static void gst_ccm_enc_bin_class_init(GstCcmEncBinClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  gobject_class->set_property = gst_ccm_enc_bin_set_property;
  gobject_class->get_property = gst_ccm_enc_bin_get_property;
  gobject_class->finalize = gst_ccm_enc_bin_finalize;
  element_class->change_state = gst_ccm_enc_bin_change_state;

  const auto rw = GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  const auto live = GParamFlags(rw | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(gobject_class, PROP_CODEC,
      g_param_spec_enum("codec", "Codec", "Codec to produce; auto follows what downstream accepts",
                        codec_choice_get_type(), (int)CodecChoice::Auto, rw));
  g_object_class_install_property(gobject_class, PROP_BITRATE,
      g_param_spec_uint("bitrate", "Bitrate", "Target bitrate in kbit/s (applies live while PLAYING)",
                        0, G_MAXUINT, kDefaultBitrate, live));
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
      g_param_spec_enum("hardware", "Hardware", "Which encoders may be used", hardware_policy_get_type(),
                        (int)HardwarePolicy::Auto, rw));
  g_object_class_install_property(gobject_class, PROP_GPU,
      g_param_spec_int("gpu", "GPU", "Index of the GPU to encode on (-1 = choose)", -1, 255, -1, rw));
  g_object_class_install_property(gobject_class, PROP_CANDIDATES,
      g_param_spec_string("candidates", "Candidates",
                          "Comma-separated encoder element names to try in order, replacing the catalogue's order",
                          "", rw));
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
  g_object_class_install_property(gobject_class, PROP_ENCODER,
      g_param_spec_string("encoder", "Encoder", "Factory name of the encoder element in use (NULL before caps)",
                          nullptr, GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "ccm-stats: encoder, codec, hardware, frames-in, frames-out, key-frames, bytes-out, "
                         "bitrate-kbps (kbit/s over stream time), fps (output frames per wall-clock second)",
                         GST_TYPE_STRUCTURE, GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "CCM encoder bin", "Codec/Encoder/Video",
      "Picks, configures and runs the best AV1/H.265/VP9/H.264 encoder on this machine",
      "gst-ccm developers");

  gst_type_mark_as_plugin_api(codec_choice_get_type(), GstPluginAPIFlags(0));
  gst_type_mark_as_plugin_api(rate_control_get_type(), GstPluginAPIFlags(0));
  gst_type_mark_as_plugin_api(hardware_policy_get_type(), GstPluginAPIFlags(0));
}

// ---- presets --------------------------------------------------------------------
//
// GStreamer reads GstCcmEncBin.prs from its own data folder, the user's and
// GST_PRESET_PATH. gst-ccm installed under another prefix (/usr/local) puts its
// presets where GStreamer does not look, so the names and values there are added
// to GStreamer's own: CCM_PRESETS_DIR (the environment variable, else the install
// folder compiled in). User-saved presets of the same name win.

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

gboolean ccm_enc_bin_load_preset(GstPreset* preset, const gchar* name) {
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
