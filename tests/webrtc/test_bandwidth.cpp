// Bandwidth controller on a simulated bottleneck (a token bucket with a queue, as
// tc tbf makes): follows a capacity drop within a few reports, comes back up,
// obeys REMB, steps resolution down under sustained scarcity and back up.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "rtp/bandwidth.h"

using namespace ccm::rtp;

namespace {

// A link with `capacity` bit/s, a queue of `queue_bits` and a base RTT; the sender
// sends what the controller targets (the encoder meets its rate).
struct Link {
  double capacity = 8e6;
  double queue_limit_bits = 8e6 * 0.2;  // 200 ms of queue at 8 Mbit/s
  double base_rtt_ms = 2;
  double queued = 0;

  LinkReport step(double t, double dt, double sent_bps) {
    LinkReport r;
    r.time_s = t;
    r.sent_bps = sent_bps;
    const double in = sent_bps * dt;
    const double out = capacity * dt;
    queued += in - out;
    double lost = 0;
    if (queued > queue_limit_bits) {
      lost = queued - queue_limit_bits;
      queued = queue_limit_bits;
    }
    queued = std::max(0.0, queued);
    r.loss = in > 0 ? lost / in : 0;
    r.rtt_ms = base_rtt_ms + queued / capacity * 1000;
    return r;
  }
};

}  // namespace

TEST(Remb, ParsesMantissaAndExponent) {
  // 'REMB', 1 SSRC, exponent 3, mantissa 250000 -> 2,000,000 bit/s.
  const uint32_t mantissa = 250000;
  const uint8_t fci[] = {'R', 'E', 'M', 'B', 1, static_cast<uint8_t>((3 << 2) | (mantissa >> 16)),
                         static_cast<uint8_t>(mantissa >> 8), static_cast<uint8_t>(mantissa), 0, 0, 0, 1};
  auto bps = parse_remb(fci);
  ASSERT_TRUE(bps);
  EXPECT_EQ(*bps, 2000000u);
  const uint8_t not_remb[] = {'R', 'E', 'M', 'X', 1, 0, 0, 1};
  EXPECT_FALSE(parse_remb(not_remb));
  EXPECT_FALSE(parse_remb(std::span<const uint8_t>(fci, 6)));
}

TEST(BandwidthController, FollowsCapacityDropAndRecovers) {
  BandwidthConfig config;
  config.start_bps = 6e6;
  BandwidthController c(config);
  Link link;
  const double dt = 0.5;  // about how often RTCP arrives from Chrome
  double sent = config.start_bps;
  double under_capacity_at = -1;
  double max_after_drop = 0;
  std::optional<LinkReport> last;
  for (double t = 0; t < 60; t += dt) {
    if (t >= 10 && t < 30) link.capacity = 2e6;
    else link.capacity = 8e6;
    // Receiver reports describe the previous interval (RTCP every ~second).
    auto now = link.step(t, dt, sent);
    LinkReport report = last.value_or(now);
    report.time_s = t;
    report.sent_bps = sent;
    last = now;
    auto d = c.update(report, 0);
    sent = d.target_bps;
    if (t < 10) {  // braces: gtest's macros end in an if/else
      EXPECT_LE(sent, 8e6 * 1.25) << t;  // finds the 8 Mbit/s ceiling (probing overshoots a little)
    }
    if (t >= 10 && under_capacity_at < 0 && sent < 2e6) under_capacity_at = t;
    if (t >= 15 && t < 30) max_after_drop = std::max(max_after_drop, sent);
    if (t >= 58) {
      EXPECT_GT(sent, 4e6) << "recovers after the capacity comes back";
    }
  }
  ASSERT_GE(under_capacity_at, 10);
  EXPECT_LE(under_capacity_at - 10, 4.0) << "under the new capacity within 4 s";
  EXPECT_LE(max_after_drop, 2.3e6) << "stays near the capacity while it is low";
}

TEST(BandwidthController, RembIsACeilingAndLossCuts) {
  BandwidthController c;  // starts at 2 Mbit/s
  LinkReport r;
  r.time_s = 0;
  r.sent_bps = 2e6;
  r.rtt_ms = 5;
  r.remb_bps = 1e6;
  auto d = c.update(r, 0);
  EXPECT_DOUBLE_EQ(d.target_bps, 1.5e6) << "REMB with 1.5x headroom";
  EXPECT_STREQ(d.reason, "remb");
  r.time_s = 1;
  r.loss = 0.3;
  r.sent_bps = 1.5e6;
  d = c.update(r, 0);
  // Congestion: the target falls to the receiver's estimate with a margin.
  EXPECT_NEAR(d.target_bps, 0.85 * 1e6, 1);
  EXPECT_STREQ(d.reason, "loss");
  r.remb_bps.reset();
  r.time_s = 3;
  r.sent_bps = 0.85e6;
  d = c.update(r, 0);
  EXPECT_NEAR(d.target_bps, 0.85e6 * (1 - 0.5 * 0.3), 1) << "without REMB: GCC's loss rule";
}

TEST(BandwidthController, ResolutionStepsDownUnderScarcityAndBackUp) {
  BandwidthConfig config;
  config.start_bps = 1e6;
  config.max_bps = 10e6;
  BandwidthController c(config);
  const double pps = 1280.0 * 720 * 30;  // 0.08 bpp = 2.2 Mbit/s
  LinkReport r;
  r.rtt_ms = 5;
  int step = 0;
  for (double t = 0; t < 3.9; t += 0.5) {
    r.time_s = t;
    r.sent_bps = 1e6;
    r.remb_bps = 1e6;
    step = c.update(r, pps).resolution_step;
    if (t < 2.9) {
      EXPECT_EQ(step, 0) << t;
    }
  }
  EXPECT_EQ(step, 1) << "one step after 3 s of scarcity";
  // Plenty of room (REMB gone, target grows to the max): back to full size.
  r.remb_bps.reset();
  for (double t = 4; t < 80; t += 0.5) {
    r.time_s = t;
    r.sent_bps = c.target_bps();
    step = c.update(r, pps).resolution_step;
  }
  EXPECT_EQ(step, 0);
}

TEST(BandwidthController, ActsOnceOnARepeatedReportAndAtMostHalves) {
  BandwidthController c;  // starts at 2 Mbit/s
  LinkReport r;
  r.time_s = 0;
  r.sent_bps = 2e6;
  r.rtt_ms = 5;
  c.update(r, 0);
  r.time_s = 1;
  r.loss = 0.5;
  r.sent_bps = 100e3;  // a stalled window: what it says is not the link
  auto d = c.update(r, 0);
  EXPECT_DOUBLE_EQ(d.target_bps, 1e6) << "at most halved";
  r.time_s = 2;
  r.fresh_loss = r.fresh_rtt = false;  // the same receiver report again
  d = c.update(r, 0);
  EXPECT_DOUBLE_EQ(d.target_bps, 1e6);
}

TEST(BandwidthController, TwccReceivedRateSetsTheTargetInOneStep) {
  BandwidthConfig config;
  config.start_bps = 8e6;
  BandwidthController c(config);
  LinkReport r;
  r.time_s = 0;
  r.sent_bps = 8e6;
  r.rtt_ms = 2;
  c.update(r, 0);
  r.time_s = 0.5;
  r.rtt_ms = 110;
  r.loss = 0.9;
  r.received_bps = 1.9e6;  // what the browser got through a 2 Mbit/s link
  auto d = c.update(r, 0);
  EXPECT_NEAR(d.target_bps, 0.85 * 1.9e6, 1) << "straight to what arrived, no halving steps";
  EXPECT_STREQ(d.reason, "delay");
}

TEST(BandwidthController, RetransmissionsTakeTheirShareOfWhatArrives) {
  BandwidthConfig config;
  config.start_bps = 2e6;
  BandwidthController c(config);
  LinkReport r;
  r.time_s = 0;
  r.sent_bps = 1.6e6;
  r.rtt_ms = 2;
  c.update(r, 0);
  r.time_s = 0.5;
  r.rtt_ms = 110;          // a standing queue
  r.loss = 0.5;
  r.received_bps = 1.9e6;
  r.wire_sent_bps = 3.2e6;  // half of what went out were retransmissions
  auto d = c.update(r, 0);
  EXPECT_NEAR(d.target_bps, 0.85 * 1.9e6 * 0.5, 1);
}
