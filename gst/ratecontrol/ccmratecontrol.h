// ccmratecontrol: SIMD frame analysis and R-λ rate control in front of an encoder.
// See ccmratecontrol.cpp and docs/ratecontrol.md.
#pragma once

#include <gst/base/gstbasetransform.h>
#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_CCM_RATE_CONTROLLER (gst_ccm_rate_controller_get_type())
G_DECLARE_FINAL_TYPE(GstCcmRateController, gst_ccm_rate_controller, GST, CCM_RATE_CONTROLLER, GstBaseTransform)

typedef enum {
  GST_CCM_RATE_CONTROLLER_MODE_RLAMBDA = 0,
  GST_CCM_RATE_CONTROLLER_MODE_PASSTHROUGH = 1,
} GstCcmRateControllerMode;

// Name and field of the custom event that carries a bandwidth estimate (either
// direction): "ccm-bandwidth-estimate", bitrate = bit/s (any integer or double type).
#define GST_CCM_BANDWIDTH_ESTIMATE_EVENT "ccm-bandwidth-estimate"

// Whether `event` is a bandwidth estimate; its bitrate in bit/s in *bps, or -1
// when the field is missing or not a number (the caller says so).
gboolean gst_ccm_bandwidth_estimate_parse(GstEvent* event, gdouble* bps);

G_END_DECLS
