// The SVT-AV1 library as ccmsvtav1enc runs it: its limits and low-delay layer
// pattern, the configuration planned from the element's settings (Plan,
// make_plan, one named field at a time so a refusal names its field), and one
// initialised library instance owned (SvtSession). The element is ccmsvtav1enc.cpp.
#pragma once

#include "enc/ccmvideoenc.h"

#include "enc/svt_headers.h"
#include <gst/video/video.h>

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ccm::svt {

constexpr guint kQpMax = 63;
// SVT-AV1 1.4.1 limits (svt_av1_verify_settings): 4:2:0 needs even sizes.
constexpr gint kMinSize = 64;
constexpr gint kMaxWidth = 16384;
constexpr gint kMaxHeight = 8704;

// Low delay codes pictures in temporal layers: with 3 levels an 8-picture pattern
// whose base layer (every 8th picture after a key frame; the pattern restarts at
// every key frame, periodic or forced) the later pictures reference. SVT's own CQP
// gives each layer a QP offset; with a QP per picture (use_qp_file) it takes ours
// flat, which cost 18-31% BD-rate (PSNR-Y) against its own CQP on the validation
// clips (broadcast, slideshow at 640x360, preset 12: docs/benchmarks.md). Adding
// these offsets to the QP of every picture but a key frame gives that back (-4% to
// +0% against its own CQP). Measured, not taken from SVT's tables: its own vary with
// the QP and come from rate factors. SVT-AV1 2.3 ignores the 3 asked for and runs 2
// levels in low delay ("Forced Low delay mode to use HierarchicalLevels = 2"), so
// on 2.x this pattern is not the library's: there SVT's own rate control is the
// default (library-rate-control) and the per-picture path is not re-measured.
constexpr guint kLowDelayLevels = 3;
constexpr std::array<int, kLowDelayLevels + 1> kLowDelayLayerQpOffset = {-6, -2, 1, 3};

// The temporal layer of the picture `since_key` pictures after a key frame (>= 1)
// in the low-delay pattern: 0 every 8th, 1 halfway, 2 at the quarters, 3 between.
inline guint low_delay_layer(guint64 since_key) {
  const guint64 pos = since_key % (guint64(1) << kLowDelayLevels);
  if (pos == 0) return 0;
  guint trailing = 0;
  for (guint64 p = pos; (p & 1) == 0; p >>= 1) trailing++;
  return kLowDelayLevels - trailing;
}

// SVT-AV1 2.x (2.3 in Debian 13) makes a key picture on request in low delay
// (pic_type EB_AV1_KEY_PICTURE, CQP and CBR alike) and takes a new target bitrate
// with it (a RATE_CHANGE_EVENT, refused on any other picture with
// EB_ErrorBadParameter). 1.4.1 refuses forced key pictures in low delay: there a
// requested key frame restarts the library. Measured on 2.3.0, docs/encoders.md.
#if SVT_AV1_CHECK_VERSION(2, 0, 0)
constexpr bool kLowDelayKeyOnRequest = true;
#else
constexpr bool kLowDelayKeyOnRequest = false;
#endif

const char* error_name(EbErrorType e);

// One assignment to the library's configuration, kept with its name so that a
// refusal can be traced to the field at fault.
struct ConfigField {
  std::string name;
  std::string value;
  std::function<void(EbSvtAv1EncConfiguration&)> apply;
};

// How the library is run for the current settings.
struct Plan {
  bool low_delay = true;
  bool per_picture_qp = true;  // library in CQP with use_qp_file: we choose every QP
  bool own_rc = true;          // per_picture_qp and cbr/vbr: QpRateController decides
  bool library_rate = false;   // low delay with SVT's own cbr/vbr (library-rate-control=true)
  guint key_period = 0;        // frames from one periodic key frame to the next, 0 = none
  std::vector<ConfigField> fields;
};

// RAII owner of one initialised library instance.
class SvtSession {
 public:
  SvtSession() = default;
  SvtSession(const SvtSession&) = delete;
  SvtSession& operator=(const SvtSession&) = delete;
  // Ends the stream when nobody did (see the definition) and frees the library.
  ~SvtSession();
  // What the destructor needs to end a stream on its own.
  void set_picture_format(guint width, guint height, guint bytes_per_sample) {
    width_ = width;
    height_ = height;
    bytes_per_sample_ = bytes_per_sample;
  }
  // Sends one picture (counted). `new_target_bps` > 0 (SVT-AV1 2.x only) makes it a
  // key picture that carries a new target bitrate for the library's own rate control.
  EbErrorType send(EbBufferHeaderType& in, uint32_t new_target_bps = 0);
  // The stream's EOS went in (drain_session): the destructor need not send one.
  void note_eos_sent() { eos_sent_ = true; }
  guint64 pictures_sent() const { return pictures_; }

  // On failure fills `what` (user-facing, names the parameter) and `detail`.
  static std::unique_ptr<SvtSession> open(const std::vector<ConfigField>& fields, std::string* what,
                                          std::string* detail);

  EbComponentType* handle() const { return handle_; }

 private:
  bool send_blank_picture();

  EbComponentType* handle_ = nullptr;
  bool initialised_ = false;
  bool eos_sent_ = false;
  guint64 pictures_ = 0;
  guint width_ = 0, height_ = 0, bytes_per_sample_ = 1;
};

// Frames from one periodic key frame to the next (keyframe-interval, or 5 s).
guint key_period(const GstVideoInfo& info, const GstCcmEncSettings& s);
// How to run the library for these settings; `library_rate`: SVT's own rate
// control in low delay rather than a QP per picture.
Plan make_plan(const GstVideoInfo& info, const GstCcmEncSettings& s, const GstCcmHdrInfo& hdr, bool library_rate);
// Sizes the library refuses, as a message that names the limit.
std::optional<std::string> size_problem(gint w, gint h);

}  // namespace ccm::svt
