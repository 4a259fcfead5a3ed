// libFuzzer target: the C API's configure path (capi/include/ccm/ccm.h) with
// random handle fields (config->codec including values outside VideoCodec,
// low_latency, hdr, now and then a changed config->hw), profiles (sizes, fps,
// bit/s, PSNR caps including NaN/inf/negative) and dynamic_params byte strings
// (3-byte forms, "CCMP" blobs, anything), one to four calls per handle (the
// first builds the encoder, later ones change it live or start a new one), then
// a tiny frame, finish and pull when the profile is small. Every call must
// return 0 or a known negative code with a message on failure; a refused change
// must leave the current profile as it was; nothing may crash, hang or leak.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "ccm/ccm.h"

namespace {

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint32_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t u16() { return u8() | (u8() << 8); }
  uint32_t u32() { return u16() | (u16() << 16); }
  std::vector<uint8_t> bytes(size_t n) {
    n = std::min(n, size_ - pos_);
    std::vector<uint8_t> v(data_ + pos_, data_ + pos_ + n);
    pos_ += n;
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

[[noreturn]] void fail(const char* what, int st, const CodecConfig* config) {
  std::fprintf(stderr, "fuzz_capi_configure: %s (%s: %s)\n", what, ccm_status_name(st), ccm_last_error(config));
  std::abort();
}

void check_status(int st, const CodecConfig* config) {
  if (st > CCM_OK || st < CCM_ERROR_NEEDS_RESTART) fail("unknown status", st, config);
  if (st == CCM_ERROR_INTERNAL) fail("internal error", st, config);
  if (st != CCM_OK && st != CCM_ERROR_AGAIN && st != CCM_ERROR_EOS && ccm_last_error(config)[0] == '\0')
    fail("failure without a message", st, config);
}

uint32_t dimension(Reader& in) {
  static constexpr uint32_t kSizes[] = {0, 1, 2, 3, 16, 17, 64, 65, 16384, 16385, 0xFFFFFFFF};
  const uint32_t pick = in.u8();
  if (pick < 110) return kSizes[pick % 11];
  return 1 + in.u8() % 64;
}

uint32_t fps(Reader& in) {
  static constexpr uint32_t kFps[] = {0, 1, 25, 30, 60, 1000, 1001, 0xFFFFFFFF};
  const uint32_t pick = in.u8();
  if (pick < 160) return kFps[pick % 8];
  return in.u16();
}

EncodingProfile profile(Reader& in) {
  EncodingProfile p{};
  p.width = dimension(in);
  p.height = dimension(in);
  // A valid profile of hundreds of megapixels makes libvpx reserve 13 GB at open:
  // the allocator's limit, not a finding (the bad-input table covers 16384 wide).
  if (p.width <= 16384 && p.height <= 16384 && uint64_t(p.width) * p.height > (uint64_t(1) << 22)) p.height = 16;
  p.fps = fps(in);
  const uint32_t rate = in.u8();
  p.target_bitrate = rate < 32 ? rate : rate < 64 ? 999 + (rate & 1) : rate < 128 ? 0xFFFFFFFFu : 1000 * (1 + in.u16());
  const uint32_t psnr = in.u8();
  p.max_psnr = psnr < 200 ? 0.0f
               : psnr < 240 ? float(psnr - 200)
               : psnr == 255 ? std::numeric_limits<float>::quiet_NaN()
               : psnr == 254 ? std::numeric_limits<float>::infinity()
               : psnr == 253 ? 100.5f
                             : -1.0f;
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  CodecConfig* config = ccm_init(in.u8() & 1);
  if (!config) fail("ccm_init", CCM_ERROR_INIT, nullptr);
  // Raw and H.264 are fast; the others now and then (their encoders open slowly).
  static constexpr int kCodecs[] = {CODEC_RAW, CODEC_H264, CODEC_RAW, CODEC_H264,
                                    CODEC_VP9, CODEC_HEVC, CODEC_AV1, -1};
  int codec = kCodecs[in.u8() % 8];
  if (codec < 0) codec = int(in.u32());
  std::memcpy(&config->codec, &codec, sizeof codec);  // as a C caller may store any int
  config->low_latency = in.u8() & 1;
  config->hdr = (in.u8() & 7) == 0;
  if ((in.u8() & 31) == 0) config->hw.vaapi_ctx = config;  // a caller's backend: refused

  bool configured = false;
  EncodingProfile current{};
  const int calls = 1 + int(in.u8() % 4);
  for (int i = 0; i < calls; ++i) {
    const EncodingProfile p = profile(in);
    const std::vector<uint8_t> blob = in.bytes(in.u8() % 48);
    // A NULL blob with a size, now and then.
    const bool null_blob = blob.empty() && (in.u8() & 1);
    const int st = ccm_configure_codec(config, &p, null_blob ? nullptr : blob.data(), null_blob ? 4 : blob.size());
    check_status(st, config);
    if (st == CCM_OK) {
      configured = true;
      current = p;
    }
    const EncodingProfile after = ccm_get_current_profile(config);
    if (std::memcmp(&after, &current, sizeof after) != 0)
      fail("current profile is not the last accepted one", st, config);
    if (std::memcmp(&config->profile, &current, sizeof current) != 0)
      fail("config->profile is not the last accepted one", st, config);
  }

  // One frame through the encoder when it is a small one.
  if (configured && uint64_t(current.width) * current.height <= 64 * 64 && (in.u8() & 1)) {
    const size_t frame = size_t(current.width) * current.height +
                         2 * size_t((current.width + 1) / 2) * ((current.height + 1) / 2);
    std::vector<uint8_t> pixels(config->hdr ? 2 * frame : frame, 0x80);
    check_status(ccm_push_frame(config, pixels.data(), pixels.size(), -1), config);
    check_status(ccm_finish(config), config);
    ccm_packet packet{};
    for (int i = 0; i < 4; ++i) {
      const int st = ccm_pull_packet(config, &packet, 10000);
      check_status(st, config);
      if (st == CCM_ERROR_AGAIN) fail("no packet and no end within 10 s", st, config);
      if (st != CCM_OK) break;
    }
  }
  char name[64];
  check_status(ccm_get_encoder_name(config, name, sizeof name), config);
  ccm_destroy(config);
  return 0;
}
