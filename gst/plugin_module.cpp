// The loadable module: GStreamer's plugin loader finds gst_plugin_desc here.
#include "config.h"
#include "plugin.h"

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, ccm,
                  "gst-ccm: encoder selection, rate control and aligned memory",
                  ccm_plugin_init, VERSION, "LGPL", PACKAGE, GST_PACKAGE_ORIGIN)
