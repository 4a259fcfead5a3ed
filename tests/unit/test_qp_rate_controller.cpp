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
// the target, follows a 4x cut within the next second, and moves the QP of
// neighbouring inter pictures down by at most 1 and up by at most 4.
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
  int last_inter_qp = -1, max_up = 0, max_down = 0;
  for (int n = 0; n < 10 * kFps; n++) {
    if (n == 4 * kFps) {
      params.bitrate_bps = 1'000'000;
      rc.set_params(params);
    }
    const bool key = n % 125 == 0;
    const int qp = rc.pick_qp(key);
    rc.on_sent(key, qp);
    if (!key) {
      if (last_inter_qp >= 0) {
        max_up = std::max(max_up, qp - last_inter_qp);
        max_down = std::max(max_down, last_inter_qp - qp);
      }
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
  EXPECT_LE(max_up, 4);
  EXPECT_LE(max_down, 1);
}

// Screen content: 47 pictures that cost next to nothing, then three that cost 300x
// as much at the same QP (a page scrolls), again and again. A controller that
// lowers the QP on the cheap pictures meets every scroll at a low QP and stays
// over budget (without the hold: 2.7x the target over 20 s; ccmsvtav1enc on the
// validation screen clip 1.3-1.9x); held while over budget, the QP stays where the
// scrolls fit (1.05x).
double screen_content_rate(const ccm::rc::QpRateController::Params& params) {
  ccm::rc::QpRateController rc(params);
  auto cost = [](int n, bool key, int qp) {
    const double c = key ? 2e7 : (n % 50 < 3 ? 6e7 : 2e5);
    return c * std::exp2(-qp / 7.0);
  };
  double bits = 0;
  const int frames = 20 * kFps;
  for (int n = 0; n < frames; n++) {
    const bool key = n == 0;
    const int qp = rc.pick_qp(key);
    rc.on_sent(key, qp);
    const double b = cost(n, key, qp);
    rc.on_encoded(b, key, qp);
    if (n >= kFps) bits += b;  // the first second holds the key frame
  }
  return bits / (frames - kFps) * kFps / params.bitrate_bps;
}

TEST(QpRateController, HoldsTheQpWhileOverBudgetOnScreenContent) {
  ccm::rc::QpRateController::Params params;
  params.bitrate_bps = 300'000;
  params.fps = kFps;
  params.pixels = 640 * 360;
  const double held = screen_content_rate(params);
  ccm::rc::QpRateController::Params loose = params;
  loose.hold_over_s = 1e9;
  const double unheld = screen_content_rate(loose);
  std::printf("[ screen ] rate/target held %.2f, as before %.2f\n", held, unheld);
  EXPECT_LT(held, 1.1);
  EXPECT_GT(held, 0.8);
  EXPECT_GT(unheld, held);
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
