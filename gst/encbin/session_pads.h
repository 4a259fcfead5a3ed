// A session's own pads: `feed` pushes into its first element, `collect` takes
// what its last element makes and, when the session is the one in use, sends it
// out of ccmencbin's src pad (with the timestamps that came in, and the sticky
// events downstream has not seen).
#pragma once

#include "encbin/encbin_private.h"

namespace ccm::encbin {

GstFlowReturn ccm_enc_bin_collect_chain(GstPad* pad, GstObject*, GstBuffer* buffer);
gboolean ccm_enc_bin_collect_event(GstPad* pad, GstObject*, GstEvent* event);
gboolean ccm_enc_bin_collect_query(GstPad* pad, GstObject*, GstQuery* query);
gboolean ccm_enc_bin_feed_event(GstPad* pad, GstObject*, GstEvent* event);
gboolean ccm_enc_bin_feed_query(GstPad* pad, GstObject*, GstQuery* query);

}  // namespace ccm::encbin
