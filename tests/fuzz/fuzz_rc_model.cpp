// libFuzzer target: the frame-level rate controller (lib/ccm/rc) driven by a
// random sequence of events, with every value inside what ccmratecontrol can
// hand it (its property ranges, bandwidth estimates of 1 kbit/s .. 10 Gbit/s,
// any frame size, any analysis result). Every decision must carry a QP inside
// the codec's range (and the configured bounds), and finite, non-negative
// budgets, λ and buffer figures: a NaN or an infinity there reaches encoders
// as a garbage QP.
#include <algorithm>
#include <cmath>
#include <optional>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "rc/controller.h"

namespace {

using ccm::rc::Codec;

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint32_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t u16() { return u8() | (u8() << 8); }
  uint32_t u32() { return u16() | (u16() << 16); }
  bool done() const { return pos_ >= size_; }
  // A value in [lo, hi] spread logarithmically (rates and sizes span decades).
  double log_range(double lo, double hi) { return lo * std::pow(hi / lo, u16() / 65535.0); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

[[noreturn]] void fail(const char* what, double value) {
  std::fprintf(stderr, "fuzz_rc_model: %s (%g)\n", what, value);
  std::abort();
}

void check_finite(const char* what, double v, bool nonnegative = true) {
  if (!std::isfinite(v)) fail(what, v);
  if (nonnegative && v < 0) fail(what, v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  static constexpr Codec kCodecs[] = {Codec::AV1, Codec::H265, Codec::VP9, Codec::H264};
  ccm::rc::ControllerConfig cfg;
  cfg.codec = kCodecs[in.u8() % 4];
  cfg.width = 1 + int(in.u16() % 16384);
  cfg.height = 1 + int(in.u16() % 16384);
  cfg.fps = in.log_range(0.01, 1000);
  cfg.target_bps = in.log_range(1e3, 1e10);
  cfg.window_frames = 1 + int(in.u16() % 3000);
  cfg.latency_budget_ms = 1 + in.u16() % 10000;
  cfg.max_psnr_db = (in.u8() & 1) ? in.log_range(1, 100) : 0;
  const auto range = ccm::rc::qp_range(cfg.codec);
  if (in.u8() & 1) {
    cfg.qp_min = int(in.u8() % (range.max + 2)) - 1;
    cfg.qp_max = int(in.u8() % (range.max + 2)) - 1;
  }
  ccm::rc::RateController rc(cfg);

  uint64_t next_id = 0;
  for (int events = 0; !in.done() && events < 4000; ++events) {
    switch (in.u8() % 12) {
      case 0: case 1: case 2: case 3: {  // a frame
        ccm::rc::FrameInfo f;
        f.id = next_id++;
        const uint32_t flags = in.u8();
        f.key = flags & 1;
        f.scene_cut = flags & 2;
        f.complexity = (flags & 4) ? 0.0 : in.log_range(1e-3, 255);
        f.activity = (flags & 8) ? 0.0 : in.log_range(1e-3, 255);
        const auto d = rc.decide(f);
        const auto& c = rc.config();
        const int lo = c.qp_min >= 0 ? std::max(range.min, c.qp_min) : range.min;
        const int hi = std::max(lo, c.qp_max >= 0 ? std::min(range.max, c.qp_max) : range.max);
        if (d.qp < lo || d.qp > hi) fail("QP outside the allowed range", d.qp);
        check_finite("lambda", d.lambda);
        check_finite("target_bits", d.target_bits);
        check_finite("buffer_bits", d.buffer_bits);
        check_finite("psnr_estimate", d.psnr_estimate, false);
        break;
      }
      case 4: case 5: {  // a coded size comes back, in or out of order, or for nothing
        const uint64_t back = in.u8() % 8;
        const uint64_t id = next_id > back ? next_id - 1 - back : in.u32();
        const double bits = (in.u8() & 7) == 0 ? 0.0 : in.log_range(1, 1e9);
        const uint32_t how = in.u8() % 3;
        const auto r = rc.on_encoded(id, bits, how == 0 ? std::nullopt : std::optional<bool>(how == 1));
        if (r) check_finite("report lambda", r->lambda);
        break;
      }
      case 6: rc.set_target_bitrate(in.log_range(1e3, 1e10)); break;
      case 7: {
        const uint32_t which = in.u8();
        rc.set_bounds((which & 1) ? in.u32() * 1000.0 : 0.0, (which & 2) ? in.u32() * 1000.0 : 0.0);
        break;
      }
      case 8: rc.set_rate_scale(in.log_range(0.01, 1)); break;
      case 9: rc.set_fps(in.log_range(0.01, 1000)); break;
      case 10: {
        const uint32_t which = in.u8() % 3;
        if (which == 0) rc.set_latency_budget_ms(1 + in.u16() % 10000);
        if (which == 1) rc.set_window(1 + int(in.u16() % 3000));
        if (which == 2) rc.set_max_psnr((in.u8() & 1) ? in.log_range(1, 100) : 0);
        break;
      }
      default: {
        const uint32_t which = in.u8() % 3;
        if (which == 0) rc.reset_short_term();
        if (which == 1) rc.reset();
        if (which == 2) rc.clear_pending();
        break;
      }
    }
    check_finite("effective_bitrate", rc.effective_bitrate());
    check_finite("buffer", rc.buffer_bits());
    check_finite("deviation", rc.deviation_bits(), false);
    const auto& m = rc.inter_model().params();
    const auto& k = rc.intra_model().params();
    check_finite("inter alpha", m.alpha, false);
    check_finite("inter beta", m.beta, false);
    check_finite("intra alpha", k.alpha, false);
    check_finite("intra beta", k.beta, false);
  }
  return 0;
}
