// The rate while streaming (live_rate.h).
#include "encbin/live_rate.h"

#include "common/bandwidth_estimate.h"
#include "encbin/encoder_setup.h"

#include <algorithm>

namespace ccm::encbin {

GstEvent* bandwidth_estimate_event(double bps) {
  return gst_ccm_bandwidth_estimate_new(GST_EVENT_CUSTOM_UPSTREAM, bps);
}

void ccm_enc_bin_apply_live_bitrate(Self* self, guint kbps) {
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard lk(self->priv->lock);
    sessions = self->priv->attached;
  }
  for (const auto& s : sessions) {
    if (s->chain.rate_controller) {  // it owns the encoder's rate
      ccm::gst::set_property_from_string(s->chain.rate_controller, "target-bitrate", std::to_string(kbps));
      continue;
    }
    std::string applied;
    if (ccm::gst::apply_bitrate(s->chain.encoder, s->chain.entry, kbps, &applied)) {
      GST_INFO_OBJECT(self, "live bitrate change: %s%s", applied.c_str(),
                      s->chain.entry && s->chain.entry->bitrate_change == ccm::catalog::BitrateChange::Reopen
                          ? " (this encoder reopens itself: new headers and a key frame)" : "");
    }
  }
}

// A ccm-bandwidth-estimate (from downstream, e.g. WebRTC glue, or the application):
// remembered for sessions still to come, handed to every session's ccmratecontrol
// but `skip` (the one the event itself flows through), and, where a session has
// none, made the encoder's bitrate until the next estimate or `bitrate` change.
void ccm_enc_bin_follow_estimate(Self* self, double bps, const Session* skip) {
  if (!gst_ccm_bandwidth_estimate_valid(bps)) {
    GST_ELEMENT_WARNING(self, STREAM, FAILED, ("ignoring a " GST_CCM_BANDWIDTH_ESTIMATE_EVENT " event"),
                        ("bitrate must be a number of bit/s between %.0f and %.0f (got %.0f); the target stays",
                         GST_CCM_BANDWIDTH_ESTIMATE_MIN_BPS, GST_CCM_BANDWIDTH_ESTIMATE_MAX_BPS, bps));
    return;
  }
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard lk(self->priv->lock);
    self->priv->bandwidth_estimate_bps = bps;
    sessions = self->priv->attached;
  }
  for (const auto& s : sessions) {
    if (s.get() == skip) continue;
    if (s->chain.rate_controller) {
      gst_element_send_event(s->chain.rate_controller, bandwidth_estimate_event(bps));
    } else {
      std::string applied;
      if (ccm::gst::apply_bitrate(s->chain.encoder, s->chain.entry, (guint)std::max(1.0, bps / 1000.0), &applied))
        GST_INFO_OBJECT(self, "bandwidth estimate %.0f bit/s: %s", bps, applied.c_str());
    }
  }
}

}  // namespace ccm::encbin
