// ccmencbin's own pads: the sink pad checks the input (caps it refuses with the
// fix, a nominal framerate, missing timestamps), starts the first session at the
// first caps, and hands frames and events to the session in use in stream order;
// the src pad passes downstream's events and queries into it.
#pragma once

#include "encbin/encbin_private.h"

namespace ccm::encbin {

gboolean ccm_enc_bin_sink_event(GstPad*, GstObject* parent, GstEvent* event);
GstFlowReturn ccm_enc_bin_sink_chain(GstPad*, GstObject* parent, GstBuffer* buffer);
gboolean ccm_enc_bin_sink_query(GstPad* pad, GstObject* parent, GstQuery* query);
gboolean ccm_enc_bin_src_event(GstPad*, GstObject* parent, GstEvent* event);
gboolean ccm_enc_bin_src_query(GstPad* pad, GstObject* parent, GstQuery* query);

}  // namespace ccm::encbin
