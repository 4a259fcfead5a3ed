// ccmratecontrol's state, shared by its two files: ccmratecontrol.cpp (the element:
// properties, events, each frame analysed and decided) and feedback.cpp (the encoder
// downstream: finding it, reading its output, closing the loop). Private to them.
#pragma once

#include <gst/video/video.h>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "analysis/analysis.h"
#include "analysis/scene_cut.h"
#include "ratecontrol/ccmratecontrol.h"
#include "ratecontrol/encoder_adapters.h"
#include "rc/controller.h"
#if CCM_HAVE_GST_CUDA
#include "ratecontrol/cuda/cuda_frame_analyser.h"
#endif

GST_DEBUG_CATEGORY_EXTERN(ccm_rate_control_debug);

namespace ccm::ratecontrol {

using ccm::gst::EncoderAdapter;
using ccm::gst::EncoderFamily;

constexpr guint kDefaultTargetKbps = 2000;
constexpr guint kDefaultLatencyMs = 33;
constexpr guint kDefaultWindow = 30;
constexpr double kDefaultSceneThreshold = 10.0;
constexpr guint kDefaultMessageInterval = 1;
constexpr guint kAbsurdKbps = 10000000;     // 10 Gbit/s: no encoder here makes that

struct Settings {
  guint target_kbps = kDefaultTargetKbps;
  guint min_kbps = 0;
  guint max_kbps = 0;
  guint latency_ms = kDefaultLatencyMs;
  guint window = kDefaultWindow;
  double max_psnr = 0;
  bool scene_cut = true;
  double scene_threshold = kDefaultSceneThreshold;
  GstCcmRateControllerMode mode = GST_CCM_RATE_CONTROLLER_MODE_AUTO;
  guint message_interval = kDefaultMessageInterval;
  guint row_step = 1;
  guint threads = 1;
  bool dmabuf_pool = true;
  bool qos = true;  // react to QoS events from downstream (never by dropping frames)
};

// What we remember of a frame between its analysis and its encoded size.
struct FrameRecord {
  guint64 number = 0;
  GstClockTime pts = GST_CLOCK_TIME_NONE;
  gint64 t_in_us = 0;
  double mafd = 0, complexity = 0, activity = 0;
  guint skip = 0, fast = 0, full = 0;
  bool scene_cut = false;
  bool controlled = false;  // a decision was made (mode rlambda with a controller)
  bool qp_applied = false;  // ... and its QP went to the encoder (per-frame-QP families)
  ccm::rc::Decision decision;
  double rate_bps = 0;
  double given_bps = 0;  // the bitrate the encoder was given for it (gain-corrected families)
};

struct Private {
  std::mutex lock;  // settings, controller, records, stats (not the analysis state)
  Settings settings;
  bool settings_dirty = true;
  double estimate_bps = 0;  // last bandwidth estimate; 0 = none since the last target-bitrate

  // Streaming thread only.
  GstVideoInfo info{};
  bool have_info = false;
  ccm::analysis::FrameAnalysis analysis;
  ccm::analysis::SceneCutDetector scene_cuts;
  GstBuffer* prev_buffer = nullptr;
  GstVideoFrame prev_frame{};
#if CCM_HAVE_GST_CUDA
  // Frames in CUDA memory are analysed on their GPU (it keeps its own previous frame).
  std::unique_ptr<ccm::gst::CudaFrameAnalyser> cuda;
#endif
  bool analysed_on_gpu = false;
  guint64 frames_in = 0;
  guint64 next_search = 0;
  bool warned_no_encoder = false;
  bool control_taken = false;
  GstCcmRateControllerMode applied_mode = GST_CCM_RATE_CONTROLLER_MODE_AUTO;
  bool applied_encoder_rate = false;
  int applied_boost = 0;

  // Under lock.
  std::shared_ptr<EncoderAdapter> adapter;
  GstPad* encoder_src = nullptr;
  gulong probe_id = 0;
  std::optional<ccm::rc::RateController> rc;
  std::deque<FrameRecord> in_flight;
  double qos_scale = 1.0;
  int late_streak = 0, on_time_streak = 0;
  int wanted_boost = 0;
  // Stats.
  guint64 frames_out = 0, key_frames = 0, scene_cut_count = 0, bytes_out = 0;
  std::deque<std::pair<GstClockTime, guint64>> window_bits;  // (pts, bits) of the last second
  std::deque<gint64> window_wall;                            // arrival times of the last second
  GstClockTime first_pts = GST_CLOCK_TIME_NONE;
  double bitrate_kbps = 0, out_fps = 0;
  int last_qp = -1;
  // The target is out of reach: the last coded frame's QP was the lowest the
  // settings allow, or (encoder-rate) the encoder stays under the target with the
  // largest gain we give it.
  bool last_at_min_qp = false;
  double last_lambda = 0, last_buffer = 0, last_target_bps = 0;
  double analysis_us_total = 0;
  // Encoders steered by their bitrate property (x264enc) run their own rate
  // control in between, which misses the rate it is given by a steady ratio
  // (x264's ABR: about -10% on camera content). An integrator on the measured 1 s
  // rate corrects that ratio once the rate in force has held for a second.
  double bitrate_gain = 1.0;
  double delivered_bits = 0, given_bits = 0;  // exponentially weighted (mode encoder-rate)
  guint64 delivery_frames = 0;
  double gain_rate_bps = 0;
  GstClockTime gain_rate_since = GST_CLOCK_TIME_NONE;
};


inline double kbps_to_bps(guint kbps) { return static_cast<double>(kbps) * 1000.0; }

inline double requested_bps(const Private* p) {
  return p->estimate_bps > 0 ? p->estimate_bps : kbps_to_bps(p->settings.target_kbps);
}

inline double nominal_fps(const GstVideoInfo& info) {
  if (info.fps_n > 0 && info.fps_d > 0) return static_cast<double>(info.fps_n) / info.fps_d;
  return 30.0;  // variable-rate input: the rate ccmencbin gives such streams too
}

// feedback.cpp
void apply_settings_locked(GstCcmRateController* self);  // settings into the controller (under lock)
void make_controller_locked(GstCcmRateController* self);
// A ccm-ratecontrol message for a frame (its encoded size; 0 before it is known).
GstStructure* frame_message_locked(GstCcmRateController* self, const FrameRecord& r, guint64 bytes, bool key,
                                   gint64 now_us);
void find_encoder(GstCcmRateController* self);  // hooks the encoder downstream; warns once when none
void remove_probe(GstCcmRateController* self);

}  // namespace ccm::ratecontrol

struct _GstCcmRateController {
  GstBaseTransform parent;
  ccm::ratecontrol::Private* priv;
};
