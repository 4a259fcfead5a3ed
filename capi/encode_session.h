// One encoding pipeline behind a ccm_config handle:
//   appsrc ! ccmencbin ! capsfilter ! appsink     (encoded codecs)
//   appsrc ! appsink                                      (CODEC_RAW)
// A handle owns one session, or briefly two while a reconfiguration that
// needs a new encoder lets the old one drain (see ccm_api.cpp).
#pragma once

#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "ccm/ccm.h"
#include "gst_ptr.h"
#include "params/dynamic_params.h"
#include "status.h"

namespace ccm::api {

// Everything a session is built from: the validated profile, the handle's
// codec fields and the merged dynamic parameters.
struct StreamSettings {
  VideoCodec codec = CODEC_HEVC;
  bool hdr = false;
  bool low_latency = true;
  bool hw_allowed = true;  // ccm_init(enable_hw_accel)
  uint32_t width = 0;
  uint32_t height = 0;
  uint32_t fps = 0;
  uint32_t bitrate_bps = 0;
  double max_psnr = 0;     // dB, 0 = no cap
  DynamicParams params;

  // ccmencbin's bitrate property is in kbit/s; the profile's in bit/s.
  uint32_t bitrate_kbps() const { return uint32_t((uint64_t(bitrate_bps) + 500) / 1000); }

  // Whether going from *this to `newer` changes how the stream is built (codec,
  // size, rate, GOP shape, encoder choice): those always need a new encoder.
  // The rest (bitrate, quantizers, max_psnr) may apply live; EncodeSession::
  // applies_live says whether the running encoder takes them.
  bool changes_structure(const StreamSettings& newer) const;

  friend bool operator==(const StreamSettings&, const StreamSettings&) = default;
};

// `ts` as running time in `segment`: the caller's timeline, whatever offset an
// encoder put on its output segment (x264enc and x265enc move it by 1000 hours
// so that DTS stays positive). -1 when `ts` is unknown or outside the segment.
int64_t running_time_ns(const GstSegment* segment, GstClockTime ts);

// Bytes of one tightly packed I420 (or 16-bit I420_10LE when hdr) frame.
std::size_t packed_frame_size(uint32_t width, uint32_t height, bool hdr);

// What ccmencbin's rate control decided for one frame (its ccm-ratecontrol message).
struct RateDecision {
  int qp = -1;
  double lambda = 0, target_bits = 0, buffer_bits = 0, complexity = 0;
  uint32_t skip = 0, fast = 0, full = 0;
  bool scene_cut = false;
};

class EncodeSession {
 public:
  // Called from the streaming thread for every buffer that reaches the appsink
  // (the encoder's output thread: it must not set encoder properties), with its
  // pts as running time (the caller's timeline), and the rate control's decision
  // for it (nullptr when the encoder keeps its own rate); no lock of the session is held.
  using PacketObserver = std::function<void(GstBuffer*, int64_t pts_ns, const RateDecision*)>;

  // Builds the pipeline and sets it to PLAYING (nothing flows until the first push).
  static Status create(const StreamSettings& settings, PacketObserver observer,
                       std::shared_ptr<EncodeSession>& out);
  ~EncodeSession();
  EncodeSession(const EncodeSession&) = delete;
  EncodeSession& operator=(const EncodeSession&) = delete;

  // What the session was built with (live changes are tracked by the caller).
  const StreamSettings& settings() const { return settings_; }
  std::size_t frame_size() const { return frame_size_; }
  GstClockTime frame_duration() const { return frame_duration_; }

  // Copies one packed frame in and queues it, waiting while a few frames are
  // already queued. CCM_ERROR_EOS here means the session was ended (by
  // end_of_stream) before the frame got in: the caller should use the next one.
  Status push(std::span<const uint8_t> frame, GstClockTime pts);

  // No more frames: the encoder drains and the appsink reaches EOS.
  void end_of_stream();

  // Next packet, waiting up to timeout_ms (< 0: forever). CCM_ERROR_AGAIN on
  // timeout, CCM_ERROR_EOS once drained, CCM_ERROR_ENCODER/NO_ENCODER on a
  // pipeline error (packets encoded before the error come out first).
  Status pull(int timeout_ms, SamplePtr& out);

  // Whether every difference between `current` (what the encoder runs with now)
  // and `newer` applies to the running encoder from its next frame: no
  // structural change, and each changed property is one ccmencbin declares
  // mutable while PLAYING (GST_PARAM_MUTABLE_PLAYING; the element is the one
  // place that knows). Otherwise the change needs a new session.
  bool applies_live(const StreamSettings& current, const StreamSettings& newer) const;

  // Applies what differs (callers check applies_live first).
  Status apply_live(const StreamSettings& current, const StreamSettings& newer);

  // The encoder element ccmencbin chose ("x264enc" ...), "" until it has chosen.
  std::string encoder_name() const;

 private:
  explicit EncodeSession(const StreamSettings& settings, PacketObserver observer);
  Status build();
  Status configure_encoder_bin(GstElement* encbin);
  Status pipeline_error() const;
  void record_error(Status status);
  void notify_room();

  void record_decision(const GstStructure* message);
  static GstBusSyncReply on_bus_message(GstBus* bus, GstMessage* message, gpointer self);
  static GstPadProbeReturn on_sink_buffer(GstPad* pad, GstPadProbeInfo* info, gpointer self);
  static void on_need_data(GstAppSrc* src, guint length, gpointer self);
  static void on_element_added(GstBin* bin, GstBin* sub_bin, GstElement* element, gpointer self);
  void set_max_psnr(double db);

  const StreamSettings settings_;
  const PacketObserver observer_;
  GstVideoInfo video_info_{};
  std::size_t frame_size_ = 0;
  GstClockTime frame_duration_ = GST_CLOCK_TIME_NONE;
  guint64 max_queued_bytes_ = 0;

  ElementPtr pipeline_;
  GstElement* appsrc_ = nullptr;   // owned by pipeline_
  GstElement* encbin_ = nullptr;   // owned by pipeline_; null for RAW
  GstElement* appsink_ = nullptr;  // owned by pipeline_

  mutable std::mutex mutex_;       // guards the fields below
  std::condition_variable room_;   // appsrc drained a little, or an error came
  // Rate-control decisions by frame pts, until that frame's packet reaches the appsink.
  std::map<GstClockTime, RateDecision> decisions_;
  Status error_;                   // first pipeline error, sticky
  bool ended_ = false;
  std::string selected_encoder_;   // from the "ccm-encoder-selected" message
  GstSegment output_segment_{};    // the appsink's current segment, for the observer
  // The profile's max_psnr, given to every ccmratecontrol in the pipeline (ccmencbin
  // builds one per encoder it tries, so later ones get it as they are added).
  double max_psnr_ = 0;
};

}  // namespace ccm::api
