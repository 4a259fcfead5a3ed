// Frame analysis for rate control: SAD of 16x16 luma blocks against the previous
// frame, spatial activity, per-64x64-block classes (skip / fast / full) and frame
// complexity. Pure C++, no GStreamer.
//
// Definitions (every ISA computes exactly these integers):
// - A 16x16 block is cut at the frame's right and bottom edges; a partial block
//   counts only the pixels inside the frame.
// - Sampled rows of a block: 0, row_step, 2*row_step, ... (row_step 1 = all rows).
// - SAD: sum over sampled pixels of |cur - prev|.
// - Activity: sum of |x[r][c] - x[r][c+1]| over sampled rows (both pixels in the
//   block) plus |x[r][c] - x[r+row_step][c]| over pairs of sampled rows in the block.
// - 16-bit samples are shifted right by `shift` first (P010 keeps 10 bits in the
//   top of 16: shift 6).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace ccm::analysis {

enum class Isa { Scalar, Avx2, Avx512 };
const char* to_string(Isa isa);
// The best ISA this CPU (and OS) supports, detected once.
Isa best_isa();
// Whether `isa` can run here (Scalar always can).
bool isa_supported(Isa isa);

// A view of a luma plane. Stride in bytes; samples are uint8_t when
// bytes_per_sample == 1, little-endian uint16_t when 2.
struct LumaPlane {
  const uint8_t* data = nullptr;
  ptrdiff_t stride = 0;
  int width = 0;
  int height = 0;
  int bytes_per_sample = 1;
  int bit_depth = 8;  // significant bits after `shift` (8, 10, 12)
  int shift = 0;      // right shift applied to 16-bit samples (P010: 6)
};

enum class BlockClass : uint8_t { Skip, Fast, Full };
const char* to_string(BlockClass c);

struct AnalysisOptions {
  // Mean |cur - prev| per pixel of a 64x64 block, in 8-bit units times 16:
  // below skip_threshold_q4 the block is Skip (static), at or above
  // full_threshold_q4 it is Full (needs a full search), Fast in between.
  uint32_t skip_threshold_q4 = 24;   // 1.5 per pixel: camera noise on a still scene
  uint32_t full_threshold_q4 = 160;  // 10 per pixel
  // 1 = every row; 2, 4 = every 2nd / 4th row of each block (reads fewer bytes).
  int row_step = 1;
  // Threads sharing the bands of one frame (the caller's thread is one of them);
  // results are identical whatever the number. Small frames use fewer.
  int threads = 1;
};

struct FrameAnalysis {
  int blocks16_x = 0, blocks16_y = 0;
  std::vector<uint32_t> sad16;       // per 16x16 block, row-major; 0 without a previous frame
  std::vector<uint32_t> activity16;  // per 16x16 block
  int blocks64_x = 0, blocks64_y = 0;
  std::vector<BlockClass> class64;   // per 64x64 block; Full without a previous frame
  uint32_t skip_blocks = 0, fast_blocks = 0, full_blocks = 0;

  bool has_previous = false;
  uint64_t sad_total = 0;
  uint64_t activity_total = 0;
  uint64_t sampled_pixels = 0;
  // All in 8-bit units per pixel, whatever the bit depth:
  double mafd = 0;              // mean absolute frame difference (SAD per pixel)
  double spatial_activity = 0;  // mean |gradient| per sample pair
  // Mean per-block cost estimate: min(inter SAD, intra activity) per pixel, as a
  // zero-motion look-ahead would guess; activity alone without a previous frame.
  double complexity = 0;

  double full_fraction() const {
    const uint32_t n = skip_blocks + fast_blocks + full_blocks;
    return n ? static_cast<double>(full_blocks) / n : 0.0;
  }
};

// Analyses `cur` against `prev` (nullptr: first frame, no SAD). prev must have
// cur's width, height and sample layout (its stride may differ). Results go into
// `out`, whose vectors are reused between frames. Returns false (out untouched)
// on an invalid plane.
bool analyse_frame(const LumaPlane& cur, const LumaPlane* prev, const AnalysisOptions& options,
                   FrameAnalysis& out, Isa isa = best_isa());

// Bytes analyse_frame reads from memory for one frame of this size (both planes,
// sampled rows only), for comparing its time with a memory-bandwidth floor.
uint64_t bytes_read(const LumaPlane& cur, bool with_previous, int row_step);

}  // namespace ccm::analysis
