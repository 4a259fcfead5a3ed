#include "params/dynamic_params.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <cstring>
#include <string_view>

namespace ccm {
namespace {

struct KeySpec {
  uint8_t key;
  const char* name;
  uint8_t length;     // exact value length in bytes
  uint32_t max_value; // inclusive; the minimum is always 0
};

// One row per key of version 1; parse, encode and the error texts all read it.
constexpr std::array<KeySpec, 9> kKeys{{
    {uint8_t(ParamKey::UltraLowLatency), "ultra_low_latency", 1, 1},
    {uint8_t(ParamKey::BFrames), "b_frames", 1, kMaxBFrames},
    {uint8_t(ParamKey::MaxQuantizer), "max_quantizer", 1, kMaxQuantizerValue},
    {uint8_t(ParamKey::KeyframeInterval), "keyframe_interval", 4, kMaxKeyframeInterval},
    {uint8_t(ParamKey::RateControl), "rate_control", 1, uint8_t(RateControlMode::Cqp)},
    {uint8_t(ParamKey::Quantizer), "quantizer", 1, kMaxQuantizerValue},
    {uint8_t(ParamKey::MinQuantizer), "min_quantizer", 1, kMaxQuantizerValue},
    {uint8_t(ParamKey::HardwarePolicy), "hardware_policy", 1,
     uint8_t(HardwarePolicy::SoftwareOnly)},
    {uint8_t(ParamKey::GpuIndex), "gpu_index", 1, kMaxGpuIndex},
}};

const KeySpec* find_key(uint8_t key) {
  auto it = std::find_if(kKeys.begin(), kKeys.end(), [key](const KeySpec& s) { return s.key == key; });
  return it == kKeys.end() ? nullptr : &*it;
}

uint32_t read_le(std::span<const uint8_t> bytes) {
  uint32_t v = 0;
  for (std::size_t i = bytes.size(); i-- > 0;) v = (v << 8) | bytes[i];
  return v;
}

void append_le(std::vector<uint8_t>& out, uint32_t v, uint8_t length) {
  for (uint8_t i = 0; i < length; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

DynamicParamsError error_at(std::size_t offset, std::string what) {
  return {offset, "byte " + std::to_string(offset) + ": " + std::move(what)};
}

std::string describe(const KeySpec& spec) {
  return std::string(spec.name) + " (key " + std::to_string(spec.key) + ")";
}

void store(DynamicParams& p, ParamKey key, uint32_t v) {
  switch (key) {
    case ParamKey::UltraLowLatency: p.ultra_low_latency = v != 0; break;
    case ParamKey::BFrames: p.b_frames = uint8_t(v); break;
    case ParamKey::MaxQuantizer: p.max_quantizer = uint8_t(v); break;
    case ParamKey::KeyframeInterval: p.keyframe_interval = v; break;
    case ParamKey::RateControl: p.rate_control = RateControlMode(v); break;
    case ParamKey::Quantizer: p.quantizer = uint8_t(v); break;
    case ParamKey::MinQuantizer: p.min_quantizer = uint8_t(v); break;
    case ParamKey::HardwarePolicy: p.hardware_policy = HardwarePolicy(v); break;
    case ParamKey::GpuIndex: p.gpu_index = uint8_t(v); break;
  }
}

}  // namespace

const char* param_key_name(uint8_t key) {
  const KeySpec* spec = find_key(key);
  return spec ? spec->name : nullptr;
}

void DynamicParams::merge(const DynamicParams& newer) {
  auto take = [](auto& mine, const auto& theirs) {
    if (theirs) mine = theirs;
  };
  take(ultra_low_latency, newer.ultra_low_latency);
  take(b_frames, newer.b_frames);
  take(max_quantizer, newer.max_quantizer);
  take(keyframe_interval, newer.keyframe_interval);
  take(rate_control, newer.rate_control);
  take(quantizer, newer.quantizer);
  take(min_quantizer, newer.min_quantizer);
  take(hardware_policy, newer.hardware_policy);
  take(gpu_index, newer.gpu_index);
}

bool DynamicParams::empty() const { return *this == DynamicParams{}; }

namespace {

// Whether `blob` is "CCMP…" or a piece of it cut short: then it is read (and
// refused, when short) as the tagged form.
bool looks_tagged(std::span<const uint8_t> blob) {
  if (blob.empty()) return true;
  const std::size_t n = std::min(blob.size(), sizeof kDynamicParamsMagic);
  return std::memcmp(blob.data(), kDynamicParamsMagic, n) == 0;
}

// The design's {ultra_low_latency, b_frames, max_quantizer}; each byte is
// checked against its key's range, as in the tagged form.
DynamicParamsResult parse_seed_form(std::span<const uint8_t> blob) {
  static constexpr ParamKey kOrder[kSeedParamsSize] = {ParamKey::UltraLowLatency, ParamKey::BFrames,
                                                       ParamKey::MaxQuantizer};
  DynamicParams params;
  for (std::size_t i = 0; i < kSeedParamsSize; ++i) {
    const KeySpec& spec = *find_key(uint8_t(kOrder[i]));
    if (blob[i] > spec.max_value)
      return error_at(i, std::string(spec.name) + " value " + std::to_string(blob[i]) + " out of range 0.." +
                             std::to_string(spec.max_value) +
                             " (3 bytes are read as {ultra_low_latency, b_frames, max_quantizer}; "
                             "anything else is a \"CCMP\" blob)");
    store(params, kOrder[i], blob[i]);
  }
  return params;
}

}  // namespace

DynamicParamsResult parse_dynamic_params(std::span<const uint8_t> blob) {
  if (!looks_tagged(blob)) {
    if (blob.size() == kSeedParamsSize) return parse_seed_form(blob);
    return error_at(0, "bad magic, expected \"CCMP\" (or exactly 3 bytes {ultra_low_latency, b_frames, "
                       "max_quantizer}); got " + std::to_string(blob.size()) + " bytes");
  }
  if (blob.size() < kDynamicParamsHeaderSize)
    return error_at(blob.size(), "truncated header: " + std::to_string(blob.size()) +
                                     " bytes, the header alone is " +
                                     std::to_string(kDynamicParamsHeaderSize));
  if (blob[4] != kDynamicParamsVersion)
    return error_at(4, "unsupported format version " + std::to_string(blob[4]) +
                           " (this library reads version " +
                           std::to_string(kDynamicParamsVersion) + ")");
  // Flags are reserved so that a later version can mark blobs an old reader must
  // refuse; a v1 reader therefore accepts none.
  if (blob[5] != 0) return error_at(5, "reserved flags byte is " + std::to_string(blob[5]) + ", must be 0");
  const std::size_t count = read_le(blob.subspan(6, 2));

  DynamicParams params;
  std::bitset<256> seen;
  std::size_t min_q_offset = 0, max_q_offset = 0;
  std::size_t pos = kDynamicParamsHeaderSize;
  for (std::size_t i = 0; i < count; ++i) {
    const std::string entry = "entry " + std::to_string(i) + " of " + std::to_string(count);
    if (blob.size() - pos < 2)
      return error_at(pos, entry + " truncated: no room for its key and length");
    const uint8_t key = blob[pos];
    const uint8_t length = blob[pos + 1];
    const std::size_t value_pos = pos + 2;
    if (key == 0) return error_at(pos, entry + ": key 0 is reserved");
    if (blob.size() - value_pos < length)
      return error_at(value_pos, entry + " (key " + std::to_string(key) + ") truncated: length " +
                                     std::to_string(length) + " but only " +
                                     std::to_string(blob.size() - value_pos) + " bytes left");
    if (seen[key]) return error_at(pos, entry + ": duplicate key " + std::to_string(key));
    seen[key] = true;

    if (const KeySpec* spec = find_key(key)) {
      if (length != spec->length)
        return error_at(pos + 1, describe(*spec) + " has length " + std::to_string(length) +
                                     ", expected " + std::to_string(spec->length));
      const uint32_t v = read_le(blob.subspan(value_pos, length));
      if (v > spec->max_value)
        return error_at(value_pos, describe(*spec) + " value " + std::to_string(v) +
                                       " out of range 0.." + std::to_string(spec->max_value));
      store(params, ParamKey(key), v);
      if (key == uint8_t(ParamKey::MinQuantizer)) min_q_offset = value_pos;
      if (key == uint8_t(ParamKey::MaxQuantizer)) max_q_offset = value_pos;
    }
    pos = value_pos + length;
  }
  if (pos != blob.size())
    return error_at(pos, std::to_string(blob.size() - pos) + " trailing bytes after the last of " +
                             std::to_string(count) + " entries");
  if (params.min_quantizer && params.max_quantizer && *params.min_quantizer > *params.max_quantizer)
    return error_at(std::max(min_q_offset, max_q_offset),
                    "min_quantizer " + std::to_string(*params.min_quantizer) +
                        " is greater than max_quantizer " + std::to_string(*params.max_quantizer));
  return params;
}

std::vector<uint8_t> encode_dynamic_params(const DynamicParams& p) {
  std::vector<uint8_t> out(std::begin(kDynamicParamsMagic), std::end(kDynamicParamsMagic));
  out.push_back(kDynamicParamsVersion);
  out.push_back(0);
  out.resize(kDynamicParamsHeaderSize);  // count, patched below

  uint16_t count = 0;
  auto put = [&](ParamKey key, const auto& field) {
    if (!field) return;
    const KeySpec& spec = *find_key(uint8_t(key));
    out.push_back(spec.key);
    out.push_back(spec.length);
    append_le(out, uint32_t(*field), spec.length);
    ++count;
  };
  put(ParamKey::UltraLowLatency, p.ultra_low_latency);
  put(ParamKey::BFrames, p.b_frames);
  put(ParamKey::MaxQuantizer, p.max_quantizer);
  put(ParamKey::KeyframeInterval, p.keyframe_interval);
  put(ParamKey::RateControl, p.rate_control);
  put(ParamKey::Quantizer, p.quantizer);
  put(ParamKey::MinQuantizer, p.min_quantizer);
  put(ParamKey::HardwarePolicy, p.hardware_policy);
  put(ParamKey::GpuIndex, p.gpu_index);
  out[6] = uint8_t(count);
  out[7] = uint8_t(count >> 8);
  return out;
}

}  // namespace ccm
