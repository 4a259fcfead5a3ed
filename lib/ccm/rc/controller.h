// Frame-level rate control: bit budgets from the target rate, a smoothing window
// and a leaky-bucket buffer bounded by the latency budget; QP from the R-λ model;
// feedback from the size of every coded frame. Pure C++, no GStreamer; the
// ccmratecontrol element drives it (gst/ratecontrol/).
//
// Budget of frame t (bits), with avg = rate / fps:
//   deviation D = bits spent - bits budgeted so far (frames not reported yet count
//                 with their budget until their size arrives)
//   T = avg - D / window                        (spreads a surplus or deficit)
//   T <= capacity + avg - buffer                (the frame must fit the bucket)
//   buffer: fullness of a leaky bucket drained at `rate`, capacity = rate x latency
//           budget (never below one average frame): what the frame adds beyond
//           the drain is what a receiver waits for.
// A frame that overflows the bucket (a key frame, a burst) is paid back over the
// next kDrainFrames frames, never by starving them to nothing.
// Key frames get key_frame_ratio x avg (a cut's key frame within 3 frame shares:
// the bucket may overflow for it and the next frames pay it back).
// Still frames (complexity < 0.3: a paused camera, screen content between
// scrolls, a slideshow) cost almost nothing at the QP of moving frames: they
// follow their own QP, which falls while the budget is not spent (each one
// refines the picture) and rises when it is overspent.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include "rc/rlambda.h"

namespace ccm::rc {

struct ControllerConfig {
  Codec codec = Codec::H265;
  int width = 0;
  int height = 0;
  double fps = 30;
  double target_bps = 2e6;
  double min_bps = 0;  // 0 = no lower bound
  double max_bps = 0;  // 0 = no upper bound
  double latency_budget_ms = 33;
  int window_frames = 30;
  double max_psnr_db = 0;  // 0 = no cap
  int qp_min = -1;         // -1 = the codec's range
  int qp_max = -1;
  int qp_step = 3;          // most an inter frame's QP moves from the previous one
  int qp_step_relaxed = 10; // after a rate change or a scene cut
  double key_frame_ratio = 3.0;
  // A frame beyond the bucket is paid back over this many frames.
  double drain_frames = 4.0;
  // Inter frames: bpp is scaled by (scene reference complexity / frame complexity)^gamma,
  // the ratio clipped to [1/4, 4]: a frame with more motion than the scene's start
  // gets a higher λ for the same budget (calibration: 0.5 predicts best).
  double complexity_gamma = 0.5;
};

struct FrameInfo {
  uint64_t id = 0;          // key for on_encoded (the element uses the pts)
  double complexity = 0;    // FrameAnalysis::complexity (8-bit units per pixel)
  double activity = 0;      // FrameAnalysis::spatial_activity
  bool key = false;         // will be coded as a key frame (forced, or the first)
  bool scene_cut = false;   // starts a new scene: short-term state resets
};

struct Decision {
  int qp = 0;
  double lambda = 0;
  double target_bits = 0;
  double buffer_bits = 0;     // bucket fullness before this frame
  double psnr_estimate = 0;   // dB at this QP
  bool key = false;
  bool psnr_capped = false;   // the max-psnr cap raised the QP
  bool still = false;         // a still frame (its own QP track)
  bool at_min_qp = false;     // the QP is the lowest the settings allow (codec range,
                              // qp_min, max-psnr): the rate may not be reachable
};

struct FrameReport {
  uint64_t id = 0;
  double bits = 0;
  double target_bits = 0;
  int qp = 0;
  double lambda = 0;
  bool key = false;
};

class RateController {
 public:
  explicit RateController(const ControllerConfig& config);

  const ControllerConfig& config() const { return cfg_; }

  // Rate changes apply from the next decide(); the QP may then move by
  // qp_step_relaxed for a few frames so the output follows within frames.
  // Returns the rate in force (clamped into [min_bps, max_bps]).
  double set_target_bitrate(double bps);
  void set_bounds(double min_bps, double max_bps);
  // QoS: a factor in (0, 1] on the target (1 = none).
  void set_rate_scale(double scale);
  double rate_scale() const { return rate_scale_; }
  void set_latency_budget_ms(double ms) { cfg_.latency_budget_ms = ms > 0 ? ms : cfg_.latency_budget_ms; }
  void set_window(int frames) { cfg_.window_frames = frames > 0 ? frames : cfg_.window_frames; }
  void set_max_psnr(double db) { cfg_.max_psnr_db = db > 0 ? db : 0; }
  void set_fps(double fps);
  // The rate the budgets follow now: target x QoS scale, within the bounds.
  double effective_bitrate() const;
  double average_frame_bits() const;

  Decision decide(const FrameInfo& frame);

  // The coded size of frame `id`; nullopt when no decision with that id is pending.
  // coded_as_key: what the encoder made of it, when known; a frame it coded
  // otherwise than decided (its own key-frame interval) still counts for the
  // budgets but teaches neither model.
  // qp_applied: false when the encoder chose the frame's QP itself (ccmratecontrol
  // mode encoder-rate leaves inter frames to the encoder's own CBR): the size counts
  // for the budgets but teaches no model.
  std::optional<FrameReport> on_encoded(uint64_t id, double bits, std::optional<bool> coded_as_key = std::nullopt,
                                        bool qp_applied = true);
  // Forget frames decided but not reported (flush, encoder restart).
  void clear_pending() { pending_.clear(); }

  // Scene cut: forget the scene's complexity and let the QP move freely.
  void reset_short_term();
  // Everything (new stream, new size).
  void reset();

  size_t pending() const { return pending_.size(); }
  double buffer_bits() const { return buffer_; }
  double deviation_bits() const { return deviation_; }
  const RLambdaModel& inter_model() const { return inter_; }
  const RLambdaModel& intra_model() const { return intra_; }
  int last_qp() const { return last_inter_qp_; }
  int last_still_qp() const { return last_still_qp_; }

 private:
  struct Pending {
    uint64_t id;
    double target_bits;
    double lambda;
    double bpp_scale;   // bpp_eff / bpp used for this frame
    double bpp_target;  // effective bpp the model was asked for
    int qp;
    bool key;
    bool fresh;         // decided within a few frames of a reset
    int position;       // inter frames: frame count mod kStructurePeriod; -1 for key frames
    double structure;   // the position's multiplier used for this frame
    bool learn;         // false for still frames: their size says nothing about the model
    bool still;
    int refine_steps;   // still frames below the picture's floor: steps of refinement
    double accounted;   // bits the budgets counted it with until its size arrives
  };

  // Encoders with a layered low-delay structure (SVT-AV1's, every 8 frames)
  // spend more on their base-layer pictures at the same QP. Learnt per position
  // as a multiplier with mean 1: the frame's expected bits (budget accounting,
  // bucket) follow the structure while the QP stays smooth across positions.
  static constexpr int kStructurePeriod = 8;
  double structure_multiplier(int position) const;

  double pixels() const { return static_cast<double>(cfg_.width) * cfg_.height; }
  double capacity_bits() const;
  int clamp_qp(int qp) const;
  int lowest_qp() const;  // the codec's floor, qp_min and the max-psnr cap together
  // The next still frame's QP from the budget's state; steps of refinement below
  // the picture's floor and what they are expected to cost.
  int still_qp(int* refine_steps, double* expected_bits);
  double qp_per_ln() const;    // QP steps per ln of bits (codec line x model slope)
  double refine_cost(int qp) const;  // expected bits of one step of refinement to qp

  ControllerConfig cfg_;
  RLambdaModel inter_;
  RLambdaModel intra_;
  double rate_scale_ = 1.0;
  double buffer_ = 0;
  double deviation_ = 0;
  double scene_complexity_ = 0;  // the scene's first inter complexity: the model's reference
  bool have_scene_complexity_ = false;
  double previous_complexity_ = 0;  // the last inter frame's that was not still
  int last_inter_qp_ = -1;
  int last_still_qp_ = -1;   // still frames' own track (-1: start from the inter QP)
  double last_still_ratio_ = 1;  // the last reported still frame's bits / budget
  bool still_report_fresh_ = false;  // reported since the last still decision
  int last_still_report_qp_ = 0;     // the QP of that reported frame
  int measured_still_qp_ = -1;       // the lowest still QP reported since the picture changed
  int burst_floor_qp_ = -1;          // moving frames stay at or above it (-1: none)
  int burst_frames_ = 0;             // frames since the floor was last raised
  bool far_over_ = false;            // the last reported inter frame cost > 3x its budget
  int still_floor_qp_ = -1;  // the finest QP the still picture has been coded at
  double refine_log_ = 0;    // ln(bits of one step of refinement) + QP / qp_per_ln()
  int frames_since_key_ = 0;
  int relaxed_frames_ = 0;   // frames left with qp_step_relaxed
  int fresh_frames_ = 0;     // frames left with a raised model gain
  std::deque<Pending> pending_;
  uint64_t inter_count_ = 0;  // inter frames since the last key frame
  double structure_log_[kStructurePeriod] = {};  // EMA of ln(bits / model prediction) per position
  int structure_seen_[kStructurePeriod] = {};     // observations of each position
};

}  // namespace ccm::rc
