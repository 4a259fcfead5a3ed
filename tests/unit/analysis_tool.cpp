// Not a test: the analysis kernels from the command line, for the calibration and
// benchmark scripts (scripts/calibrate-ratecontrol, scripts/bench-ratecontrol).
//
//   analysis_tool --dump FILE.y W H [ROW_STEP]
//       per frame of an 8-bit gray raw file: "index mafd activity complexity skip fast full cut score"
//   analysis_tool --time W H [FRAMES] [ROW_STEP] [ISA] [THREADS]
//       times analyse_frame on two synthetic 8-bit planes of W x H (fresh memory
//       each frame, larger than the caches) and the memory floor of the same bytes
//       read by a plain streaming sum; prints one JSON line.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "analysis/analysis.h"
#include "analysis/scene_cut.h"

using namespace ccm::analysis;

namespace {

int dump(const char* path, int w, int h, int step) {
  FILE* f = std::fopen(path, "rb");
  if (!f) return 1;
  std::vector<uint8_t> a(static_cast<size_t>(w) * h), b(a.size());
  FrameAnalysis fa;
  AnalysisOptions o;
  o.row_step = step;
  SceneCutDetector det;
  for (int n = 0; std::fread(a.data(), 1, a.size(), f) == a.size(); ++n) {
    LumaPlane c{a.data(), w, w, h}, p{b.data(), w, w, h};
    analyse_frame(c, n ? &p : nullptr, o, fa);
    const auto d = det.push(fa);
    std::printf("%d %.4f %.4f %.4f %u %u %u %d %.2f\n", n, fa.mafd, fa.spatial_activity, fa.complexity,
                fa.skip_blocks, fa.fast_blocks, fa.full_blocks, d.cut ? 1 : 0, d.score_percent);
    std::swap(a, b);
  }
  std::fclose(f);
  return 0;
}

#if defined(__x86_64__)
// The memory floor: the same bytes streamed through AVX2 loads and one add.
__attribute__((target("avx2"))) uint64_t stream_sum(const uint8_t* p, size_t n) {
  __m256i acc = _mm256_setzero_si256();
  const __m256i zero = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64));
    const __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96));
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d)), zero));
  }
  alignas(32) uint64_t t[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), acc);
  uint64_t s = t[0] + t[1] + t[2] + t[3];
  for (; i < n; ++i) s += p[i];
  return s;
}
#else
uint64_t stream_sum(const uint8_t* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; ++i) s += p[i];
  return s;
}
#endif

int time_it(int w, int h, int frames, int step, Isa isa, int threads) {
  const size_t plane = static_cast<size_t>(w) * h;
  // A ring of planes far larger than the last-level cache, so every frame comes from DRAM.
  const size_t ring = std::max<size_t>(8, (512u << 20) / plane);
  std::vector<uint8_t> mem(plane * ring);
  std::mt19937 rng(5);
  for (size_t i = 0; i < mem.size(); i += 64) std::memset(&mem[i], static_cast<int>(rng() & 255), std::min<size_t>(64, mem.size() - i));
  FrameAnalysis fa;
  AnalysisOptions o;
  o.row_step = step;
  o.threads = threads;
  using clock = std::chrono::steady_clock;
  double analysis_s = 0, floor_s = 0;
  uint64_t sink = 0;
  for (int f = 0; f < frames; ++f) {
    const uint8_t* cur = &mem[((2 * f + 1) % ring) * plane];
    const uint8_t* prev = &mem[((2 * f) % ring) * plane];
    LumaPlane c{cur, w, w, h}, p{prev, w, w, h};
    auto t0 = clock::now();
    analyse_frame(c, &p, o, fa, isa);
    analysis_s += std::chrono::duration<double>(clock::now() - t0).count();
    // The floor reads the same bytes (both planes, sampled rows) from other
    // planes of the ring, so neither run warms the caches for the other.
    const uint8_t* fc = &mem[((2 * f + ring / 2 + 1) % ring) * plane];
    const uint8_t* fp = &mem[((2 * f + ring / 2) % ring) * plane];
    t0 = clock::now();
    for (int y = 0; y < h; y += (y % 16 + step < 16 ? step : 16 - y % 16)) {
      sink += stream_sum(fc + static_cast<size_t>(y) * w, w);
      sink += stream_sum(fp + static_cast<size_t>(y) * w, w);
    }
    floor_s += std::chrono::duration<double>(clock::now() - t0).count();
  }
  const LumaPlane c{mem.data(), w, w, h};
  const double bytes = static_cast<double>(bytes_read(c, true, step));
  std::printf(
      "{\"width\": %d, \"height\": %d, \"row_step\": %d, \"threads\": %d, \"isa\": \"%s\", \"frames\": %d, \"analysis_ms\": %.4f, "
      "\"floor_ms\": %.4f, \"bytes\": %.0f, \"analysis_gbps\": %.2f, \"floor_gbps\": %.2f, \"sink\": %llu}\n",
      w, h, step, threads, to_string(isa), frames, 1e3 * analysis_s / frames, 1e3 * floor_s / frames, bytes,
      bytes * frames / analysis_s / 1e9, bytes * frames / floor_s / 1e9, static_cast<unsigned long long>(sink & 1));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 5 && std::strcmp(argv[1], "--dump") == 0)
    return dump(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), argc > 5 ? std::atoi(argv[5]) : 1);
  if (argc >= 4 && std::strcmp(argv[1], "--time") == 0) {
    Isa isa = best_isa();
    if (argc > 6) {
      const std::string s = argv[6];
      isa = s == "scalar" ? Isa::Scalar : s == "avx2" ? Isa::Avx2 : Isa::Avx512;
      if (!isa_supported(isa)) return 2;
    }
    return time_it(std::atoi(argv[2]), std::atoi(argv[3]), argc > 4 ? std::atoi(argv[4]) : 100,
                   argc > 5 ? std::atoi(argv[5]) : 1, isa, argc > 7 ? std::atoi(argv[7]) : 1);
  }
  std::fprintf(stderr, "usage: %s --dump FILE.y W H [ROW_STEP] | --time W H [FRAMES] [ROW_STEP] [scalar|avx2|avx512] [THREADS]\n",
               argv[0]);
  return 2;
}
