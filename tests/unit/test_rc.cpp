// Rate control: λ <-> QP per codec, the R-λ model's updates, and the controller
// converging on synthetic R(QP) curves (encoders simulated as
// ln bpp = A - B*QP + 0.5*ln(complexity) + noise), following rate steps, keeping
// the latency bucket, and honouring the PSNR cap.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>
#include <vector>

#include "rc/controller.h"
#include "rc/rlambda.h"

using namespace ccm::rc;

TEST(RLambda, QpLambdaLinesAreInverseAndMonotone) {
  for (Codec c : ccm::catalog::kAllCodecs) {
    const auto range = qp_range(c);
    EXPECT_EQ(range.min, 0);
    EXPECT_EQ(range.max, (c == Codec::H265 || c == Codec::H264) ? 51 : 63);
    double prev = 0;
    for (int qp = range.min; qp <= range.max; ++qp) {
      const double l = lambda_from_qp(c, qp);
      EXPECT_GT(l, prev);
      prev = l;
      EXPECT_NEAR(qp_from_lambda(c, l), qp, 1e-9);
    }
    // The PSNR estimate falls with QP, and the cap's QP is the first one at or below it.
    EXPECT_GT(estimate_psnr(c, 10), estimate_psnr(c, 40));
    const int q = min_qp_for_psnr(c, 40.0);
    EXPECT_LE(estimate_psnr(c, q), 40.0 + 1e-9);
    if (q > range.min) {
      EXPECT_GT(estimate_psnr(c, q - 1), 40.0);
    }
  }
}

TEST(RLambda, UpdateMovesTowardsWhatFramesCost) {
  RLambdaModel m;
  const double bpp = 0.1;
  const double l = m.lambda(bpp);
  // The frame cost twice its target: the same λ must now be predicted for more
  // bits, i.e. for the old target a higher λ (coarser quantizer).
  m.update(l, 2 * bpp, bpp);
  EXPECT_GT(m.lambda(bpp), l);
  // And the other way.
  RLambdaModel n;
  n.update(l, bpp / 2, bpp);
  EXPECT_LT(n.lambda(bpp), l);
  // Bounds hold whatever comes in.
  RLambdaModel w;
  for (int i = 0; i < 1000; ++i) w.update(1000, 1e-9, 1.0, 1.0);
  EXPECT_GE(w.params().alpha, 0.05);
  EXPECT_LE(w.params().alpha, 500);
  EXPECT_GE(w.params().beta, -2.5);
  EXPECT_LE(w.params().beta, -0.7);
}

namespace {

// An encoder whose frames cost exp(A - B*QP) bits per pixel, times a content term.
struct SyntheticEncoder {
  double A, B;
  double noise = 0.08;  // lognormal sigma per frame
  std::mt19937 rng{11};
  double bits(int qp, double complexity, double pixels) {
    // No draw without noise: a zero sigma is outside normal_distribution's domain (the
    // assertion libstdc++ 14 checks in Debian 13's build).
    const double e = noise > 0 ? std::normal_distribution<double>(0, noise)(rng) : 0.0;
    return pixels * std::exp(A - B * qp + 0.5 * std::log(complexity / 4.0) + e);
  }
};

struct Run {
  std::vector<double> bits, targets, rates;
  std::vector<int> qps;
};

// Feeds `frames` frames; rate_at(i) gives the target at frame i; complexity_at(i) the content.
template <typename RateFn, typename CxFn>
Run simulate(RateController& rc, SyntheticEncoder& enc, int frames, RateFn rate_at, CxFn complexity_at,
             int feedback_delay = 0) {
  ::Run run;
  std::deque<std::pair<uint64_t, double>> in_flight;
  const double px = static_cast<double>(rc.config().width) * rc.config().height;
  for (int i = 0; i < frames; ++i) {
    rc.set_target_bitrate(rate_at(i));
    FrameInfo f;
    f.id = static_cast<uint64_t>(i);
    f.complexity = complexity_at(i);
    f.activity = 8;
    f.key = i == 0;
    const auto d = rc.decide(f);
    const double b = enc.bits(d.qp, f.complexity, px) * (f.key ? 5.0 : 1.0);
    in_flight.emplace_back(f.id, b);
    while (static_cast<int>(in_flight.size()) > feedback_delay) {
      EXPECT_TRUE(rc.on_encoded(in_flight.front().first, in_flight.front().second).has_value());
      in_flight.pop_front();
    }
    run.bits.push_back(b);
    run.targets.push_back(d.target_bits);
    run.qps.push_back(d.qp);
    run.rates.push_back(rc.effective_bitrate());
  }
  return run;
}

// |1 s window rate - target| / target for every full window starting at frame >= from.
std::vector<double> window_errors(const Run& r, double fps, int from) {
  const int w = static_cast<int>(std::lround(fps));
  std::vector<double> errs;
  for (int s = from; s + w <= static_cast<int>(r.bits.size()); ++s) {
    double bits = 0, want = 0;
    for (int i = s; i < s + w; ++i) {
      bits += r.bits[i];
      want += r.rates[i] / fps;
    }
    errs.push_back(std::fabs(bits / want - 1.0));
  }
  return errs;
}

double p95(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[static_cast<size_t>(0.95 * (v.size() - 1))];
}

ControllerConfig config(Codec codec, double kbps) {
  ControllerConfig c;
  c.codec = codec;
  c.width = 640;
  c.height = 360;
  c.fps = 30;
  c.target_bps = kbps * 1000;
  c.latency_budget_ms = 100;
  c.window_frames = 30;
  return c;
}

}  // namespace

// Curves far from the calibration (A +-1.5: three times more or fewer bits than
// typical content; B from 0.09 to 0.18 per QP step) on every codec's QP scale.
TEST(Controller, ConvergesOnSyntheticCurves) {
  struct Case {
    Codec codec;
    double A, B;
  };
  const Case cases[] = {{Codec::H265, 2.5, 0.15}, {Codec::H265, 0.5, 0.12}, {Codec::H265, 4.0, 0.18},
                        {Codec::H264, 2.0, 0.14}, {Codec::AV1, 1.0, 0.07},  {Codec::AV1, 2.5, 0.09},
                        {Codec::VP9, 1.5, 0.08},  {Codec::VP9, 3.0, 0.10}};
  for (const Case& c : cases) {
    for (double kbps : {300.0, 1500.0}) {
      RateController rc(config(c.codec, kbps));
      SyntheticEncoder enc{c.A, c.B};
      const auto run = simulate(rc, enc, 300, [&](int) { return kbps * 1000; }, [](int) { return 4.0; });
      // After two seconds every 1 s window is within 5% of the target.
      const auto errs = window_errors(run, 30, 60);
      if (getenv("RC_TRACE"))
        for (size_t i = 0; i < run.qps.size(); ++i)
          printf("%zu qp %d bits %.0f target %.0f\n", i, run.qps[i], run.bits[i], run.targets[i]);
      EXPECT_LT(p95(errs), 0.05) << ccm::catalog::to_string(c.codec) << " A " << c.A << " B " << c.B << " at "
                                 << kbps;
      // The QP settles: no more than 2 steps apart over the last second.
      const auto [lo, hi] = std::minmax_element(run.qps.end() - 30, run.qps.end());
      EXPECT_LE(*hi - *lo, 3) << ccm::catalog::to_string(c.codec) << " A " << c.A;
    }
  }
}

TEST(Controller, FollowsContentChangesAndDelayedFeedback) {
  RateController rc(config(Codec::H265, 1000));
  SyntheticEncoder enc{2.0, 0.14};
  // Complexity 4, then 12 (three times the motion) from frame 150, feedback 3 frames late.
  const auto run = simulate(
      rc, enc, 300, [](int) { return 1e6; }, [](int i) { return i < 150 ? 4.0 : 12.0; }, 3);
  if (getenv("RC_TRACE"))
    for (size_t i = 140; i < 200; ++i)
      printf("%zu qp %d bits %.0f target %.0f\n", i, run.qps[i], run.bits[i], run.targets[i]);
  EXPECT_LT(p95(window_errors(run, 30, 60)), 0.06);
  // Within half a second of the change the frames are back near their budget.
  for (int i = 165; i < 300; ++i) EXPECT_LT(run.bits[i] / run.targets[i], 1.5) << i;
}

TEST(Controller, BandwidthStepIsFollowedWithinTwoFrames) {
  ControllerConfig cfg = config(Codec::H265, 8000);
  cfg.width = 1280;
  cfg.height = 720;
  RateController rc(cfg);
  SyntheticEncoder enc{2.2, 0.14, 0.05};
  const int step_at = 150;
  const auto run = simulate(rc, enc, 240, [&](int i) { return i < step_at ? 8e6 : 2e6; }, [](int) { return 4.0; });
  // Frames until one is under the new rate's average frame (2 Mbit/s / 30).
  int frames = 0;
  while (step_at + frames < 240 && run.bits[step_at + frames] > 2e6 / 30 * 1.1) ++frames;
  EXPECT_LE(frames, 2) << "QP before " << run.qps[step_at - 1] << " after " << run.qps[step_at] << ", "
                       << run.qps[step_at + 1];
  EXPECT_LT(p95(window_errors(run, 30, step_at + 30)), 0.05);
}

TEST(Controller, LatencyBucketBoundsEveryBudget) {
  ControllerConfig cfg = config(Codec::H265, 2000);
  cfg.latency_budget_ms = 33;
  RateController rc(cfg);
  SyntheticEncoder enc{2.0, 0.14, 0.3};  // noisy encoder
  const double avg = 2e6 / 30;
  for (int i = 0; i < 200; ++i) {
    FrameInfo f;
    f.id = static_cast<uint64_t>(i);
    f.complexity = 4;
    f.activity = 8;
    f.key = i % 60 == 0;
    const double buffer = rc.buffer_bits();
    const auto d = rc.decide(f);
    const double capacity = std::max(2e6 * 0.033, avg);
    if (f.key) {
      EXPECT_LE(d.target_bits, 3 * avg + 1e-6) << i;
    } else if (buffer <= capacity) {
      // Within the bucket: the frame must fit it.
      EXPECT_LE(d.target_bits, std::max(capacity + avg - buffer, 0.15 * avg) + 1e-6) << i;
    } else {
      // Beyond it (after a key frame): paid back over four frames, never starved.
      EXPECT_LE(d.target_bits, std::max(avg - (buffer - capacity) / 4, 0.15 * avg) + 1e-6) << i;
      EXPECT_GE(d.target_bits, 0.15 * avg - 1e-6) << i;
    }
    rc.on_encoded(f.id, enc.bits(d.qp, 4, 640 * 360) * (f.key ? 3.0 : 1.0));
  }
  // Key frames get up to three frame shares, beyond the bucket.
  RateController k(config(Codec::H265, 2000));
  FrameInfo key;
  key.key = true;
  key.activity = 8;
  const auto dk = k.decide(key);
  EXPECT_NEAR(dk.target_bits, 3 * avg, 1e-6);
}

// A key frame of three shares (a cut at 33 ms of latency budget): the frames after
// it pay the overflow back within a few frames and none is starved to the floor
// (they were: 0.15 of a share each, the QP climbing 3 a frame, the rate unspent).
TEST(Controller, AKeyFrameIsPaidBackWithoutStarvingTheNextFrames) {
  ControllerConfig cfg = config(Codec::H265, 1000);
  cfg.latency_budget_ms = 33;
  RateController rc(cfg);
  SyntheticEncoder enc{2.0, 0.14, 0.0};
  simulate(rc, enc, 60, [](int) { return 1e6; }, [](int) { return 4.0; });
  const double avg = 1e6 / 30;
  FrameInfo cut;
  cut.id = 100;
  cut.key = true;
  cut.scene_cut = true;
  cut.activity = 8;
  const auto dk = rc.decide(cut);
  rc.on_encoded(cut.id, 3 * avg);
  EXPECT_LE(dk.target_bits, 3 * avg + 1e-6);
  double paid = 0;
  for (int i = 1; i <= 6; ++i) {
    FrameInfo f;
    f.id = 100 + i;
    f.complexity = 4;
    f.activity = 8;
    const auto d = rc.decide(f);
    EXPECT_GE(d.target_bits, 0.4 * avg) << "frame " << i << " after the key frame";
    paid += avg - d.target_bits;
    rc.on_encoded(f.id, d.target_bits);
  }
  EXPECT_GT(paid, 1.2 * avg) << "the overflow is paid back within six frames";
}

TEST(Controller, MaxPsnrCapsTheQuantizer) {
  ControllerConfig cfg = config(Codec::H265, 20000);  // far more rate than the content needs
  cfg.max_psnr_db = 38;
  RateController rc(cfg);
  SyntheticEncoder enc{1.0, 0.14};
  const int floor_qp = min_qp_for_psnr(Codec::H265, 38);
  const auto run = simulate(rc, enc, 120, [](int) { return 2e7; }, [](int) { return 4.0; });
  for (int qp : run.qps) EXPECT_GE(qp, floor_qp);
  double spent = 0;
  for (double b : run.bits) spent += b;
  EXPECT_LT(spent / 4.0, 2e7 * 0.5) << "the cap should leave most of the rate unspent";
}

TEST(Controller, UnknownFramesAndBounds) {
  RateController rc(config(Codec::VP9, 1000));
  EXPECT_FALSE(rc.on_encoded(42, 1000).has_value());
  FrameInfo f;
  f.id = 7;
  f.key = true;
  f.activity = 8;
  rc.decide(f);
  EXPECT_EQ(rc.pending(), 1u);
  const auto r = rc.on_encoded(7, 5000);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->key);
  EXPECT_FALSE(rc.on_encoded(7, 5000).has_value());
  rc.set_bounds(500e3, 800e3);
  EXPECT_DOUBLE_EQ(rc.set_target_bitrate(2e6), 800e3);
  EXPECT_DOUBLE_EQ(rc.set_target_bitrate(100e3), 500e3);
  rc.set_rate_scale(0.5);
  EXPECT_DOUBLE_EQ(rc.effective_bitrate(), 500e3);  // min bound wins over QoS
  EXPECT_DOUBLE_EQ(rc.set_target_bitrate(0), 500e3);  // a zero target is ignored
}

// Still frames (a slideshow, screen content between scrolls) cost almost nothing
// at the moving frames' QP. Their own QP falls while the budget is unspent, down to
// the floor (at_min_qp), without teaching the model; the next scroll still comes
// at a QP near the moving frames' (not the stills').
TEST(Controller, StillFramesSpendTheBudgetWithoutTeachingTheModel) {
  RateController rc(config(Codec::H265, 1000));
  SyntheticEncoder enc{2.0, 0.14, 0.0};
  simulate(rc, enc, 60, [](int) { return 1e6; }, [](int) { return 4.0; });
  const int qp = rc.last_qp();
  const auto alpha = rc.inter_model().params().alpha;
  int last = qp;
  bool reached_floor = false;
  for (int i = 0; i < 60; ++i) {
    FrameInfo f;
    f.id = 500 + i;
    f.complexity = 0.01;
    f.activity = 8;
    const auto d = rc.decide(f);
    EXPECT_TRUE(d.still);
    if (i > 0) {
      EXPECT_LE(d.qp, last) << "a still frame's QP never rises while the budget is unspent";
    }
    last = d.qp;
    reached_floor = reached_floor || d.at_min_qp;
    rc.on_encoded(f.id, 50);  // a skipped frame: a few bytes
  }
  EXPECT_TRUE(reached_floor);
  EXPECT_EQ(last, 0);
  EXPECT_DOUBLE_EQ(rc.inter_model().params().alpha, alpha);
  EXPECT_EQ(rc.last_qp(), qp);
  // A scroll after the still frames: 40x the motion of the frame before lets the
  // QP move by more than qp_step at once, upwards from the moving frames' QP.
  FrameInfo scroll;
  scroll.id = 1000;
  scroll.complexity = 40;
  scroll.activity = 8;
  rc.decide({.id = 999, .complexity = 1.0, .activity = 8});
  EXPECT_GT(rc.decide(scroll).qp, qp + 3);
}

// A static camera: frames below the still threshold that still cost bits (sensor
// noise, a little motion), a few percent of an intra frame at the same QP. Their
// QP settles where the rate is spent, and the 1 s windows follow the target.
TEST(Controller, StillFramesWithNoiseSpendTheRate) {
  ControllerConfig cfg = config(Codec::H265, 300);
  cfg.latency_budget_ms = 33;
  RateController rc(cfg);
  const double px = 640.0 * 360;
  ::Run run;
  std::mt19937 rng{5};
  std::normal_distribution<double> noise(0, 0.1);
  for (int i = 0; i < 300; ++i) {
    FrameInfo f;
    f.id = static_cast<uint64_t>(i);
    f.complexity = i == 0 ? 4 : 0.2;
    f.activity = 8;
    f.key = i == 0;
    const auto d = rc.decide(f);
    const double bits = px * std::exp(1.0 - 0.14 * d.qp + noise(rng)) * (f.key ? 1.0 : 0.05);
    rc.on_encoded(f.id, bits);
    run.bits.push_back(bits);
    run.targets.push_back(d.target_bits);
    run.qps.push_back(d.qp);
    run.rates.push_back(rc.effective_bitrate());
  }
  // From the second second on (the first walks down from the key frame's QP).
  double spent = 0;
  for (int i = 30; i < 300; ++i) spent += run.bits[i];
  EXPECT_NEAR(spent / (270 * 3e5 / 30), 1.0, 0.05);
  EXPECT_LT(p95(window_errors(run, 30, 60)), 0.10);
}

TEST(Controller, SceneCutLetsTheQpFollowNewContentFast) {
  RateController rc(config(Codec::H265, 1000));
  SyntheticEncoder enc{2.0, 0.14, 0.0};
  simulate(rc, enc, 90, [](int) { return 1e6; }, [](int) { return 4.0; });
  const int qp = rc.last_qp();
  // New scene, 8x cheaper at any QP: with the cut the QP may move by more than
  // qp_step per frame and the model learns fast, so it falls well within 3 frames.
  enc.A -= std::log(8.0);
  int qp_after = qp;
  for (int i = 0; i < 3; ++i) {
    FrameInfo f;
    f.id = 1000 + i;
    f.complexity = 4;
    f.activity = 8;
    f.scene_cut = i == 0;
    const auto d = rc.decide(f);
    rc.on_encoded(f.id, enc.bits(d.qp, 4, 640 * 360));
    qp_after = d.qp;
  }
  EXPECT_LT(qp_after, qp - 6);
}

// Mode encoder-rate: inter frames are coded at the encoder's own QPs, whatever was
// decided. Their sizes (here ten times what the decided QP would give) count for the
// budgets but teach the model nothing: the next key frame's QP is the one it would
// have been without them.
TEST(Controller, FramesNotCodedAtOurQpTeachNothing) {
  const auto key_qp_after = [](bool applied) {
    RateController rc(config(Codec::H265, 1000));
    SyntheticEncoder enc{2.0, 0.14};
    const double pixels = double(rc.config().width) * rc.config().height;
    for (uint64_t i = 0; i < 60; ++i) {
      FrameInfo f;
      f.id = i;
      f.complexity = 4;
      f.activity = 8;
      f.key = i == 0;
      const Decision d = rc.decide(f);
      const double bits = enc.bits(d.qp, f.complexity, pixels) * (f.key ? 1 : 10);
      rc.on_encoded(i, bits, f.key, f.key || applied);
    }
    FrameInfo k;
    k.id = 60;
    k.complexity = 4;
    k.activity = 8;
    k.key = true;
    return std::pair{rc.decide(k).qp, rc.inter_model().params().alpha};
  };
  const auto [qp_applied, alpha_applied] = key_qp_after(true);
  const auto [qp_not, alpha_not] = key_qp_after(false);
  const double alpha_fresh = RateController(config(Codec::H265, 1000)).inter_model().params().alpha;
  EXPECT_EQ(alpha_not, alpha_fresh) << "the inter model learnt from frames it did not decide";
  EXPECT_NE(alpha_applied, alpha_not);
  EXPECT_GT(qp_applied, 0);
  EXPECT_GT(qp_not, 0);
}
