// The CUDA analysis against the scalar CPU code: every 16x16 SAD and activity,
// every 64x64 class, the counts and totals equal; complexity within rounding.
// Random frames of odd sizes and strides (aligned and not, 8 and 16 bits,
// sampled rows) and real frames of a clip. Exits 77 (skipped) without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "analysis/analysis.h"
#include "cuda/analysis_cuda.h"

namespace {

using ccm::analysis::AnalysisOptions;
using ccm::analysis::FrameAnalysis;
using ccm::analysis::Isa;
using ccm::analysis::LumaPlane;

struct HostPlane {
  std::vector<uint8_t> bytes;
  LumaPlane plane;
};

HostPlane random_plane(std::mt19937& rng, int w, int h, ptrdiff_t stride, int bps, int depth, int shift) {
  HostPlane p;
  p.bytes.resize(static_cast<size_t>(stride) * h);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : p.bytes) b = static_cast<uint8_t>(byte(rng));  // padding too: it must never be read
  // Smooth content with noise, so that blocks fall in every class.
  std::uniform_int_distribution<int> noise(-6, 6);
  const int max = (1 << depth) - 1;
  const int phase = byte(rng);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      int v = ((x * 3 + y * 2 + phase) % 256) * (max / 255) + noise(rng) * (max / 255);
      if ((x / 64 + y / 64) % 3 == 0) v = byte(rng) * (max / 255);  // busy regions
      v = std::clamp(v, 0, max);
      uint8_t* row = p.bytes.data() + y * stride;
      if (bps == 1) {
        row[x] = static_cast<uint8_t>(v);
      } else {
        const uint16_t s = static_cast<uint16_t>(v << shift);
        std::memcpy(row + 2 * x, &s, 2);
      }
    }
  p.plane = {p.bytes.data(), stride, w, h, bps, depth, shift};
  return p;
}

// prev = cur with some blocks changed, some moved, some left alone.
HostPlane variant_of(std::mt19937& rng, const HostPlane& cur) {
  HostPlane p = cur;
  p.plane.data = p.bytes.data();
  const LumaPlane& l = cur.plane;
  std::uniform_int_distribution<int> kind(0, 3), byte(0, 255);
  for (int by = 0; by < l.height; by += 32)
    for (int bx = 0; bx < l.width; bx += 32) {
      const int k = kind(rng);
      for (int y = by; y < std::min(by + 32, l.height); ++y)
        for (int x = bx * l.bytes_per_sample; x < std::min(bx + 32, l.width) * l.bytes_per_sample; ++x) {
          uint8_t& b = p.bytes[static_cast<size_t>(y) * l.stride + x];
          if (k == 1) b = static_cast<uint8_t>(b + (byte(rng) & 3));  // noise (low byte only)
          if (k == 2) b = static_cast<uint8_t>(byte(rng));            // new content
        }
    }
  if (l.bytes_per_sample == 2 && l.shift > 0)  // keep the unused low bits of P010 zero
    for (int y = 0; y < l.height; ++y)
      for (int x = 0; x < l.width; ++x) {
        uint16_t s;
        uint8_t* q = p.bytes.data() + static_cast<size_t>(y) * l.stride + 2 * x;
        std::memcpy(&s, q, 2);
        s = static_cast<uint16_t>(s & ~((1u << l.shift) - 1));
        std::memcpy(q, &s, 2);
      }
  return p;
}

void expect_same(const FrameAnalysis& cpu, const FrameAnalysis& gpu, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(cpu.blocks16_x, gpu.blocks16_x);
  ASSERT_EQ(cpu.blocks16_y, gpu.blocks16_y);
  ASSERT_EQ(cpu.sad16.size(), gpu.sad16.size());
  for (size_t i = 0; i < cpu.sad16.size(); ++i) {
    ASSERT_EQ(cpu.sad16[i], gpu.sad16[i]) << "sad16 block " << i % cpu.blocks16_x << "," << i / cpu.blocks16_x;
    ASSERT_EQ(cpu.activity16[i], gpu.activity16[i])
        << "activity16 block " << i % cpu.blocks16_x << "," << i / cpu.blocks16_x;
  }
  ASSERT_EQ(cpu.blocks64_x, gpu.blocks64_x);
  ASSERT_EQ(cpu.blocks64_y, gpu.blocks64_y);
  ASSERT_EQ(cpu.class64, gpu.class64);
  EXPECT_EQ(cpu.skip_blocks, gpu.skip_blocks);
  EXPECT_EQ(cpu.fast_blocks, gpu.fast_blocks);
  EXPECT_EQ(cpu.full_blocks, gpu.full_blocks);
  EXPECT_EQ(cpu.has_previous, gpu.has_previous);
  EXPECT_EQ(cpu.sad_total, gpu.sad_total);
  EXPECT_EQ(cpu.activity_total, gpu.activity_total);
  EXPECT_EQ(cpu.sampled_pixels, gpu.sampled_pixels);
  EXPECT_EQ(cpu.mafd, gpu.mafd);  // the same expression on the same integers
  EXPECT_EQ(cpu.spatial_activity, gpu.spatial_activity);
  EXPECT_NEAR(cpu.complexity, gpu.complexity, 1e-12 * std::max(1.0, std::abs(cpu.complexity)));
}

// Runs both and compares; offset shifts the device copy off 16-byte alignment.
void compare(ccm::cuda::Analyser& gpu, const HostPlane& cur, const HostPlane* prev, const AnalysisOptions& o,
             int offset, const std::string& what) {
  FrameAnalysis ref, got;
  ASSERT_TRUE(ccm::analysis::analyse_frame(cur.plane, prev ? &prev->plane : nullptr, o, ref, Isa::Scalar));
  std::string err;
  auto dcur = ccm::cuda::DevicePlane::upload(cur.plane, offset, &err);
  ASSERT_TRUE(dcur.valid()) << err;
  ccm::cuda::DevicePlane dprev;
  if (prev) {
    dprev = ccm::cuda::DevicePlane::upload(prev->plane, offset, &err);
    ASSERT_TRUE(dprev.valid()) << err;
  }
  // Stale results from an earlier frame must not survive: poison `got`.
  got.sad16.assign(7, 0xdeadbeef);
  got.class64.assign(3, ccm::analysis::BlockClass::Skip);
  got.sad_total = 12345;
  ASSERT_TRUE(gpu.analyse(dcur.plane(), prev ? &dprev.plane() : nullptr, o, got, /*with_blocks=*/true))
      << gpu.last_error();
  expect_same(ref, got, what);
}

// Both implementations: one fused launch (the default) and the three-kernel one.
class CudaAnalysisVariant : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { setenv("CCM_CUDA_ANALYSIS", GetParam(), 1); }
  void TearDown() override { unsetenv("CCM_CUDA_ANALYSIS"); }
};

TEST_P(CudaAnalysisVariant, BitExactOnRandomFrames) {
  std::mt19937 rng(20261124);
  ccm::cuda::Analyser gpu;
  struct Size {
    int w, h;
  };
  // Partial blocks at both edges, a single block, thin frames, one bigger than a
  // thread block's 32 columns, and sizes that shrink after larger ones.
  const Size sizes[] = {{64, 64}, {100, 37}, {16, 16}, {7, 5}, {1, 1}, {530, 70}, {1000, 24}, {33, 300}, {17, 18}};
  const int steps[] = {1, 2, 3, 4};
  int cases = 0;
  for (const Size s : sizes)
    for (int bps = 1; bps <= 2; ++bps)
      for (const int step : steps) {
        const int depth = bps == 1 ? 8 : 10;
        const int shift = bps == 1 ? 0 : (cases % 2 ? 6 : 0);  // P010 and I420_10LE layouts
        const ptrdiff_t row = static_cast<ptrdiff_t>(s.w) * bps;
        // Aligned pitch, an odd stride, the tightest stride.
        const ptrdiff_t strides[] = {(row + 255) / 256 * 256, row + 3, row};
        for (const ptrdiff_t stride : strides) {
          const HostPlane cur = random_plane(rng, s.w, s.h, stride, bps, depth, shift);
          const HostPlane prev = variant_of(rng, cur);
          AnalysisOptions o;
          o.row_step = step;
          const std::string what = std::to_string(s.w) + "x" + std::to_string(s.h) + " bps " + std::to_string(bps) +
                                   " step " + std::to_string(step) + " stride " + std::to_string(stride);
          compare(gpu, cur, &prev, o, 0, what);
          compare(gpu, cur, nullptr, o, 0, what + " (first frame)");
          compare(gpu, cur, &prev, o, 1, what + " (unaligned base)");
          if (HasFatalFailure()) return;
          ++cases;
        }
      }
  EXPECT_EQ(cases, 9 * 2 * 4 * 3);
}

TEST_P(CudaAnalysisVariant, ThresholdsAreHonoured) {
  std::mt19937 rng(7);
  ccm::cuda::Analyser gpu;
  const HostPlane cur = random_plane(rng, 256, 192, 256, 1, 8, 0);
  const HostPlane prev = variant_of(rng, cur);
  for (const auto& [skip, full] : {std::pair{24u, 160u}, {0u, 0u}, {1000u, 2000u}, {100u, 101u}}) {
    AnalysisOptions o;
    o.skip_threshold_q4 = skip;
    o.full_threshold_q4 = full;
    compare(gpu, cur, &prev, o, 0, "thresholds " + std::to_string(skip) + "/" + std::to_string(full));
  }
}

// Real content: the Y plane of the first frames of a y4m clip (read here, no decoder).
std::vector<std::vector<uint8_t>> y4m_luma(const std::string& path, int& w, int& h, int max_frames) {
  std::vector<std::vector<uint8_t>> frames;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return frames;
  char header[256] = {};
  if (!std::fgets(header, sizeof header, f) || std::sscanf(header, "YUV4MPEG2 W%d H%d", &w, &h) != 2) {
    std::fclose(f);
    return frames;
  }
  const size_t luma = static_cast<size_t>(w) * h, chroma = 2 * static_cast<size_t>((w + 1) / 2) * ((h + 1) / 2);
  std::vector<uint8_t> skip(chroma);
  char line[256];
  while (static_cast<int>(frames.size()) < max_frames && std::fgets(line, sizeof line, f)) {
    std::vector<uint8_t> y(luma);
    if (std::fread(y.data(), 1, luma, f) != luma || std::fread(skip.data(), 1, chroma, f) != chroma) break;
    frames.push_back(std::move(y));
  }
  std::fclose(f);
  return frames;
}

TEST_P(CudaAnalysisVariant, BitExactOnRealFrames) {
  const char* dir = std::getenv("CCM_TEST_MEDIA");
  int w = 0, h = 0;
  const auto frames = y4m_luma(std::string(dir ? dir : ".") + "/cars_320x240_30f.y4m", w, h, 30);
  ASSERT_GE(frames.size(), 2u) << "cars_320x240_30f.y4m not found under CCM_TEST_MEDIA (tests/media)";
  ccm::cuda::Analyser gpu;
  for (size_t i = 1; i < frames.size(); ++i) {
    HostPlane cur{frames[i], {}}, prev{frames[i - 1], {}};
    cur.plane = {cur.bytes.data(), w, w, h, 1, 8, 0};
    prev.plane = {prev.bytes.data(), w, w, h, 1, 8, 0};
    AnalysisOptions o;
    o.row_step = 1 + static_cast<int>(i % 2);
    compare(gpu, cur, &prev, o, 0, "cars frame " + std::to_string(i));
    if (HasFatalFailure()) return;
  }
}

// A frame far larger than one wave of thread blocks, and a smaller one after it
// (the fused kernel's count of finished blocks must start at 0 every time).
TEST_P(CudaAnalysisVariant, BitExactOnLargeFramesAndAfterThem) {
  std::mt19937 rng(99);
  ccm::cuda::Analyser gpu;
  const HostPlane big = random_plane(rng, 3840, 2160, 3840, 1, 8, 0);
  const HostPlane big_prev = variant_of(rng, big);
  const HostPlane small = random_plane(rng, 200, 100, 256, 1, 8, 0);
  const HostPlane small_prev = variant_of(rng, small);
  for (int i = 0; i < 3; ++i) {
    compare(gpu, big, &big_prev, {}, 0, "3840x2160 #" + std::to_string(i));
    compare(gpu, small, &small_prev, {}, 0, "200x100 #" + std::to_string(i));
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, CudaAnalysisVariant, ::testing::Values("fused", "three-kernels"));

TEST(CudaAnalysis, RejectsBadPlanes) {
  ccm::cuda::Analyser gpu;
  FrameAnalysis out;
  out.sad_total = 42;
  LumaPlane bad{nullptr, 64, 64, 64, 1, 8, 0};
  EXPECT_FALSE(gpu.analyse(bad, nullptr, {}, out));
  std::vector<uint8_t> host(64 * 64, 1);
  auto d = ccm::cuda::DevicePlane::upload({host.data(), 64, 64, 64, 1, 8, 0});
  ASSERT_TRUE(d.valid());
  LumaPlane narrow = d.plane();
  narrow.stride = 32;  // less than a row
  EXPECT_FALSE(gpu.analyse(narrow, nullptr, {}, out));
  LumaPlane other = d.plane();
  other.width = 32;  // prev of another size
  EXPECT_FALSE(gpu.analyse(d.plane(), &other, {}, out));
  AnalysisOptions o;
  o.row_step = 0;
  EXPECT_FALSE(gpu.analyse(d.plane(), nullptr, o, out));
  EXPECT_EQ(out.sad_total, 42u);  // untouched
  EXPECT_TRUE(gpu.analyse(d.plane(), nullptr, {}, out)) << gpu.last_error();
  EXPECT_EQ(out.sad_total, 0u);
  EXPECT_EQ(out.activity_total, 0u);  // a flat plane
  EXPECT_EQ(out.full_blocks, 1u);     // no previous frame: Full
}

}  // namespace

int main(int argc, char** argv) {
  std::string why;
  if (!ccm::cuda::device_available(&why)) {
    std::printf("SKIP: no CUDA device (%s)\n", why.c_str());
    return 77;
  }
  std::printf("device: %s\n", ccm::cuda::device_description().c_str());
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
