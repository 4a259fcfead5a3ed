// libFuzzer target: the C API's configure path (lib/ccm/include/ccm/ccm.h) with
// random codec configs, profiles (sizes, fps including NaN/inf/negative, bitrates,
// PSNR caps) and dynamic_params blobs, one to four calls per handle (the first
// builds the encoder, later ones change it live or start a new one), then a
// tiny frame, finish and pull when the profile is small. Every call must return
// a known status with a message on failure; a refused change must leave the
// current profile as it was; nothing may crash, hang or leak.
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

[[noreturn]] void fail(const char* what, ccm_status st, ccm_config* config) {
  std::fprintf(stderr, "fuzz_capi_configure: %s (%s: %s)\n", what, ccm_status_name(st), ccm_last_error(config));
  std::abort();
}

void check_status(ccm_status st, ccm_config* config) {
  if (st < CCM_OK || st > CCM_ERROR_INTERNAL) fail("unknown status", st, config);
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

double fps(Reader& in) {
  static const double kFps[] = {0, -1, 1e-9, 0.5, 1, 25, 30, 29.97, 60, 1000, 1000.5, 1e300,
                                std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()};
  const uint32_t pick = in.u8();
  if (pick < 140) return kFps[pick % 14];
  return (in.u16() + 1) / 100.0;
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
  p.target_bitrate = rate < 64 ? rate : rate < 128 ? 0xFFFFFFFFu : 1 + in.u16();
  const uint32_t psnr = in.u8();
  p.max_psnr = psnr < 200 ? 0 : psnr < 240 ? psnr - 200.0 : psnr == 255 ? std::nan("") : -1;
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  ccm_config* config = nullptr;
  ccm_status st = ccm_init(in.u8() & 1, &config);
  if (st != CCM_OK) fail("ccm_init", st, nullptr);

  ccm_codec_config cc{};
  cc.struct_size = (in.u8() & 0xF) == 0 ? in.u8() : sizeof cc;
  // Raw and H.264 are fast; the others now and then (their encoders open slowly).
  static constexpr int kCodecs[] = {CCM_CODEC_RAW, CCM_CODEC_H264, CCM_CODEC_RAW, CCM_CODEC_H264,
                                    CCM_CODEC_VP9, CCM_CODEC_HEVC, CCM_CODEC_AV1, -1};
  int codec = kCodecs[in.u8() % 8];
  if (codec < 0) codec = int(in.u32());
  std::memcpy(&cc.codec, &codec, sizeof codec);
  cc.low_latency = in.u8() & 1;
  cc.hdr = (in.u8() & 7) == 0;
  check_status(ccm_set_codec_config(config, &cc), config);

  bool configured = false;
  EncodingProfile current{};
  const int calls = 1 + int(in.u8() % 4);
  for (int i = 0; i < calls; ++i) {
    const EncodingProfile p = profile(in);
    const std::vector<uint8_t> blob = in.bytes(in.u8() % 48);
    // A NULL blob with a size, now and then.
    const bool null_blob = blob.empty() && (in.u8() & 1);
    st = ccm_configure_codec(config, &p, null_blob ? nullptr : blob.data(), null_blob ? 4 : blob.size());
    check_status(st, config);
    EncodingProfile after{};
    const ccm_status got = ccm_get_current_profile(config, &after);
    if (st == CCM_OK) {
      configured = true;
      current = p;
    }
    if (configured) {
      if (got != CCM_OK) fail("no current profile after a successful configure", got, config);
      if (std::memcmp(&after, &current, sizeof after) != 0 && !(std::isnan(current.max_psnr)))
        fail("current profile is not the last accepted one", st, config);
    }
  }

  // One frame through the encoder when it is a small one.
  if (configured && uint64_t(current.width) * current.height <= 64 * 64 && (in.u8() & 1)) {
    const size_t frame = size_t(current.width) * current.height +
                         2 * size_t((current.width + 1) / 2) * ((current.height + 1) / 2);
    std::vector<uint8_t> pixels(cc.hdr ? 2 * frame : frame, 0x80);
    check_status(ccm_push_frame(config, pixels.data(), pixels.size(), -1), config);
    check_status(ccm_finish(config), config);
    ccm_packet packet{};
    for (int i = 0; i < 4; ++i) {
      st = ccm_pull_packet(config, &packet, 10000);
      check_status(st, config);
      if (st == CCM_ERROR_AGAIN) fail("no packet and no end within 10 s", st, config);
      if (st != CCM_OK) break;
    }
  }
  char name[64];
  check_status(ccm_get_encoder_name(config, name, sizeof name), config);
  check_status(ccm_destroy(config), nullptr);
  return 0;
}
