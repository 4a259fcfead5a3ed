/**
 * SECTION:element-ccmrtpav1pay
 * @title: ccmrtpav1pay
 *
 * AV1 RTP payloader (AOMedia AV1 RTP payload format).
 *
 * One temporal unit in, its packets out as one buffer list: OBUs without their
 * size field, small OBUs aggregated, large ones fragmented to the MTU, the marker
 * on the last packet of the unit, N on the first packet of a key frame that
 * carries its sequence header. Temporal delimiters, tile lists and padding are
 * not sent. Upstream force-key-unit events (PLI/FIR from rtpsession) pass through
 * to the encoder unchanged.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=60 ! ccmencbin codec=av1 ! ccmrtpav1pay ! udpsink host=127.0.0.1 port=5000
 * ]|
 */
#include "rtp/ccmrtpav1pay.h"

#include <gst/rtp/gstrtpbuffer.h>

#include "rtp/av1_rtp.h"

GST_DEBUG_CATEGORY_STATIC(ccm_rtp_av1_pay_debug);
#define GST_CAT_DEFAULT ccm_rtp_av1_pay_debug

struct _GstCcmRtpAv1Pay {
  GstRTPBasePayload parent;
  guint64 temporal_units;
  guint64 packets;
};

G_DEFINE_TYPE_WITH_CODE(GstCcmRtpAv1Pay, gst_ccm_rtp_av1_pay, GST_TYPE_RTP_BASE_PAYLOAD,
                        GST_DEBUG_CATEGORY_INIT(ccm_rtp_av1_pay_debug, "ccmrtpav1pay", 0,
                                                "AV1 RTP payloader"))

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS,
                            GST_STATIC_CAPS("video/x-av1, stream-format = (string) obu-stream, "
                                            "alignment = (string) tu"));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("application/x-rtp, media = (string) video, payload = (int) " GST_RTP_PAYLOAD_DYNAMIC_STRING
                    ", clock-rate = (int) 90000, encoding-name = (string) AV1"));

static gboolean set_caps(GstRTPBasePayload* payload, GstCaps* caps) {
  GST_DEBUG_OBJECT(payload, "sink caps %" GST_PTR_FORMAT, caps);
  gst_rtp_base_payload_set_options(payload, "video", TRUE, "AV1", 90000);
  return gst_rtp_base_payload_set_outcaps(payload, nullptr);
}

static GstFlowReturn handle_buffer(GstRTPBasePayload* payload, GstBuffer* buffer) {
  auto* self = GST_CCM_RTP_AV1_PAY(payload);
  GstMapInfo map;
  if (!gst_buffer_map(buffer, &map, GST_MAP_READ)) {
    gst_buffer_unref(buffer);
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("cannot read an AV1 temporal unit"), (nullptr));
    return GST_FLOW_ERROR;
  }
  const guint mtu = GST_RTP_BASE_PAYLOAD_MTU(payload);
  const guint max_payload = gst_rtp_buffer_calc_payload_len(mtu, 0, 0);
  auto packets = ccm::rtp::av1::packetize({map.data, map.size}, max_payload);
  gst_buffer_unmap(buffer, &map);

  if (!packets) {
    // A broken unit would break the receiver's decoder as well: drop it and say so.
    GST_ELEMENT_WARNING(self, STREAM, FORMAT, ("dropping a malformed AV1 temporal unit"),
                        ("%" G_GSIZE_FORMAT " bytes that do not parse as OBUs with size fields",
                         gst_buffer_get_size(buffer)));
    gst_buffer_unref(buffer);
    return GST_FLOW_OK;
  }
  if (packets->empty()) {
    gst_buffer_unref(buffer);
    return GST_FLOW_OK;
  }

  GstBufferList* list = gst_buffer_list_new_sized(packets->size());
  for (const auto& packet : *packets) {
    GstBuffer* out = gst_rtp_base_payload_allocate_output_buffer(payload, packet.payload.size(), 0, 0);
    GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
    gst_rtp_buffer_map(out, GST_MAP_WRITE, &rtp);
    memcpy(gst_rtp_buffer_get_payload(&rtp), packet.payload.data(), packet.payload.size());
    gst_rtp_buffer_set_marker(&rtp, packet.marker);
    gst_rtp_buffer_unmap(&rtp);
    GST_BUFFER_PTS(out) = GST_BUFFER_PTS(buffer);
    GST_BUFFER_DTS(out) = GST_BUFFER_DTS(buffer);
    GST_BUFFER_DURATION(out) = GST_BUFFER_DURATION(buffer);
    gst_buffer_list_add(list, out);
  }
  self->temporal_units++;
  self->packets += packets->size();
  GST_LOG_OBJECT(self, "temporal unit of %" G_GSIZE_FORMAT " bytes in %zu packets",
                 gst_buffer_get_size(buffer), packets->size());
  gst_buffer_unref(buffer);
  return gst_rtp_base_payload_push_list(payload, list);
}

static void gst_ccm_rtp_av1_pay_class_init(GstCcmRtpAv1PayClass* klass) {
  auto* element_class = GST_ELEMENT_CLASS(klass);
  auto* payload_class = GST_RTP_BASE_PAYLOAD_CLASS(klass);
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "AV1 RTP payloader (gst-ccm)",
                                        "Codec/Payloader/Network/RTP/Video",
                                        "Packs AV1 temporal units into RTP packets (AV1 RTP payload format)",
                                        "gst-ccm");
  payload_class->set_caps = set_caps;
  payload_class->handle_buffer = handle_buffer;
}

static void gst_ccm_rtp_av1_pay_init(GstCcmRtpAv1Pay*) {}
