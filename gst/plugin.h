// The "ccm" plugin's entry points.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

// Registers every element of the plugin.
gboolean ccm_plugin_init(GstPlugin* plugin);

// Registers the plugin statically in this process (tests, libccm): no plugin
// scanner, no .so lookup. Safe to call more than once; does nothing when the
// registry already has ccmencbin (e.g. from an installed plugin).
void ccm_plugin_register_static(void);

G_END_DECLS
