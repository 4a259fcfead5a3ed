#include "rc/controller.h"

#include <algorithm>
#include <cmath>

namespace ccm::rc {
namespace {

constexpr double kComplexityFloor = 0.05;        // 8-bit units per pixel
constexpr double kStillComplexity = 0.3;         // below: a still frame (camera noise alone is ~1)
constexpr double kComplexityJump = 4.0;          // x the scene's reference: QP moves by qp_step_relaxed
constexpr double kActivityReference = 8.0;       // intra bpp is scaled by this / activity
constexpr double kMinFrameShare = 0.15;          // no frame gets less than this x avg
// A frame beyond the bucket is paid back over cfg_.drain_frames frames (each gets
// avg - overflow / drain_frames, at least kMinFrameShare): one frame of 3 shares
// costs the next four half a share each instead of starving them to the floor,
// where the QP would climb by qp_step a frame and the rate stay unspent.

// Still frames: from one still frame to the next the QP moves by half of what
// would have put the last reported one on its budget (the codec's QP per ln of
// bits), at most kStillStep. A still picture costs almost nothing at or above the
// finest QP it has been coded at (its floor); each step below the floor refines
// the whole picture at once, a burst that grows as the QP falls (seen on VP9 at
// 320x240: 1.3 frame shares a step at QP 24, 6 at QP 3). So a step below the floor
// is taken only when the budget has saved what it is expected to cost (learnt from
// the last ones, scaled to the QP) and the burst fits kRefineShares frame shares
// beyond what the bucket holds.
constexpr int kStillStep = 4;
constexpr double kStillGain = 0.5;
constexpr double kRefineLearn = 0.5;
constexpr double kRefineDecay = 0.05;  // ln per frame while refinement waits with the budget saved
constexpr double kRefineShares = 3.0;
// After a key frame the inter QP starts no lower than the key frame's minus this:
// the next frame, coded at a far lower QP, would re-code the whole picture (11-30
// frame shares seen after starved key frames on cuts); it then falls by qp_step.
constexpr int kKeyToInterDrop = 2;
constexpr int kAfterKeyFrames = 4;
// An inter frame that cost more than kBurstShares frame shares marks its QP (+1)
// as a floor for moving frames, which eases by one QP every kBurstEaseFrames.
// Some content has a cliff: SVT-AV1 on a noisy static camera spent 4 000 bits at
// QP 27 and 110 000 at QP 20 (320x240), a slope no R-λ model follows; without the
// floor the QP dived into it again every second and each dive starved the next.
// Only for encoders that hold frames (x265 and libvpx report each frame before the
// next decision, and the model follows them: the floor cost them accuracy).
constexpr double kBurstShares = 3.0;
constexpr int kBurstEaseFrames = 8;
constexpr double kFarOverRatio = 3.0;  // a frame over this x its budget lets the QP rise by a relaxed step
constexpr int kFreshFrames = 5;                  // frames after a reset with a raised model gain
constexpr double kFreshGain = 0.5;
constexpr double kSteadyGain = 0.1;
constexpr double kFarOffGain = 0.3;
constexpr double kFarOffLog = 0.3;  // |ln(bits / budget)| beyond which a frame is far off (x1.35)
constexpr int kRelaxedFrames = 3;
constexpr size_t kMaxPending = 256;
// Bits not spent are banked up to half a window of average frames: enough for
// bursty content (a scroll after still frames) to use the budget it saved,
// without a long pause turning into a burst beyond the bucket.
constexpr double kCreditWindows = 0.5;
// EMA weight per observation of a position, after a running mean over the first
// 1 / kStructureWeight observations: ccmsvtav1enc's layer QP offsets make its base
// layer cost 3-5x the mean from the first frames on, which a slow start would read
// as bursts (and answer with a QP floor) for seconds.
constexpr double kStructureWeight = 0.1;
constexpr double kStructureClamp = 1.7;   // |ln multiplier| at most (x5.5)
// Observations of every position before the structure is used (and bursts count):
// with a running mean over 8 an encoder's per-frame noise (ln sigma 0.3) stays
// below kStructureMinSpread; SVT-AV1's base layer (ln +1 and more) does not.
constexpr int kStructureKnown = 8;
constexpr double kEarlyBurstRoom = 1.5;
constexpr double kStructureMinSpread = 0.3;  // ln: a position 35% off the mean  // frames an encoder may hold (or drop) before we forget them

}  // namespace

RateController::RateController(const ControllerConfig& config)
    : cfg_(config), inter_(initial_inter_params(config.codec)), intra_(initial_intra_params(config.codec)) {
  cfg_.fps = cfg_.fps > 0 ? cfg_.fps : 30;
  cfg_.window_frames = std::max(1, cfg_.window_frames);
  set_target_bitrate(cfg_.target_bps);
  reset();
}

void RateController::reset() {
  inter_.reset();
  intra_.reset();
  buffer_ = deviation_ = 0;
  pending_.clear();
  last_inter_qp_ = -1;
  last_still_qp_ = -1;
  last_still_ratio_ = 1;
  still_report_fresh_ = false;
  burst_floor_qp_ = -1;
  far_over_ = false;
  still_floor_qp_ = -1;
  // Until measured: one step at the codec's middle QP costs one frame share.
  refine_log_ = std::log(std::max(average_frame_bits(), 1.0)) + 0.5 * qp_range(cfg_.codec).max / qp_per_ln();
  frames_since_key_ = 0;
  inter_count_ = 0;
  std::fill(std::begin(structure_log_), std::end(structure_log_), 0.0);
  std::fill(std::begin(structure_seen_), std::end(structure_seen_), 0);
  reset_short_term();
}

void RateController::reset_short_term() {
  have_scene_complexity_ = false;
  scene_complexity_ = 0;
  previous_complexity_ = 0;
  relaxed_frames_ = kRelaxedFrames;
  fresh_frames_ = kFreshFrames;
}

double RateController::set_target_bitrate(double bps) {
  if (!(bps > 0)) return effective_bitrate();
  const double before = effective_bitrate();
  cfg_.target_bps = bps;
  const double after = effective_bitrate();
  // A real change of rate (a bandwidth estimate, a user's change): let the QP jump.
  if (before > 0 && std::fabs(after / before - 1.0) > 0.1) relaxed_frames_ = kRelaxedFrames;
  return after;
}

void RateController::set_bounds(double min_bps, double max_bps) {
  cfg_.min_bps = std::max(0.0, min_bps);
  cfg_.max_bps = std::max(0.0, max_bps);
}

void RateController::set_rate_scale(double scale) {
  const double before = effective_bitrate();
  rate_scale_ = std::clamp(scale, 0.01, 1.0);
  if (std::fabs(effective_bitrate() / before - 1.0) > 0.1) relaxed_frames_ = kRelaxedFrames;
}

void RateController::set_fps(double fps) {
  if (fps > 0) cfg_.fps = fps;
}

double RateController::effective_bitrate() const {
  double r = cfg_.target_bps * rate_scale_;
  if (cfg_.max_bps > 0) r = std::min(r, cfg_.max_bps);
  if (cfg_.min_bps > 0) r = std::max(r, cfg_.min_bps);
  return r;
}

double RateController::average_frame_bits() const { return effective_bitrate() / cfg_.fps; }

double RateController::structure_multiplier(int position) const {
  if (position < 0) return 1.0;
  for (int seen : structure_seen_)
    if (seen < kStructureKnown) return 1.0;
  double mean = 0;
  for (double e : structure_log_) mean += e;
  mean /= kStructurePeriod;
  // Encoders without a structure show only noise here: use it only when some
  // position really differs (x265 and libvpx stay below, SVT-AV1's base layer
  // costs twice the mean).
  double spread = 0;
  for (double e : structure_log_) spread = std::max(spread, std::fabs(e - mean));
  if (spread < kStructureMinSpread) return 1.0;
  // Normalised to an arithmetic mean of 1 over the period: the positions' budgets
  // add up to the period's.
  auto raw = [&](int i) { return std::exp(std::clamp(structure_log_[i] - mean, -kStructureClamp, kStructureClamp)); };
  double sum = 0;
  for (int i = 0; i < kStructurePeriod; i++) sum += raw(i);
  return raw(position) * kStructurePeriod / sum;
}

double RateController::capacity_bits() const {
  return std::max(effective_bitrate() * cfg_.latency_budget_ms / 1000.0, average_frame_bits());
}

int RateController::lowest_qp() const {
  int lo = clamp_qp(qp_range(cfg_.codec).min);
  if (cfg_.max_psnr_db > 0) lo = std::max(lo, clamp_qp(min_qp_for_psnr(cfg_.codec, cfg_.max_psnr_db)));
  return lo;
}

double RateController::qp_per_ln() const {
  // QP steps per ln of bits: the λ line's slope times the model's β (7.5 on the
  // H.26x scale, about 14 on the 0-63 scales of VP9 and AV1).
  return (qp_from_lambda(cfg_.codec, std::exp(1.0)) - qp_from_lambda(cfg_.codec, 1.0)) * -inter_.params().beta;
}

double RateController::refine_cost(int qp) const {
  // Bits grow by e per qp_per_ln steps down; refine_log_ is ln(bits of one step) + qp / qp_per_ln.
  return std::exp(refine_log_ - qp / qp_per_ln());
}

int RateController::still_qp(int* refine_steps, double* expected_bits) {
  *refine_steps = 0;
  *expected_bits = 0;
  const double avg = average_frame_bits();
  const int current = last_still_qp_ >= 0 ? last_still_qp_ : last_inter_qp_;
  int qp = current;
  if (still_report_fresh_) {
    // The report may be about a frame decided several frames ago (SVT-AV1's
    // low-delay pipeline holds frames): its ratio is brought to the current QP
    // through the model's slope before stepping (stepping on the stale ratio
    // alone repeats the same correction every frame until the report catches up).
    const double ln_ratio = std::log(std::max(last_still_ratio_, 1e-3)) + (last_still_report_qp_ - current) / qp_per_ln();
    const int step = static_cast<int>(std::lround(kStillGain * qp_per_ln() * ln_ratio));
    // Up as far as a relaxed step: a "still" frame can be dear (a fade through
    // black changes every pixel a little: VP9 spent 10-15 shares a frame on one).
    qp = current + std::clamp(step, -kStillStep, cfg_.qp_step_relaxed);
    still_report_fresh_ = false;
  }
  if (qp < current) {
    // Down only once the frames at the current QP have been measured, and not
    // while the bucket overflows: with SVT-AV1's pipeline (4 frames) the QP
    // otherwise reached 1 before the first frame there (72 000 bits at 320x240,
    // 6 shares) was reported, and five of them starved the next three seconds.
    const bool unmeasured = measured_still_qp_ < 0 || measured_still_qp_ > current;
    if (unmeasured || buffer_ > capacity_bits()) qp = current;
  }
  const int floor_qp = still_floor_qp_ >= 0 ? still_floor_qp_ : current;
  if (qp < floor_qp) {
    // Refinement: as many steps below the floor as the saved budget pays for,
    // within the burst bound (frames decided but not reported count with what
    // they are expected to cost).
    const double credit = -deviation_;
    const double room = kRefineShares * avg - buffer_;
    int steps = 0;
    double cost = 0;
    while (qp < floor_qp - steps && steps < kStillStep) {
      const double next = cost + refine_cost(floor_qp - steps - 1);
      if (next > credit || next > room) break;
      cost = next;
      ++steps;
    }
    qp = floor_qp - steps;
    *refine_steps = steps;
    *expected_bits = cost;
    // Budget saved and room in the bucket, yet the expected cost keeps refinement
    // off: the estimate may come from a burst that was not one (the end of a fade).
    // It decays until a step is tried and measured.
    if (steps == 0 && credit > room && buffer_ <= capacity_bits()) refine_log_ -= kRefineDecay;
  }
  return clamp_qp(qp);
}

int RateController::clamp_qp(int qp) const {
  const auto range = qp_range(cfg_.codec);
  const int lo = cfg_.qp_min >= 0 ? std::max(range.min, cfg_.qp_min) : range.min;
  const int hi = cfg_.qp_max >= 0 ? std::min(range.max, cfg_.qp_max) : range.max;
  return std::clamp(qp, lo, std::max(lo, hi));
}

Decision RateController::decide(const FrameInfo& frame) {
  Decision d;
  const double avg = average_frame_bits();
  const double window = cfg_.window_frames;
  const double cap = capacity_bits();
  d.buffer_bits = buffer_;
  d.key = frame.key;
  if (frame.scene_cut) {
    // A new scene: what the inter model learnt of the old one (screen content's
    // cheap frames, say) would mislead it; it starts again from typical content.
    reset_short_term();
    inter_.reset();
  }

  // Positions count from the last key frame, where a layered encoder restarts its structure.
  if (frame.key) inter_count_ = 0;
  const int position = frame.key ? -1 : static_cast<int>(inter_count_++ % kStructurePeriod);
  const double structure = structure_multiplier(position);
  double target;
  if (frame.key) {
    // A key frame may overflow the bucket; the next frames pay it back.
    target = std::max(cfg_.key_frame_ratio * avg - std::max(0.0, deviation_) / window, avg);
  } else {
    target = (avg - deviation_ / window) * structure;
    const double overflow = buffer_ - cap;
    // The frame must fit the bucket; beyond it, the overflow is paid back over a
    // few frames. (Draining every overflow over several frames, with no bucket
    // bound, was measured on the calibration clips: no better, worse on x265 and
    // libvpx; the drain applies only to what is already beyond the bucket.)
    // A layered encoder's dearer positions (its base layer) get their multiple of
    // the room an average frame has.
    const double room = std::max(1.0, structure);
    target = overflow > 0 ? std::min(target, (avg - overflow / std::max(1.0, cfg_.drain_frames)) * room)
                          : std::min(target, (cap + avg - buffer_) * room);
    target = std::max(target, kMinFrameShare * avg);
  }
  d.target_bits = target;

  // The model sees the frame as a mean position would be.
  const double bpp = target / structure / std::max(1.0, pixels());
  double scale = 1.0;
  double lambda = 0;
  // A still frame (screen content between scrolls, a paused camera, a slideshow)
  // costs almost nothing at the QP of moving frames. It takes its own QP track
  // (still_qp(): down while the budget is unspent, each frame refining the
  // picture), and neither it nor its size teach the model anything (learning from
  // it would walk the moving frames' QP down and the next scroll would arrive at a
  // QP far too low).
  const bool still = !frame.key && last_inter_qp_ >= 0 && frame.complexity < kStillComplexity;
  // Far more (or less) motion than the frame before: let the QP follow at once.
  bool jump = false;
  if (still) {
    // still_qp() below.
  } else if (frame.key) {
    // Intra bits follow spatial activity almost linearly on every clip measured.
    scale = std::clamp(kActivityReference / std::max(frame.activity, 0.5), 0.25, 4.0);
    lambda = intra_.lambda(bpp * scale);
  } else {
    const double c = std::max(frame.complexity, kComplexityFloor);
    if (have_scene_complexity_)
      scale = std::clamp(std::pow(scene_complexity_ / c, cfg_.complexity_gamma), 0.25, 4.0);
    if (previous_complexity_ > 0) {
      const double change = c / previous_complexity_;
      jump = change > kComplexityJump || change < 1.0 / kComplexityJump;
    }
    previous_complexity_ = c;
    lambda = inter_.lambda(bpp * scale);
    // The reference stays put within a scene: the model learns bits at the
    // reference complexity, and a lasting change of motion keeps its ratio until
    // the model has seen frames of it (a moving average would undo the ratio
    // before the first of those frames is reported).
    if (!have_scene_complexity_) {
      scene_complexity_ = c;
      have_scene_complexity_ = true;
    }
  }

  int refine_steps = 0;
  double refine_bits = 0;
  int qp = still ? still_qp(&refine_steps, &refine_bits)
                 : static_cast<int>(std::lround(qp_from_lambda(cfg_.codec, lambda)));
  if (!frame.key && !still && last_inter_qp_ >= 0) {
    const int step = relaxed_frames_ > 0 || jump ? cfg_.qp_step_relaxed : cfg_.qp_step;
    // A frame reported far over its budget lets the QP rise by a relaxed step
    // (the end of a fade at 1080p: VP9 frames at 10x their budget, the QP rising 3
    // a frame while the bucket filled with 2 Mbit).
    // Just after a key frame the QP falls by qp_step only: a far lower QP would
    // re-code the whole picture the key frame just sent.
    const int down = frames_since_key_ < kAfterKeyFrames ? std::min(step, cfg_.qp_step) : step;
    const int up = far_over_ ? cfg_.qp_step_relaxed : step;
    qp = std::clamp(qp, last_inter_qp_ - down, last_inter_qp_ + up);
  }
  if (!frame.key && !still && burst_floor_qp_ >= 0) qp = std::max(qp, burst_floor_qp_);
  qp = clamp_qp(qp);
  if (cfg_.max_psnr_db > 0) {
    const int floor_qp = min_qp_for_psnr(cfg_.codec, cfg_.max_psnr_db);
    if (qp < floor_qp) {
      qp = clamp_qp(floor_qp);
      d.psnr_capped = true;
    }
  }
  d.qp = qp;
  d.lambda = lambda_from_qp(cfg_.codec, qp);
  d.psnr_estimate = estimate_psnr(cfg_.codec, qp);

  d.still = still;
  d.at_min_qp = qp <= lowest_qp();
  if (frame.key) {
    // The inter frames after it start near its QP (and the still ones from it).
    last_inter_qp_ = std::max(last_inter_qp_, qp - kKeyToInterDrop);
    last_still_qp_ = still_floor_qp_ = qp;
    measured_still_qp_ = -1;
    frames_since_key_ = 0;
  } else if (still) {
    last_still_qp_ = qp;
    still_floor_qp_ = still_floor_qp_ >= 0 ? std::min(still_floor_qp_, qp) : qp;
    ++frames_since_key_;
  } else {
    last_inter_qp_ = qp;
    last_still_qp_ = -1;  // the next still frame starts from this QP,
    still_floor_qp_ = qp; // and the picture has just been coded at it
    measured_still_qp_ = -1;
    ++frames_since_key_;
  }
  if (relaxed_frames_ > 0) --relaxed_frames_;
  const bool fresh = fresh_frames_ > 0;
  if (fresh_frames_ > 0) --fresh_frames_;

  if (burst_floor_qp_ >= 0 && ++burst_frames_ % kBurstEaseFrames == 0) --burst_floor_qp_;
  // Until its size is known the frame counts with its budget (a refinement with
  // what it is expected to cost, if more).
  const double accounted = std::max(target, refine_bits);
  buffer_ = std::max(0.0, buffer_ + accounted - avg);
  deviation_ = std::clamp(deviation_ + accounted - avg, -kCreditWindows * window * avg, 2.0 * window * avg);
  pending_.push_back({frame.id, target, d.lambda, scale, bpp * scale, qp, frame.key, fresh, position, structure, !still, still,
                      refine_steps, accounted});
  if (pending_.size() > kMaxPending) pending_.pop_front();
  return d;
}

std::optional<FrameReport> RateController::on_encoded(uint64_t id, double bits, std::optional<bool> coded_as_key,
                                                     bool qp_applied) {
  auto it = std::find_if(pending_.begin(), pending_.end(), [id](const Pending& p) { return p.id == id; });
  if (it == pending_.end()) return std::nullopt;
  const Pending p = *it;
  pending_.erase(it);

  const double avg = average_frame_bits();
  const double window = cfg_.window_frames;
  const double err = bits - p.accounted;
  // Only where the encoder holds frames (decided, not reported: the QP had moved
  // on before this report); an encoder that reports at once is followed by the model.
  // Against the position's share once the structure is known; before, a frame
  // may cost kEarlyBurstRoom times what the bucket allows an average one (a layered
  // encoder's base layer does) before it counts: without a floor in the first
  // frames SVT-AV1 on grain (docs/examples/live_8k_hdr.c's source) spent 1.8x.
  const double burst_room = structure_seen_[p.position >= 0 ? p.position : 0] >= kStructureKnown ? p.structure
                                                                                               : kEarlyBurstRoom;
  if (qp_applied && !p.key && !p.still && bits > kBurstShares * avg * burst_room && !pending_.empty()) {
    burst_floor_qp_ = std::max(burst_floor_qp_, p.qp + 1);
    burst_frames_ = 0;
  }
  if (!p.key && p.refine_steps == 0) far_over_ = bits > kFarOverRatio * std::max(p.target_bits, 1.0);
  if (p.refine_steps > 0) {
    measured_still_qp_ = measured_still_qp_ < 0 ? p.qp : std::min(measured_still_qp_, p.qp);
    // What one step of refinement cost, brought to QP 0 (averaged: pictures differ).
    const double per_step = std::max(bits / p.refine_steps, 1.0);
    refine_log_ += kRefineLearn * (std::log(per_step) + (p.qp + 0.5 * (p.refine_steps - 1)) / qp_per_ln() - refine_log_);
  } else if (p.still) {
    // Refinement bursts say nothing about what the picture costs at its floor.
    last_still_ratio_ = bits / std::max(p.target_bits, 1.0);
    last_still_report_qp_ = p.qp;
    still_report_fresh_ = true;
    measured_still_qp_ = measured_still_qp_ < 0 ? p.qp : std::min(measured_still_qp_, p.qp);
  }
  buffer_ = std::max(0.0, buffer_ + err);
  deviation_ = std::clamp(deviation_ + err, -kCreditWindows * window * avg, 2.0 * window * avg);

  const double bpp_actual = bits / std::max(1.0, pixels()) * p.bpp_scale / p.structure;
  const bool as_decided = qp_applied && (!coded_as_key || *coded_as_key == p.key) && p.learn;
  if (as_decided && p.position >= 0 && bits > 0) {
    // What the model expected at this λ, before it learns from the frame.
    const auto& m = inter_.params();
    const double expected_bpp = std::pow(p.lambda / m.alpha, 1.0 / m.beta) / p.bpp_scale;
    const double e = std::log(bits / std::max(1.0, pixels()) / std::max(expected_bpp, 1e-9));
    const double weight = std::max(kStructureWeight, 1.0 / ++structure_seen_[p.position]);
    structure_log_[p.position] += weight * (e - structure_log_[p.position]);
  }
  // A frame far off its budget means the content moved away from what the model
  // knows: learn faster from it than from the usual per-frame noise.
  const bool far_off = std::fabs(std::log(std::max(bits, 1.0) / std::max(p.target_bits, 1.0))) > kFarOffLog;
  const double gain = p.fresh ? kFreshGain : far_off ? kFarOffGain : kSteadyGain;
  if (as_decided)
    (p.key ? intra_ : inter_).update(p.lambda, bpp_actual, p.bpp_target, gain);

  FrameReport r;
  r.id = id;
  r.bits = bits;
  r.target_bits = p.target_bits;
  r.qp = p.qp;
  r.lambda = p.lambda;
  r.key = coded_as_key.value_or(p.key);
  return r;
}

}  // namespace ccm::rc
