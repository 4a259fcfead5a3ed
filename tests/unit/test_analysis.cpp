// Frame analysis: the definitions (against a naive reference written here), the
// SIMD kernels bit-exact with the scalar one on random and real frames of any
// size and stride, 8- and 16-bit, block classes, and scene cuts on real clips.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "analysis/analysis.h"
#include "analysis/scene_cut.h"
#include "media_frames.h"

using namespace ccm::analysis;

namespace {

// A plane with padding on the right, filled with samples.
struct TestPlane {
  int width, height, bps, stride;
  std::vector<uint8_t> bytes;
  TestPlane(int w, int h, int bytes_per_sample, int pad) : width(w), height(h), bps(bytes_per_sample) {
    stride = w * bps + pad;
    bytes.assign(static_cast<size_t>(stride) * h + 64, 0xAB);  // + slack; padding has garbage
  }
  void set(int x, int y, unsigned v) {
    uint8_t* p = bytes.data() + static_cast<size_t>(y) * stride + static_cast<size_t>(x) * bps;
    if (bps == 1) {
      *p = static_cast<uint8_t>(v);
    } else {
      const uint16_t s = static_cast<uint16_t>(v);
      std::memcpy(p, &s, 2);
    }
  }
  unsigned get(int x, int y, int shift) const {
    const uint8_t* p = bytes.data() + static_cast<size_t>(y) * stride + static_cast<size_t>(x) * bps;
    if (bps == 1) return *p;
    uint16_t s;
    std::memcpy(&s, p, 2);
    return s >> shift;
  }
  LumaPlane view(int depth = 8, int shift = 0) const {
    LumaPlane l;
    l.data = bytes.data();
    l.stride = stride;
    l.width = width;
    l.height = height;
    l.bytes_per_sample = bps;
    l.bit_depth = bps == 1 ? 8 : depth;
    l.shift = shift;
    return l;
  }
};

void fill_random(TestPlane& p, std::mt19937& rng, unsigned max_value) {
  std::uniform_int_distribution<unsigned> d(0, max_value);
  for (int y = 0; y < p.height; ++y)
    for (int x = 0; x < p.width; ++x) p.set(x, y, d(rng));
}

// The definitions of analysis.h, written out as plainly as possible.
void reference(const TestPlane& cur, const TestPlane* prev, int step, int shift, std::vector<uint32_t>& sad,
               std::vector<uint32_t>& act) {
  const int bx = (cur.width + 15) / 16, by = (cur.height + 15) / 16;
  sad.assign(static_cast<size_t>(bx) * by, 0);
  act.assign(static_cast<size_t>(bx) * by, 0);
  for (int j = 0; j < by; ++j)
    for (int i = 0; i < bx; ++i) {
      const int x0 = 16 * i, y0 = 16 * j;
      const int x1 = std::min(cur.width, x0 + 16), y1 = std::min(cur.height, y0 + 16);
      uint32_t s = 0, a = 0;
      for (int y = y0; y < y1; y += step)
        for (int x = x0; x < x1; ++x) {
          const int c = static_cast<int>(cur.get(x, y, shift));
          if (prev) s += std::abs(c - static_cast<int>(prev->get(x, y, shift)));
          if (x + 1 < x1) a += std::abs(c - static_cast<int>(cur.get(x + 1, y, shift)));
          if (y + step < y1) a += std::abs(c - static_cast<int>(cur.get(x, y + step, shift)));
        }
      sad[static_cast<size_t>(j) * bx + i] = s;
      act[static_cast<size_t>(j) * bx + i] = a;
    }
}

std::vector<Isa> simd_isas() {
  std::vector<Isa> v;
  for (Isa i : {Isa::Avx2, Isa::Avx512})
    if (isa_supported(i)) v.push_back(i);
  return v;
}

void expect_same(const FrameAnalysis& a, const FrameAnalysis& b, const std::string& what) {
  ASSERT_EQ(a.sad16, b.sad16) << what;
  ASSERT_EQ(a.activity16, b.activity16) << what;
  ASSERT_EQ(a.class64, b.class64) << what;
  ASSERT_EQ(a.sad_total, b.sad_total) << what;
  ASSERT_EQ(a.activity_total, b.activity_total) << what;
  ASSERT_EQ(a.mafd, b.mafd) << what;
  ASSERT_EQ(a.complexity, b.complexity) << what;
  ASSERT_EQ(a.spatial_activity, b.spatial_activity) << what;
}

struct Size {
  int w, h, pad;
};
// Edges of every kind: below one block, partial blocks on both edges, odd block
// counts (the SIMD pair/quad remainders), wider than one accumulator chunk (2048).
const Size kSizes[] = {{1, 1, 0},   {15, 17, 3},   {16, 16, 0},  {17, 33, 1},   {48, 16, 16},  {64, 64, 0},
                       {100, 37, 5}, {176, 144, 0}, {352, 288, 64}, {1921, 35, 7}, {2100, 20, 0}, {4100, 18, 32}};

}  // namespace

TEST(Analysis, ScalarMatchesTheDefinitions) {
  std::mt19937 rng(1);
  for (const Size s : kSizes) {
    for (int bps : {1, 2}) {
      for (int step : {1, 2, 3, 4}) {
        TestPlane cur(s.w, s.h, bps, s.pad), prev(s.w, s.h, bps, s.pad + 2 * bps);
        fill_random(cur, rng, bps == 1 ? 255 : 65535);
        fill_random(prev, rng, bps == 1 ? 255 : 65535);
        const int shift = bps == 2 ? 6 : 0;
        AnalysisOptions o;
        o.row_step = step;
        FrameAnalysis fa;
        ASSERT_TRUE(analyse_frame(cur.view(10, shift), nullptr, o, fa, Isa::Scalar));
        std::vector<uint32_t> sad, act;
        reference(cur, nullptr, step, shift, sad, act);
        EXPECT_EQ(fa.activity16, act);
        EXPECT_EQ(fa.sad16, std::vector<uint32_t>(sad.size(), 0));
        const LumaPlane pv = prev.view(10, shift);
        ASSERT_TRUE(analyse_frame(cur.view(10, shift), &pv, o, fa, Isa::Scalar));
        reference(cur, &prev, step, shift, sad, act);
        ASSERT_EQ(fa.sad16, sad) << s.w << "x" << s.h << " bps " << bps << " step " << step;
        ASSERT_EQ(fa.activity16, act) << s.w << "x" << s.h << " bps " << bps << " step " << step;
      }
    }
  }
}

TEST(Analysis, SimdBitExactOnRandomFrames) {
  const auto isas = simd_isas();
  if (isas.empty()) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(7);
  for (const Size s : kSizes) {
    for (int bps : {1, 2}) {
      // 16-bit: full-range values (no sign trouble in the widening sums), and P010-like shift 6.
      for (int shift : bps == 2 ? std::vector<int>{0, 6} : std::vector<int>{0}) {
        for (int step : {1, 2, 4}) {
          TestPlane cur(s.w, s.h, bps, s.pad), prev(s.w, s.h, bps, s.pad + 4);
          fill_random(cur, rng, bps == 1 ? 255 : 65535);
          // prev close to cur in part of the frame so the classes vary too.
          for (int y = 0; y < s.h; ++y)
            for (int x = 0; x < s.w; ++x)
              prev.set(x, y, (x / 64 + y / 64) % 3 == 0 ? cur.get(x, y, 0) : rng() % (bps == 1 ? 256 : 65536));
          const int depth = bps == 1 ? 8 : 16 - shift;
          AnalysisOptions o;
          o.row_step = step;
          const LumaPlane c = cur.view(depth, shift), p = prev.view(depth, shift);
          for (const LumaPlane* pp : {static_cast<const LumaPlane*>(nullptr), &p}) {
            FrameAnalysis want, got;
            ASSERT_TRUE(analyse_frame(c, pp, o, want, Isa::Scalar));
            for (Isa isa : isas) {
              ASSERT_TRUE(analyse_frame(c, pp, o, got, isa));
              expect_same(want, got,
                          std::string(to_string(isa)) + " " + std::to_string(s.w) + "x" + std::to_string(s.h) +
                              " bps " + std::to_string(bps) + " shift " + std::to_string(shift) + " step " +
                              std::to_string(step) + (pp ? " with prev" : " no prev"));
            }
          }
        }
      }
    }
  }
}

TEST(Analysis, SimdBitExactOnRealFramesAnd10BitAgrees) {
  const auto clip = ccm::test::decode_gray(ccm::test::media_path("foreman_352x288_300f.h264"), 352, 288, 40);
  ASSERT_GE(clip.frames.size(), 40u) << "ffmpeg could not decode foreman_352x288_300f.h264 of tests/media";
  const int w = clip.width, h = clip.height;
  // Cropped to 350x286 so both edges have partial blocks, and a stride with padding.
  const int cw = w - 2, ch = h - 2;
  std::vector<uint8_t> prev_px;
  FrameAnalysis want, got, ten, p010;
  for (size_t f = 0; f < clip.frames.size(); ++f) {
    const auto& px = clip.frames[f];
    LumaPlane cur{px.data(), w, cw, ch};
    LumaPlane prev{prev_px.data(), w, cw, ch};
    const LumaPlane* pp = f ? &prev : nullptr;
    ASSERT_TRUE(analyse_frame(cur, pp, {}, want, Isa::Scalar));
    for (Isa isa : simd_isas()) {
      ASSERT_TRUE(analyse_frame(cur, pp, {}, got, isa));
      expect_same(want, got, std::string(to_string(isa)) + " frame " + std::to_string(f));
    }
    // The same picture as I420_10LE (x << 2) and P010 (x << 8, shift 6): the
    // 8-bit-unit statistics and classes must not change with the format.
    auto widen = [&](const std::vector<uint8_t>& src, int lshift) {
      std::vector<uint16_t> out(src.size());
      for (size_t i = 0; i < src.size(); ++i) out[i] = static_cast<uint16_t>(src[i] << lshift);
      return out;
    };
    const auto c10 = widen(px, 2), c16 = widen(px, 8);
    const auto p10 = f ? widen(prev_px, 2) : c10, p16 = f ? widen(prev_px, 8) : c16;
    LumaPlane cur10{reinterpret_cast<const uint8_t*>(c10.data()), 2 * w, cw, ch, 2, 10, 0};
    LumaPlane prev10{reinterpret_cast<const uint8_t*>(p10.data()), 2 * w, cw, ch, 2, 10, 0};
    LumaPlane cur16{reinterpret_cast<const uint8_t*>(c16.data()), 2 * w, cw, ch, 2, 10, 6};
    LumaPlane prev16{reinterpret_cast<const uint8_t*>(p16.data()), 2 * w, cw, ch, 2, 10, 6};
    ASSERT_TRUE(analyse_frame(cur10, f ? &prev10 : nullptr, {}, ten));
    ASSERT_TRUE(analyse_frame(cur16, f ? &prev16 : nullptr, {}, p010));
    EXPECT_DOUBLE_EQ(ten.mafd, want.mafd);
    EXPECT_DOUBLE_EQ(ten.complexity, want.complexity);
    EXPECT_EQ(ten.class64, want.class64);
    EXPECT_EQ(ten.sad_total, 4 * want.sad_total);
    EXPECT_EQ(p010.sad16, ten.sad16);
    EXPECT_EQ(p010.activity16, ten.activity16);
    prev_px = px;
  }
}

TEST(Analysis, ThreadsGiveTheSameResults) {
  std::mt19937 rng(9);
  for (const Size s : {Size{1920, 1080, 0}, Size{3840, 600, 64}, Size{700, 300, 3}}) {
    TestPlane cur(s.w, s.h, 1, s.pad), prev(s.w, s.h, 1, s.pad);
    fill_random(cur, rng, 255);
    fill_random(prev, rng, 255);
    const LumaPlane c = cur.view(), p = prev.view();
    FrameAnalysis one, many;
    AnalysisOptions o;
    ASSERT_TRUE(analyse_frame(c, &p, o, one));
    for (int t : {2, 3, 8}) {
      o.threads = t;
      for (int repeat = 0; repeat < 3; ++repeat) {  // the pool is reused between frames
        ASSERT_TRUE(analyse_frame(c, &p, o, many));
        expect_same(one, many, std::to_string(t) + " threads, " + std::to_string(s.w) + "x" + std::to_string(s.h));
      }
    }
  }
}

TEST(Analysis, BlockClassesFollowTheThresholds) {
  // 128x80: 2x2 blocks of 64, the bottom row partial (16 rows).
  TestPlane prev(128, 80, 1, 0), cur(128, 80, 1, 0);
  for (int y = 0; y < 80; ++y)
    for (int x = 0; x < 128; ++x) {
      prev.set(x, y, 100);
      // top-left static, top-right +1 per pixel, bottom-left +5, bottom-right +40.
      const int d = x < 64 ? (y < 64 ? 0 : 5) : (y < 64 ? 1 : 40);
      cur.set(x, y, 100 + d);
    }
  AnalysisOptions o;  // skip < 1.5, full >= 10
  FrameAnalysis fa;
  const LumaPlane p = prev.view();
  ASSERT_TRUE(analyse_frame(cur.view(), &p, o, fa));
  ASSERT_EQ(fa.blocks64_x, 2);
  ASSERT_EQ(fa.blocks64_y, 2);
  EXPECT_EQ(fa.class64[0], BlockClass::Skip);
  EXPECT_EQ(fa.class64[1], BlockClass::Skip);  // 1 < 1.5
  EXPECT_EQ(fa.class64[2], BlockClass::Fast);
  EXPECT_EQ(fa.class64[3], BlockClass::Full);
  EXPECT_EQ(fa.skip_blocks, 2u);
  EXPECT_EQ(fa.fast_blocks, 1u);
  EXPECT_EQ(fa.full_blocks, 1u);
  // mafd: (64*64*1 + 64*16*5 + 64*16*40) / (128*80)
  EXPECT_NEAR(fa.mafd, (4096.0 + 1024 * 5 + 1024 * 40) / (128 * 80), 1e-9);
  EXPECT_DOUBLE_EQ(fa.spatial_activity, 0.0);  // flat picture
  EXPECT_DOUBLE_EQ(fa.complexity, 0.0);        // intra cost of a flat picture is 0

  o.skip_threshold_q4 = 8;  // 0.5 per pixel: the +1 block is no longer static
  ASSERT_TRUE(analyse_frame(cur.view(), &p, o, fa));
  EXPECT_EQ(fa.class64[1], BlockClass::Fast);

  // Without a previous frame everything needs coding from scratch.
  ASSERT_TRUE(analyse_frame(cur.view(), nullptr, o, fa));
  EXPECT_EQ(fa.full_blocks, 4u);
  EXPECT_FALSE(fa.has_previous);
}

TEST(Analysis, RejectsBadPlanes) {
  TestPlane a(32, 32, 1, 0), b(16, 32, 1, 0);
  FrameAnalysis fa;
  LumaPlane bad = a.view();
  bad.stride = 8;
  EXPECT_FALSE(analyse_frame(bad, nullptr, {}, fa));
  const LumaPlane pb = b.view();
  EXPECT_FALSE(analyse_frame(a.view(), &pb, {}, fa));  // size mismatch
  AnalysisOptions o;
  o.row_step = 0;
  EXPECT_FALSE(analyse_frame(a.view(), nullptr, o, fa));
  EXPECT_EQ(bytes_read(a.view(), true, 1), 2u * 32 * 32);
  EXPECT_EQ(bytes_read(a.view(), false, 2), 16u * 32);
}

// ---- scene cuts on real clips ------------------------------------------------

namespace {

std::vector<int> detect_cuts(const ccm::test::GrayClip& clip, int row_step = 1) {
  std::vector<int> cuts;
  SceneCutDetector det;
  FrameAnalysis fa;
  AnalysisOptions o;
  o.row_step = row_step;
  for (size_t f = 0; f < clip.frames.size(); ++f) {
    LumaPlane cur{clip.frames[f].data(), clip.width, clip.width, clip.height};
    LumaPlane prev{f ? clip.frames[f - 1].data() : nullptr, clip.width, clip.width, clip.height};
    EXPECT_TRUE(analyse_frame(cur, f ? &prev : nullptr, o, fa));
    if (det.push(fa).cut) cuts.push_back(static_cast<int>(f));
  }
  return cuts;
}

}  // namespace

TEST(SceneCut, FindsTheCutsOfMixedContent) {
  const auto clip =
      ccm::test::decode_gray(ccm::test::media_path("mixed-content_480x270.webm"), 480, 270);
  ASSERT_EQ(clip.frames.size(), 394u) << "ffmpeg could not decode mixed-content_480x270.webm of tests/media";
  // Frame 125 is at 5.000 s and frame 245 at 10.036 s (ffprobe -show_entries
  // frame=pts_time). Frame 356 (14.4 s) is a camera cut inside the dance footage
  // (looked at: a different shot from one frame to the next), not listed in the
  // media README; nothing else in the clip is a cut.
  for (int step : {1, 2, 4}) {
    const auto cuts = detect_cuts(clip, step);
    EXPECT_EQ(cuts, (std::vector<int>{125, 245, 356})) << "row_step " << step;
  }
}

TEST(SceneCut, NoFalseCutsInCameraAndScreenClips) {
  struct Clip {
    const char* name;
    int w, h;
  };
  // Foreman: hand-held camera with a fast pan; screen-pdf: page scrolls that jump
  // 50 lines at once (a zero-motion SAD as large as a cut's); the rest: motion.
  const Clip clips[] = {{"foreman_352x288_300f.h264", 352, 288},
                        {"screen-pdf_1024x768_50f.h264", 1024, 768},
                        {"street_1920x1080_54f.h264", 1920, 1080},
                        {"webcam_1280x720_19f.h264", 1280, 720},
                        {"cars_320x240_30f.y4m", 320, 240}};
  int tested = 0;
  for (const Clip& c : clips) {
    const auto clip = ccm::test::decode_gray(ccm::test::media_path(c.name), c.w, c.h);
    if (clip.frames.size() < 10) ADD_FAILURE() << "ffmpeg could not decode " << c.name << " of tests/media";
    if (clip.frames.size() < 10) continue;
    ++tested;
    EXPECT_EQ(detect_cuts(clip), std::vector<int>{}) << c.name;
  }
  EXPECT_EQ(tested, 5);
}

TEST(SceneCut, ThresholdAndGap) {
  // Synthetic: a flat grey picture with mild texture, then a different one.
  TestPlane a(128, 128, 1, 0), b(128, 128, 1, 0);
  std::mt19937 rng(3);
  for (int y = 0; y < 128; ++y)
    for (int x = 0; x < 128; ++x) {
      a.set(x, y, 60 + rng() % 4);
      b.set(x, y, 200 + rng() % 4);
    }
  SceneCutDetector det;
  FrameAnalysis fa;
  const LumaPlane pa = a.view(), pb = b.view();
  auto push = [&](const LumaPlane& cur, const LumaPlane* prev) {
    EXPECT_TRUE(analyse_frame(cur, prev, {}, fa));
    return det.push(fa);
  };
  push(pa, nullptr);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(push(pa, &pa).cut);
  const auto d = push(pb, &pa);
  EXPECT_TRUE(d.cut);
  EXPECT_NEAR(d.score_percent, 140.0 * 100 / 255, 2.0);
  // Straight back: inside the minimum gap, no second cut.
  EXPECT_FALSE(push(pa, &pb).cut);
  // A threshold above the score turns it off.
  SceneCutOptions o;
  o.threshold_percent = 60;
  det.set_options(o);
  for (int i = 0; i < 5; ++i) push(pa, &pa);
  EXPECT_FALSE(push(pb, &pa).cut);
}
