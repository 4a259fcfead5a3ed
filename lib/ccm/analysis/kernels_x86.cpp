// AVX2 and AVX-512 band kernels. Compiled with function target attributes (not
// -mavx2 on the unit), so this file builds into the ordinary core library and
// the dispatcher only calls a function after cpuid said the CPU has it.
//
// Loop order: row outer, blocks inner, per-block accumulators in registers spilled
// to a small local array. Every sampled row is then read as one contiguous run of
// up to 4096 pixels (a whole 4K row), which the hardware prefetchers follow at full memory bandwidth
// (a block-outer loop would jump by the stride 16 times per block).
#include "analysis/kernels.h"

#if defined(__x86_64__)

// GCC 12's AVX-512 headers build _mm512_undefined_*() as `__m512i __Y = __Y;`,
// which -Wuninitialized reports inside every intrinsic that uses it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#define CCM_TARGET_AVX2 __attribute__((target("avx2")))
#define CCM_TARGET_AVX512 __attribute__((target("avx2,avx512f,avx512bw,avx512dq,avx512vl")))

namespace ccm::analysis::detail {
namespace {

constexpr int kChunkBlocks = 256;  // accumulators for up to 4096 pixels of a row (16 KiB of stack at most)

// ---- 8-bit -------------------------------------------------------------------

template <bool kPrev>
CCM_TARGET_AVX2 void block8_sse(const uint8_t* cur, ptrdiff_t cs, const uint8_t* prev, ptrdiff_t ps, int rows,
                                int step, uint32_t& sad_out, uint32_t& act_out) {
  const __m128i zero = _mm_setzero_si128();
  const __m128i last_out = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0);
  __m128i sad = zero, act = zero, above = zero;
  for (int r = 0; r < rows; r += step) {
    const __m128i cv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + r * cs));
    if constexpr (kPrev)
      sad = _mm_add_epi64(sad, _mm_sad_epu8(cv, _mm_loadu_si128(reinterpret_cast<const __m128i*>(prev + r * ps))));
    const __m128i sh = _mm_srli_si128(cv, 1);
    const __m128i d = _mm_and_si128(_mm_or_si128(_mm_subs_epu8(cv, sh), _mm_subs_epu8(sh, cv)), last_out);
    act = _mm_add_epi64(act, _mm_sad_epu8(d, zero));
    if (r > 0) act = _mm_add_epi64(act, _mm_sad_epu8(cv, above));
    above = cv;
  }
  sad_out = static_cast<uint32_t>(_mm_cvtsi128_si64(sad) + _mm_extract_epi64(sad, 1));
  act_out = static_cast<uint32_t>(_mm_cvtsi128_si64(act) + _mm_extract_epi64(act, 1));
}

// Blocks [first, a.blocks) in pairs, the odd one with SSE.
template <bool kPrev>
CCM_TARGET_AVX2 void band8_avx2_from(const BandArgs& a, int first) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i last_out = _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0,  //
                                            -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0);
  const int pairs = (a.blocks - first) / 2;
  __m256i sad[kChunkBlocks / 2], act[kChunkBlocks / 2];
  for (int p0 = 0; p0 < pairs; p0 += kChunkBlocks / 2) {
    const int n = std::min(kChunkBlocks / 2, pairs - p0);
    const ptrdiff_t x0 = 16 * static_cast<ptrdiff_t>(first) + 32 * static_cast<ptrdiff_t>(p0);
    for (int i = 0; i < n; ++i) sad[i] = act[i] = zero;
    const uint8_t* above = nullptr;
    for (int r = 0; r < a.rows; r += a.row_step) {
      const uint8_t* c = a.cur + r * a.cur_stride + x0;
      const uint8_t* p = kPrev ? a.prev + r * a.prev_stride + x0 : nullptr;
      for (int i = 0; i < n; ++i) {
        const __m256i cv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32 * i));
        if constexpr (kPrev)
          sad[i] = _mm256_add_epi64(
              sad[i], _mm256_sad_epu8(cv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * i))));
        const __m256i sh = _mm256_bsrli_epi128(cv, 1);
        const __m256i d =
            _mm256_and_si256(_mm256_or_si256(_mm256_subs_epu8(cv, sh), _mm256_subs_epu8(sh, cv)), last_out);
        __m256i s = _mm256_sad_epu8(d, zero);
        if (above)
          s = _mm256_add_epi64(
              s, _mm256_sad_epu8(cv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(above + 32 * i))));
        act[i] = _mm256_add_epi64(act[i], s);
      }
      above = c;
    }
    for (int i = 0; i < n; ++i) {
      alignas(32) uint64_t s[4], t[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(s), sad[i]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(t), act[i]);
      const int b = first + 2 * (p0 + i);
      a.sad[b] = static_cast<uint32_t>(s[0] + s[1]);
      a.sad[b + 1] = static_cast<uint32_t>(s[2] + s[3]);
      a.activity[b] = static_cast<uint32_t>(t[0] + t[1]);
      a.activity[b + 1] = static_cast<uint32_t>(t[2] + t[3]);
    }
  }
  const int done = first + 2 * pairs;
  if (done < a.blocks) {
    const ptrdiff_t x = 16 * static_cast<ptrdiff_t>(done);
    block8_sse<kPrev>(a.cur + x, a.cur_stride, kPrev ? a.prev + x : nullptr, a.prev_stride, a.rows, a.row_step,
                      a.sad[done], a.activity[done]);
  }
}

template <bool kPrev>
CCM_TARGET_AVX512 void band8_avx512_t(const BandArgs& a) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i last_out = _mm512_broadcast_i32x4(
      _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0));
  const int quads = a.blocks / 4;
  __m512i sad[kChunkBlocks / 4], act[kChunkBlocks / 4];
  for (int q0 = 0; q0 < quads; q0 += kChunkBlocks / 4) {
    const int n = std::min(kChunkBlocks / 4, quads - q0);
    const ptrdiff_t x0 = 64 * static_cast<ptrdiff_t>(q0);
    for (int i = 0; i < n; ++i) sad[i] = act[i] = zero;
    const uint8_t* above = nullptr;
    for (int r = 0; r < a.rows; r += a.row_step) {
      const uint8_t* c = a.cur + r * a.cur_stride + x0;
      const uint8_t* p = kPrev ? a.prev + r * a.prev_stride + x0 : nullptr;
      for (int i = 0; i < n; ++i) {
        const __m512i cv = _mm512_loadu_si512(c + 64 * i);
        if constexpr (kPrev) sad[i] = _mm512_add_epi64(sad[i], _mm512_sad_epu8(cv, _mm512_loadu_si512(p + 64 * i)));
        const __m512i sh = _mm512_bsrli_epi128(cv, 1);
        const __m512i d =
            _mm512_and_si512(_mm512_or_si512(_mm512_subs_epu8(cv, sh), _mm512_subs_epu8(sh, cv)), last_out);
        __m512i s = _mm512_sad_epu8(d, zero);
        if (above) s = _mm512_add_epi64(s, _mm512_sad_epu8(cv, _mm512_loadu_si512(above + 64 * i)));
        act[i] = _mm512_add_epi64(act[i], s);
      }
      above = c;
    }
    for (int i = 0; i < n; ++i) {
      alignas(64) uint64_t s[8], t[8];
      _mm512_store_si512(s, sad[i]);
      _mm512_store_si512(t, act[i]);
      const int b = 4 * (q0 + i);
      for (int k = 0; k < 4; ++k) {
        a.sad[b + k] = static_cast<uint32_t>(s[2 * k] + s[2 * k + 1]);
        a.activity[b + k] = static_cast<uint32_t>(t[2 * k] + t[2 * k + 1]);
      }
    }
  }
  if (4 * quads < a.blocks) band8_avx2_from<kPrev>(a, 4 * quads);
}

// ---- 16-bit ------------------------------------------------------------------

CCM_TARGET_AVX2 inline __m256i absdiff_u16(__m256i a, __m256i b) {
  return _mm256_or_si256(_mm256_subs_epu16(a, b), _mm256_subs_epu16(b, a));
}
// Adds the 16 u16 lanes of d pairwise into 8 u32 lanes (exact for any u16 value).
CCM_TARGET_AVX2 inline __m256i widen_sum_u16(__m256i d) {
  return _mm256_add_epi32(_mm256_and_si256(d, _mm256_set1_epi32(0xffff)), _mm256_srli_epi32(d, 16));
}
CCM_TARGET_AVX2 inline uint32_t hsum_u32(__m256i v) {
  alignas(32) uint32_t t[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), v);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

template <bool kPrev>
CCM_TARGET_AVX2 void band16_avx2_from(const BandArgs& a, int first) {
  const __m256i zero = _mm256_setzero_si256();
  const __m128i shift = _mm_cvtsi32_si128(a.shift);
  // Element 15 has no right-hand neighbour inside the block.
  const __m256i last_out = _mm256_setr_epi16(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0);
  const int blocks = a.blocks - first;
  __m256i sad[kChunkBlocks / 2], act[kChunkBlocks / 2];
  for (int b0 = 0; b0 < blocks; b0 += kChunkBlocks / 2) {
    const int n = std::min(kChunkBlocks / 2, blocks - b0);
    const ptrdiff_t x0 = 32 * static_cast<ptrdiff_t>(first + b0);
    for (int i = 0; i < n; ++i) sad[i] = act[i] = zero;
    const uint8_t* above = nullptr;
    for (int r = 0; r < a.rows; r += a.row_step) {
      const uint8_t* c = a.cur + r * a.cur_stride + x0;
      const uint8_t* p = kPrev ? a.prev + r * a.prev_stride + x0 : nullptr;
      for (int i = 0; i < n; ++i) {
        const __m256i cv =
            _mm256_srl_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32 * i)), shift);
        if constexpr (kPrev) {
          const __m256i pv =
              _mm256_srl_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * i)), shift);
          sad[i] = _mm256_add_epi32(sad[i], widen_sum_u16(absdiff_u16(cv, pv)));
        }
        // cv shifted down by one element across the 128-bit lanes.
        const __m256i hi = _mm256_permute2x128_si256(cv, cv, 0x81);
        const __m256i sh = _mm256_alignr_epi8(hi, cv, 2);
        __m256i s = widen_sum_u16(_mm256_and_si256(absdiff_u16(cv, sh), last_out));
        if (above) {
          const __m256i av =
              _mm256_srl_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(above + 32 * i)), shift);
          s = _mm256_add_epi32(s, widen_sum_u16(absdiff_u16(cv, av)));
        }
        act[i] = _mm256_add_epi32(act[i], s);
      }
      above = c;
    }
    for (int i = 0; i < n; ++i) {
      const int b = first + b0 + i;
      a.sad[b] = hsum_u32(sad[i]);
      a.activity[b] = hsum_u32(act[i]);
    }
  }
}

CCM_TARGET_AVX512 inline __m512i absdiff_u16x32(__m512i x, __m512i y) {
  return _mm512_or_si512(_mm512_subs_epu16(x, y), _mm512_subs_epu16(y, x));
}
CCM_TARGET_AVX512 inline __m512i widen_sum_u16x32(__m512i d, __m512i lo16) {
  return _mm512_add_epi32(_mm512_and_si512(d, lo16), _mm512_srli_epi32(d, 16));
}

template <bool kPrev>
CCM_TARGET_AVX512 void band16_avx512_t(const BandArgs& a) {
  const __m512i zero = _mm512_setzero_si512();
  const __m128i shift = _mm_cvtsi32_si128(a.shift);
  const __m512i lo16 = _mm512_set1_epi32(0xffff);
  // Element i takes element i+1 of the same block; the last one of each block
  // takes itself, so its difference is 0 (no neighbour inside the block).
  const __m512i next = _mm512_set_epi16(31, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,  //
                                        15, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
  const int pairs = a.blocks / 2;
  __m512i sad[kChunkBlocks / 2], act[kChunkBlocks / 2];
  for (int p0 = 0; p0 < pairs; p0 += kChunkBlocks / 2) {
    const int n = std::min(kChunkBlocks / 2, pairs - p0);
    const ptrdiff_t x0 = 64 * static_cast<ptrdiff_t>(p0);
    for (int i = 0; i < n; ++i) sad[i] = act[i] = zero;
    const uint8_t* above = nullptr;
    for (int r = 0; r < a.rows; r += a.row_step) {
      const uint8_t* c = a.cur + r * a.cur_stride + x0;
      const uint8_t* p = kPrev ? a.prev + r * a.prev_stride + x0 : nullptr;
      for (int i = 0; i < n; ++i) {
        const __m512i cv = _mm512_srl_epi16(_mm512_loadu_si512(c + 64 * i), shift);
        if constexpr (kPrev) {
          const __m512i pv = _mm512_srl_epi16(_mm512_loadu_si512(p + 64 * i), shift);
          sad[i] = _mm512_add_epi32(sad[i], widen_sum_u16x32(absdiff_u16x32(cv, pv), lo16));
        }
        const __m512i sh = _mm512_permutexvar_epi16(next, cv);
        __m512i s = widen_sum_u16x32(absdiff_u16x32(cv, sh), lo16);
        if (above) {
          const __m512i av = _mm512_srl_epi16(_mm512_loadu_si512(above + 64 * i), shift);
          s = _mm512_add_epi32(s, widen_sum_u16x32(absdiff_u16x32(cv, av), lo16));
        }
        act[i] = _mm512_add_epi32(act[i], s);
      }
      above = c;
    }
    for (int i = 0; i < n; ++i) {
      const int b = 2 * (p0 + i);
      a.sad[b] = hsum_u32(_mm512_castsi512_si256(sad[i]));
      a.sad[b + 1] = hsum_u32(_mm512_extracti64x4_epi64(sad[i], 1));
      a.activity[b] = hsum_u32(_mm512_castsi512_si256(act[i]));
      a.activity[b + 1] = hsum_u32(_mm512_extracti64x4_epi64(act[i], 1));
    }
  }
  if (2 * pairs < a.blocks) band16_avx2_from<kPrev>(a, 2 * pairs);
}

}  // namespace

void band8_avx2(const BandArgs& a) {
  if (a.prev) {
    band8_avx2_from<true>(a, 0);
  } else {
    band8_avx2_from<false>(a, 0);
    std::fill_n(a.sad, a.blocks, 0u);
  }
}
void band8_avx512(const BandArgs& a) {
  if (a.prev) {
    band8_avx512_t<true>(a);
  } else {
    band8_avx512_t<false>(a);
    std::fill_n(a.sad, a.blocks, 0u);
  }
}
void band16_avx2(const BandArgs& a) {
  if (a.prev) {
    band16_avx2_from<true>(a, 0);
  } else {
    band16_avx2_from<false>(a, 0);
    std::fill_n(a.sad, a.blocks, 0u);
  }
}
void band16_avx512(const BandArgs& a) {
  if (a.prev) {
    band16_avx512_t<true>(a);
  } else {
    band16_avx512_t<false>(a);
    std::fill_n(a.sad, a.blocks, 0u);
  }
}

}  // namespace ccm::analysis::detail

#pragma GCC diagnostic pop

#endif  // __x86_64__
