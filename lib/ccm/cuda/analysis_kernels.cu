// CUDA kernels and the Analyser behind analysis_cuda.h.
//
// One launch per frame (the default), `analyse_kernel`: a 256-thread block covers
// 64 rows x 16 16x16 blocks (four 64x64 blocks): the 16x16 SAD and activity as in
// blocks16 below (4 threads per 16x16 block), then its four 64x64 classes and one
// partial of the frame totals; the last thread block to finish (an atomic count)
// adds the partials up in a fixed order. Classes and totals are written straight
// into pinned host memory, so the host only waits for the kernel.
//
// The first version, three launches and a copy, stays for comparison
// (CCM_CUDA_ANALYSIS=three-kernels):
// 1. blocks16: SAD and activity of every 16x16 block. A 32x4 thread block covers
//    32 neighbouring 16x16 blocks of one 16-row band; the 4 threads of a column
//    each take a quarter of its sampled rows, so a warp reads 32 x 16 bytes of
//    one row (coalesced) and each thread has only a few rows' loads in flight
//    (a 4K frame has 32400 blocks: one thread per block would leave the memory
//    system idle). Rows are loaded as 16-byte vectors when both planes are 16-byte
//    aligned (GstCudaMemory's pitch always is), byte by byte otherwise and at the
//    partial blocks of the right edge.
// 2. blocks64: one thread per 64x64 block classifies it and sums its sixteen
//    16x16 results into a partial (integers exact; the complexity cost in double).
// 3. totals: one thread block sums the partials in a fixed order.
// Then one copy brings the totals and the classes (8K: about 8 kB) back.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/analysis_cuda.h"

namespace ccm::cuda {
namespace {

struct Totals {
  unsigned long long sad;
  unsigned long long activity;
  unsigned long long pixels;
  unsigned long long pairs;
  double cost;
  unsigned int skip, fast, full, pad;
};

struct Partial {
  unsigned long long sad, activity, pixels, pairs;
  double cost;
  unsigned int cls, pad;
};

struct Geometry {
  int width, height, bx, by, b64x, b64y, step, shift;
};

constexpr int kColumns = 32;   // 16x16 blocks per thread block (x)
constexpr int kQuarters = 4;   // threads sharing one 16x16 block's rows
constexpr int kTotalsThreads = 256;
constexpr int kBands = 4;      // 16-row bands per thread block of the fused kernel (64 rows)
constexpr int kFusedColumns = 16;  // 16x16 blocks across a thread block of the fused kernel
// 256 threads: at 60-odd registers each, four thread blocks share a multiprocessor,
// so a 4K frame (510 blocks) runs in one wave on 132 SMs.
constexpr int kFusedThreads = kFusedColumns * kQuarters * kBands;

// ---- 16x16 blocks ----------------------------------------------------------------

template <int kBps>
__device__ __forceinline__ int sample(const uint8_t* row, int x, int shift) {
  if constexpr (kBps == 1) {
    return row[x];
  } else {
    return (row[2 * x] | (row[2 * x + 1] << 8)) >> shift;
  }
}

// One row of a block (kBps * 16 bytes) as 32-bit words, 16-bit samples shifted.
template <int kBps>
struct Row {
  uint32_t w[4 * kBps];
};

template <int kBps>
__device__ __forceinline__ Row<kBps> load_row(const uint8_t* p, uint32_t mask16, int shift) {
  Row<kBps> r;
#pragma unroll
  for (int v = 0; v < kBps; ++v) {
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(p) + v);
    r.w[4 * v + 0] = q.x;
    r.w[4 * v + 1] = q.y;
    r.w[4 * v + 2] = q.z;
    r.w[4 * v + 3] = q.w;
  }
  if constexpr (kBps == 2) {
#pragma unroll
    for (int i = 0; i < 8; ++i) r.w[i] = (r.w[i] >> shift) & mask16;
  }
  return r;
}

template <int kBps>
__device__ __forceinline__ uint32_t sad_words(const Row<kBps>& a, const Row<kBps>& b) {
  uint32_t s = 0;
#pragma unroll
  for (int i = 0; i < 4 * kBps; ++i) s += kBps == 1 ? __vsadu4(a.w[i], b.w[i]) : __vsadu2(a.w[i], b.w[i]);
  return s;
}

// Sum of |x[c] - x[c+1]| for c = 0..14 of one row: each word against the same
// word moved by one sample (the next word's first sample shifted in); the last
// word's missing neighbour is itself, which adds 0.
template <int kBps>
__device__ __forceinline__ uint32_t horizontal(const Row<kBps>& r) {
  uint32_t s = 0;
  constexpr int n = 4 * kBps;
#pragma unroll
  for (int i = 0; i < n; ++i) {
    if constexpr (kBps == 1) {
      const uint32_t moved = i + 1 < n ? __byte_perm(r.w[i], r.w[i + 1 < n ? i + 1 : i], 0x4321)
                                       : __byte_perm(r.w[i], r.w[i], 0x3321);
      s += __vsadu4(r.w[i], moved);
    } else {
      const uint32_t moved = i + 1 < n ? __byte_perm(r.w[i], r.w[i + 1 < n ? i + 1 : i], 0x5432)
                                       : __byte_perm(r.w[i], r.w[i], 0x3232);
      s += __vsadu2(r.w[i], moved);
    }
  }
  return s;
}

// Sampled rows k0..k1-1 (row index k * step) of a block, vector loads.
// 8-bit: a thread has at most 4 rows (a quarter of at most 16); all of them and
// the row above the first are loaded before any is used, so their loads are in
// flight together (one memory round trip instead of five: 8K 52 -> 41 us on the
// H100). 16-bit rows are twice the registers: loaded that way the kernel needs
// 103 registers and half the thread blocks fit (8K P010 75 -> 112 us), so they
// keep the plain loop.
template <int kBps>
__device__ void rows_vector(const uint8_t* cur, long long cs, const uint8_t* prev, long long ps, int k0, int k1,
                            int step, int shift, uint32_t& sad, uint32_t& act) {
  const uint32_t mask16 = (0xffffu >> shift) * 0x00010001u;
  Row<kBps> above{};
  if (k0 > 0 && k0 < k1) above = load_row<kBps>(cur + (k0 - 1) * step * cs, mask16, shift);
  if constexpr (kBps == 1) {
    constexpr int kMaxRows = 16 / kQuarters;
    Row<kBps> c[kMaxRows], p[kMaxRows];
#pragma unroll
    for (int i = 0; i < kMaxRows; ++i) {
      if (k0 + i < k1) {
        const long long r = static_cast<long long>(k0 + i) * step;
        c[i] = load_row<kBps>(cur + r * cs, mask16, shift);
        if (prev) p[i] = load_row<kBps>(prev + r * ps, mask16, shift);
      }
    }
#pragma unroll
    for (int i = 0; i < kMaxRows; ++i) {
      if (k0 + i < k1) {
        if (prev) sad += sad_words<kBps>(c[i], p[i]);
        act += horizontal<kBps>(c[i]);
        if (k0 + i > 0) act += sad_words<kBps>(c[i], i == 0 ? above : c[i > 0 ? i - 1 : 0]);
      }
    }
  } else {
    for (int k = k0; k < k1; ++k) {
      const long long r = static_cast<long long>(k) * step;
      const Row<kBps> c = load_row<kBps>(cur + r * cs, mask16, shift);
      if (prev) sad += sad_words<kBps>(c, load_row<kBps>(prev + r * ps, mask16, shift));
      act += horizontal<kBps>(c);
      if (k > 0) act += sad_words<kBps>(c, above);
      above = c;
    }
  }
}

// The same for any alignment and width 1..16, one sample at a time.
template <int kBps>
__device__ void rows_scalar(const uint8_t* cur, long long cs, const uint8_t* prev, long long ps, int width, int k0,
                            int k1, int step, int shift, uint32_t& sad, uint32_t& act) {
  for (int k = k0; k < k1; ++k) {
    const long long r = static_cast<long long>(k) * step;
    const uint8_t* c = cur + r * cs;
    if (prev) {
      const uint8_t* p = prev + r * ps;
      for (int x = 0; x < width; ++x) sad += abs(sample<kBps>(c, x, shift) - sample<kBps>(p, x, shift));
    }
    for (int x = 0; x + 1 < width; ++x) act += abs(sample<kBps>(c, x, shift) - sample<kBps>(c, x + 1, shift));
    if (k > 0) {
      const uint8_t* a = c - static_cast<long long>(step) * cs;
      for (int x = 0; x < width; ++x) act += abs(sample<kBps>(c, x, shift) - sample<kBps>(a, x, shift));
    }
  }
}

template <int kBps, bool kVector>
__global__ void __launch_bounds__(kColumns* kQuarters)
    blocks16_kernel(const uint8_t* __restrict__ cur, long long cs, const uint8_t* __restrict__ prev, long long ps,
                    Geometry g, uint32_t* __restrict__ sad_out, uint32_t* __restrict__ act_out) {
  __shared__ uint32_t s_sad[kQuarters][kColumns];
  __shared__ uint32_t s_act[kQuarters][kColumns];
  const int bx = blockIdx.x * kColumns + threadIdx.x;
  const int by = blockIdx.y;
  const int q = threadIdx.y;
  uint32_t sad = 0, act = 0;
  if (bx < g.bx) {
    const int rows = min(16, g.height - 16 * by);
    const int width = min(16, g.width - 16 * bx);
    const int nk = (rows + g.step - 1) / g.step;
    const int per = (nk + kQuarters - 1) / kQuarters;
    const int k0 = min(nk, q * per), k1 = min(nk, k0 + per);
    const long long x_bytes = 16LL * bx * kBps;
    const uint8_t* c = cur + 16LL * by * cs + x_bytes;
    const uint8_t* p = prev ? prev + 16LL * by * ps + x_bytes : nullptr;
    if (kVector && width == 16)
      rows_vector<kBps>(c, cs, p, ps, k0, k1, g.step, g.shift, sad, act);
    else
      rows_scalar<kBps>(c, cs, p, ps, width, k0, k1, g.step, g.shift, sad, act);
  }
  s_sad[q][threadIdx.x] = sad;
  s_act[q][threadIdx.x] = act;
  __syncthreads();
  if (q == 0 && bx < g.bx) {
    uint32_t s = 0, a = 0;
#pragma unroll
    for (int i = 0; i < kQuarters; ++i) {
      s += s_sad[i][threadIdx.x];
      a += s_act[i][threadIdx.x];
    }
    const size_t i = static_cast<size_t>(by) * g.bx + bx;
    sad_out[i] = s;
    act_out[i] = a;
  }
}

// ---- 64x64 blocks and totals ---------------------------------------------------------

// The CPU's aggregation (analysis.cpp), one 64x64 block per thread.
__global__ void blocks64_kernel(const uint32_t* __restrict__ sad16, const uint32_t* __restrict__ act16, Geometry g,
                                bool has_prev, uint32_t skip_q4, uint32_t full_q4, int bit_depth,
                                uint8_t* __restrict__ class64, Partial* __restrict__ partials) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= g.b64x * g.b64y) return;
  const int X = j % g.b64x, Y = j / g.b64x;
  Partial part{};
  for (int y = 4 * Y; y < min(4 * Y + 4, g.by); ++y) {
    const int h = min(16, g.height - 16 * y);
    const unsigned long long rows = (h + g.step - 1) / g.step;
    for (int x = 4 * X; x < min(4 * X + 4, g.bx); ++x) {
      const unsigned long long w = min(16, g.width - 16 * x);
      const size_t i = static_cast<size_t>(y) * g.bx + x;
      const unsigned long long px = rows * w;
      const unsigned long long pairs = rows * (w - 1) + (rows - 1) * w;
      part.sad += sad16[i];
      part.activity += act16[i];
      part.pixels += px;
      part.pairs += pairs;
      const double intra = pairs ? static_cast<double>(act16[i]) * static_cast<double>(px) / static_cast<double>(pairs)
                                 : 0.0;
      const double sad = static_cast<double>(sad16[i]);
      part.cost += has_prev ? (intra < sad ? intra : sad) : intra;
    }
  }
  unsigned int cls = 2;  // Full
  if (has_prev) {
    const unsigned long long depth_scale = 1ull << (bit_depth - 8);
    const unsigned long long sad_q4 = part.sad * 16;
    if (sad_q4 < skip_q4 * part.pixels * depth_scale)
      cls = 0;
    else if (sad_q4 < full_q4 * part.pixels * depth_scale)
      cls = 1;
  }
  part.cls = cls;
  class64[j] = static_cast<uint8_t>(cls);
  partials[j] = part;
}

__global__ void __launch_bounds__(kTotalsThreads) totals_kernel(const Partial* __restrict__ partials, int n,
                                                                Totals* __restrict__ out) {
  __shared__ unsigned long long s_u[4][kTotalsThreads];
  __shared__ double s_cost[kTotalsThreads];
  __shared__ unsigned int s_cls[3][kTotalsThreads];
  const int t = threadIdx.x;
  unsigned long long sad = 0, act = 0, px = 0, pairs = 0;
  double cost = 0;
  unsigned int cls[3] = {0, 0, 0};
  for (int j = t; j < n; j += kTotalsThreads) {
    const Partial& p = partials[j];
    sad += p.sad;
    act += p.activity;
    px += p.pixels;
    pairs += p.pairs;
    cost += p.cost;
    ++cls[p.cls];
  }
  s_u[0][t] = sad;
  s_u[1][t] = act;
  s_u[2][t] = px;
  s_u[3][t] = pairs;
  s_cost[t] = cost;
  for (int c = 0; c < 3; ++c) s_cls[c][t] = cls[c];
  __syncthreads();
  for (int half = kTotalsThreads / 2; half > 0; half /= 2) {
    if (t < half) {
      for (int k = 0; k < 4; ++k) s_u[k][t] += s_u[k][t + half];
      s_cost[t] += s_cost[t + half];
      for (int c = 0; c < 3; ++c) s_cls[c][t] += s_cls[c][t + half];
    }
    __syncthreads();
  }
  if (t == 0) {
    Totals r{};
    r.sad = s_u[0][0];
    r.activity = s_u[1][0];
    r.pixels = s_u[2][0];
    r.pairs = s_u[3][0];
    r.cost = s_cost[0];
    r.skip = s_cls[0][0];
    r.fast = s_cls[1][0];
    r.full = s_cls[2][0];
    *out = r;
  }
}

// ---- all in one launch -------------------------------------------------------------------

__device__ __forceinline__ void add_partial(Partial& a, const Partial& b) {
  a.sad += b.sad;
  a.activity += b.activity;
  a.pixels += b.pixels;
  a.pairs += b.pairs;
  a.cost += b.cost;
}

// Reads a partial another thread block wrote (through L2: L1 is not coherent).
__device__ __forceinline__ Partial load_partial(const Partial* p) {
  Partial r;
  r.sad = __ldcg(&p->sad);
  r.activity = __ldcg(&p->activity);
  r.pixels = __ldcg(&p->pixels);
  r.pairs = __ldcg(&p->pairs);
  r.cost = __ldcg(&p->cost);
  r.cls = __ldcg(&p->cls);  // here: skip | fast << 10 | full << 20 counts of the block
  return r;
}

template <int kBps, bool kVector>
__global__ void __launch_bounds__(kFusedThreads)
    analyse_kernel(const uint8_t* __restrict__ cur, long long cs, const uint8_t* __restrict__ prev, long long ps,
                   Geometry g, uint32_t skip_q4, uint32_t full_q4, int bit_depth, uint32_t* __restrict__ sad_out,
                   uint32_t* __restrict__ act_out, uint8_t* __restrict__ class64, Partial* __restrict__ partials,
                   unsigned int* __restrict__ done, Totals* __restrict__ totals) {
  __shared__ uint32_t s_sad[kBands][kQuarters][kFusedColumns];
  __shared__ uint32_t s_act[kBands][kQuarters][kFusedColumns];
  __shared__ Partial s_part[kFusedColumns / 4];
  __shared__ bool s_last;
  const int col = threadIdx.x, q = threadIdx.y, band = threadIdx.z;
  const int bx = blockIdx.x * kFusedColumns + col;
  const int by = blockIdx.y * kBands + band;

  // 1. 16x16 blocks: a quarter of the sampled rows each.
  uint32_t sad = 0, act = 0;
  if (bx < g.bx && by < g.by) {
    const int rows = min(16, g.height - 16 * by);
    const int width = min(16, g.width - 16 * bx);
    const int nk = (rows + g.step - 1) / g.step;
    const int per = (nk + kQuarters - 1) / kQuarters;
    const int k0 = min(nk, q * per), k1 = min(nk, k0 + per);
    const long long x_bytes = 16LL * bx * kBps;
    const uint8_t* c = cur + 16LL * by * cs + x_bytes;
    const uint8_t* p = prev ? prev + 16LL * by * ps + x_bytes : nullptr;
    if (kVector && width == 16)
      rows_vector<kBps>(c, cs, p, ps, k0, k1, g.step, g.shift, sad, act);
    else
      rows_scalar<kBps>(c, cs, p, ps, width, k0, k1, g.step, g.shift, sad, act);
  }
  s_sad[band][q][col] = sad;
  s_act[band][q][col] = act;
  __syncthreads();
  if (q == 0) {
    uint32_t s = 0, a = 0;
#pragma unroll
    for (int i = 0; i < kQuarters; ++i) {
      s += s_sad[band][i][col];
      a += s_act[band][i][col];
    }
    s_sad[band][0][col] = s;
    s_act[band][0][col] = a;
    if (bx < g.bx && by < g.by) {
      const size_t i = static_cast<size_t>(by) * g.bx + bx;
      sad_out[i] = s;
      act_out[i] = a;
    }
  }
  __syncthreads();

  // 2. The four 64x64 blocks of this thread block, as blocks64_kernel.
  const int t = (threadIdx.z * kQuarters + threadIdx.y) * kFusedColumns + threadIdx.x;
  const bool has_prev = prev != nullptr;
  if (t < kFusedColumns / 4) {
    Partial part{};
    const int X = blockIdx.x * (kFusedColumns / 4) + t, Y = blockIdx.y;
    unsigned int counts = 0;
    if (X < g.b64x && Y < g.b64y) {
      for (int b = 0; b < kBands; ++b) {
        const int y = kBands * Y + b;
        if (y >= g.by) break;
        const int h = min(16, g.height - 16 * y);
        const unsigned long long rows = (h + g.step - 1) / g.step;
        for (int c = 0; c < 4; ++c) {
          const int x = 4 * X + c;
          if (x >= g.bx) break;
          const unsigned long long w = min(16, g.width - 16 * x);
          const uint32_t s16 = s_sad[b][0][4 * t + c], a16 = s_act[b][0][4 * t + c];
          const unsigned long long px = rows * w;
          const unsigned long long pairs = rows * (w - 1) + (rows - 1) * w;
          part.sad += s16;
          part.activity += a16;
          part.pixels += px;
          part.pairs += pairs;
          const double intra =
              pairs ? static_cast<double>(a16) * static_cast<double>(px) / static_cast<double>(pairs) : 0.0;
          const double sd = static_cast<double>(s16);
          part.cost += has_prev ? (intra < sd ? intra : sd) : intra;
        }
      }
      unsigned int cls = 2;  // Full
      if (has_prev) {
        const unsigned long long depth_scale = 1ull << (bit_depth - 8);
        const unsigned long long sad_q4 = part.sad * 16;
        if (sad_q4 < skip_q4 * part.pixels * depth_scale)
          cls = 0;
        else if (sad_q4 < full_q4 * part.pixels * depth_scale)
          cls = 1;
      }
      class64[static_cast<size_t>(Y) * g.b64x + X] = static_cast<uint8_t>(cls);
      counts = 1u << (10 * cls);
    }
    part.cls = counts;
    s_part[t] = part;
  }
  __syncthreads();
  const unsigned int n_blocks = gridDim.x * gridDim.y;
  if (t == 0) {
    Partial sum = s_part[0];
    for (int i = 1; i < kFusedColumns / 4; ++i) {
      add_partial(sum, s_part[i]);
      sum.cls += s_part[i].cls;
    }
    partials[blockIdx.y * gridDim.x + blockIdx.x] = sum;
    __threadfence();  // the partial is visible before the count says so
    s_last = atomicAdd(done, 1u) == n_blocks - 1;
  }
  __syncthreads();
  if (!s_last) return;

  // 3. The last thread block: every partial, in a fixed order.
  __threadfence();
  __shared__ Partial s_sum[kFusedThreads];
  Partial mine{};
  unsigned int skip = 0, fast = 0, full = 0;
  for (unsigned int j = t; j < n_blocks; j += kFusedThreads) {
    const Partial p = load_partial(partials + j);
    add_partial(mine, p);
    skip += p.cls & 1023u;
    fast += (p.cls >> 10) & 1023u;
    full += p.cls >> 20;
  }
  // Block counts can exceed 10 bits once summed: kept apart from here on.
  mine.cls = 0;
  s_sum[t] = mine;
  __shared__ unsigned int s_counts[3][kFusedThreads];
  s_counts[0][t] = skip;
  s_counts[1][t] = fast;
  s_counts[2][t] = full;
  __syncthreads();
  for (int half = kFusedThreads / 2; half > 0; half /= 2) {
    if (t < half) {
      add_partial(s_sum[t], s_sum[t + half]);
      for (int c = 0; c < 3; ++c) s_counts[c][t] += s_counts[c][t + half];
    }
    __syncthreads();
  }
  if (t == 0) {
    Totals r{};
    r.sad = s_sum[0].sad;
    r.activity = s_sum[0].activity;
    r.pixels = s_sum[0].pixels;
    r.pairs = s_sum[0].pairs;
    r.cost = s_sum[0].cost;
    r.skip = s_counts[0][0];
    r.fast = s_counts[1][0];
    r.full = s_counts[2][0];
    *totals = r;
    *done = 0;  // ready for the next frame (every block has counted)
  }
}

// ---- bandwidth -----------------------------------------------------------------------------

__global__ void read_kernel(const uint4* __restrict__ data, size_t n, unsigned int* sink) {
  uint32_t acc = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a = __ldg(data + i), b = __ldg(data + i + stride), c = __ldg(data + i + 2 * stride),
                d = __ldg(data + i + 3 * stride);
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
  }
  for (; i < n; i += stride) {
    const uint4 a = __ldg(data + i);
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;  // keeps the loads; practically never taken
}

// ---- host side -----------------------------------------------------------------------------

std::string describe(cudaError_t e, const char* what) {
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

bool valid_plane(const analysis::LumaPlane& p) {
  if (!p.data || p.width <= 0 || p.height <= 0) return false;
  if (p.bytes_per_sample != 1 && p.bytes_per_sample != 2) return false;
  if (p.stride < static_cast<ptrdiff_t>(p.width) * p.bytes_per_sample) return false;
  if (p.bit_depth < 8 || p.bit_depth > 16) return false;
  if (p.bytes_per_sample == 1 && (p.bit_depth != 8 || p.shift != 0)) return false;
  if (p.shift < 0 || p.shift + p.bit_depth > 16) return false;
  return true;
}

bool aligned16(const analysis::LumaPlane& p) {
  return ((reinterpret_cast<uintptr_t>(p.data) | static_cast<uintptr_t>(p.stride)) & 15) == 0;
}

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

float median(std::vector<float> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

}  // namespace

// Results, as laid out on the device and in the pinned host copy:
// [Totals][class64, padded][sad16][activity16].
struct Analyser::State {
  // One launch (analyse_kernel) unless CCM_CUDA_ANALYSIS=three-kernels.
  const bool fused = [] {
    const char* v = std::getenv("CCM_CUDA_ANALYSIS");
    return !(v && std::strcmp(v, "three-kernels") == 0);
  }();
  cudaStream_t stream = nullptr;
  uint8_t* d_results = nullptr;
  uint8_t* h_results = nullptr;
  uint8_t* h_mapped = nullptr;  // [Totals][class64], written by analyse_kernel over PCIe
  uint8_t* d_mapped = nullptr;  // the same memory as the kernel addresses it
  unsigned int* d_done = nullptr;
  Partial* d_partials = nullptr;
  size_t capacity16 = 0, capacity64 = 0;
  cudaEvent_t start = nullptr, stop = nullptr;
  std::string error;

  size_t class_offset() const { return round_up(sizeof(Totals), 256); }
  size_t blocks_offset() const { return class_offset() + round_up(capacity64, 256); }
  size_t results_bytes() const { return blocks_offset() + 2 * capacity16 * sizeof(uint32_t); }

  bool check(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return true;
    error = describe(e, what);
    return false;
  }
  void release() {
    if (d_results) cudaFree(d_results);
    if (h_results) cudaFreeHost(h_results);
    if (d_partials) cudaFree(d_partials);
    if (h_mapped) cudaFreeHost(h_mapped);
    d_results = h_results = h_mapped = d_mapped = nullptr;
    d_partials = nullptr;
    capacity16 = capacity64 = 0;
  }
  ~State() {
    release();
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (stream) cudaStreamDestroy(stream);
    if (d_done) cudaFree(d_done);
  }
  // Where the totals and classes of the last frame are, on the host.
  const uint8_t* front() const { return fused ? h_mapped : h_results; }
  bool ensure(size_t n16, size_t n64) {
    if (!stream && !check(cudaStreamCreate(&stream), "cudaStreamCreate")) return false;
    if (!d_done && (!check(cudaMalloc(&d_done, sizeof *d_done), "cudaMalloc(count)") ||
                    !check(cudaMemset(d_done, 0, sizeof *d_done), "cudaMemset(count)")))
      return false;
    if (n16 <= capacity16 && n64 <= capacity64) return true;
    release();
    capacity16 = n16;
    capacity64 = n64;
    return check(cudaMalloc(&d_results, results_bytes()), "cudaMalloc(results)") &&
           check(cudaMallocHost(&h_results, results_bytes()), "cudaMallocHost(results)") &&
           check(cudaMalloc(&d_partials, n64 * sizeof(Partial)), "cudaMalloc(partials)") &&
           check(cudaHostAlloc(&h_mapped, blocks_offset(), cudaHostAllocMapped), "cudaHostAlloc(mapped)") &&
           check(cudaHostGetDevicePointer(reinterpret_cast<void**>(&d_mapped), h_mapped, 0),
                 "cudaHostGetDevicePointer");
  }

  // Queues the kernel(s) and the copies back; nothing waits.
  bool enqueue(const analysis::LumaPlane& cur, const analysis::LumaPlane* prev, const analysis::AnalysisOptions& o,
               bool with_blocks, Geometry& g) {
    g.width = cur.width;
    g.height = cur.height;
    g.bx = (cur.width + 15) / 16;
    g.by = (cur.height + 15) / 16;
    g.b64x = (g.bx + 3) / 4;
    g.b64y = (g.by + 3) / 4;
    g.step = o.row_step;
    g.shift = cur.shift;
    const size_t n16 = static_cast<size_t>(g.bx) * g.by, n64 = static_cast<size_t>(g.b64x) * g.b64y;
    if (!ensure(n16, n64)) return false;
    auto* sad16 = reinterpret_cast<uint32_t*>(d_results + blocks_offset());
    uint32_t* act16 = sad16 + capacity16;
    auto* class64 = d_results + class_offset();
    auto* totals = reinterpret_cast<Totals*>(d_results);

    const auto* c = static_cast<const uint8_t*>(cur.data);
    const auto* p = prev ? static_cast<const uint8_t*>(prev->data) : nullptr;
    const long long ps = prev ? prev->stride : 0;
    const bool vec = aligned16(cur) && (!prev || aligned16(*prev));
    if (fused) {
      // A thread block per 64 rows x 32 16x16 blocks: never more blocks than
      // 64x64 blocks, so the partials fit.
      const dim3 threads(kFusedColumns, kQuarters, kBands),
          grid((g.bx + kFusedColumns - 1) / kFusedColumns, (g.by + kBands - 1) / kBands);
      auto* m_class = d_mapped + class_offset();
      auto* m_totals = reinterpret_cast<Totals*>(d_mapped);
      const auto launch = [&](auto kernel) {
        kernel<<<grid, threads, 0, stream>>>(c, cur.stride, p, ps, g, o.skip_threshold_q4, o.full_threshold_q4,
                                             cur.bit_depth, sad16, act16, m_class, d_partials, d_done, m_totals);
      };
      if (cur.bytes_per_sample == 1)
        vec ? launch(analyse_kernel<1, true>) : launch(analyse_kernel<1, false>);
      else
        vec ? launch(analyse_kernel<2, true>) : launch(analyse_kernel<2, false>);
      if (!check(cudaGetLastError(), "analyse launch")) return false;
      if (with_blocks) {
        const size_t bytes = n16 * sizeof(uint32_t);
        if (!check(cudaMemcpyAsync(h_results + blocks_offset(), sad16, bytes, cudaMemcpyDeviceToHost, stream),
                   "cudaMemcpyAsync(sad16)") ||
            !check(cudaMemcpyAsync(h_results + blocks_offset() + capacity16 * sizeof(uint32_t), act16, bytes,
                                   cudaMemcpyDeviceToHost, stream),
                   "cudaMemcpyAsync(activity16)"))
          return false;
      }
      return true;
    }
    const dim3 threads(kColumns, kQuarters), grid((g.bx + kColumns - 1) / kColumns, g.by);
    if (cur.bytes_per_sample == 1) {
      if (vec)
        blocks16_kernel<1, true><<<grid, threads, 0, stream>>>(c, cur.stride, p, ps, g, sad16, act16);
      else
        blocks16_kernel<1, false><<<grid, threads, 0, stream>>>(c, cur.stride, p, ps, g, sad16, act16);
    } else {
      if (vec)
        blocks16_kernel<2, true><<<grid, threads, 0, stream>>>(c, cur.stride, p, ps, g, sad16, act16);
      else
        blocks16_kernel<2, false><<<grid, threads, 0, stream>>>(c, cur.stride, p, ps, g, sad16, act16);
    }
    if (!check(cudaGetLastError(), "blocks16 launch")) return false;
    const int t64 = 128;
    blocks64_kernel<<<static_cast<unsigned>((n64 + t64 - 1) / t64), t64, 0, stream>>>(
        sad16, act16, g, prev != nullptr, o.skip_threshold_q4, o.full_threshold_q4, cur.bit_depth, class64,
        d_partials);
    if (!check(cudaGetLastError(), "blocks64 launch")) return false;
    totals_kernel<<<1, kTotalsThreads, 0, stream>>>(d_partials, static_cast<int>(n64), totals);
    if (!check(cudaGetLastError(), "totals launch")) return false;
    if (!check(cudaMemcpyAsync(h_results, d_results, class_offset() + n64, cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync(results)"))
      return false;
    if (with_blocks) {
      const size_t bytes = n16 * sizeof(uint32_t);
      if (!check(cudaMemcpyAsync(h_results + blocks_offset(), sad16, bytes, cudaMemcpyDeviceToHost, stream),
                 "cudaMemcpyAsync(sad16)") ||
          !check(cudaMemcpyAsync(h_results + blocks_offset() + capacity16 * sizeof(uint32_t), act16, bytes,
                                 cudaMemcpyDeviceToHost, stream),
                 "cudaMemcpyAsync(activity16)"))
        return false;
    }
    return true;
  }
};

bool device_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = describe(e, "cudaGetDeviceCount");
    cudaGetLastError();  // not sticky, but leave nothing behind
    return false;
  }
  if (n == 0 && why) *why = "no CUDA device";
  return n > 0;
}

std::string device_description() {
  int dev = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) return "no CUDA device";
  return std::string(prop.name) + ", " + std::to_string(prop.multiProcessorCount) + " SMs, sm_" +
         std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.totalGlobalMem >> 20) + " MiB, L2 " + std::to_string(prop.l2CacheSize >> 20) + " MiB";
}

Analyser::Analyser() : state_(std::make_unique<State>()) {}
Analyser::~Analyser() = default;
Analyser::Analyser(Analyser&&) noexcept = default;
Analyser& Analyser::operator=(Analyser&&) noexcept = default;

const std::string& Analyser::last_error() const { return state_->error; }

bool Analyser::analyse(const analysis::LumaPlane& cur, const analysis::LumaPlane* prev,
                       const analysis::AnalysisOptions& options, analysis::FrameAnalysis& out, bool with_blocks) {
  State& s = *state_;
  if (!valid_plane(cur) || (prev && (!valid_plane(*prev) || prev->width != cur.width || prev->height != cur.height ||
                                     prev->bytes_per_sample != cur.bytes_per_sample || prev->shift != cur.shift)) ||
      options.row_step < 1 || options.row_step > 16) {
    s.error = "invalid plane or options";
    return false;
  }
  Geometry g{};
  if (!s.enqueue(cur, prev, options, with_blocks, g)) return false;
  if (!s.check(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize")) return false;

  Totals t;
  std::memcpy(&t, s.front(), sizeof t);
  const size_t n16 = static_cast<size_t>(g.bx) * g.by, n64 = static_cast<size_t>(g.b64x) * g.b64y;
  out.blocks16_x = g.bx;
  out.blocks16_y = g.by;
  if (with_blocks) {
    const auto* sad = reinterpret_cast<const uint32_t*>(s.h_results + s.blocks_offset());
    out.sad16.assign(sad, sad + n16);
    out.activity16.assign(sad + s.capacity16, sad + s.capacity16 + n16);
  } else {
    out.sad16.clear();
    out.activity16.clear();
  }
  out.blocks64_x = g.b64x;
  out.blocks64_y = g.b64y;
  const auto* cls = s.front() + s.class_offset();
  out.class64.resize(n64);
  for (size_t j = 0; j < n64; ++j) out.class64[j] = static_cast<analysis::BlockClass>(cls[j]);
  out.skip_blocks = t.skip;
  out.fast_blocks = t.fast;
  out.full_blocks = t.full;
  out.has_previous = prev != nullptr;
  out.sad_total = t.sad;
  out.activity_total = t.activity;
  out.sampled_pixels = t.pixels;
  // The CPU's expressions, on the same integers.
  const double scale = static_cast<double>(1u << (cur.bit_depth - 8));
  const double px = static_cast<double>(std::max<uint64_t>(1, t.pixels));
  out.mafd = prev ? static_cast<double>(t.sad) / px / scale : 0.0;
  out.spatial_activity = t.pairs ? static_cast<double>(t.activity) / t.pairs / scale : 0.0;
  out.complexity = t.cost / px / scale;
  return true;
}

std::vector<float> Analyser::time_runs(const std::vector<analysis::LumaPlane>& cur,
                                       const std::vector<analysis::LumaPlane>& prev,
                                       const analysis::AnalysisOptions& options, int warmup, int runs) {
  State& s = *state_;
  std::vector<float> times;
  if (cur.empty() || prev.size() != cur.size()) return times;
  if (!s.start && (!s.check(cudaEventCreate(&s.start), "cudaEventCreate") ||
                   !s.check(cudaEventCreate(&s.stop), "cudaEventCreate")))
    return times;
  Geometry g{};
  for (int i = 0; i < warmup; ++i)
    if (!s.enqueue(cur[i % cur.size()], &prev[i % cur.size()], options, false, g)) return times;
  if (!s.check(cudaStreamSynchronize(s.stream), "warm-up")) return times;
  for (int i = 0; i < runs; ++i) {
    const size_t k = i % cur.size();
    cudaEventRecord(s.start, s.stream);
    if (!s.enqueue(cur[k], &prev[k], options, false, g)) return {};
    cudaEventRecord(s.stop, s.stream);
    if (!s.check(cudaEventSynchronize(s.stop), "cudaEventSynchronize")) return {};
    float ms = 0;
    cudaEventElapsedTime(&ms, s.start, s.stop);
    times.push_back(ms);
  }
  return times;
}

// ---- DevicePlane ------------------------------------------------------------------------------

DevicePlane DevicePlane::upload(const analysis::LumaPlane& host, int offset, std::string* error) {
  DevicePlane d;
  const size_t bytes = static_cast<size_t>(host.stride) * host.height + offset;
  cudaError_t e = cudaMalloc(&d.base_, bytes);
  if (e != cudaSuccess) {
    if (error) *error = describe(e, "cudaMalloc");
    d.base_ = nullptr;
    return d;
  }
  d.plane_ = host;
  d.plane_.data = static_cast<const uint8_t*>(d.base_) + offset;
  e = cudaMemcpy(const_cast<uint8_t*>(d.plane_.data), host.data, static_cast<size_t>(host.stride) * host.height,
                 cudaMemcpyHostToDevice);
  if (e != cudaSuccess) {
    if (error) *error = describe(e, "cudaMemcpy");
    return DevicePlane{};
  }
  return d;
}

DevicePlane::~DevicePlane() {
  if (base_) cudaFree(base_);
}

DevicePlane::DevicePlane(DevicePlane&& o) noexcept : base_(o.base_), plane_(o.plane_) { o.base_ = nullptr; }

DevicePlane& DevicePlane::operator=(DevicePlane&& o) noexcept {
  if (this != &o) {
    if (base_) cudaFree(base_);
    base_ = o.base_;
    plane_ = o.plane_;
    o.base_ = nullptr;
  }
  return *this;
}

// ---- bandwidth --------------------------------------------------------------------------------

double measure_read_bandwidth(size_t bytes, int runs) {
  bytes = bytes / 16 * 16;
  void* buf = nullptr;
  unsigned int* sink = nullptr;
  cudaEvent_t a = nullptr, b = nullptr;
  double result = 0;
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (cudaMalloc(&buf, bytes) == cudaSuccess && cudaMalloc(&sink, sizeof *sink) == cudaSuccess &&
      cudaMemset(buf, 0x5a, bytes) == cudaSuccess && cudaEventCreate(&a) == cudaSuccess &&
      cudaEventCreate(&b) == cudaSuccess) {
    std::vector<float> t;
    const unsigned blocks = static_cast<unsigned>(std::max(1, sms) * 8);
    for (int i = 0; i < runs + 3; ++i) {
      cudaEventRecord(a);
      read_kernel<<<blocks, 256>>>(static_cast<const uint4*>(buf), bytes / 16, sink);
      cudaEventRecord(b);
      cudaEventSynchronize(b);
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      if (i >= 3) t.push_back(ms);
    }
    if (cudaGetLastError() == cudaSuccess) result = bytes / (median(t) * 1e-3);
  }
  if (a) cudaEventDestroy(a);
  if (b) cudaEventDestroy(b);
  if (buf) cudaFree(buf);
  if (sink) cudaFree(sink);
  return result;
}

double measure_copy_bandwidth(size_t bytes, int runs) {
  void *src = nullptr, *dst = nullptr;
  cudaEvent_t a = nullptr, b = nullptr;
  double result = 0;
  if (cudaMalloc(&src, bytes) == cudaSuccess && cudaMalloc(&dst, bytes) == cudaSuccess &&
      cudaMemset(src, 0x33, bytes) == cudaSuccess && cudaEventCreate(&a) == cudaSuccess &&
      cudaEventCreate(&b) == cudaSuccess) {
    std::vector<float> t;
    for (int i = 0; i < runs + 3; ++i) {
      cudaEventRecord(a);
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice);
      cudaEventRecord(b);
      cudaEventSynchronize(b);
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      if (i >= 3) t.push_back(ms);
    }
    if (cudaGetLastError() == cudaSuccess) result = 2.0 * bytes / (median(t) * 1e-3);
  }
  if (a) cudaEventDestroy(a);
  if (b) cudaEventDestroy(b);
  if (src) cudaFree(src);
  if (dst) cudaFree(dst);
  return result;
}

}  // namespace ccm::cuda
