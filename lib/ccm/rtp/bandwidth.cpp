#include "rtp/bandwidth.h"

#include <algorithm>
#include <cmath>

namespace ccm::rtp {

std::optional<uint64_t> parse_remb(std::span<const uint8_t> fci) {
  // 'R' 'E' 'M' 'B', number of SSRCs, BR exponent (6 bits) + mantissa (18 bits), SSRCs.
  if (fci.size() < 8 || fci[0] != 'R' || fci[1] != 'E' || fci[2] != 'M' || fci[3] != 'B')
    return std::nullopt;
  const unsigned exponent = fci[5] >> 2;
  const uint64_t mantissa = (static_cast<uint64_t>(fci[5] & 0x03) << 16) |
                            (static_cast<uint64_t>(fci[6]) << 8) | fci[7];
  if (exponent > 45) return std::nullopt;  // beyond 2^63: not a bitrate
  return mantissa << exponent;
}

BandwidthController::BandwidthController(BandwidthConfig config)
    : config_(config), target_(std::clamp(config.start_bps, config.min_bps, config.max_bps)) {}

BandwidthDecision BandwidthController::update(const LinkReport& r, double pixels_per_second) {
  BandwidthDecision d;
  d.reason = last_time_ < 0 ? "start" : "hold";
  const double dt = last_time_ < 0 ? 0 : std::max(0.0, r.time_s - last_time_);
  last_time_ = r.time_s;

  if (r.rtt_ms && *r.rtt_ms >= 0) rtts_.emplace_back(r.time_s, *r.rtt_ms);
  while (!rtts_.empty() && rtts_.front().first < r.time_s - config_.min_rtt_window_s) rtts_.pop_front();
  double floor_ms = 0;
  if (!rtts_.empty()) {
    floor_ms = std::min_element(rtts_.begin(), rtts_.end(),
                                [](auto& a, auto& b) { return a.second < b.second; })->second;
  }
  const double rtt_ms = r.rtt_ms.value_or(floor_ms);
  d.queue_ms = std::max(0.0, rtt_ms - floor_ms);
  const double loss = std::clamp(r.loss.value_or(0.0), 0.0, 1.0);
  // A receiver report describes about the last second: the rate it answers for
  // is the one sent before this report's window.
  const double answered_bps = previous_sent_ > 0 ? previous_sent_ : r.sent_bps;
  previous_sent_ = r.sent_bps;

  // Both signals may fire at once (a full tbf queue delays and drops). The new
  // target is what the link carried (TWCC's received rate, else REMB, else what
  // arrived: answered rate x (1 - loss)) with a margin.
  // Then the target holds until a report describes the lowered rate: reports lag
  // by a second, and acting on each stale one would cut again and again.
  const bool lossy = r.fresh_loss && loss > config_.loss_high;
  const bool queued = r.fresh_rtt && d.queue_ms > config_.queue_high_ms;
  const bool holding = r.time_s < hold_until_;
  if ((lossy || queued) && !holding) {
    double next = target_;
    if (r.received_bps && *r.received_bps > 0) {
      // The receiver said what arrived: that is the capacity, loss included. The
      // encoder gets its share of it: media over all that was sent (retransmissions
      // of lost packets take the rest, and under heavy loss they are most of it).
      double share = 1.0;
      if (r.wire_sent_bps && *r.wire_sent_bps > 0 && r.sent_bps > 0)
        share = std::clamp(r.sent_bps / *r.wire_sent_bps, 0.5, 1.0);
      next = config_.backoff * *r.received_bps * share;
    } else {
      if (lossy) next = std::min(next, target_ * (1.0 - 0.5 * loss));
      const bool remb = r.remb_bps && *r.remb_bps > 0;
      const double carried = remb ? *r.remb_bps : answered_bps * (1.0 - loss);
      if (carried > 0) next = std::min(next, config_.backoff * carried);
      // Without the receiver's word the carried rate is our own sent rate, which
      // a short window can get far wrong (a burst, a stall): never more than halve.
      if (!remb) next = std::max(next, 0.5 * target_);
    }
    if (next < target_) {
      target_ = next;
      hold_until_ = r.time_s + std::max(config_.hold_seconds, 2 * rtt_ms / 1000.0);
      d.reason = queued ? "delay" : "loss";
    }
  } else if (!holding && loss < config_.loss_low && d.queue_ms < config_.queue_low_ms && dt > 0 &&
             r.sent_bps >= 0.7 * target_) {
    // Grow only while the encoder spends what it is given: a target far above
    // what easy content uses would turn into a burst when the content gets hard.
    target_ *= std::pow(1.0 + config_.increase, dt);
    d.reason = "probe";
  }
  // REMB is the receiver's own estimate, but it only grows with what it receives:
  // a hard ceiling would keep a sender that backed off there for good.
  if (r.remb_bps && *r.remb_bps > 0 && target_ > config_.remb_headroom * *r.remb_bps) {
    target_ = config_.remb_headroom * *r.remb_bps;
    d.reason = "remb";
  }
  target_ = std::clamp(target_, config_.min_bps, config_.max_bps);

  if (pixels_per_second > 0) {
    const double pixels_here = pixels_per_second / std::pow(2.0, step_);
    const double pixels_up = pixels_here * 2;
    if (step_ < config_.max_resolution_step && target_ < config_.bps_per_pixel_low * pixels_here) {
      roomy_since_ = -1;
      if (scarce_since_ < 0) scarce_since_ = r.time_s;
      if (r.time_s - scarce_since_ >= config_.scarcity_seconds) {
        ++step_;
        scarce_since_ = -1;
      }
    } else if (step_ > 0 && target_ > config_.bps_per_pixel_high * pixels_up) {
      scarce_since_ = -1;
      if (roomy_since_ < 0) roomy_since_ = r.time_s;
      if (r.time_s - roomy_since_ >= config_.recovery_seconds) {
        --step_;
        roomy_since_ = -1;
      }
    } else {
      scarce_since_ = roomy_since_ = -1;
    }
  }
  d.target_bps = target_;
  d.resolution_step = step_;
  return d;
}

}  // namespace ccm::rtp
