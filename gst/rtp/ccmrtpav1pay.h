// ccmrtpav1pay: AV1 temporal units (obu-stream, alignment=tu) into RTP packets of
// the AV1 RTP payload format. The format itself lives in lib/ccm/rtp/av1_rtp.h.
#pragma once

#include <gst/gst.h>
#include <gst/rtp/gstrtpbasepayload.h>

G_BEGIN_DECLS

#define GST_TYPE_CCM_RTP_AV1_PAY (gst_ccm_rtp_av1_pay_get_type())
G_DECLARE_FINAL_TYPE(GstCcmRtpAv1Pay, gst_ccm_rtp_av1_pay, GST, CCM_RTP_AV1_PAY, GstRTPBasePayload)

G_END_DECLS
