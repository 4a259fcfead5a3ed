// The dynamic_params bytes of ccm_configure_codec, in one of two forms told
// apart by their first bytes. docs/dynamic-params.md is the reference; this
// header is the C++ side (pure: no GStreamer, no C API types).
//
// The design's 3-byte form (exactly 3 bytes, byte 0 is 0 or 1):
//   ultra_low_latency u8 (0/1) | b_frames u8 (0..16) | max_quantizer u8 (0..63)
//
// The tagged form, for everything else (all integers little-endian):
//   header  "CCMP" | version u8 (= 1) | flags u8 (= 0) | entry count u16
//   entry   key u8 | length u8 | `length` bytes of value
//
// Any other byte string is refused: "CCMP" cannot start a 3-byte form (its
// byte 0 would be 'C'), and every other length lacks the magic.
//
// Parsing never throws and never reads past the span: every failure is a
// DynamicParamsError naming the byte offset and what is wrong there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace ccm {

inline constexpr uint8_t kDynamicParamsMagic[4] = {'C', 'C', 'M', 'P'};
inline constexpr uint8_t kDynamicParamsVersion = 1;
inline constexpr std::size_t kDynamicParamsHeaderSize = 8;
inline constexpr std::size_t kSeedParamsSize = 3;

// Keys of format version 1. Values never change meaning; new keys get new numbers,
// and readers skip keys they do not know, so old readers accept newer blobs.
enum class ParamKey : uint8_t {
  UltraLowLatency = 1,   // u8 0/1
  BFrames = 2,           // u8 0..16
  MaxQuantizer = 3,      // u8 0..63
  KeyframeInterval = 4,  // u32 frames, 0..2^31-1, 0 = encoder default
  RateControl = 5,       // u8 0 cbr, 1 vbr, 2 cqp
  Quantizer = 6,         // u8 0..63
  MinQuantizer = 7,      // u8 0..63
  HardwarePolicy = 8,    // u8 0 auto, 1 hardware only, 2 software only
  GpuIndex = 9,          // u8 0..63, the GPU to prefer (ccm's own numbering)
};

enum class RateControlMode : uint8_t { Cbr = 0, Vbr = 1, Cqp = 2 };
enum class HardwarePolicy : uint8_t { Auto = 0, HardwareOnly = 1, SoftwareOnly = 2 };

inline constexpr uint8_t kMaxBFrames = 16;
inline constexpr uint8_t kMaxQuantizerValue = 63;
inline constexpr uint8_t kMaxGpuIndex = 63;
// A u32 on the wire, but encoders take a signed int.
inline constexpr uint32_t kMaxKeyframeInterval = 0x7FFFFFFF;

// Every field is optional: an absent field leaves the current setting alone.
struct DynamicParams {
  std::optional<bool> ultra_low_latency;
  std::optional<uint8_t> b_frames;
  std::optional<uint8_t> max_quantizer;
  std::optional<uint32_t> keyframe_interval;
  std::optional<RateControlMode> rate_control;
  std::optional<uint8_t> quantizer;
  std::optional<uint8_t> min_quantizer;
  std::optional<HardwarePolicy> hardware_policy;
  std::optional<uint8_t> gpu_index;

  // Fields present in `newer` replace ours; absent ones keep ours.
  void merge(const DynamicParams& newer);
  bool empty() const;

  friend bool operator==(const DynamicParams&, const DynamicParams&) = default;
};

struct DynamicParamsError {
  std::size_t offset = 0;  // byte offset in the blob where the problem is
  std::string message;     // "byte 9: b_frames (key 2) value 17 out of range 0..16"
};

// An expected-like result (C++20 has no std::expected): a DynamicParams or an error.
class DynamicParamsResult {
 public:
  DynamicParamsResult(DynamicParams params) : value_(std::move(params)) {}
  DynamicParamsResult(DynamicParamsError error) : value_(std::move(error)) {}

  bool has_value() const { return std::holds_alternative<DynamicParams>(value_); }
  explicit operator bool() const { return has_value(); }
  const DynamicParams& value() const { return std::get<DynamicParams>(value_); }
  const DynamicParamsError& error() const { return std::get<DynamicParamsError>(value_); }

 private:
  std::variant<DynamicParams, DynamicParamsError> value_;
};

// Parses a whole blob, either form. The 3-byte form sets its three fields; it
// rejects a value out of range. The tagged form rejects: short or wrong header, a version other than 1,
// non-zero flags, key 0, a known key with the wrong length or an out-of-range
// value, min_quantizer > max_quantizer, a duplicate key, entries that run past
// the end, and bytes left after the last entry. Unknown keys are skipped.
DynamicParamsResult parse_dynamic_params(std::span<const uint8_t> blob);

// The canonical tagged blob for `params`: present fields only, in ascending key order.
std::vector<uint8_t> encode_dynamic_params(const DynamicParams& params);

// "ultra_low_latency", "b_frames", ...; nullptr for keys this version does not know.
const char* param_key_name(uint8_t key);

}  // namespace ccm
