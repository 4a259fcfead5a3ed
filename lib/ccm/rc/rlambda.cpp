#include "rc/rlambda.h"

#include <algorithm>
#include <cmath>

namespace ccm::rc {
namespace {

// Per codec, from scripts/calibrate-ratecontrol on the six clips of tests/media
// (numbers and method in docs/ratecontrol.md):
//   a, b:          QP = a*ln(λ) + b
//   intra α, β:    the intra model's start (bpp scaled by 8 / spatial activity)
//   psnr0, psnr1:  PSNR-Y ≈ psnr0 - psnr1*QP (mean over the clips, decoded;
//                  content moves it by about ±2.5 dB, rms over the clips)
struct CodecConstants {
  double a, b;
  ModelParams intra;
  double psnr0, psnr1;
};

CodecConstants constants(Codec codec) {
  switch (codec) {
    case Codec::H265: return {5.482, 7.959, {49.44, -1.892}, 57.35, 0.688};
    case Codec::H264: return {5.835, 9.404, {46.53, -2.268}, 59.01, 0.761};
    case Codec::VP9: return {11.291, -11.571, {25.97, -1.894}, 50.29, 0.391};
    case Codec::AV1: return {10.150, -5.487, {100.7, -2.145}, 49.56, 0.312};
  }
  return {5.482, 7.959, {49.44, -1.892}, 57.35, 0.688};
}

// HM's clipping of the model and of its inputs.
constexpr double kAlphaMin = 0.05, kAlphaMax = 500.0;
// β within what camera and screen content measure (about -1.0 to -1.9 on the
// calibration clips). HM allows -0.1, where λ (and so the QP) hardly depends on
// the budget any more: screen content walked β there, and after a cut to camera
// frames 22x over their budget moved the QP by 1 a frame (validation set).
constexpr double kBetaMin = -2.5, kBetaMax = -0.7;
constexpr double kLnBppMin = -5.0, kLnBppMax = -0.1;  // for the β step only
constexpr double kBppMin = 1e-5;

}  // namespace

QpRange qp_range(Codec codec) {
  switch (codec) {
    case Codec::H265:
    case Codec::H264: return {0, 51};
    case Codec::VP9:
    case Codec::AV1: return {0, 63};
  }
  return {0, 51};
}

double qp_from_lambda(Codec codec, double lambda) {
  const auto c = constants(codec);
  return c.a * std::log(std::max(lambda, 1e-9)) + c.b;
}

double lambda_from_qp(Codec codec, double qp) {
  const auto c = constants(codec);
  return std::exp((qp - c.b) / c.a);
}

double estimate_psnr(Codec codec, double qp) {
  const auto c = constants(codec);
  return c.psnr0 - c.psnr1 * qp;
}

int min_qp_for_psnr(Codec codec, double max_psnr_db) {
  const auto c = constants(codec);
  const auto range = qp_range(codec);
  const int qp = static_cast<int>(std::ceil((c.psnr0 - max_psnr_db) / c.psnr1 - 1e-9));
  return std::clamp(qp, range.min, range.max);
}

ModelParams initial_inter_params(Codec) { return {}; }
ModelParams initial_intra_params(Codec codec) { return constants(codec).intra; }

double RLambdaModel::lambda(double bpp) const { return p_.alpha * std::pow(std::max(bpp, kBppMin), p_.beta); }

void RLambdaModel::update(double lambda_used, double bpp_actual, double bpp_target, double gain_floor) {
  if (!(lambda_used > 0) || !(bpp_actual >= 0)) return;
  bpp_actual = std::max(bpp_actual, kBppMin);
  // HM's steps by the target bpp: small steps where bits are few and noisy.
  double da = 0.4, db = 0.2;
  if (bpp_target < 0.03) {
    da = 0.01, db = 0.005;
  } else if (bpp_target < 0.08) {
    da = 0.05, db = 0.025;
  } else if (bpp_target < 0.2) {
    da = 0.1, db = 0.05;
  } else if (bpp_target < 0.5) {
    da = 0.2, db = 0.1;
  }
  // Only α takes the raised gain: β multiplies ln(bpp) (about -4 at real-time
  // rates), so a large step on it swings the model's slope to its bounds.
  da = std::max(da, gain_floor);
  const double lambda_cal = std::clamp(p_.alpha * std::pow(bpp_actual, p_.beta), lambda_used / 10, lambda_used * 10);
  const double err = std::log(lambda_used) - std::log(lambda_cal);
  const double ln_bpp = std::clamp(std::log(bpp_actual), kLnBppMin, kLnBppMax);
  // α in the log domain: HM's α += δα·err·α to first order, and it cannot turn
  // negative when a raised gain meets a large error.
  p_.alpha = std::clamp(p_.alpha * std::exp(da * err), kAlphaMin, kAlphaMax);
  p_.beta = std::clamp(p_.beta + db * err * ln_bpp, kBetaMin, kBetaMax);
}

}  // namespace ccm::rc
