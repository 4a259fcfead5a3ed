// What ccmencbin tells the application: the ccm-encoder-selected and
// ccm-encoder-switched messages, and the stats (the `stats` property and the
// ccm-stats message every stats-interval), counted as outputs leave.
#pragma once

#include "encbin/encbin_private.h"

#include <string>
#include <vector>

namespace ccm::encbin {

void post_message(Self* self, GstStructure* s);
void post_selected(Self* self, const Session& sess, const std::vector<std::string>& passed_over,
                   const std::string& reason, double start_ms);
void post_switched(Self* self, const Chain& from, const Chain& to, const std::string& reason, guint frames,
                   bool requested, bool standby);
// One output on its way downstream: counted, and ccm-stats posted when due.
void ccm_enc_bin_count_output(Self* self, GstBuffer* b);
// The ccm-stats structure (a new one).
GstStructure* ccm_enc_bin_stats(Self* self);

}  // namespace ccm::encbin
