#include "plugin.h"

#include "config.h"
#include "encbin/ccmencbin.h"
#include "memory/ccmdmabufallocator.h"
#include "memory/ccmdmabufpool.h"
#include "ratecontrol/ccmratecontrol.h"
#include "rtp/ccmrtpav1depay.h"
#include "rtp/ccmrtpav1pay.h"
#ifdef CCM_HAVE_X265
#include "enc/ccmx265enc.h"
#endif
#ifdef CCM_HAVE_SVTAV1
#include "enc/ccmsvtav1enc.h"
#endif

gboolean ccm_plugin_init(GstPlugin* plugin) {
  gboolean ok = TRUE;
  ok &= gst_element_register(plugin, "ccmencbin", GST_RANK_NONE, GST_TYPE_CCM_ENC_BIN);
  ccm_dmabuf_allocator_register();  // gst_allocator_find("ccmdmabuf")
  // The pool's type by name for applications (docs/examples/pool.c): the module
  // exports no symbol of ours but the plugin's entry points.
  gst_type_mark_as_plugin_api(GST_TYPE_CCM_DMABUF_POOL, GstPluginAPIFlags(0));
  ok &= gst_element_register(plugin, "ccmratecontrol", GST_RANK_NONE, GST_TYPE_CCM_RATE_CONTROLLER);
  ok &= gst_element_register(plugin, "ccmrtpav1pay", GST_RANK_MARGINAL, GST_TYPE_CCM_RTP_AV1_PAY);
  ok &= gst_element_register(plugin, "ccmrtpav1depay", GST_RANK_MARGINAL, GST_TYPE_CCM_RTP_AV1_DEPAY);
#ifdef CCM_HAVE_X265
  // Above x265enc (PRIMARY) so rank-based pickers (encodebin) prefer it.
  ok &= gst_element_register(plugin, "ccmx265enc", GST_RANK_PRIMARY + 1, GST_TYPE_CCM_X265_ENC);
#endif
#ifdef CCM_HAVE_SVTAV1
  gst_ccm_svt_av1_enc_quiet_library();
  // Above av1enc (PRIMARY) so rank-based pickers (encodebin) prefer it.
  ok &= gst_element_register(plugin, "ccmsvtav1enc", GST_RANK_PRIMARY + 1, GST_TYPE_CCM_SVT_AV1_ENC);
#endif
  return ok;
}

void ccm_plugin_register_static(void) {
  static gsize once = 0;
  if (g_once_init_enter(&once)) {
    GstPluginFeature* existing =
        gst_registry_lookup_feature(gst_registry_get(), "ccmencbin");
    if (existing)
      gst_object_unref(existing);
    else
      gst_plugin_register_static(GST_VERSION_MAJOR, GST_VERSION_MINOR, "ccm",
                                 "gst-ccm: encoder selection, rate control and aligned memory",
                                 ccm_plugin_init, VERSION, "LGPL", PACKAGE, GST_PACKAGE_NAME,
                                 GST_PACKAGE_ORIGIN);
    g_once_init_leave(&once, 1);
  }
}
