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
};
const char* to_string(BitrateChange b);

enum class KeyUnit {
  Event,        // honours GstForceKeyUnit events (upstream or downstream)
  Unsupported,  // ignores them (libaom av1enc in 1.22): only the keyframe interval works
};

struct GstVersion {
  int major = 1, minor = 22;
  friend constexpr auto operator<=>(const GstVersion&, const GstVersion&) = default;
};

// One "name=value" assignment to an element property; value is in the textual
// form gst_util_set_object_arg() accepts (enum nicks, numbers, booleans).
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
  // Per-device element name for GPU n (n >= 1) of the vendor, with "{n}" for the
  // vendor index or "{render}" for the DRM render node minor; "" = no per-device copies.
  std::string_view device_pattern;

  // Bitrate: property, and how many property units make one kbit/s (1 or 1000).
  std::string_view bitrate_property;
  uint32_t bitrate_units_per_kbps = 1;
  BitrateChange bitrate_change = BitrateChange::Live;

  // Rate-control selection: property and the value for each mode ("" = mode unsupported).
  std::string_view rc_property;
  std::string_view rc_cbr, rc_vbr, rc_cqp;

  // Quantizer for CQP (codec's native scale); for encoders that take a range
  // instead (libvpx, libaom), both min and max are set to it.
  std::string_view qp_property;
  std::string_view min_qp_property, max_qp_property;
  int qp_max = 51;                  // native quantizer range upper bound (51 for H.26x, 63 VP9/AV1)

  std::string_view keyframe_interval_property;  // in frames
  std::string_view bframes_property;            // "" when the element has none
  std::string_view threads_property;

  KeyUnit key_unit = KeyUnit::Event;

  std::span<const Setting> low_latency;  // applied when low-latency=true
  std::span<const Setting> always;       // trap fixes applied always (before user settings)

  std::string_view traps;           // human text: what goes wrong with this element and what we do
  std::string_view debian_package;  // package that ships it on Debian 12 ("" = not in Debian 12)

  bool hardware() const { return vendors != kVendorNone; }
};

// The whole catalogue, hardware entries first, in preference order within a codec.
std::span<const EncoderEntry> entries();

// Entry for a factory name, also for per-device copies ("nvh265device1enc" finds "nvh265enc",
// "varenderD129h265enc" finds "vah265enc"). nullptr when unknown.
const EncoderEntry* find(std::string_view factory);

// Package to install for a software encoder of this codec on Debian 12, for error messages.
std::string_view debian_package_for(Codec c);

}  // namespace ccm::catalog
