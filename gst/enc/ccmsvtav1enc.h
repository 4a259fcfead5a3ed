// ccmsvtav1enc: AV1 on SVT-AV1 1.4 (Debian 12's libsvtav1enc1), a GstCcmVideoEnc.
//
// SVT-AV1 1.4 cannot change its bitrate while running and refuses forced key
// pictures in its low-delay mode, the mode live video needs. So in low delay the
// library runs in constant-QP mode with a QP handed over with every picture
// (use_qp_file): our own rate controller (lib/ccm/rc/qp_rate_controller.h) picks it,
// a QP from GstCcmQpMeta overrides it, and a bitrate change applies on the next
// picture without a key frame. A key frame on request restarts the library at
// that picture (its first picture is a key frame); SVT-AV1 2.x makes it a key picture
// without a restart. library-rate-control=true runs SVT's own rate control in low
// delay instead, where a bitrate change reaches the library on a key picture (2.x)
// or reopens it (1.4). The library side lives in svt_session.h. See docs/encoders.md.
#pragma once

#include "enc/ccmvideoenc.h"

G_BEGIN_DECLS

#define GST_TYPE_CCM_SVT_AV1_ENC (gst_ccm_svt_av1_enc_get_type())
G_DECLARE_FINAL_TYPE(GstCcmSvtAv1Enc, gst_ccm_svt_av1_enc, GST, CCM_SVT_AV1_ENC, GstCcmVideoEnc)

// Keeps SVT-AV1's 18-line information banner and its low-delay warnings (every
// encoder it opens, ours and svtav1enc alike) off stderr; its errors still
// print. Called once at plugin load; a user's own SVT_LOG wins.
void gst_ccm_svt_av1_enc_quiet_library(void);

G_END_DECLS
