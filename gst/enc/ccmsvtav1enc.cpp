/**
 * SECTION:element-ccmsvtav1enc
 * @title: ccmsvtav1enc
 *
 * AV1 encoder on SVT-AV1 for live use: low-delay prediction, a QP per picture
 * from our own rate controller (so `bitrate` changes apply at the next picture,
 * without a key frame), GstCcmQpMeta above it, key frames on request; or, with
 * `library-rate-control=true`, SVT's own low-delay rate control.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=60 ! video/x-raw,width=640,height=360 ! ccmsvtav1enc bitrate=1000 ! av1parse ! matroskamux ! filesink location=out.mkv
 * ]|
 */
// ccmsvtav1enc: GstCcmVideoEnc on SVT-AV1 1.4 and 2.x. See ccmsvtav1enc.h for the why,
// docs/encoders.md for the measurements behind the choices.
//
// Two ways to run the library:
// - low-latency=true (default): low-delay prediction (no reordering, no look-ahead),
//   library in constant-QP mode with a QP per picture (use_qp_file) chosen by
//   QpRateController for cbr/vbr (a slow base QP, the layer offsets on top),
//   `quantizer` for cqp, GstCcmQpMeta above both.
//   SVT keeps exactly one picture before releasing the previous one; behind a live
//   source we wait for it, so the element's delay is one frame (behind a file,
//   four: throughput). A requested key frame that is not the library's own
//   periodic one restarts the library at that picture on 1.4.1; 2.x makes it a
//   key picture (kLowDelayKeyOnRequest).
// - low-latency=true with library-rate-control=true: SVT's own low-delay CBR/VBR
//   (its adaptive quantisation); a bitrate change goes in on a key picture with a
//   RATE_CHANGE_EVENT on 2.x (library_rate_change() says when), reopens on 1.4.1.
// - low-latency=false: random access (mini-GOP 16, look-ahead 16) with SVT's own
//   rate control; a bitrate change reopens the library (the base does it).
//
// Packets are matched to frames by pts: the library gets the frame's
// system_frame_number as pts (p_app_private must stay NULL: SVT parses it as a
// private-data list).
#include "enc/ccmsvtav1enc.h"

#include "enc/svt_session.h"
#include "rc/qp_rate_controller.h"

#include <gst/video/video.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(ccm_svt_av1_enc_debug);
#define GST_CAT_DEFAULT ccm_svt_av1_enc_debug

namespace {

using namespace ccm::svt;

// 1080p at 25-30 fps in real time on 2 cores needs preset 12 (measured: preset 10
// gives 26-33 fps, 12 gives 45-59 fps on the street clip); see docs/encoders.md.
constexpr gint kDefaultPreset = 12;
constexpr guint kDefaultQuantizer = 35;
// Pictures SVT-AV1 1.4.1 holds before releasing a packet, measured by feeding one
// picture at a time: low delay 1; random access with mini-GOP 16 and look-ahead 16:
// 19 in CQP, 36 with its own rate control (it extends the look-ahead).
constexpr guint kLowDelayHeld = 1;
// In low delay we wait for the library down to this many pictures inside: one
// behind a live source (the latency it reports), four behind a non-live one (a
// file), where nobody waits for a picture and SVT needs several in flight to keep
// every core busy (measured at 1080p preset 12: 1 -> 35-41 fps, 2 -> 45-49,
// 4 -> 54-55, unbounded -> 53-55).
constexpr guint kOfflineInFlight = 4;
// Behind a live source the element starts with one picture in flight. Where SVT
// cannot code a picture within the frame's slot one at a time (1080p60 on 16 cores
// at preset 12: 37 fps so; 4K60 anywhere), encode() would hold the source back on
// every frame and the stream falls further behind each second. So over each window
// of kLiveWindow pictures, if the library calls (the send and the waits for
// packets; not the pushes downstream, which a syncing sink holds) took more than
// kLiveBusyShare of their slots and the pictures came out later and later by the
// pipeline's clock, one more picture goes in flight, up to
// kOfflineInFlight, and the latency is reported again: a frame or two more latency
// instead of a stream that cannot keep up. Never fewer again for the same format.
constexpr guint kLiveWindow = 30;
constexpr double kLiveBusyShare = 0.9;
constexpr guint kRandomAccessHeldCqp = 19;
constexpr guint kRandomAccessHeldRc = 36;

// Longest wait for a packet the library owes us before we stop waiting (and log):
// a guard against a library that holds more than measured, never reached normally.
constexpr gint64 kPacketWaitUs = 2 * G_USEC_PER_SEC;
constexpr gulong kPollUs = 200;

GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("video/x-raw, format=(string){ I420, I420_10LE }, width=(int)[ 64, 16384 ], "
                    "height=(int)[ 64, 8704 ], framerate=(fraction)[ 0/1, MAX ]"));

GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("video/x-av1, stream-format=(string)obu-stream, alignment=(string)tu, profile=(string)main"));

enum { PROP_RESTARTS = GST_CCM_VIDEO_ENC_PROP_LAST, PROP_LIBRARY_RATE_CONTROL };

// library-rate-control on SVT-AV1 2.x: a new bitrate reaches the library only on a
// key picture. A fall below this share of the rate in effect goes in at once
// (congestion cannot wait); a change of at least kRateStepToApply goes in once
// kRateChangeGapS has passed since the last; smaller ones wait for the next key
// picture there is anyway (periodic or requested).
constexpr double kRateFallNow = 0.7;
// library-rate-control's default: on SVT-AV1 2.x its own low-delay CBR, bit for bit
// SvtAv1EncApp's (BD-rate +0.0% on 9 of 10 clips, 2.3.0) where our per-picture QPs
// cost -22% to +82% there (the library runs 2 temporal levels in low delay, not
// the 3 our layer offsets were measured for on 1.4.1); on 1.4.1 a change would
// reopen the library, and our QPs are within 4% on camera content: off there.
// docs/benchmarks.md, "SVT-AV1's own rate control".
constexpr gboolean kLibraryRateDefault = kLowDelayKeyOnRequest ? TRUE : FALSE;
constexpr double kRateStepToApply = 0.1;
constexpr double kRateChangeGapS = 1.0;

}  // namespace

// All the element's state lives in the streaming thread (the base calls every
// virtual from there), except `restarts`, read by the property getter.
struct SvtState {
  GstVideoInfo info{};
  GstCcmEncSettings settings{};
  GstCcmHdrInfo hdr{};
  Plan plan;
  std::unique_ptr<SvtSession> session;
  bool drained = false;     // EOS went in: the library takes no more pictures
  guint64 sent_since_open = 0;
  guint64 last_key = 0;     // sent_since_open of the last key picture
  // Where the library counts its intra period from: 0, or (2.x, low delay) the last
  // key picture we asked for; SVT-AV1 2.3 starts its period again there (measured:
  // keys at 0, 40 asked, 165 with a period of 125).
  guint64 period_origin = 0;
  guint in_flight = 0;      // pictures sent whose packet has not come out
  guint max_in_flight = kLowDelayHeld;  // low delay: we wait for the library above this
  bool live = false;        // upstream is live (at open)
  guint live_in_flight = kLowDelayHeld;  // what keeping up with it took (kept across reopens)
  gint64 live_spent_us = 0; // time in the library over the current window
  gint64 library_us = 0;    // this picture's time in the library (send, waits for packets)
  guint live_window = 0;    // pictures in it
  std::optional<gint64> live_late_from;  // how late the window's first picture was done (µs)
  std::optional<ccm::rc::QpRateController> rc;
  guint applied_kbps = 0;   // library_rate: the target the library has now
  guint64 applied_at = 0;   // sent_since_open when it got it
  bool warned_offsets = false;
  bool warned_meta_qp = false;
};

struct _GstCcmSvtAv1Enc {
  GstCcmVideoEnc parent;
  SvtState* state;
  guint restarts;  // library restarts for requested key frames (atomic)
  gint library_rate;  // library-rate-control (atomic), read at open
  gint size_error_posted;  // the accept-caps refusal was reported (atomic)
};

G_DEFINE_TYPE(GstCcmSvtAv1Enc, gst_ccm_svt_av1_enc, GST_TYPE_CCM_VIDEO_ENC)

namespace {

void post_error(GstCcmSvtAv1Enc* self, const std::string& what, const std::string& detail) {
  GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("%s", what.c_str()), ("%s", detail.c_str()));
}

// Rate controller parameters from the settings: cbr spreads an excess over two
// seconds (with the QP held while it is more than half a second over: see
// QpRateController::Params), vbr over four.
ccm::rc::QpRateController::Params rc_params(const GstVideoInfo& info, const GstCcmEncSettings& s) {
  ccm::rc::QpRateController::Params p;
  p.bitrate_bps = double(s.bitrate) * 1000.0;
  p.fps = double(GST_VIDEO_INFO_FPS_N(&info)) / std::max(1, GST_VIDEO_INFO_FPS_D(&info));
  p.pixels = double(GST_VIDEO_INFO_WIDTH(&info)) * GST_VIDEO_INFO_HEIGHT(&info);
  p.reaction_s = s.rate_control == GST_CCM_RATE_CONTROL_VBR ? 4.0 : 2.0;
  p.min_qp = 1;
  p.max_qp = int(kQpMax);
  return p;
}


bool open_session(GstCcmSvtAv1Enc* self) {
  SvtState& st = *self->state;
  std::string what, detail;
  const gint64 t0 = g_get_monotonic_time();
  st.session = SvtSession::open(st.plan.fields, &what, &detail);
  if (!st.session) {
    post_error(self, what, detail);
    return false;
  }
  st.session->set_picture_format(GST_VIDEO_INFO_WIDTH(&st.info), GST_VIDEO_INFO_HEIGHT(&st.info),
                                 GST_VIDEO_INFO_COMP_DEPTH(&st.info, 0) > 8 ? 2 : 1);
  st.drained = false;
  st.sent_since_open = 0;
  st.period_origin = 0;
  st.in_flight = 0;
  GST_DEBUG_OBJECT(self, "SVT-AV1 opened in %.1f ms", (g_get_monotonic_time() - t0) / 1000.0);
  return true;
}

GstFlowReturn finish_packet(GstCcmSvtAv1Enc* self, EbBufferHeaderType* pkt) {
  SvtState& st = *self->state;
  auto* venc = GST_VIDEO_ENCODER(self);
  const bool key = pkt->pic_type == EB_AV1_KEY_PICTURE;
  if (st.in_flight > 0) st.in_flight--;
  if (st.rc && st.plan.per_picture_qp) st.rc->on_encoded(double(pkt->n_filled_len) * 8.0, key, int(pkt->qp));

  GstVideoCodecFrame* frame = gst_video_encoder_get_frame(venc, int(pkt->pts));
  if (!frame) {
    GST_WARNING_OBJECT(self, "SVT-AV1 returned %u bytes for frame %" G_GINT64_FORMAT " that is gone",
                       pkt->n_filled_len, pkt->pts);
    return GST_FLOW_OK;
  }
  GstBuffer* buffer = gst_video_encoder_allocate_output_buffer(venc, pkt->n_filled_len);
  gst_buffer_fill(buffer, 0, pkt->p_buffer, pkt->n_filled_len);
  frame->output_buffer = buffer;
  // Only key pictures are random-access points (they carry the sequence header);
  // intra-only pictures are not.
  if (key)
    GST_VIDEO_CODEC_FRAME_SET_SYNC_POINT(frame);
  else
    GST_VIDEO_CODEC_FRAME_UNSET_SYNC_POINT(frame);
  GST_LOG_OBJECT(self, "frame %u: %u bytes, qp %u, type %d", frame->system_frame_number, pkt->n_filled_len, pkt->qp,
                 int(pkt->pic_type));
  return gst_video_encoder_finish_frame(venc, frame);
}

// SVT-AV1 2.x (2.3 in Debian 13): in low delay svt_av1_enc_get_packet blocks until
// a packet comes, whatever pic_send_done says (EbSvtAv1Enc.h, "Step 5"), and every
// picture comes out without waiting for the next one (2.3: none held). A call with
// no picture inside would wait forever, so take exactly one packet per picture we
// let out: down to max_in_flight, or one more with `wait_for_one`. 1.4.1's call
// never blocks there (the polling collect() below).
#if SVT_AV1_CHECK_VERSION(2, 0, 0)
constexpr bool kLowDelayGetBlocks = true;
#else
constexpr bool kLowDelayGetBlocks = false;
#endif

GstFlowReturn collect_blocking(GstCcmSvtAv1Enc* self, bool wait_for_one) {
  SvtState& st = *self->state;
  GstFlowReturn ret = GST_FLOW_OK;
  while (st.in_flight > st.max_in_flight || (wait_for_one && st.in_flight > 0)) {
    wait_for_one = false;
    EbBufferHeaderType* pkt = nullptr;
    const gint64 wait_start = g_get_monotonic_time();
    const EbErrorType r = svt_av1_enc_get_packet(st.session->handle(), &pkt, 0);
    st.library_us += g_get_monotonic_time() - wait_start;
    if (r != EB_ErrorNone || !pkt || (pkt->flags & EB_BUFFERFLAG_ERROR_MASK)) {
      if (pkt) svt_av1_enc_release_out_buffer(&pkt);
      GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("SVT-AV1 failed to encode a picture"),
                        ("svt_av1_enc_get_packet: %s (0x%x)", error_name(r), unsigned(r)));
      return GST_FLOW_ERROR;
    }
    const guint before = st.in_flight;
    GstFlowReturn fr = GST_FLOW_OK;
    if (pkt->n_filled_len > 0) fr = finish_packet(self, pkt);
    svt_av1_enc_release_out_buffer(&pkt);
    if (st.in_flight == before && st.in_flight > 0) st.in_flight--;  // an empty packet still answers a picture
    if (fr != GST_FLOW_OK && ret == GST_FLOW_OK) ret = fr;
  }
  return ret;
}

// Takes every packet the library has ready; with `wait_for_one`, first waits
// (polling: the library's blocking call has no timeout) until at least one came.
GstFlowReturn collect(GstCcmSvtAv1Enc* self, bool wait_for_one) {
  SvtState& st = *self->state;
  if (kLowDelayGetBlocks && st.plan.low_delay) return collect_blocking(self, wait_for_one);
  const gint64 deadline = g_get_monotonic_time() + kPacketWaitUs;
  GstFlowReturn ret = GST_FLOW_OK;
  for (;;) {
    EbBufferHeaderType* pkt = nullptr;
    const EbErrorType r = svt_av1_enc_get_packet(st.session->handle(), &pkt, 0);
    if (r == EB_NoErrorEmptyQueue) {
      if (!wait_for_one) return ret;
      if (g_get_monotonic_time() > deadline) {
        GST_WARNING_OBJECT(self, "SVT-AV1 holds %u pictures, more than the %u expected", st.in_flight,
                           st.max_in_flight);
        return ret;
      }
      const gint64 wait_start = g_get_monotonic_time();
      g_usleep(kPollUs);
      st.library_us += g_get_monotonic_time() - wait_start;
      continue;
    }
    if (r != EB_ErrorNone || !pkt || (pkt->flags & EB_BUFFERFLAG_ERROR_MASK)) {
      if (pkt) svt_av1_enc_release_out_buffer(&pkt);
      GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("SVT-AV1 failed to encode a picture"),
                        ("svt_av1_enc_get_packet: %s (0x%x)", error_name(r), unsigned(r)));
      return GST_FLOW_ERROR;
    }
    wait_for_one = false;
    GstFlowReturn fr = GST_FLOW_OK;
    if (pkt->n_filled_len > 0) fr = finish_packet(self, pkt);
    svt_av1_enc_release_out_buffer(&pkt);
    if (fr != GST_FLOW_OK && ret == GST_FLOW_OK) ret = fr;
  }
}

GstFlowReturn drain_session(GstCcmSvtAv1Enc* self) {
  SvtState& st = *self->state;
  if (!st.session || st.drained) return GST_FLOW_OK;
  st.drained = true;
  // Nothing inside, and an EOS after zero pictures never comes out (see ~SvtSession).
  if (st.session->pictures_sent() == 0) return GST_FLOW_OK;
  EbBufferHeaderType eos{};
  eos.size = sizeof(eos);
  eos.flags = EB_BUFFERFLAG_EOS;
  eos.pic_type = EB_AV1_INVALID_PICTURE;
  EbErrorType r = svt_av1_enc_send_picture(st.session->handle(), &eos);
  st.session->note_eos_sent();
  if (r != EB_ErrorNone) {
    GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("SVT-AV1 refused the end of stream"),
                      ("svt_av1_enc_send_picture(EOS): %s", error_name(r)));
    return GST_FLOW_ERROR;
  }
  GstFlowReturn ret = GST_FLOW_OK;
  for (;;) {
    EbBufferHeaderType* pkt = nullptr;
    // After EOS the call blocks until the next packet; the last one has the EOS flag.
    r = svt_av1_enc_get_packet(st.session->handle(), &pkt, 1);
    if (r != EB_ErrorNone || !pkt) {
      if (r != EB_NoErrorEmptyQueue)
        GST_WARNING_OBJECT(self, "SVT-AV1 failed while draining: %s", error_name(r));
      break;
    }
    const bool last = pkt->flags & EB_BUFFERFLAG_EOS;
    GstFlowReturn fr = GST_FLOW_OK;
    if (pkt->n_filled_len > 0 && !(pkt->flags & EB_BUFFERFLAG_ERROR_MASK)) fr = finish_packet(self, pkt);
    svt_av1_enc_release_out_buffer(&pkt);
    if (fr != GST_FLOW_OK && ret == GST_FLOW_OK) ret = fr;
    if (last) break;
  }
  if (st.in_flight)
    GST_WARNING_OBJECT(self, "%u pictures never came out of SVT-AV1", st.in_flight);
  st.in_flight = 0;
  if (st.rc) st.rc->drop_in_flight();
  return ret;
}

// Restarts the library so that the next picture is a key frame: the only way to
// get one on request in low delay (SVT 1.4 refuses forced key pictures there).
// Every picture already inside comes out first.
GstFlowReturn restart_for_key(GstCcmSvtAv1Enc* self) {
  SvtState& st = *self->state;
  const gint64 t0 = g_get_monotonic_time();
  const GstFlowReturn ret = drain_session(self);
  st.session.reset();
  if (!open_session(self)) return GST_FLOW_ERROR;
  g_atomic_int_inc(&self->restarts);
  GST_INFO_OBJECT(self, "restarted SVT-AV1 for a requested key frame in %.1f ms",
                  (g_get_monotonic_time() - t0) / 1000.0);
  return ret;  // downstream's answer to the pictures that came out (flushing, not linked ...)
}

// The plan for the current settings, and our rate controller where it decides.
void plan_session(GstCcmSvtAv1Enc* self, bool library_rate) {
  SvtState& st = *self->state;
  st.plan = make_plan(st.info, st.settings, st.hdr, library_rate);
  st.applied_kbps = st.settings.bitrate;
  st.applied_at = 0;
  if (st.plan.own_rc) {
    if (st.rc)
      st.rc->set_params(rc_params(st.info, st.settings));
    else
      st.rc.emplace(rc_params(st.info, st.settings));
  } else {
    st.rc.reset();
  }
}

// Whether upstream is live (its latency query says so). Unknown counts as live:
// the cautious answer keeps the element's delay at one picture.
bool upstream_is_live(GstCcmSvtAv1Enc* self) {
  GstQuery* q = gst_query_new_latency();
  gboolean live = TRUE;
  if (gst_pad_peer_query(GST_VIDEO_ENCODER_SINK_PAD(self), q)) gst_query_parse_latency(q, &live, nullptr, nullptr);
  gst_query_unref(q);
  return live;
}

// How late, by the pipeline's clock, the picture with this pts is done now (µs;
// negative: early). None without a clock or a time.
std::optional<gint64> lateness_us(GstCcmSvtAv1Enc* self, GstClockTime pts) {
  const GstSegment& seg = GST_VIDEO_ENCODER(self)->input_segment;
  if (!GST_CLOCK_TIME_IS_VALID(pts) || seg.format != GST_FORMAT_TIME) return std::nullopt;
  const GstClockTime running = gst_segment_to_running_time(&seg, GST_FORMAT_TIME, pts);
  GstClock* clock = gst_element_get_clock(GST_ELEMENT(self));
  if (!clock || !GST_CLOCK_TIME_IS_VALID(running)) {
    if (clock) gst_object_unref(clock);
    return std::nullopt;
  }
  const GstClockTime now = gst_clock_get_time(clock);
  gst_object_unref(clock);
  const GstClockTime base = gst_element_get_base_time(GST_ELEMENT(self));
  return (GstClockTimeDiff(now) - GstClockTimeDiff(base) - GstClockTimeDiff(running)) / 1000;
}

// Behind a live source: one more picture in flight when, over a window, the library
// took more than kLiveBusyShare of the pictures' slots and the pictures came out
// later and later by the clock (a live source that pushes ahead of the clock, an
// appsrc fed from a file, is never behind). See kLiveWindow.
void keep_up_with_live(GstCcmSvtAv1Enc* self, gint64 spent_us, GstClockTime pts) {
  SvtState& st = *self->state;
  const gint fps_n = GST_VIDEO_INFO_FPS_N(&st.info), fps_d = GST_VIDEO_INFO_FPS_D(&st.info);
  if (!st.live || !st.plan.low_delay || st.max_in_flight >= kOfflineInFlight || fps_n <= 0) return;
  const std::optional<gint64> late = lateness_us(self, pts);
  if (st.live_window == 0) st.live_late_from = late;
  st.live_spent_us += spent_us;
  if (++st.live_window < kLiveWindow) return;
  const double slot_us = 1e6 * fps_d / fps_n;
  const double busy = double(st.live_spent_us) / (kLiveWindow * slot_us);
  const bool falling_behind = late && st.live_late_from && double(*late - *st.live_late_from) > slot_us;
  st.live_window = 0;
  st.live_spent_us = 0;
  if (busy <= kLiveBusyShare || !falling_behind) return;
  st.live_in_flight = st.max_in_flight = st.max_in_flight + 1;
  GST_INFO_OBJECT(self, "live: the library took %.0f%% of the frames' time with %u in flight; now %u",
                  busy * 100.0, st.max_in_flight - 1, st.max_in_flight);
  gst_ccm_video_enc_delay_changed(GST_CCM_VIDEO_ENC(self));
}

}  // namespace

// ---- SVT's own rate control in low delay (library-rate-control) --------------------

namespace {

// A bitrate change under library_rate: only the bitrate may differ, and only
// SVT-AV1 2.x takes it live (on a key picture, library_rate_change()); 1.4.1, or
// any other change, reopens the library (FALSE: the base does it).
gboolean library_rate_reconfigure(GstCcmSvtAv1Enc* self, const GstCcmEncSettings* wanted) {
  SvtState& st = *self->state;
  GstCcmEncSettings same = *wanted;
  same.bitrate = st.settings.bitrate;
  // Before the first picture a reopen costs nothing and gives the library the new
  // target from its start.
  if (!kLowDelayKeyOnRequest || st.sent_since_open == 0 || memcmp(&same, &st.settings, sizeof same) != 0)
    return FALSE;
  st.settings = *wanted;
  GST_INFO_OBJECT(self, "%u kbit/s asked: for the library on a key picture (it has %u)", wanted->bitrate,
                  st.applied_kbps);
  return TRUE;
}

// The new target (bit/s) the next picture carries, 0 for none: see kRateFallNow.
// `key_anyway`: the picture is a key picture already.
uint32_t library_rate_change(GstCcmSvtAv1Enc* self, bool key_anyway) {
  SvtState& st = *self->state;
  if (!kLowDelayKeyOnRequest || !st.plan.library_rate || st.settings.bitrate == st.applied_kbps ||
      st.sent_since_open == 0)
    return 0;  // 1.4.1 reopens for a change instead (library_rate_reconfigure)
  const double ratio = double(st.settings.bitrate) / std::max(1u, st.applied_kbps);
  const double fps = double(GST_VIDEO_INFO_FPS_N(&st.info)) / std::max(1, GST_VIDEO_INFO_FPS_D(&st.info));
  const bool gap = double(st.sent_since_open - st.applied_at) >= kRateChangeGapS * std::max(1.0, fps);
  if (!key_anyway && ratio >= kRateFallNow && !(gap && std::abs(ratio - 1.0) >= kRateStepToApply)) return 0;
  st.applied_kbps = st.settings.bitrate;
  st.applied_at = st.sent_since_open;
  return uint32_t(std::min<guint64>(guint64(st.applied_kbps) * 1000, G_MAXUINT32));
}

}  // namespace

// ---- GstCcmVideoEnc virtuals ------------------------------------------------------

static void gst_ccm_svt_av1_enc_close(GstCcmVideoEnc* enc) {
  SvtState& st = *GST_CCM_SVT_AV1_ENC(enc)->state;
  st.session.reset();
  st.in_flight = 0;
  if (st.rc) st.rc->drop_in_flight();
}

static gboolean gst_ccm_svt_av1_enc_open(GstCcmVideoEnc* enc, const GstVideoInfo* info,
                                         const GstCcmEncSettings* settings, const GstCcmHdrInfo* hdr) {
  auto* self = GST_CCM_SVT_AV1_ENC(enc);
  SvtState& st = *self->state;
  gst_ccm_svt_av1_enc_close(enc);

  const gint w = GST_VIDEO_INFO_WIDTH(info), h = GST_VIDEO_INFO_HEIGHT(info);
  if (auto problem = size_problem(w, h)) {
    GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("%s", problem->c_str()),
                      ("scale or crop the video first, or use another AV1 encoder (av1enc)"));
    return FALSE;
  }
  const bool same_format = st.info.width == info->width && st.info.height == info->height &&
                           st.info.fps_n == info->fps_n && st.info.fps_d == info->fps_d;
  st.info = *info;
  st.settings = *settings;
  st.hdr = *hdr;
  plan_session(self, g_atomic_int_get(&self->library_rate) != 0);
  // SVT's own low-delay rate control learns from the pictures already out: with four
  // inside it learns later and codes otherwise (SVT-AV1 2.3, street 1080p at 1555
  // kbit/s: 473511 bytes and +28% BD-rate against SvtAv1EncApp with 4; 489887, the
  // program's 489884, with 1). So it gets one picture at a time, as the program does.
  if (!same_format) st.live_in_flight = kLowDelayHeld;
  st.live = upstream_is_live(self);
  st.live_spent_us = 0;
  st.live_window = 0;
  st.max_in_flight = st.live ? st.live_in_flight : st.plan.library_rate ? kLowDelayHeld : kOfflineInFlight;
  if (!open_session(self)) return FALSE;

  GstCaps* caps = gst_caps_from_string(
      "video/x-av1, stream-format=(string)obu-stream, alignment=(string)tu, profile=(string)main");
  if (hdr->has_mastering_display) gst_video_mastering_display_info_add_to_caps(&hdr->mastering_display, caps);
  if (hdr->has_content_light_level) gst_video_content_light_level_add_to_caps(&hdr->content_light_level, caps);
  GstVideoCodecState* out = gst_video_encoder_set_output_state(GST_VIDEO_ENCODER(enc), caps, nullptr);
  // No reference state (the base keeps the input state): size, rate and
  // colorimetry of the output caps come from the info we encode.
  out->info = *info;
  gst_video_codec_state_unref(out);

  GST_INFO_OBJECT(self,
                  "SVT-AV1 %s: %dx%d %u-bit @ %d/%d, preset %d, %s, %s, bitrate %u kbit/s, quantizer %u, "
                  "key frame every %u, up to %u pictures inside",
                  svt_av1_get_version(), w, h, GST_VIDEO_INFO_COMP_DEPTH(info, 0), GST_VIDEO_INFO_FPS_N(info),
                  GST_VIDEO_INFO_FPS_D(info), settings->speed_preset,
                  st.plan.low_delay ? "low delay" : "random access",
                  st.plan.own_rc ? "per-picture QP from our rate controller"
                                 : (st.plan.per_picture_qp ? "constant QP" : "SVT's own rate control"),
                  settings->bitrate, settings->quantizer, st.plan.key_period, st.max_in_flight);
  return TRUE;
}

static GstFlowReturn gst_ccm_svt_av1_enc_encode(GstCcmVideoEnc* enc, GstVideoCodecFrame* frame,
                                                const GstCcmFrameParams* params) {
  auto* self = GST_CCM_SVT_AV1_ENC(enc);
  SvtState& st = *self->state;
  GstFlowReturn ret = GST_FLOW_OK;
  st.library_us = 0;
  const GstClockTime pts = frame->pts;

  if (st.session && st.drained) {
    // Pictures after EOS (a new segment without a flush): the library takes no
    // more once drained, start a fresh one.
    st.session.reset();
    if (!open_session(self)) {
      gst_video_codec_frame_unref(frame);
      return GST_FLOW_ERROR;
    }
  }
  if (!st.session) {
    gst_video_codec_frame_unref(frame);
    return GST_FLOW_NOT_NEGOTIATED;
  }
  if (st.plan.library_rate && params->qp >= 0 && st.sent_since_open == 0) {
    // A QP on the first picture (GstCcmQpMeta: ccmratecontrol mode=rlambda) means
    // someone steers picture by picture: per-picture QP instead of SVT's own rate
    // control, while it costs nothing (no picture went in yet).
    GST_INFO_OBJECT(self, "QP from GstCcmQpMeta on the first picture: per-picture QP, not SVT's own rate control");
    st.session.reset();
    plan_session(self, false);
    if (!open_session(self)) {
      gst_video_codec_frame_unref(frame);
      return GST_FLOW_ERROR;
    }
  }

  // Does the library make this picture a key frame by itself (its first, or its
  // periodic one)? A request for any other picture: the library takes it as
  // pic_type where it can (kLowDelayKeyOnRequest), else a restart in low delay.
  const guint period = st.plan.key_period;
  bool key = st.sent_since_open == 0 || (period > 0 && (st.sent_since_open - st.period_origin) % period == 0);
  bool force_in_library = false;
  const uint32_t new_rate_bps = library_rate_change(self, key || params->force_key_frame);
  if (new_rate_bps > 0 && !key) {  // the picture that carries it is a key picture
    key = true;
    st.period_origin = st.sent_since_open;
  }
  if (params->force_key_frame && !key) {
    if (st.plan.low_delay && kLowDelayKeyOnRequest) {
      force_in_library = true;
      st.period_origin = st.sent_since_open;
    } else if (st.plan.low_delay || !st.plan.per_picture_qp) {
      ret = restart_for_key(self);
      if (ret != GST_FLOW_OK) {
        gst_video_codec_frame_unref(frame);
        return ret;
      }
    } else {
      force_in_library = true;  // random access + CQP: the library takes pic_type
    }
    key = true;
  }

  int qp = -1;
  int layered_qp = -1;  // qp with the layer offset: what the library gets
  if (st.plan.per_picture_qp) {
    bool layered = true;
    if (params->qp >= 0) {
      qp = std::clamp(params->qp, 0, int(kQpMax));
    } else if (st.rc) {
      // Our own controller picks the base QP slowly and the layer offsets go on
      // top, as on a constant QP: flat per-picture QPs cost +27% to +48% in
      // BD-rate against SvtAv1EncApp's CBR (validation set, docs/benchmarks.md).
      qp = st.rc->pick_qp(key);
    } else {
      qp = int(std::min(st.settings.quantizer, kQpMax));
    }
    // Low delay: the picture's layer offset on top (see kLowDelayLayerQpOffset).
    // Whoever chose `qp` chose it for the average picture; key pictures keep it.
    if (key) {
      st.last_key = st.sent_since_open;
    } else if (st.plan.low_delay && layered) {
      const int offset = kLowDelayLayerQpOffset[low_delay_layer(st.sent_since_open - st.last_key)];
      layered_qp = std::clamp(qp + offset, 1, int(kQpMax));
    }
  } else if (params->qp >= 0 && !st.warned_meta_qp) {
    GST_WARNING_OBJECT(self, "per-frame QP ignored: SVT-AV1 runs its own rate control (low-latency=false or "
                             "library-rate-control=true); use rate-control=cqp, or low-latency=true with "
                             "library-rate-control=false");
    st.warned_meta_qp = true;
  }
  if (params->qp_offsets && !st.warned_offsets) {
    GST_WARNING_OBJECT(self, "per-block QP offsets ignored: SVT-AV1 1.4 takes no QP map");
    st.warned_offsets = true;
  }

  GstVideoFrame vframe;
  if (!gst_video_frame_map(&vframe, &st.info, frame->input_buffer, GST_MAP_READ)) {
    gst_video_codec_frame_unref(frame);
    GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("could not map the input frame"), (nullptr));
    return GST_FLOW_ERROR;
  }
  // Strides in samples: 16-bit samples for 10-bit input.
  const guint bytes_per_sample = GST_VIDEO_INFO_COMP_DEPTH(&st.info, 0) > 8 ? 2 : 1;
  EbSvtIOFormat pic{};
  pic.luma = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&vframe, 0));
  pic.cb = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&vframe, 1));
  pic.cr = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&vframe, 2));
  pic.y_stride = GST_VIDEO_FRAME_PLANE_STRIDE(&vframe, 0) / bytes_per_sample;
  pic.cb_stride = GST_VIDEO_FRAME_PLANE_STRIDE(&vframe, 1) / bytes_per_sample;
  pic.cr_stride = GST_VIDEO_FRAME_PLANE_STRIDE(&vframe, 2) / bytes_per_sample;
  pic.width = GST_VIDEO_FRAME_WIDTH(&vframe);
  pic.height = GST_VIDEO_FRAME_HEIGHT(&vframe);
  pic.color_fmt = EB_YUV420;
  pic.bit_depth = bytes_per_sample == 2 ? EB_TEN_BIT : EB_EIGHT_BIT;

  EbBufferHeaderType in{};
  in.size = sizeof(in);
  in.p_buffer = reinterpret_cast<uint8_t*>(&pic);
  in.n_filled_len = guint32(GST_VIDEO_FRAME_SIZE(&vframe));
  in.n_alloc_len = in.n_filled_len;
  in.p_app_private = nullptr;  // parsed by SVT as a private-data list
  in.pts = frame->system_frame_number;
  in.pic_type = force_in_library ? EB_AV1_KEY_PICTURE : EB_AV1_INVALID_PICTURE;
  in.qp = layered_qp >= 0 ? guint32(layered_qp) : qp >= 0 ? guint32(qp) : 0;
  const guint32 frame_number = frame->system_frame_number;
  // The library copies the picture during the call.
  const gint64 send_start = g_get_monotonic_time();
  const EbErrorType r = st.session->send(in, new_rate_bps);
  st.library_us += g_get_monotonic_time() - send_start;
  gst_video_frame_unmap(&vframe);
  gst_video_codec_frame_unref(frame);
  if (r != EB_ErrorNone) {
    GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("SVT-AV1 refused a picture"),
                      ("svt_av1_enc_send_picture (frame %u): %s", frame_number, error_name(r)));
    return GST_FLOW_ERROR;
  }
  if (new_rate_bps > 0)
    GST_INFO_OBJECT(self, "SVT-AV1 now at %u kbit/s, from this key picture (frame %u)", st.applied_kbps,
                    frame_number);
  st.sent_since_open++;
  st.in_flight++;
  if (st.rc && st.plan.per_picture_qp) st.rc->on_sent(key, layered_qp >= 0 ? layered_qp : qp, qp);

  // Low delay: the library releases picture N once N+1 is in; wait for it so the
  // element holds exactly max_in_flight pictures (what the latency query says).
  GstFlowReturn cr = collect(self, false);
  while (cr == GST_FLOW_OK && st.plan.low_delay && st.in_flight > st.max_in_flight) {
    const guint before = st.in_flight;
    cr = collect(self, true);
    if (st.in_flight == before) break;  // timed out (logged)
  }
  if (cr == GST_FLOW_OK) keep_up_with_live(self, st.library_us, pts);
  return cr;
}

static GstFlowReturn gst_ccm_svt_av1_enc_drain(GstCcmVideoEnc* enc) {
  return drain_session(GST_CCM_SVT_AV1_ENC(enc));
}

static gboolean gst_ccm_svt_av1_enc_reconfigure(GstCcmVideoEnc* enc, const GstCcmEncSettings* wanted) {
  auto* self = GST_CCM_SVT_AV1_ENC(enc);
  SvtState& st = *self->state;
  if (!st.session || st.drained) return FALSE;
  if (st.plan.library_rate) return library_rate_reconfigure(self, wanted);
  if (!st.plan.per_picture_qp) return FALSE;
  // In per-picture-QP mode the library never sees the bitrate, the rate-control
  // mode (between cbr, vbr and cqp) or the quantizer: those change here, on the
  // next picture. Anything else (preset, key-frame interval, threads, low-latency)
  // needs a new library instance.
  GstCcmEncSettings same = *wanted;
  same.bitrate = st.settings.bitrate;
  same.rate_control = st.settings.rate_control;
  same.quantizer = st.settings.quantizer;
  if (memcmp(&same, &st.settings, sizeof same) != 0) return FALSE;
  if (!st.plan.low_delay && wanted->rate_control != GST_CCM_RATE_CONTROL_CQP) return FALSE;

  st.settings = *wanted;
  st.plan.own_rc = wanted->rate_control != GST_CCM_RATE_CONTROL_CQP;
  if (st.plan.own_rc) {
    if (st.rc)
      st.rc->set_params(rc_params(st.info, *wanted));
    else
      st.rc.emplace(rc_params(st.info, *wanted));
  }
  GST_INFO_OBJECT(self, "now %s at %u kbit/s (quantizer %u), from the next picture",
                  wanted->rate_control == GST_CCM_RATE_CONTROL_CQP ? "cqp"
                  : wanted->rate_control == GST_CCM_RATE_CONTROL_VBR ? "vbr" : "cbr",
                  wanted->bitrate, wanted->quantizer);
  return TRUE;
}

static guint gst_ccm_svt_av1_enc_delay_frames(GstCcmVideoEnc* enc) {
  SvtState& st = *GST_CCM_SVT_AV1_ENC(enc)->state;
  if (st.plan.low_delay) return st.max_in_flight;
  return st.plan.per_picture_qp ? kRandomAccessHeldCqp : kRandomAccessHeldRc;
}

// ---- GObject ----------------------------------------------------------------------------

// Sizes the library refuses (odd ones: caps cannot say "even") are refused in the
// accept-caps query too, so that a bin choosing an encoder (ccmencbin) can ask
// before it commits to this one, and falls back to another. Once the element runs
// (PAUSED or PLAYING), such a query is a real negotiation: the refusal is then also
// an element error that names the limit, rather than a bare not-negotiated.
static gboolean gst_ccm_svt_av1_enc_sink_query(GstVideoEncoder* venc, GstQuery* query) {
  if (GST_QUERY_TYPE(query) == GST_QUERY_ACCEPT_CAPS) {
    GstCaps* caps = nullptr;
    gst_query_parse_accept_caps(query, &caps);
    const GstStructure* s = caps && gst_caps_get_size(caps) > 0 ? gst_caps_get_structure(caps, 0) : nullptr;
    gint w = 0, h = 0;
    if (s && gst_structure_get_int(s, "width", &w) && gst_structure_get_int(s, "height", &h)) {
      if (auto problem = size_problem(w, h)) {
        GST_DEBUG_OBJECT(venc, "refusing %dx%d: %s", w, h, problem->c_str());
        auto* self = GST_CCM_SVT_AV1_ENC(venc);
        if (GST_STATE(venc) >= GST_STATE_PAUSED && g_atomic_int_compare_and_exchange(&self->size_error_posted, 0, 1))
          GST_ELEMENT_ERROR(venc, STREAM, FORMAT, ("%s", problem->c_str()),
                            ("scale or crop the video first, or use another AV1 encoder (av1enc)"));
        gst_query_set_accept_caps_result(query, FALSE);
        return TRUE;
      }
    }
  }
  return GST_VIDEO_ENCODER_CLASS(gst_ccm_svt_av1_enc_parent_class)->sink_query(venc, query);
}

static void gst_ccm_svt_av1_enc_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  if (id == PROP_RESTARTS) {
    g_value_set_uint(value, guint(g_atomic_int_get(&GST_CCM_SVT_AV1_ENC(object)->restarts)));
    return;
  }
  if (id == PROP_LIBRARY_RATE_CONTROL) {
    g_value_set_boolean(value, g_atomic_int_get(&GST_CCM_SVT_AV1_ENC(object)->library_rate) != 0);
    return;
  }
  G_OBJECT_CLASS(gst_ccm_svt_av1_enc_parent_class)->get_property(object, id, value, pspec);
}

static void gst_ccm_svt_av1_enc_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  if (id == PROP_LIBRARY_RATE_CONTROL) {
    g_atomic_int_set(&GST_CCM_SVT_AV1_ENC(object)->library_rate, g_value_get_boolean(value) ? 1 : 0);
    return;
  }
  G_OBJECT_CLASS(gst_ccm_svt_av1_enc_parent_class)->set_property(object, id, value, pspec);
}

static void gst_ccm_svt_av1_enc_finalize(GObject* object) {
  auto* self = GST_CCM_SVT_AV1_ENC(object);
  delete self->state;
  self->state = nullptr;
  G_OBJECT_CLASS(gst_ccm_svt_av1_enc_parent_class)->finalize(object);
}

static void gst_ccm_svt_av1_enc_init(GstCcmSvtAv1Enc* self) {
  self->state = new SvtState();
  self->restarts = 0;
  self->library_rate = kLibraryRateDefault;
  self->size_error_posted = 0;
  // The base reads these defaults from the pspecs in its own instance init, where
  // GObject still presents the base class (which has neither property): set ours.
  g_object_set(self, "speed-preset", kDefaultPreset, "quantizer", kDefaultQuantizer, nullptr);
}

void gst_ccm_svt_av1_enc_quiet_library(void) {
  // SVT-AV1 1.4 has no logging callback: it reads SVT_LOG at every
  // svt_av1_enc_init_handle (0 fatal .. 4 debug). 1: errors only; its warnings
  // are about the low-delay mode we chose, on every encoder it opens.
  g_setenv("SVT_LOG", "1", FALSE);
}

static void gst_ccm_svt_av1_enc_class_init(GstCcmSvtAv1EncClass* klass) {
  GST_DEBUG_CATEGORY_INIT(ccm_svt_av1_enc_debug, "ccmsvtav1enc", 0, "gst-ccm SVT-AV1 encoder");
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstVideoEncoderClass* venc_class = GST_VIDEO_ENCODER_CLASS(klass);
  GstCcmVideoEncClass* enc_class = GST_CCM_VIDEO_ENC_CLASS(klass);

  gobject_class->finalize = gst_ccm_svt_av1_enc_finalize;
  // Ours first, then the base's install functions (which leave them in place).
  gobject_class->set_property = gst_ccm_svt_av1_enc_set_property;
  gobject_class->get_property = gst_ccm_svt_av1_enc_get_property;
  venc_class->sink_query = gst_ccm_svt_av1_enc_sink_query;

  enc_class->open = gst_ccm_svt_av1_enc_open;
  enc_class->close = gst_ccm_svt_av1_enc_close;
  enc_class->encode = gst_ccm_svt_av1_enc_encode;
  enc_class->drain = gst_ccm_svt_av1_enc_drain;
  enc_class->reconfigure = gst_ccm_svt_av1_enc_reconfigure;
  enc_class->delay_frames = gst_ccm_svt_av1_enc_delay_frames;

  gst_ccm_video_enc_class_install_speed_preset(
      enc_class, 0, 13, kDefaultPreset,
      "SVT-AV1 preset (enc_mode): 0 slowest/best .. 13 fastest; low delay raises 0-7 to 8. "
      "12 runs 1080p in real time on 2 cores (a change while PLAYING restarts the encoder)");
  gst_ccm_video_enc_class_install_quantizer(enc_class, kQpMax, kDefaultQuantizer);

  g_object_class_install_property(
      gobject_class, PROP_RESTARTS,
      g_param_spec_uint("key-frame-restarts", "Key-frame restarts",
                        "How often the library was restarted to make a requested key frame (low delay)", 0,
                        G_MAXUINT, 0, GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(
      gobject_class, PROP_LIBRARY_RATE_CONTROL,
      g_param_spec_boolean(
          "library-rate-control", "Library rate control",
          "With low-latency and cbr/vbr: SVT-AV1's own rate control (its adaptive quantisation, its picture "
          "QPs) instead of a QP per picture from ours. A bitrate change then reaches the library on a key "
          "picture: on SVT-AV1 2.x a fall below 0.7x at once, a change of 10% or more after 1 s since the "
          "last, smaller ones at the next key frame; on 1.4 it restarts the library. Read when the encoder "
          "opens. Default: true on SVT-AV1 2.x, false on 1.4",
          kLibraryRateDefault, GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(
      element_class, "CCM SVT-AV1 encoder", "Codec/Encoder/Video",
      "AV1 on SVT-AV1 in low delay: live bitrate changes through per-picture QP (our rate controller) or SVT's own, "
      "per-frame QP from GstCcmQpMeta, key frames on request, HDR10 metadata",
      "gst-ccm developers");
}
