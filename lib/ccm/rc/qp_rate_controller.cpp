#include "rc/qp_rate_controller.h"

#include <algorithm>
#include <cmath>

namespace ccm::rc {

namespace {

// QP steps that halve the size of a frame. Measured on SVT-AV1 1.4.1 (1080p street
// clip, low delay, QP 20-58 in use_qp_file mode): inter frames halve every 7-9 QP,
// key frames every ~13. The learnt C absorbs what the slope gets wrong.
constexpr double kInterSlope = 7.0;
constexpr double kKeySlope = 12.0;
// First guesses in bits per luma sample at QP 30, before anything was measured
// (camera content at 1080p: 0.83 for a key frame, 0.23 for an inter frame).
constexpr double kKeyBppAt30 = 0.6;
constexpr double kInterBppAt30 = 0.12;
// A key frame may cost this many frame budgets; the buffer pays it back.
constexpr double kKeyBoost = 5.0;
// Weight of the newest frame in the model average: inter frames alternate between
// referenced and non-referenced pictures in SVT's low-delay structure, a slow
// average sees their mean.
constexpr double kInterLearnRate = 0.15;
constexpr double kKeyLearnRate = 0.5;
// Target per frame stays within this range of the budget.
constexpr double kMinTargetShare = 0.15;
constexpr double kMaxTargetShare = 3.0;

double model_scale(double bits, int qp, double slope) { return bits * std::exp2(qp / slope); }

}  // namespace

QpRateController::QpRateController(const Params& params) : params_(params) {
  c_key_ = model_scale(kKeyBppAt30 * params.pixels, 30, kKeySlope);
  c_inter_ = model_scale(kInterBppAt30 * params.pixels, 30, kInterSlope);
}

void QpRateController::set_params(const Params& params) {
  // A new size makes the learnt model wrong by the ratio of the areas.
  if (params.pixels != params_.pixels && params_.pixels > 0) {
    c_key_ *= params.pixels / params_.pixels;
    c_inter_ *= params.pixels / params_.pixels;
  }
  // The buffer holds time, not bits: what was 100 ms over budget at the old rate
  // is 100 ms over at the new one (a VBV is sized in milliseconds too). Kept in
  // bits, a cut to a quarter would repay the old excess four times as long.
  if (params.bitrate_bps != params_.bitrate_bps && params_.bitrate_bps > 0)
    buffer_ *= params.bitrate_bps / params_.bitrate_bps;
  params_ = params;
}

double QpRateController::predicted_bits(bool key, int qp) const {
  return key ? c_key_ * std::exp2(-qp / kKeySlope) : c_inter_ * std::exp2(-qp / kInterSlope);
}

double QpRateController::buffer_bits() const {
  double b = buffer_;
  for (const Pending& p : in_flight_) b += p.predicted - p.budget;
  return b;
}

int QpRateController::pick_qp(bool key) const {
  const double budget = frame_budget();
  const double reaction_frames = std::max(1.0, params_.reaction_s * params_.fps);
  double target = budget - buffer_bits() / reaction_frames;
  target = std::clamp(target, kMinTargetShare * budget, kMaxTargetShare * budget);

  auto qp_for = [](double c, double bits, double slope) { return slope * std::log2(c / bits); };
  double inter = qp_for(c_inter_, target, kInterSlope);
  if (last_base_qp_ >= 0) {
    const bool hold = buffer_bits() > params_.hold_over_s * params_.bitrate_bps;
    const int down = hold ? 0 : params_.max_down_step;
    inter = std::clamp(inter, double(last_base_qp_ - down), double(last_base_qp_ + params_.max_up_step));
  }
  double qp = inter;
  if (key) {
    qp = qp_for(c_key_, kKeyBoost * target, kKeySlope);
    // Until inter frames were seen, their QP says nothing: trust the key model.
    if (inter_learnt_) qp = std::clamp(qp, inter - 10, inter + 2);
  }
  return std::clamp(int(std::lround(qp)), params_.min_qp, params_.max_qp);
}

void QpRateController::on_sent(bool key, int qp, int base_qp) {
  in_flight_.push_back({key, qp, predicted_bits(key, qp), frame_budget()});
  if (!key) last_base_qp_ = base_qp >= 0 ? base_qp : qp;
}

void QpRateController::on_encoded(double bits, bool key, int qp) {
  // Pictures sent before a bitrate change are paid from the budget of their time.
  double budget = frame_budget();
  if (!in_flight_.empty()) {
    budget = in_flight_.front().budget;
    in_flight_.pop_front();
  }
  buffer_ += bits - budget;
  // Saved bits are not hoarded beyond a fraction of the reaction window: a quiet
  // scene must not buy a burst later that a live receiver cannot absorb.
  buffer_ = std::max(buffer_, -0.5 * params_.reaction_s * params_.bitrate_bps);

  bits = std::max(bits, 8.0);
  if (key) {
    const double c = model_scale(bits, qp, kKeySlope);
    c_key_ = key_learnt_ ? c_key_ + kKeyLearnRate * (c - c_key_) : c;
    if (!inter_learnt_) {
      // The first inter frames are priced from the key frame (a fifth of its size
      // at the same QP) rather than from a resolution-only guess.
      c_inter_ = model_scale(bits * 0.2, qp, kInterSlope);
    }
    key_learnt_ = true;
  } else {
    const double c = model_scale(bits, qp, kInterSlope);
    c_inter_ += (inter_learnt_ ? kInterLearnRate : 0.5) * (c - c_inter_);
    inter_learnt_ = true;
  }
}

}  // namespace ccm::rc
