#include "analysis/scene_cut.h"

#include <algorithm>
#include <cmath>

namespace ccm::analysis {

namespace {
// Weight of the newest frame in the running average of mafd: about a third of a
// second at 25-30 fps, short enough to follow a change of content.
constexpr double kAverageWeight = 0.2;
}  // namespace

void SceneCutDetector::reset() {
  have_previous_ = false;
  have_average_ = false;
  previous_mafd_ = previous_activity_ = average_mafd_ = 0;
  frames_since_cut_ = 0;
}

SceneCutDecision SceneCutDetector::push(const FrameAnalysis& frame) {
  SceneCutDecision d;
  if (!frame.has_previous) {
    // First frame of a stream: nothing to compare; its activity seeds the next.
    reset();
    previous_activity_ = frame.spatial_activity;
    return d;
  }
  const double mafd = frame.mafd;
  const double diff = have_previous_ ? std::fabs(mafd - previous_mafd_) : mafd;
  d.score_percent = std::clamp(std::min(mafd, diff) * 100.0 / 255.0, 0.0, 100.0);

  const double activity = std::max(1.0, 0.5 * (frame.spatial_activity + previous_activity_));
  const uint32_t moving = frame.fast_blocks + frame.full_blocks;
  const double changed = moving ? static_cast<double>(frame.full_blocks) / moving : 0.0;
  const double over_average = have_average_ ? mafd / std::max(average_mafd_, 0.5) : 1e9;

  ++frames_since_cut_;
  d.cut = d.score_percent >= options_.threshold_percent && mafd / activity >= options_.min_sad_to_activity &&
          changed >= options_.min_changed_fraction && over_average >= options_.min_over_average &&
          frames_since_cut_ > options_.min_gap_frames;

  if (d.cut) {
    // The new scene starts a new average; the cut frame itself is no sample of it.
    frames_since_cut_ = 0;
    have_average_ = false;
  } else if (have_average_) {
    average_mafd_ += kAverageWeight * (mafd - average_mafd_);
  } else {
    average_mafd_ = mafd;
    have_average_ = true;
  }
  have_previous_ = true;
  previous_mafd_ = mafd;
  previous_activity_ = frame.spatial_activity;
  return d;
}

}  // namespace ccm::analysis
