// A small frame-level rate controller for encoders run in constant-QP mode with a
// QP chosen per picture (ccmsvtav1enc: SVT-AV1 1.4 cannot change its own bitrate
// while running, but takes a QP with every picture).
//
// Model: bits(qp) = C * 2^(-qp / S), with one C for key frames and one for inter
// frames, learnt from every encoded frame (exponential average). A virtual buffer
// counts the bits spent beyond the budget (encoded frames as measured, frames still
// inside the library as predicted); each frame's target is its share of the
// bitrate minus the buffer's excess spread over `reaction` seconds. A bitrate
// change therefore applies on the very next picture, without a key frame.
//
// No GStreamer types: unit-testable on its own.
#pragma once

#include <cstdint>
#include <deque>

namespace ccm::rc {

class QpRateController {
 public:
  struct Params {
    double bitrate_bps = 2'000'000;
    double fps = 30;
    double pixels = 1920.0 * 1080.0;  // luma samples per frame, for the first guesses
    double reaction_s = 2.0;          // the buffer's excess is spread over this long
    int min_qp = 1;
    int max_qp = 63;
    // Steadiness. A QP that moves with every picture's budget costs a fifth to a
    // half more bits at equal PSNR than a constant one (SVT-AV1 1.4.1, validation
    // set, docs/benchmarks.md): the base QP falls by at most max_down_step a
    // picture and rises by at most max_up_step, and it does not fall at all while
    // the buffer is more than hold_over_s of the bitrate over budget (otherwise
    // cheap static pictures teach the model that the content is cheap, and the
    // next change of scene costs tens of frame budgets again).
    int max_down_step = 1;
    int max_up_step = 4;
    double hold_over_s = 0.5;
  };

  explicit QpRateController(const Params& params);

  // Bitrate, reaction and QP range may change at any time; the learnt model stays.
  void set_params(const Params& params);
  const Params& params() const { return params_; }

  // QP for the next picture (a key frame or not). Does not record anything.
  int pick_qp(bool key) const;
  // The picture went into the encoder with this QP (ours or one imposed from
  // outside); its predicted size counts in the buffer until on_encoded().
  // base_qp: what pick_qp() said, when the encoder added a per-picture offset of
  // its own (a temporal layer's) to get `qp`; the steps are limited on it.
  void on_sent(bool key, int qp, int base_qp = -1);
  // The oldest picture still inside the encoder came out with `bits`.
  void on_encoded(double bits, bool key, int qp);
  // Forget pictures that will never come out (a flush).
  void drop_in_flight() { in_flight_.clear(); }

  // For tests and logs.
  double buffer_bits() const;  // over (+) or under (-) budget, in-flight included
  double predicted_bits(bool key, int qp) const;
  std::size_t in_flight() const { return in_flight_.size(); }

 private:
  double frame_budget() const { return params_.bitrate_bps / params_.fps; }

  struct Pending {
    bool key;
    int qp;
    double predicted;
    double budget;  // the frame's share of the bitrate in force when it was sent
  };

  Params params_;
  double c_key_ = 0;    // bits at qp 0 for a key frame (model scale)
  double c_inter_ = 0;  // the same for inter frames
  bool key_learnt_ = false, inter_learnt_ = false;
  double buffer_ = 0;   // measured bits minus budget, encoded frames only
  int last_base_qp_ = -1;  // the base QP of the last inter picture
  std::deque<Pending> in_flight_;
};

}  // namespace ccm::rc
