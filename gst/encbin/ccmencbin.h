// ccmencbin: one encoder element for every machine. See ccmencbin.cpp; its jobs
// are in the other files of gst/encbin/ (encbin_private.h lists its state).
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_CCM_ENC_BIN (gst_ccm_enc_bin_get_type())
G_DECLARE_FINAL_TYPE(GstCcmEncBin, gst_ccm_enc_bin, GST, CCM_ENC_BIN, GstBin)

G_END_DECLS
