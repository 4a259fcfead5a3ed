// The rate while streaming: a new `bitrate`, and ccm-bandwidth-estimate events,
// reaching every session's ccmratecontrol or, where a session has none, its
// encoder's bitrate.
#pragma once

#include "encbin/encbin_private.h"

namespace ccm::encbin {

// The ccm-bandwidth-estimate event for a session's ccmratecontrol.
GstEvent* bandwidth_estimate_event(double bps);
// `bitrate` changed (kbit/s): every session follows.
void ccm_enc_bin_apply_live_bitrate(Self* self, guint kbps);
// A bandwidth estimate (bit/s) for every session but `skip`; see live_rate.cpp.
void ccm_enc_bin_follow_estimate(Self* self, double bps, const Session* skip);

}  // namespace ccm::encbin
