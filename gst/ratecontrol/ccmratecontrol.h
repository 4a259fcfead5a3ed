// ccmratecontrol: SIMD frame analysis and R-λ rate control in front of an encoder.
// See ccmratecontrol.cpp and docs/ratecontrol.md.
#pragma once

#include <gst/base/gstbasetransform.h>
#include <gst/gst.h>

#include "common/bandwidth_estimate.h"  // the ccm-bandwidth-estimate event it reads

G_BEGIN_DECLS

#define GST_TYPE_CCM_RATE_CONTROLLER (gst_ccm_rate_controller_get_type())
G_DECLARE_FINAL_TYPE(GstCcmRateController, gst_ccm_rate_controller, GST, CCM_RATE_CONTROLLER, GstBaseTransform)

typedef enum {
  GST_CCM_RATE_CONTROLLER_MODE_RLAMBDA = 0,
  GST_CCM_RATE_CONTROLLER_MODE_PASSTHROUGH = 1,
  GST_CCM_RATE_CONTROLLER_MODE_ENCODER_RATE = 2,
  GST_CCM_RATE_CONTROLLER_MODE_AUTO = 3,
} GstCcmRateControllerMode;

G_END_DECLS
