// ccmx265enc: H.265 encoder on libx265 3.5 that changes bitrate in place
// (x265_encoder_reconfig), takes per-frame QP and per-block QP offsets from
// GstCcmQpMeta, and forces IDRs on key-unit requests. See ccmx265enc.cpp.
#pragma once

#include "enc/ccmvideoenc.h"

G_BEGIN_DECLS

#define GST_TYPE_CCM_X265_ENC (gst_ccm_x265_enc_get_type())
G_DECLARE_FINAL_TYPE(GstCcmX265Enc, gst_ccm_x265_enc, GST, CCM_X265_ENC, GstCcmVideoEnc)

G_END_DECLS
