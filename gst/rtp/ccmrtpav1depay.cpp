/**
 * SECTION:element-ccmrtpav1depay
 * @title: ccmrtpav1depay
 *
 * AV1 RTP depayloader (AOMedia AV1 RTP payload format).
 *
 * Packets of one RTP timestamp become one temporal unit (obu-stream,
 * alignment=tu) that starts with a temporal delimiter and has every OBU's size
 * field back. A unit that lost packets is dropped, a key unit is asked for
 * upstream (the RTP session turns it into a PLI) and units are dropped until a
 * key frame starts a new coded video sequence, so the decoder never sees a
 * frame whose references are missing.
 *
 * ## Example launch line
 * Payload and back in one pipeline, decoded by libaom:
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=60 ! ccmencbin codec=av1 ! ccmrtpav1pay ! ccmrtpav1depay ! av1parse ! av1dec ! fakesink
 * ]|
 * Receiving what ccmrtpav1pay sends to port 5000:
 * |[
 * gst-launch-1.0 udpsrc port=5000 caps="application/x-rtp,media=video,encoding-name=AV1,clock-rate=90000" ! rtpjitterbuffer ! ccmrtpav1depay ! av1parse ! av1dec ! autovideosink
 * ]|
 */
#include "rtp/ccmrtpav1depay.h"

#include <gst/rtp/gstrtpbuffer.h>
#include <gst/video/video.h>

#include <new>

#include "rtp/av1_rtp.h"

GST_DEBUG_CATEGORY_STATIC(ccm_rtp_av1_depay_debug);
#define GST_CAT_DEFAULT ccm_rtp_av1_depay_debug

struct _GstCcmRtpAv1Depay {
  GstRTPBaseDepayload parent;
  ccm::rtp::av1::Depacketizer* depacketizer;  // owned; C++ object in a GObject
  gboolean waiting_for_key;
  gint64 last_key_request_us;  // monotonic; 0 = none yet
  guint64 dropped;
};

G_DEFINE_TYPE_WITH_CODE(GstCcmRtpAv1Depay, gst_ccm_rtp_av1_depay, GST_TYPE_RTP_BASE_DEPAYLOAD,
                        GST_DEBUG_CATEGORY_INIT(ccm_rtp_av1_depay_debug, "ccmrtpav1depay", 0,
                                                "AV1 RTP depayloader"))

enum { PROP_0, PROP_DROPPED };

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("application/x-rtp, media = (string) video, clock-rate = (int) 90000, "
                    "encoding-name = (string) AV1"));

static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS,
                            GST_STATIC_CAPS("video/x-av1, stream-format = (string) obu-stream, "
                                            "alignment = (string) tu"));

static gboolean set_caps(GstRTPBaseDepayload* depay, GstCaps* caps) {
  GST_DEBUG_OBJECT(depay, "sink caps %" GST_PTR_FORMAT, caps);
  GstCaps* out = gst_caps_new_simple("video/x-av1", "stream-format", G_TYPE_STRING, "obu-stream",
                                     "alignment", G_TYPE_STRING, "tu", nullptr);
  const gboolean ok = gst_pad_set_caps(GST_RTP_BASE_DEPAYLOAD_SRCPAD(depay), out);
  gst_caps_unref(out);
  return ok;
}

// Asked again while units are still dropped (a request or the key frame itself can
// be lost too), but at most once a second so a lossy link is not flooded with PLIs.
static void request_key_unit(GstCcmRtpAv1Depay* self) {
  const gint64 now = g_get_monotonic_time();
  if (self->last_key_request_us != 0 && now - self->last_key_request_us < G_USEC_PER_SEC) return;
  self->last_key_request_us = now;
  gst_pad_push_event(GST_RTP_BASE_DEPAYLOAD_SINKPAD(self),
                     gst_video_event_new_upstream_force_key_unit(GST_CLOCK_TIME_NONE, TRUE, 0));
}

static GstBuffer* process_rtp_packet(GstRTPBaseDepayload* depay, GstRTPBuffer* rtp) {
  auto* self = GST_CCM_RTP_AV1_DEPAY(depay);
  const auto* payload = static_cast<const uint8_t*>(gst_rtp_buffer_get_payload(rtp));
  const guint size = gst_rtp_buffer_get_payload_len(rtp);
  auto out = self->depacketizer->push({payload, size}, gst_rtp_buffer_get_marker(rtp),
                                      gst_rtp_buffer_get_timestamp(rtp),
                                      GST_BUFFER_IS_DISCONT(rtp->buffer));
  if (!out) return nullptr;
  GST_LOG_OBJECT(self, "temporal unit of %zu bytes%s%s", out->temporal_unit.size(),
                 out->starts_sequence ? ", starts a sequence" : "", out->corrupt ? ", corrupt" : "");
  if (out->corrupt && !self->waiting_for_key) {
    GST_INFO_OBJECT(self, "lost packets of a temporal unit: dropping until a key frame");
    self->waiting_for_key = TRUE;
  }
  if (self->waiting_for_key) {
    if (out->corrupt || !out->starts_sequence) {
      request_key_unit(self);
      self->dropped++;
      return nullptr;
    }
    self->waiting_for_key = FALSE;
  }
  GstBuffer* buffer = gst_buffer_new_memdup(out->temporal_unit.data(), out->temporal_unit.size());
  if (!out->starts_sequence) GST_BUFFER_FLAG_SET(buffer, GST_BUFFER_FLAG_DELTA_UNIT);
  return buffer;
}

static GstStateChangeReturn change_state(GstElement* element, GstStateChange transition) {
  auto* self = GST_CCM_RTP_AV1_DEPAY(element);
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) {
    self->depacketizer->reset();
    // A receiver that joins mid-stream has no references: start at a key frame.
    self->waiting_for_key = TRUE;
    self->last_key_request_us = 0;
  }
  return GST_ELEMENT_CLASS(gst_ccm_rtp_av1_depay_parent_class)->change_state(element, transition);
}

static gboolean handle_event(GstRTPBaseDepayload* depay, GstEvent* event) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP) {
    auto* self = GST_CCM_RTP_AV1_DEPAY(depay);
    self->depacketizer->reset();
    self->waiting_for_key = TRUE;
  }
  return GST_RTP_BASE_DEPAYLOAD_CLASS(gst_ccm_rtp_av1_depay_parent_class)->handle_event(depay, event);
}

static void get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  auto* self = GST_CCM_RTP_AV1_DEPAY(object);
  if (id == PROP_DROPPED)
    g_value_set_uint64(value, self->dropped);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
}

static void finalize(GObject* object) {
  delete GST_CCM_RTP_AV1_DEPAY(object)->depacketizer;
  G_OBJECT_CLASS(gst_ccm_rtp_av1_depay_parent_class)->finalize(object);
}

static void gst_ccm_rtp_av1_depay_class_init(GstCcmRtpAv1DepayClass* klass) {
  auto* object_class = G_OBJECT_CLASS(klass);
  auto* element_class = GST_ELEMENT_CLASS(klass);
  auto* depay_class = GST_RTP_BASE_DEPAYLOAD_CLASS(klass);
  object_class->get_property = get_property;
  object_class->finalize = finalize;
  g_object_class_install_property(
      object_class, PROP_DROPPED,
      g_param_spec_uint64("dropped", "Dropped", "Temporal units dropped (lost packets, waiting for a key frame)",
                          0, G_MAXUINT64, 0, static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "AV1 RTP depayloader (gst-ccm)",
                                        "Codec/Depayloader/Network/RTP/Video",
                                        "Reassembles AV1 temporal units from RTP packets (AV1 RTP payload format)",
                                        "gst-ccm");
  element_class->change_state = change_state;
  depay_class->set_caps = set_caps;
  depay_class->process_rtp_packet = process_rtp_packet;
  depay_class->handle_event = handle_event;
}

static void gst_ccm_rtp_av1_depay_init(GstCcmRtpAv1Depay* self) {
  self->depacketizer = new ccm::rtp::av1::Depacketizer();
  self->waiting_for_key = TRUE;
}
