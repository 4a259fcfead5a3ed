// QpRateController (lib/ccm/rc/qp_rate_controller.h), ccmsvtav1enc's frame-level
// rate control, alone: pure C++, a synthetic encoder, no GStreamer.
#include "rc/qp_rate_controller.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

constexpr int kFps = 25;

// An encoder whose frames cost C * 2^(-qp / 6.5) bits (steeper than the controller's
// model), referenced and non-referenced pictures alternating at 3:1, key frames 4x,
// packets coming out one picture late: the controller still lands each second on
// the target, follows a 4x cut within the next second, and never moves the QP of
// neighbouring inter pictures by more than 8.
TEST(QpRateController, FollowsABitrateStepOnASyntheticEncoder) {
  ccm::rc::QpRateController::Params params;
  params.bitrate_bps = 4'000'000;
  params.fps = 25;
  params.pixels = 1920 * 1080;
  ccm::rc::QpRateController rc(params);
  auto cost = [](int n, bool key, int qp) {
    const double c = 6e6 * (key ? 4.0 : (n % 2 ? 0.5 : 1.5));
    return c * std::exp2(-qp / 6.5);
  };
  std::vector<double> per_second(10, 0.0);
  struct Sent { int n; bool key; int qp; };
  std::vector<Sent> inside;
  int last_inter_qp = -1, max_step = 0;
  for (int n = 0; n < 10 * kFps; n++) {
    if (n == 4 * kFps) {
      params.bitrate_bps = 1'000'000;
      rc.set_params(params);
    }
    const bool key = n % 125 == 0;
    const int qp = rc.pick_qp(key);
    rc.on_sent(key, qp);
    if (!key) {
      if (last_inter_qp >= 0) max_step = std::max(max_step, std::abs(qp - last_inter_qp));
      last_inter_qp = qp;
    }
    inside.push_back({n, key, qp});
    if (inside.size() > 1) {  // the library holds one picture
      const Sent s = inside.front();
      inside.erase(inside.begin());
      const double bits = cost(s.n, s.key, s.qp);
      rc.on_encoded(bits, s.key, s.qp);
      per_second[s.n / kFps] += bits / 1000;
    }
  }
  for (int s = 0; s < 10; s++) std::printf("[ synthetic ] second %d: %.0f kbit/s\n", s, per_second[s]);
  for (int s = 1; s < 4; s++) EXPECT_NEAR(per_second[s], 4000, 400) << "second " << s;
  for (int s = 4; s < 9; s++) EXPECT_NEAR(per_second[s], 1000, 150) << "second " << s;  // from the change on
  EXPECT_LE(max_step, 8);
}

// The QP stays inside the range it is given, and a flush forgets what was inside.
TEST(QpRateController, StaysInItsRangeAndForgetsOnFlush) {
  ccm::rc::QpRateController::Params params;
  params.bitrate_bps = 50'000;  // far too little for 1080p: the QP goes to its ceiling
  params.fps = kFps;
  params.min_qp = 10;
  params.max_qp = 50;
  ccm::rc::QpRateController rc(params);
  for (int n = 0; n < 3 * kFps; n++) {
    const bool key = n == 0;
    const int qp = rc.pick_qp(key);
    EXPECT_GE(qp, 10);
    EXPECT_LE(qp, 50);
    rc.on_sent(key, qp);
    rc.on_encoded(rc.predicted_bits(key, qp) * 3, key, qp);
  }
  EXPECT_EQ(rc.pick_qp(false), 50);
  rc.on_sent(false, 50);
  rc.on_sent(false, 50);
  EXPECT_EQ(rc.in_flight(), 2u);
  rc.drop_in_flight();
  EXPECT_EQ(rc.in_flight(), 0u);
}

}  // namespace
