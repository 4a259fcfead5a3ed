// Scene-cut detection from the SAD statistics of analyse_frame.
//
// Starting points: FFmpeg's scene score, min(mafd, |mafd - previous mafd|), and
// libvpx's "SAD well above its running average". On real clips (tests/media)
// those two alone also fire on screen content that scrolls (a page jump of 50
// lines gives a zero-motion SAD as big as a cut) and on fast low-texture motion,
// so two more conditions come from the same statistics:
// - the SAD must be large against the spatial activity: motion of textured
//   content costs about |gradient| x displacement, two unrelated pictures far more;
// - nearly all of the area that moves must change a lot (Full 64x64 blocks among
//   the non-Skip ones), so static overlays and letterboxing do not hide a cut.
// Numbers behind the defaults: docs/ratecontrol.md.
#pragma once

#include <cstdint>

#include "analysis/analysis.h"

namespace ccm::analysis {

struct SceneCutOptions {
  // FFmpeg scdet's scale: score in percent of the sample range (default 10, as scdet).
  double threshold_percent = 10.0;
  double min_sad_to_activity = 3.0;   // mafd / mean spatial activity of the two frames
  double min_changed_fraction = 0.85; // Full blocks among non-Skip 64x64 blocks
  double min_over_average = 2.0;      // mafd / running average of mafd (libvpx's measure)
  uint32_t min_gap_frames = 3;        // a flash or a fade's steps are one cut, not several
};

struct SceneCutDecision {
  bool cut = false;
  double score_percent = 0;  // FFmpeg-style score of this frame, 0..100
};

class SceneCutDetector {
 public:
  explicit SceneCutDetector(SceneCutOptions options = {}) : options_(options) {}

  // Feeds the analysis of the next frame (in decode order).
  SceneCutDecision push(const FrameAnalysis& frame);
  // Forget the history (new stream, resolution change).
  void reset();

  const SceneCutOptions& options() const { return options_; }
  void set_options(const SceneCutOptions& options) { options_ = options; }

 private:
  SceneCutOptions options_;
  bool have_previous_ = false;
  double previous_mafd_ = 0;
  double previous_activity_ = 0;
  double average_mafd_ = 0;
  bool have_average_ = false;
  uint64_t frames_since_cut_ = 0;
};

}  // namespace ccm::analysis
