// Not a test: analysis time per frame on the GPU (device events, after a
// warm-up, median of many runs) and on the CPU (scalar, AVX2/AVX-512 on one
// thread and on N), each against its floor: the bytes the analysis must read
// over the measured read bandwidth of the memory it reads (HBM for CUDA, DRAM
// for the CPU, on one core and on all). scripts/gpu-bench runs it.
//
//   bench_cuda_analysis [--sizes 3840x2160,7680x4320] [--threads 16] [--cuda-runs 500] [--cpu-runs 30]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "analysis/analysis.h"
#include "cuda/analysis_cuda.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

using ccm::analysis::AnalysisOptions;
using ccm::analysis::FrameAnalysis;
using ccm::analysis::Isa;
using ccm::analysis::LumaPlane;
using Clock = std::chrono::steady_clock;

struct Stats {
  double median = 0, p10 = 0, p90 = 0;
};

Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v[v.size() / 2];
  s.p10 = v[v.size() / 10];
  s.p90 = v[v.size() * 9 / 10];
  return s;
}

// Content with texture and motion (the analysis reads every byte whatever the
// content; only the classes depend on it).
struct Frame {
  std::vector<uint8_t> bytes;
  LumaPlane plane;
};

Frame make_frame(int w, int h, int bps, int shift, int seed, int motion) {
  Frame f;
  const ptrdiff_t stride = (static_cast<ptrdiff_t>(w) * bps + 255) / 256 * 256;
  f.bytes.resize(static_cast<size_t>(stride) * h);
  uint32_t x = 2463534242u + seed;
  for (int y = 0; y < h; ++y) {
    uint8_t* row = f.bytes.data() + y * stride;
    for (int c = 0; c < w; ++c) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      const int v = (((c + motion) * 7 / 5 + y) & 255) ^ static_cast<int>(x & 7);
      if (bps == 1) {
        row[c] = static_cast<uint8_t>(v);
      } else {
        const uint16_t s = static_cast<uint16_t>((v * 4) << shift);
        std::memcpy(row + 2 * c, &s, 2);
      }
    }
  }
  f.plane = {f.bytes.data(), stride, w, h, bps, bps == 1 ? 8 : 10, shift};
  return f;
}

// ---- DRAM read bandwidth ----

#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t read_sum(const uint8_t* p, size_t n) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a = _mm256_xor_si256(a, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    b = _mm256_xor_si256(b, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    c = _mm256_xor_si256(c, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    d = _mm256_xor_si256(d, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i r = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
  return static_cast<uint64_t>(_mm256_extract_epi64(r, 0) ^ _mm256_extract_epi64(r, 3));
}
#else
uint64_t read_sum(const uint8_t* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    s ^= v;
  }
  return s;
}
#endif

std::atomic<uint64_t> g_sink{0};

// Bytes read per second by `threads` threads, each reading its slice of a
// buffer far larger than the caches; median of `runs`.
double dram_read_bandwidth(size_t bytes, int threads, int runs) {
  auto* buf = static_cast<uint8_t*>(std::aligned_alloc(4096, bytes));
  if (!buf) return 0;
  // Each thread first touches its own slice (first-touch NUMA placement).
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([=] { std::memset(buf + bytes / threads * t, t + 1, bytes / threads); });
  for (auto& t : ts) t.join();
  std::vector<double> rates;
  for (int r = 0; r < runs; ++r) {
    ts.clear();
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<double> secs(threads);
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load()) {
        }
        const auto t0 = Clock::now();
        g_sink ^= read_sum(buf + bytes / threads * t, bytes / threads);
        secs[t] = std::chrono::duration<double>(Clock::now() - t0).count();
      });
    while (ready.load() < threads) {
    }
    go = true;
    for (auto& t : ts) t.join();
    rates.push_back(static_cast<double>(bytes) / *std::max_element(secs.begin(), secs.end()));
  }
  std::free(buf);
  return stats(rates).median;
}

struct Row {
  std::string size, method;
  Stats ms;
  double bytes = 0, floor_ms = 0;
  std::string floor_of;
};

std::vector<Row> g_rows;

void print_row(const Row& r) {
  const double gbs = r.bytes / (r.ms.median * 1e-3) / 1e9;
  std::printf("%-10s %-34s %9.3f %9.3f %9.3f %8.1f %9.3f %6.1fx  %s\n", r.size.c_str(), r.method.c_str(), r.ms.median,
              r.ms.p10, r.ms.p90, gbs, r.floor_ms, r.ms.median / r.floor_ms, r.floor_of.c_str());
  std::fflush(stdout);
}

void header() {
  std::printf("%-10s %-34s %9s %9s %9s %8s %9s %7s  %s\n", "size", "method", "median_ms", "p10_ms", "p90_ms", "GB/s",
              "floor_ms", "x_floor", "floor = bytes read / measured bandwidth of");
}

Stats time_cpu(const std::vector<Frame>& cur, const std::vector<Frame>& prev, Isa isa, int threads, int runs) {
  AnalysisOptions o;
  o.threads = threads;
  FrameAnalysis out;
  for (size_t i = 0; i < cur.size(); ++i)  // warm-up: pages, the thread pool, the cache of results
    ccm::analysis::analyse_frame(cur[i].plane, &prev[i].plane, o, out, isa);
  std::vector<double> ms;
  for (int r = 0; r < runs; ++r) {
    const size_t k = r % cur.size();
    const auto t0 = Clock::now();
    ccm::analysis::analyse_frame(cur[k].plane, &prev[k].plane, o, out, isa);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return stats(ms);
}

}  // namespace

int main(int argc, char** argv) {
  std::string sizes = "3840x2160,7680x4320";
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  int cuda_runs = 500, cpu_runs = 30;
  bool ten_bit = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--sizes") sizes = argv[i + 1];
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--cuda-runs") cuda_runs = std::atoi(argv[i + 1]);
    else if (a == "--cpu-runs") cpu_runs = std::atoi(argv[i + 1]);
    else if (a == "--ten-bit") ten_bit = std::atoi(argv[i + 1]) != 0;
  }
  std::string why;
  const bool gpu = ccm::cuda::device_available(&why);
  std::printf("GPU: %s\n", gpu ? ccm::cuda::device_description().c_str() : why.c_str());
  std::printf("CPU: %u hardware threads; best ISA %s\n", std::thread::hardware_concurrency(),
              ccm::analysis::to_string(ccm::analysis::best_isa()));

  // Floors' bandwidths (bytes read per second).
  const size_t dram_bytes = size_t{1} << 30;
  const double dram1 = dram_read_bandwidth(dram_bytes, 1, 5);
  const double dramN = dram_read_bandwidth(dram_bytes, threads, 5);
  double hbm_read = 0, hbm_copy = 0;
  if (gpu) {
    hbm_read = ccm::cuda::measure_read_bandwidth(size_t{2} << 30, 30);
    hbm_copy = ccm::cuda::measure_copy_bandwidth(size_t{1} << 30, 30);
  }
  std::printf("DRAM read: %.1f GB/s on 1 thread, %.1f GB/s on %d threads\n", dram1 / 1e9, dramN / 1e9, threads);
  if (gpu)
    std::printf("HBM: read %.0f GB/s (16-byte loads, 2 GiB); device-to-device copy %.0f GB/s (read + written)\n",
                hbm_read / 1e9, hbm_copy / 1e9);
  std::printf("\n");
  header();

  size_t pos = 0;
  while (pos < sizes.size()) {
    const size_t comma = sizes.find(',', pos);
    const std::string item = sizes.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? sizes.size() : comma + 1;
    int w = 0, h = 0;
    if (std::sscanf(item.c_str(), "%dx%d", &w, &h) != 2) continue;
    for (int bps = 1; bps <= (ten_bit ? 2 : 1); ++bps) {
      const std::string size = item + (bps == 1 ? "" : "p010");
      // Enough pairs that the set is far larger than any cache (CPU L3, GPU L2).
      const size_t pair_bytes = 2 * static_cast<size_t>(w) * h * bps;
      const int n = static_cast<int>(std::clamp<size_t>((size_t{512} << 20) / pair_bytes, 4, 16));
      std::vector<Frame> cur, prev;
      for (int i = 0; i < n; ++i) {
        prev.push_back(make_frame(w, h, bps, bps == 2 ? 6 : 0, 2 * i, 0));
        cur.push_back(make_frame(w, h, bps, bps == 2 ? 6 : 0, 2 * i + 1, 3));
      }
      const double bytes = static_cast<double>(ccm::analysis::bytes_read(cur[0].plane, true, 1));
      auto cpu_row = [&](const char* name, Isa isa, int t, int runs, double bw, const char* of) {
        if (!ccm::analysis::isa_supported(isa)) return;
        Row r{size, name, time_cpu(cur, prev, isa, t, runs), bytes, bytes / bw * 1e3, of};
        print_row(r);
        g_rows.push_back(r);
      };
      if (gpu) {
        std::vector<ccm::cuda::DevicePlane> dc, dp;
        std::vector<LumaPlane> vc, vp;
        for (int i = 0; i < n; ++i) {
          dc.push_back(ccm::cuda::DevicePlane::upload(cur[i].plane));
          dp.push_back(ccm::cuda::DevicePlane::upload(prev[i].plane));
          vc.push_back(dc.back().plane());
          vp.push_back(dp.back().plane());
        }
        // The first version (three kernels and a copy) for comparison, then the default.
        setenv("CCM_CUDA_ANALYSIS", "three-kernels", 1);
        {
          ccm::cuda::Analyser three;
          const auto t = three.time_runs(vc, vp, AnalysisOptions{}, 50, cuda_runs);
          if (!t.empty())
            print_row({size, "cuda 3 kernels + copy (events)", stats(std::vector<double>(t.begin(), t.end())), bytes,
                       bytes / hbm_read * 1e3, "HBM"});
        }
        unsetenv("CCM_CUDA_ANALYSIS");
        ccm::cuda::Analyser analyser;
        const auto t = analyser.time_runs(vc, vp, AnalysisOptions{}, 50, cuda_runs);
        if (t.empty()) {
          std::printf("CUDA failed: %s\n", analyser.last_error().c_str());
        } else {
          Row r{size, "cuda 1 launch (device events)", stats(std::vector<double>(t.begin(), t.end())), bytes,
                bytes / hbm_read * 1e3, "HBM"};
          print_row(r);
          // What the element waits for: launches, kernels, copy back, synchronisation.
          FrameAnalysis out;
          std::vector<double> wall;
          for (int i = 0; i < cuda_runs; ++i) {
            const auto t0 = Clock::now();
            analyser.analyse(vc[i % n], &vp[i % n], AnalysisOptions{}, out);
            wall.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
          }
          Row rw{size, "cuda 1 launch (host, analyse())", stats(wall), bytes, bytes / hbm_read * 1e3, "HBM"};
          print_row(rw);
          // Bit-exactness at full size, once.
          FrameAnalysis ref, got;
          ccm::analysis::analyse_frame(cur[0].plane, &prev[0].plane, AnalysisOptions{}, ref,
                                       ccm::analysis::best_isa());
          analyser.analyse(vc[0], &vp[0], AnalysisOptions{}, got, true);
          const bool same = ref.sad16 == got.sad16 && ref.activity16 == got.activity16 &&
                            ref.class64 == got.class64 && ref.sad_total == got.sad_total;
          std::printf("%-10s cuda vs %s: %s (skip/fast/full %u/%u/%u)\n", size.c_str(),
                      ccm::analysis::to_string(ccm::analysis::best_isa()), same ? "identical" : "DIFFERENT",
                      got.skip_blocks, got.fast_blocks, got.full_blocks);
        }
      }
      cpu_row("avx512, 1 thread", Isa::Avx512, 1, cpu_runs, dram1, "DRAM, 1 thread");
      // analyse_frame gives each thread at least 16 bands of 16 rows.
      const int used = std::clamp(std::min(threads, (h + 15) / 16 / 16), 1, 64);
      const std::string many = "avx512, " + std::to_string(threads) + " threads (" + std::to_string(used) + " used)";
      cpu_row(many.c_str(), Isa::Avx512, threads, cpu_runs * 3, dramN, "DRAM, all threads");
      cpu_row("avx2, 1 thread", Isa::Avx2, 1, cpu_runs, dram1, "DRAM, 1 thread");
      if (bps == 1) cpu_row("scalar, 1 thread", Isa::Scalar, 1, std::max(5, cpu_runs / 3), dram1, "DRAM, 1 thread");
    }
  }
  return 0;
}
