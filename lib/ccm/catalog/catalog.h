// The encoder catalogue: every GStreamer encoder element gst-ccm knows, as data.
// Which codec it makes, which hardware drives it, how to make it low-latency, how
// its bitrate is set (and in which unit), whether a bitrate change applies live,
// how a key unit is forced, how per-device copies are named, and its known traps.
// No GStreamer types: values are strings that the element side applies with
// gst_util_set_object_arg().
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ccm::catalog {

enum class Codec { AV1, H265, VP9, H264 };
inline constexpr Codec kAllCodecs[] = {Codec::AV1, Codec::H265, Codec::VP9, Codec::H264};

const char* to_string(Codec c);                          // "av1", "h265", "vp9", "h264"
std::optional<Codec> codec_from_string(std::string_view s);  // accepts "hevc", "avc" too
const char* caps_name(Codec c);    // "video/x-av1", "video/x-h265", "video/x-vp9", "video/x-h264"
const char* parser_factory(Codec c);  // "av1parse", "h265parse", "vp9parse", "h264parse"

enum class Api {
  Software,
  NvencLegacy,   // nvh26xenc (1.22: old API; 1.26 reuses the name for the new API)
  NvencCuda,     // nvcudah26xenc (new API, one element per device)
  NvencAutoGpu,  // nvautogpuh26xenc (new API, picks the device itself)
  Va,            // vah26xenc, vaav1enc, vavp9enc
  VaLowPower,    // vah26xlpenc
  Qsv,           // qsvh26xenc, qsvav1enc (Intel oneVPL)
};
const char* to_string(Api a);

// Bit mask of GPU vendors that can drive an element (0 = software, runs anywhere).
enum VendorBits : unsigned { kVendorNone = 0, kVendorNvidia = 1, kVendorIntel = 2, kVendorAmd = 4 };

enum class RateControl { Cbr, Vbr, Cqp };
const char* to_string(RateControl rc);

// What a change of the bitrate property does while PLAYING.
enum class BitrateChange {
  Live,           // applied in place on the next frame
  LiveWithIdr,    // applied in place, but the encoder forces an IDR
  Reopen,         // the element closes and reopens its encoder (new headers, IDR)
  Drain,          // the element drains, then reconfigures fully
  Ignored,        // the element ignores the change while PLAYING (only a restart applies it)
};
const char* to_string(BitrateChange b);

enum class KeyUnit {
  Event,        // honours GstForceKeyUnit events (upstream or downstream)
  Unsupported,  // ignores them (libaom av1enc in 1.22): only the keyframe interval works
};

// How ccmratecontrol steers an encoder frame by frame.
enum class Steering {
  BitrateOnChange,  // its bitrate property, only when the target changes (any element with one)
  QpMeta,           // a GstCcmQpMeta on every frame (our own encoders)
  Quantizer,        // min/max quantizer per frame (libvpx applies them on the next frame)
  Bitrate,          // its bitrate property frame by frame (taken live, without an IDR)
};
const char* to_string(Steering s);

// The property that trades quality for speed: which way is faster (+1: larger
// values, -1: smaller) and its fastest value. Empty property: none.
struct SpeedKnob {
  std::string_view property;
  int direction = 0;
  int fastest = 0;
};

struct GstVersion {
  int major = 1, minor = 22;
  friend constexpr auto operator<=>(const GstVersion&, const GstVersion&) = default;
};
std::string to_string(GstVersion v);  // "1.24"

// One "name=value" assignment to an element property; value is in the textual
// form gst_util_set_object_arg() accepts (enum nicks, numbers, booleans).
// Hardware encoders install some properties only when the device supports the
// feature (nvcodec's bframes, rc-lookahead ...; va's rate-control): a setting whose
// property the element lacks is to be skipped, not treated as an error.
struct Setting {
  std::string_view property;
  std::string_view value;
};

struct EncoderEntry {
  std::string_view factory;        // "x265enc"
  Codec codec;
  Api api;
  unsigned vendors;                // VendorBits; 0 = software
  GstVersion since{1, 22};         // first GStreamer version with this element name
  std::optional<GstVersion> until; // last version with this name/behaviour, nullopt = still there
  // Per-device element name for the vendor's further GPUs, with "{n}" for a device
  // number or "{render}" for the DRM render node minor; "" = no per-device copies.
  // What {n} counts differs by API (see rank.cpp): the CUDA ordinal for the old
  // NVENC elements, the position among GPUs that registered the element for the
  // new NVENC API and Quick Sync.
  std::string_view device_pattern;

  // Bitrate: property, and how many property units make one kbit/s (1 or 1000).
  std::string_view bitrate_property;
  uint32_t bitrate_units_per_kbps = 1;
  BitrateChange bitrate_change = BitrateChange::Live;

  // Rate-control selection: property and the value for each mode ("" = mode unsupported).
  std::string_view rc_property;
  std::string_view rc_cbr, rc_vbr, rc_cqp;

  // Quantizer for CQP (codec's native scale); for encoders that take a range
  // instead (libvpx, libaom, openh264: qp_property empty), both min and max are set to it.
  // Each of the three may name several properties separated by ',' that all take
  // the same value ("qp-i,qp-p,qp-b" where the element has one per frame type):
  // walk them with for_each_property().
  std::string_view qp_property;
  std::string_view min_qp_property, max_qp_property;
  // Native quantizer range upper bound, as the element's properties take it: 51 for
  // H.26x (50 for x264enc's quantizer), 63 for VP9/AV1 software encoders, 255 for
  // hardware VP9/AV1 encoders that take the 8-bit q-index.
  int qp_max = 51;

  std::string_view keyframe_interval_property;  // in frames
  std::string_view bframes_property;            // "" when the element has none
  std::string_view threads_property;

  KeyUnit key_unit = KeyUnit::Event;
  Steering steering = Steering::BitrateOnChange;  // how ccmratecontrol steers it frame by frame
  // ccmratecontrol mode=auto leaves the rate to the encoder's own CBR (its adaptive
  // quantisation, its frame QPs), only correcting the bitrate it is given until the
  // target is spent, where that measured better than steering every frame
  // (docs/benchmarks.md, ccmratecontrol, the validation set).
  bool encoder_rate_first = false;
  // Under encoder-rate, ccmratecontrol hands it the target as it stands (the
  // property, bandwidth estimates, QoS) and nothing else: no gain, no QP for key
  // frames, no key frames at scene cuts, where the encoder's own controller does
  // all three better (measured on both clip sets, docs/benchmarks.md).
  bool encoder_rate_hands_off = false;
  SpeedKnob speed;                                // what ccmratecontrol turns when frames are late
  // The library takes even widths and heights only (4:2:0) and the element's caps
  // cannot say so: ccmencbin passes it over for an odd size before building it
  // (svtav1enc refuses only in set_format, and leaks its codec state doing so).
  bool even_sizes_only = false;

  std::span<const Setting> low_latency;  // applied when low-latency=true
  std::span<const Setting> always;       // trap fixes applied always (before user settings)
  // Applied with low_latency when the input's picture rate (luma samples per second)
  // is at least many_cores_from and the machine has more than one core: what makes
  // the library spread one live picture over all the cores (vp9enc asks for 8
  // threads whatever the machine). A value "{cpus}" stands for the CPU count.
  std::span<const Setting> many_cores;
  uint64_t many_cores_from = 0;          // luma samples per second; 0 = never

  std::string_view traps;           // human text: what goes wrong with this element and what we do
  std::string_view debian_package;  // package that ships it on Debian 12 ("" = not in Debian 12)

  // Why this entry ranks above a peer of its codec that a user would otherwise pick,
  // on measured grounds (docs/benchmarks.md): ccmencbin says it in ccm-encoder-selected
  // when that peer is in the registry too. Empty = nothing to say.
  std::string_view ranked_above;      // the peer's factory ("svtav1enc")
  std::string_view ranked_above_why;

  bool hardware() const { return vendors != kVendorNone; }
  constexpr bool available_in(GstVersion v) const { return v >= since && (!until || v <= *until); }
};

// The whole catalogue, hardware entries first, in preference order within a codec.
std::span<const EncoderEntry> entries();

// Entry for a factory name, also for per-device copies ("nvh265device1enc" finds "nvh265enc",
// "varenderD129h265enc" finds "vah265enc"). nullptr when unknown. A few names mean
// different elements in different GStreamer versions (nvh265enc: old NVENC API up to
// 1.24, new API from 1.26); this overload returns the first entry in catalogue order,
// the versioned one the entry valid in that version.
const EncoderEntry* find(std::string_view factory);
const EncoderEntry* find(std::string_view factory, GstVersion version);

// The element name of a per-device copy: device_pattern with "{n}" or "{render}"
// replaced by number; the base factory name when the entry has no pattern.
std::string device_factory_name(const EncoderEntry& entry, int number);

// The value of rc_property for a mode ("" = the element cannot do it).
std::string_view rc_value(const EncoderEntry& entry, RateControl rc);
// Whether the element can run in this mode. An element without a rate-control
// property (x265enc, svtav1enc) has one bitrate mode that serves both CBR and VBR
// requests, and does CQP when it has a quantizer property (or a min/max range).
bool supports(const EncoderEntry& entry, RateControl rc);

// Calls f(std::string_view) for every property named in a ','-separated list.
template <typename F>
void for_each_property(std::string_view list, F&& f) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    const std::string_view name = list.substr(0, comma);
    if (!name.empty()) f(name);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

// Package to install for a software encoder of this codec on Debian 12, for error messages.
std::string_view debian_package_for(Codec c);

// Debian 12 package that ships an element factory: the catalogue's encoders and the
// other elements our pipelines use (videotestsrc, timeoverlay, webrtcbin ...), for
// "install X" messages when one is missing. "" when unknown or not in Debian 12.
std::string_view debian_package_for_element(std::string_view factory);
// "element X is missing: install the Debian package P (apt-get install P, or
// scripts/install-deps)", or "element X is missing: no Debian package known for it
// (gst-inspect-1.0 X)": the one wording of that advice, wherever a pipeline fails.
std::string missing_element_advice(std::string_view factory);

}  // namespace ccm::catalog
