#include "encbin/ccmencbin.h"
struct _GstCcmEncBin { GstBin parent; };
G_DEFINE_TYPE(GstCcmEncBin, gst_ccm_enc_bin, GST_TYPE_BIN)
static void gst_ccm_enc_bin_class_init(GstCcmEncBinClass* klass) {
  gst_element_class_set_static_metadata(GST_ELEMENT_CLASS(klass), "ccm", "Codec/Encoder/Video", "stub", "gst-ccm");
}
static void gst_ccm_enc_bin_init(GstCcmEncBin*) {}
