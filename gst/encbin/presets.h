// ccmencbin's GstPreset: GStreamer's own presets plus those installed with
// gst-ccm, never overriding what the application set (presets.cpp says how).
#pragma once

#include <gst/gst.h>

namespace ccm::encbin {

// The GstPresetInterface init for G_IMPLEMENT_INTERFACE.
void gst_ccm_enc_bin_preset_init(gpointer g_iface, gpointer data);

}  // namespace ccm::encbin
