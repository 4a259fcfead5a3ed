// The R-λ model (HEVC reference software's picture-level rate control) and the
// λ <-> QP lines of each codec, calibrated by measurement on the shared clips
// (scripts/calibrate-ratecontrol; figures in docs/ratecontrol.md).
// Pure functions and value types, no GStreamer.
#pragma once

#include "catalog/catalog.h"

namespace ccm::rc {

using catalog::Codec;

// The quantizer scale the encoders take: H.265/H.264 0-51, AV1 0-63 (as SVT-AV1
// and libaom take it), VP9 0-63 (libvpx's min/max-quantizer).
struct QpRange {
  int min = 0;
  int max = 51;
};
QpRange qp_range(Codec codec);

// QP = a * ln(λ) + b, fitted so that HM's starting model (α = 3.2003, β = -1.367)
// predicts the bits each encoder spends at a QP on typical content.
double qp_from_lambda(Codec codec, double lambda);
double lambda_from_qp(Codec codec, double qp);

// Estimated mean PSNR-Y (dB, 8-bit peak) of frames coded at qp, and the smallest
// QP whose estimate does not pass max_psnr_db (the max-psnr cap).
double estimate_psnr(Codec codec, double qp);
int min_qp_for_psnr(Codec codec, double max_psnr_db);

struct ModelParams {
  double alpha = 3.2003;
  double beta = -1.367;
};
// Starting points: inter frames use HM's; intra frames (key frames, scene cuts)
// their own, from the calibration of each codec (bpp normalised by activity).
ModelParams initial_inter_params(Codec codec);
ModelParams initial_intra_params(Codec codec);

// λ = α·bpp^β with α and β learnt from every coded frame.
class RLambdaModel {
 public:
  explicit RLambdaModel(ModelParams start = {}) : start_(start), p_(start) {}

  double lambda(double bpp) const;

  // After a frame coded with lambda_used that cost bpp_actual (HM's update:
  // λ_cal = α·bpp^β clipped to [λ/10, 10λ]; α and β move by δα, δβ times the
  // log error, δ chosen by the target bpp). gain_floor raises δα to at least
  // that (the controller uses it right after a reset, when HM's small steps at low
  // bpp would take dozens of frames to find the new content's level).
  void update(double lambda_used, double bpp_actual, double bpp_target, double gain_floor = 0);

  void reset() { p_ = start_; }
  void reset_to(ModelParams p) { start_ = p_ = p; }
  const ModelParams& params() const { return p_; }

 private:
  ModelParams start_;
  ModelParams p_;
};

}  // namespace ccm::rc
