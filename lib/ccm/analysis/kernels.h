// Internal: the per-band kernels behind analyse_frame. One call covers a band of
// up to 16 rows and `blocks` whole 16-pixel-wide blocks; the scalar code handles
// the partial block at the right edge for every ISA.
//
// Intrinsics per ISA and a dispatch chosen once from hw/cpu, not Highway: the
// CPUID facts are needed anyway, and a Highway port is to be measured before it
// lands (docs/architecture.md, "Libraries we use").
#pragma once

#include <cstddef>
#include <cstdint>

namespace ccm::analysis::detail {

struct BandArgs {
  const uint8_t* cur = nullptr;
  ptrdiff_t cur_stride = 0;
  const uint8_t* prev = nullptr;  // nullptr: activity only
  ptrdiff_t prev_stride = 0;
  int blocks = 0;    // whole 16-wide blocks
  int rows = 16;     // 1..16
  int row_step = 1;  // 1, 2, 4, ...
  int shift = 0;     // 16-bit samples only
  uint32_t* sad = nullptr;       // blocks entries
  uint32_t* activity = nullptr;  // blocks entries
};

using BandKernel = void (*)(const BandArgs&);

// One block of any size (width 1..16), scalar; used for edges by every ISA.
void block_scalar8(const uint8_t* cur, ptrdiff_t cur_stride, const uint8_t* prev, ptrdiff_t prev_stride,
                   int width, int rows, int row_step, uint32_t& sad, uint32_t& activity);
void block_scalar16(const uint8_t* cur, ptrdiff_t cur_stride, const uint8_t* prev, ptrdiff_t prev_stride,
                    int width, int rows, int row_step, int shift, uint32_t& sad, uint32_t& activity);

void band8_scalar(const BandArgs& a);
void band16_scalar(const BandArgs& a);
#if defined(__x86_64__)
void band8_avx2(const BandArgs& a);
void band16_avx2(const BandArgs& a);
void band8_avx512(const BandArgs& a);
void band16_avx512(const BandArgs& a);
#endif

}  // namespace ccm::analysis::detail
