// ccmrtpav1depay: RTP packets of the AV1 RTP payload format back into AV1
// temporal units (obu-stream, alignment=tu, each starting with a temporal delimiter).
#pragma once

#include <gst/gst.h>
#include <gst/rtp/gstrtpbasedepayload.h>

G_BEGIN_DECLS

#define GST_TYPE_CCM_RTP_AV1_DEPAY (gst_ccm_rtp_av1_depay_get_type())
G_DECLARE_FINAL_TYPE(GstCcmRtpAv1Depay, gst_ccm_rtp_av1_depay, GST, CCM_RTP_AV1_DEPAY,
                     GstRTPBaseDepayload)

G_END_DECLS
