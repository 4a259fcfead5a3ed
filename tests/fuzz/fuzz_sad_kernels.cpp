// libFuzzer target: the analysis kernels (SAD, activity, block classes) on random
// sizes, strides, row steps, bit depths and pixels. Every ISA this CPU has must
// give exactly the scalar code's integers (lib/ccm/analysis/analysis.h promises
// bit-exact results); a mismatch aborts with the first differing block.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "analysis/analysis.h"

namespace {

using ccm::analysis::AnalysisOptions;
using ccm::analysis::FrameAnalysis;
using ccm::analysis::Isa;
using ccm::analysis::LumaPlane;

// Reads the fuzz input front to back; zeros once it runs out.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint32_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t u16() { return u8() | (u8() << 8); }
  size_t left() const { return size_ - pos_; }
  const uint8_t* rest() const { return data_ + pos_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Pixels: the rest of the input repeated, with a mode that makes extreme values
// (all 0 against all max) likely, since those overflow narrow accumulators.
void fill(std::vector<uint8_t>& plane, const uint8_t* src, size_t n, uint32_t mode, uint8_t salt) {
  for (size_t i = 0; i < plane.size(); ++i) {
    const uint8_t v = n ? src[(i * 7 + salt) % n] : uint8_t(i * 31 + salt);
    switch (mode % 4) {
      case 0: plane[i] = v; break;
      case 1: plane[i] = (v & 1) ? 0xFF : 0x00; break;
      case 2: plane[i] = salt & 1 ? 0xFF : 0x00; break;
      default: plane[i] = uint8_t(v ^ salt); break;
    }
  }
}

bool same(const FrameAnalysis& a, const FrameAnalysis& b, const char* isa) {
  auto report = [&](const char* what, size_t i, uint64_t x, uint64_t y) {
    std::fprintf(stderr, "fuzz_sad_kernels: %s differs from scalar: %s[%zu] = %llu, scalar %llu\n", isa, what, i,
                 (unsigned long long)y, (unsigned long long)x);
    return false;
  };
  for (size_t i = 0; i < a.sad16.size(); ++i)
    if (a.sad16[i] != b.sad16[i]) return report("sad16", i, a.sad16[i], b.sad16[i]);
  for (size_t i = 0; i < a.activity16.size(); ++i)
    if (a.activity16[i] != b.activity16[i]) return report("activity16", i, a.activity16[i], b.activity16[i]);
  for (size_t i = 0; i < a.class64.size(); ++i)
    if (a.class64[i] != b.class64[i]) return report("class64", i, size_t(a.class64[i]), size_t(b.class64[i]));
  if (a.sad_total != b.sad_total) return report("sad_total", 0, a.sad_total, b.sad_total);
  if (a.activity_total != b.activity_total) return report("activity_total", 0, a.activity_total, b.activity_total);
  if (a.complexity != b.complexity || a.mafd != b.mafd || a.spatial_activity != b.spatial_activity)
    return report("complexity/mafd/activity (double)", 0, 0, 1);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  const bool wide = in.u8() & 1;
  const int bps = wide ? 2 : 1;
  // Up to 300x160: several whole 16-wide blocks and a partial one, several bands.
  const int width = 1 + int(in.u16() % 300);
  const int height = 1 + int(in.u8() % 160);
  const int stride_pad = int(in.u8() % 80);
  const int prev_stride_pad = int(in.u8() % 80);
  const uint32_t flags = in.u8();
  const bool with_prev = flags & 1;
  const int row_step = 1 << ((flags >> 1) % 5);  // 1..16
  int bit_depth = 8, shift = 0;
  if (wide) {
    static constexpr int kDepths[] = {8, 10, 12, 16};
    bit_depth = kDepths[(flags >> 4) % 4];
    shift = int(in.u8() % (16 - bit_depth + 1));
  }
  AnalysisOptions options;
  options.row_step = row_step;
  options.skip_threshold_q4 = in.u8();
  options.full_threshold_q4 = options.skip_threshold_q4 + in.u16();
  options.threads = 1 + int(in.u8() % 3);
  const uint32_t mode = in.u8();

  const ptrdiff_t stride = ptrdiff_t(width) * bps + stride_pad;
  const ptrdiff_t prev_stride = ptrdiff_t(width) * bps + prev_stride_pad;
  // Exactly the bytes a plane covers, so ASan sees any read past the last row.
  std::vector<uint8_t> cur(size_t(stride) * (height - 1) + size_t(width) * bps);
  std::vector<uint8_t> prev(size_t(prev_stride) * (height - 1) + size_t(width) * bps);
  fill(cur, in.rest(), in.left(), mode, 0x35);
  fill(prev, in.rest(), in.left(), mode >> 2, 0xCA);

  LumaPlane c{cur.data(), stride, width, height, bps, bit_depth, shift};
  LumaPlane p{prev.data(), prev_stride, width, height, bps, bit_depth, shift};

  FrameAnalysis scalar;
  if (!ccm::analysis::analyse_frame(c, with_prev ? &p : nullptr, options, scalar, Isa::Scalar)) return 0;
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
    if (!ccm::analysis::isa_supported(isa)) continue;
    FrameAnalysis fast;
    if (!ccm::analysis::analyse_frame(c, with_prev ? &p : nullptr, options, fast, isa)) {
      std::fprintf(stderr, "fuzz_sad_kernels: %s refused a plane scalar took\n", ccm::analysis::to_string(isa));
      std::abort();
    }
    if (!same(scalar, fast, ccm::analysis::to_string(isa))) {
      std::fprintf(stderr, "  plane %dx%d bps %d depth %d shift %d stride %td/%td row_step %d prev %d\n", width,
                   height, bps, bit_depth, shift, stride, prev_stride, row_step, int(with_prev));
      std::abort();
    }
  }
  return 0;
}
