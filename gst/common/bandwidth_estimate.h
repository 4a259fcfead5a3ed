// The ccm-bandwidth-estimate event, in one place: its name, how to build one,
// how to read one, and which values are taken. ccmencbin and ccmratecontrol
// read it, ccmencbin forwards it to its ccmratecontrol, the WebRTC demo
// (tools/webrtc) sends it. Header-only, so that an application that loads the
// plugin (and links none of it) builds the same event.
//
//   ccm-bandwidth-estimate, bitrate=(guint64)1500000     (bit/s)
//
// Sent upstream into ccmencbin's or ccmratecontrol's source pad, or downstream
// into their sink pad. Readers take any integer or double type for `bitrate`.
#pragma once

#include <gst/gst.h>

#define GST_CCM_BANDWIDTH_ESTIMATE_EVENT "ccm-bandwidth-estimate"

// The estimates taken, bit/s: below 1 kbit/s no encoder can follow, above
// 10 Gbit/s (ccmratecontrol's largest target-bitrate) none makes that much.
#define GST_CCM_BANDWIDTH_ESTIMATE_MIN_BPS 1000.0
#define GST_CCM_BANDWIDTH_ESTIMATE_MAX_BPS 1e10

static inline GstEvent* gst_ccm_bandwidth_estimate_new(GstEventType type, gdouble bps) {
  return gst_event_new_custom(type, gst_structure_new(GST_CCM_BANDWIDTH_ESTIMATE_EVENT, "bitrate", G_TYPE_UINT64,
                                                      (guint64)(bps > 0 ? bps : 0), NULL));
}

// Whether `event` is a bandwidth estimate; its bitrate in bit/s in *bps, or -1
// when the field is missing or not a number (the caller says so).
static inline gboolean gst_ccm_bandwidth_estimate_parse(GstEvent* event, gdouble* bps) {
  const GstStructure* s = event ? gst_event_get_structure(event) : NULL;
  if (!s || !gst_structure_has_name(s, GST_CCM_BANDWIDTH_ESTIMATE_EVENT)) return FALSE;
  const GValue* v = gst_structure_get_value(s, "bitrate");
  gdouble value = -1;
  if (v) {
    if (G_VALUE_HOLDS_INT(v)) value = g_value_get_int(v);
    else if (G_VALUE_HOLDS_UINT(v)) value = g_value_get_uint(v);
    else if (G_VALUE_HOLDS_INT64(v)) value = (gdouble)g_value_get_int64(v);
    else if (G_VALUE_HOLDS_UINT64(v)) value = (gdouble)g_value_get_uint64(v);
    else if (G_VALUE_HOLDS_DOUBLE(v)) value = g_value_get_double(v);
  }
  if (bps) *bps = value;
  return TRUE;
}

static inline gboolean gst_ccm_bandwidth_estimate_valid(gdouble bps) {
  return bps >= GST_CCM_BANDWIDTH_ESTIMATE_MIN_BPS && bps <= GST_CCM_BANDWIDTH_ESTIMATE_MAX_BPS;
}
