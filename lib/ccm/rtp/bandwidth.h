// Sender-side bandwidth estimation from what a GStreamer 1.22 WebRTC sender can
// see: RTCP receiver reports (loss, jitter, round-trip time) through webrtcbin's
// stats, REMB from the receiver, and the rate actually sent. Pure C++: the
// demo (tools/webrtc) feeds it and turns its target into ccm-bandwidth-estimate
// events for ccmencbin; tests drive it with synthetic links.
//
// Delay: queueing shows as RTT above the smallest RTT seen lately. Above
// `queue_high_ms` the target falls to `backoff` x the rate the receiver gets
// (TWCC's received rate, else REMB, else sent x (1 - loss)): what the link carries now. Below
// `queue_low_ms` and without loss the target grows by `increase` per second.
// Loss: above `loss_high` the target falls by half the loss fraction (GCC's rule).
// Only fresh feedback decreases, then the target holds until a report describes the
// new rate; without a received rate from the receiver, one decrease at most halves.
// REMB: a ceiling with headroom (1.5 x), and what the link carried when it
// congests. Under a low target for `scarcity_seconds` the picture steps down one
// level (each halves the pixel rate: resolution twice, then frame rate, as
// webrtcsink does); after `recovery_seconds` of room for the next level up, back up.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>

namespace ccm::rtp {

// REMB (draft-alvestrand-rmcat-remb) from the FCI of a PSFB/AFB packet: bit/s.
std::optional<uint64_t> parse_remb(std::span<const uint8_t> fci);

struct BandwidthConfig {
  double start_bps = 2e6;
  double min_bps = 150e3;
  double max_bps = 20e6;
  double queue_high_ms = 60;   // RTT above the floor that means a queue is building
  double queue_low_ms = 20;    // below: no queue
  double loss_high = 0.10;
  double loss_low = 0.02;
  double backoff = 0.85;
  double increase = 0.15;      // per second, multiplicative, when the link has room
  double min_rtt_window_s = 10;
  double remb_headroom = 1.5;  // target <= this x REMB
  double hold_seconds = 1.5;   // after a decrease: until a report describes the new rate
  // Steps: step k has (1/2)^k of the pixel rate (the demo: 1 and 2 halve the
  // pixels, 3 also halves the frame rate); a step is taken after `scarcity_seconds`
  // with the target below `bps_per_pixel_low` x pixels x fps.
  int max_resolution_step = 3;
  double scarcity_seconds = 3;
  double recovery_seconds = 8;
  double bps_per_pixel_low = 0.08;   // bits per pixel: 2.2 Mbit/s for 1280x720 at 30 fps
  double bps_per_pixel_high = 0.12;  // room for the next step up (with margin)
};

struct LinkReport {
  double time_s = 0;                 // monotonic
  double sent_bps = 0;               // measured since the previous report
  std::optional<double> rtt_ms;      // from the last receiver report
  std::optional<double> loss;        // fraction lost, 0..1
  std::optional<double> jitter_ms;
  std::optional<double> remb_bps;
  std::optional<double> received_bps;  // what the receiver got (TWCC feedback), when known
  // Everything that went on the wire for this stream (TWCC's sent rate: media,
  // retransmissions, header extensions), when known. Retransmissions for a lossy
  // link share the capacity with the encoder's output.
  std::optional<double> wire_sent_bps;
  // Whether loss / RTT are new: webrtcbin's stats repeat the last receiver report
  // until the next one, and an RTT only changes when a receiver report answers a
  // newer sender report (with few SRs, RRs keep quoting one that crossed a full
  // queue). Acting twice on one observation cuts the rate twice for one event.
  bool fresh_loss = true;
  bool fresh_rtt = true;
};

struct BandwidthDecision {
  double target_bps = 0;
  int resolution_step = 0;  // 0 = full size
  const char* reason = "";  // what moved the target: "start", "delay", "loss", "remb", "probe", "hold"
  double queue_ms = 0;      // RTT above the floor
};

class BandwidthController {
 public:
  explicit BandwidthController(BandwidthConfig config = {});
  // `pixels_per_second` at full size (width x height x fps) drives the resolution steps.
  BandwidthDecision update(const LinkReport& report, double pixels_per_second);
  double target_bps() const { return target_; }
  int resolution_step() const { return step_; }

 private:
  BandwidthConfig config_;
  double target_ = 0;
  int step_ = 0;
  double last_time_ = -1;
  double hold_until_ = -1;
  double previous_sent_ = 0;
  double scarce_since_ = -1;
  double roomy_since_ = -1;
  std::deque<std::pair<double, double>> rtts_;  // (time, rtt ms) inside the window
};

}  // namespace ccm::rtp
