#include "analysis/analysis.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string_view>
#include <thread>

#include "analysis/kernels.h"
#include "hw/cpu.h"

namespace ccm::analysis {
namespace detail {

void block_scalar8(const uint8_t* cur, ptrdiff_t cur_stride, const uint8_t* prev, ptrdiff_t prev_stride,
                   int width, int rows, int row_step, uint32_t& sad, uint32_t& activity) {
  uint32_t s = 0, act = 0;
  const uint8_t* above = nullptr;
  for (int r = 0; r < rows; r += row_step) {
    const uint8_t* c = cur + r * cur_stride;
    if (prev) {
      const uint8_t* p = prev + r * prev_stride;
      for (int x = 0; x < width; ++x) s += static_cast<uint32_t>(std::abs(c[x] - p[x]));
    }
    for (int x = 0; x + 1 < width; ++x) act += static_cast<uint32_t>(std::abs(c[x] - c[x + 1]));
    if (above)
      for (int x = 0; x < width; ++x) act += static_cast<uint32_t>(std::abs(c[x] - above[x]));
    above = c;
  }
  sad = s;
  activity = act;
}

namespace {
inline int sample16(const uint8_t* row, int x, int shift) {
  uint16_t v;
  std::memcpy(&v, row + 2 * x, 2);
  return v >> shift;
}
}  // namespace

void block_scalar16(const uint8_t* cur, ptrdiff_t cur_stride, const uint8_t* prev, ptrdiff_t prev_stride,
                    int width, int rows, int row_step, int shift, uint32_t& sad, uint32_t& activity) {
  uint32_t s = 0, act = 0;
  const uint8_t* above = nullptr;
  for (int r = 0; r < rows; r += row_step) {
    const uint8_t* c = cur + r * cur_stride;
    if (prev) {
      const uint8_t* p = prev + r * prev_stride;
      for (int x = 0; x < width; ++x)
        s += static_cast<uint32_t>(std::abs(sample16(c, x, shift) - sample16(p, x, shift)));
    }
    for (int x = 0; x + 1 < width; ++x)
      act += static_cast<uint32_t>(std::abs(sample16(c, x, shift) - sample16(c, x + 1, shift)));
    if (above)
      for (int x = 0; x < width; ++x)
        act += static_cast<uint32_t>(std::abs(sample16(c, x, shift) - sample16(above, x, shift)));
    above = c;
  }
  sad = s;
  activity = act;
}

void band8_scalar(const BandArgs& a) {
  for (int b = 0; b < a.blocks; ++b)
    block_scalar8(a.cur + 16 * b, a.cur_stride, a.prev ? a.prev + 16 * b : nullptr, a.prev_stride, 16, a.rows,
                  a.row_step, a.sad[b], a.activity[b]);
}

void band16_scalar(const BandArgs& a) {
  for (int b = 0; b < a.blocks; ++b)
    block_scalar16(a.cur + 32 * b, a.cur_stride, a.prev ? a.prev + 32 * b : nullptr, a.prev_stride, 16, a.rows,
                   a.row_step, a.shift, a.sad[b], a.activity[b]);
}

}  // namespace detail

const char* to_string(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

const char* to_string(BlockClass c) {
  switch (c) {
    case BlockClass::Skip: return "skip";
    case BlockClass::Fast: return "fast";
    case BlockClass::Full: return "full";
  }
  return "?";
}

namespace {

struct IsaSupport {
  bool avx2 = false;
  bool avx512 = false;
};

const IsaSupport& isa_support() {
  // detect_cpu() reads cpuid and XGETBV (its feature bits already require OS
  // support for the register state); topology is irrelevant here.
  static const IsaSupport support = [] {
    IsaSupport s;
#if defined(__x86_64__)
    const auto cpu = hw::detect_cpu();
    s.avx2 = cpu.features.avx2;
    s.avx512 = cpu.features.avx512_usable();
#endif
    // CCM_ANALYSIS_ISA=scalar|avx2 caps the choice (for comparisons and bug hunts).
    if (const char* cap = std::getenv("CCM_ANALYSIS_ISA")) {
      const std::string_view v(cap);
      if (v == "scalar") s = {};
      if (v == "avx2") s.avx512 = false;
    }
    return s;
  }();
  return support;
}

detail::BandKernel kernel_for(Isa isa, int bytes_per_sample) {
  const bool wide = bytes_per_sample == 2;
#if defined(__x86_64__)
  if (isa == Isa::Avx512) return wide ? detail::band16_avx512 : detail::band8_avx512;
  if (isa == Isa::Avx2) return wide ? detail::band16_avx2 : detail::band8_avx2;
#else
  (void)isa;
#endif
  return wide ? detail::band16_scalar : detail::band8_scalar;
}

bool valid(const LumaPlane& p) {
  if (!p.data || p.width <= 0 || p.height <= 0) return false;
  if (p.bytes_per_sample != 1 && p.bytes_per_sample != 2) return false;
  if (p.stride < static_cast<ptrdiff_t>(p.width) * p.bytes_per_sample) return false;
  if (p.bit_depth < 8 || p.bit_depth > 16) return false;
  if (p.bytes_per_sample == 1 && (p.bit_depth != 8 || p.shift != 0)) return false;
  if (p.shift < 0 || p.shift + p.bit_depth > 16) return false;
  return true;
}

int sampled_rows(int rows, int step) { return (rows + step - 1) / step; }

// A small pool that runs job(0..n-1), job(0) on the calling thread. Workers
// live for the process: a frame is too short to pay for starting threads.
class Pool {
 public:
  static Pool& instance() {
    static Pool pool;
    return pool;
  }
  void run(int n, const std::function<void(int)>& job) {
    std::unique_lock<std::mutex> call(call_lock_);  // one frame at a time through the pool
    ensure_workers(n - 1);
    {
      std::lock_guard<std::mutex> g(lock_);
      job_ = &job;
      next_ = 1;
      count_ = n;
      pending_ = n - 1;
      ++generation_;
    }
    wake_.notify_all();
    job(0);
    std::unique_lock<std::mutex> g(lock_);
    done_.wait(g, [&] { return pending_ == 0; });
    job_ = nullptr;
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(lock_);
      stop_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void ensure_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) workers_.emplace_back([this] { work(); });
  }
  void work() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> g(lock_);
    for (;;) {
      wake_.wait(g, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      while (job_ && next_ < count_) {
        const int i = next_++;
        const auto* job = job_;
        g.unlock();
        (*job)(i);
        g.lock();
        if (--pending_ == 0) done_.notify_one();
      }
    }
  }
  std::mutex call_lock_;
  std::mutex lock_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int next_ = 0, count_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

void parallel_for(int n, const std::function<void(int)>& job) { Pool::instance().run(n, job); }

}  // namespace

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return isa_support().avx2;
    case Isa::Avx512: return isa_support().avx512;
  }
  return false;
}

Isa best_isa() {
  if (isa_supported(Isa::Avx512)) return Isa::Avx512;
  if (isa_supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}

uint64_t bytes_read(const LumaPlane& cur, bool with_previous, int row_step) {
  row_step = std::max(1, row_step);
  uint64_t rows = 0;
  for (int y = 0; y < cur.height; y += 16) rows += sampled_rows(std::min(16, cur.height - y), row_step);
  const uint64_t per_plane = rows * static_cast<uint64_t>(cur.width) * cur.bytes_per_sample;
  return per_plane * (with_previous ? 2 : 1);
}

bool analyse_frame(const LumaPlane& cur, const LumaPlane* prev, const AnalysisOptions& options,
                   FrameAnalysis& out, Isa isa) {
  if (!valid(cur)) return false;
  if (prev && (!valid(*prev) || prev->width != cur.width || prev->height != cur.height ||
               prev->bytes_per_sample != cur.bytes_per_sample || prev->shift != cur.shift))
    return false;
  if (options.row_step < 1 || options.row_step > 16) return false;
  if (!isa_supported(isa)) isa = best_isa();

  const int bx = (cur.width + 15) / 16, by = (cur.height + 15) / 16;
  const int full_x = cur.width / 16;
  const int bps = cur.bytes_per_sample;
  out.blocks16_x = bx;
  out.blocks16_y = by;
  out.sad16.assign(static_cast<size_t>(bx) * by, 0);
  out.activity16.assign(static_cast<size_t>(bx) * by, 0);
  out.has_previous = prev != nullptr;

  const detail::BandKernel kernel = kernel_for(isa, bps);
  const int step = options.row_step;
  // Bands are independent (each writes its own row of 16x16 results), so they
  // split across threads without changing a single result.
  auto bands = [&](int y_begin, int y_end) {
    for (int y = y_begin; y < y_end; ++y) {
      const int rows = std::min(16, cur.height - 16 * y);
      const uint8_t* crow = cur.data + static_cast<ptrdiff_t>(16 * y) * cur.stride;
      const uint8_t* prow = prev ? prev->data + static_cast<ptrdiff_t>(16 * y) * prev->stride : nullptr;
      uint32_t* sad = out.sad16.data() + static_cast<size_t>(y) * bx;
      uint32_t* act = out.activity16.data() + static_cast<size_t>(y) * bx;
      if (full_x > 0) {
        detail::BandArgs a;
        a.cur = crow;
        a.cur_stride = cur.stride;
        a.prev = prow;
        a.prev_stride = prev ? prev->stride : 0;
        a.blocks = full_x;
        a.rows = rows;
        a.row_step = step;
        a.shift = cur.shift;
        a.sad = sad;
        a.activity = act;
        kernel(a);
      }
      if (full_x < bx) {
        const int w = cur.width - 16 * full_x;
        const ptrdiff_t off = static_cast<ptrdiff_t>(16 * full_x) * bps;
        const uint8_t* p = prow ? prow + off : nullptr;
        const ptrdiff_t ps = prev ? prev->stride : 0;
        if (bps == 1)
          detail::block_scalar8(crow + off, cur.stride, p, ps, w, rows, step, sad[full_x], act[full_x]);
        else
          detail::block_scalar16(crow + off, cur.stride, p, ps, w, rows, step, cur.shift, sad[full_x],
                                 act[full_x]);
      }
    }
  };
  // Below about 64 bands per thread the hand-over costs more than it saves.
  const int threads = std::clamp(std::min(options.threads, by / 16), 1, 64);
  if (threads == 1)
    bands(0, by);
  else
    parallel_for(threads, [&](int i) { bands(by * i / threads, by * (i + 1) / threads); });

  // Aggregation: the same scalar code for every ISA, so the results stay bit-exact.
  const double scale = static_cast<double>(1u << (cur.bit_depth - 8));
  out.blocks64_x = (bx + 3) / 4;
  out.blocks64_y = (by + 3) / 4;
  out.class64.assign(static_cast<size_t>(out.blocks64_x) * out.blocks64_y, BlockClass::Full);
  out.skip_blocks = out.fast_blocks = out.full_blocks = 0;
  out.sad_total = out.activity_total = out.sampled_pixels = 0;
  uint64_t pairs_total = 0;
  double cost_total = 0;
  std::vector<uint64_t> sad64(out.class64.size(), 0), px64(out.class64.size(), 0);
  for (int y = 0; y < by; ++y) {
    const int h = std::min(16, cur.height - 16 * y);
    const int rows = sampled_rows(h, step);
    for (int x = 0; x < bx; ++x) {
      const int w = std::min(16, cur.width - 16 * x);
      const size_t i = static_cast<size_t>(y) * bx + x;
      const uint64_t px = static_cast<uint64_t>(rows) * w;
      const uint64_t pairs = static_cast<uint64_t>(rows) * (w - 1) + static_cast<uint64_t>(rows - 1) * w;
      out.sad_total += out.sad16[i];
      out.activity_total += out.activity16[i];
      out.sampled_pixels += px;
      pairs_total += pairs;
      // Intra cost as SAD-like units: activity per pair times the block's pixels.
      const double intra = pairs ? static_cast<double>(out.activity16[i]) * px / pairs : 0.0;
      cost_total += prev ? std::min(static_cast<double>(out.sad16[i]), intra) : intra;
      const size_t j = static_cast<size_t>(y / 4) * out.blocks64_x + x / 4;
      sad64[j] += out.sad16[i];
      px64[j] += px;
    }
  }
  const uint64_t depth_scale = 1u << (cur.bit_depth - 8);
  for (size_t j = 0; j < out.class64.size(); ++j) {
    BlockClass c = BlockClass::Full;
    if (prev) {
      // sad/px < t/16 (8-bit units), compared in integers.
      const uint64_t sad_q4 = sad64[j] * 16;
      if (sad_q4 < options.skip_threshold_q4 * px64[j] * depth_scale)
        c = BlockClass::Skip;
      else if (sad_q4 < options.full_threshold_q4 * px64[j] * depth_scale)
        c = BlockClass::Fast;
    }
    out.class64[j] = c;
    (c == BlockClass::Skip ? out.skip_blocks : c == BlockClass::Fast ? out.fast_blocks : out.full_blocks)++;
  }
  const double px = static_cast<double>(std::max<uint64_t>(1, out.sampled_pixels));
  out.mafd = prev ? static_cast<double>(out.sad_total) / px / scale : 0.0;
  out.spatial_activity = pairs_total ? static_cast<double>(out.activity_total) / pairs_total / scale : 0.0;
  out.complexity = cost_total / px / scale;
  return true;
}

}  // namespace ccm::analysis
