// Choosing the codec and the encoder (choose.h).
#include "encbin/choose.h"

#include "common/registry_probe.h"
#include "encbin/downstream.h"
#include "encbin/failover.h"
#include "encbin/gpus.h"
#include "encbin/messages.h"
#include "encbin/probe.h"
#include "encbin/session.h"

#include <gst/video/video.h>

#include <algorithm>
#include <functional>

namespace ccm::encbin {

namespace {

std::vector<std::string> split_candidates(const std::string& text) {
  std::vector<std::string> out;
  gchar** parts = g_strsplit_set(text.c_str(), ", ", -1);
  for (gchar** p = parts; p && *p; p++)
    if (**p) out.emplace_back(*p);
  g_strfreev(parts);
  return out;
}

ccm::gst::ProbeResult probe_candidate(const ccm::catalog::Candidate& cand, Codec codec, const Settings& s,
                                      GstCaps* caps, std::chrono::milliseconds bound,
                                      const std::function<bool()>& cancelled) {
  if (!s.probe) return ccm::gst::ProbeResult{.ok = true, .cached = true};
  const ccm::gst::ProbeCache cache(ccm::gst::ProbeCache::default_path());
  const std::string key = ccm::gst::probe_key(cand.factory, codec, device_of(cand));
  if (auto hit = cache.lookup(key)) return *hit;
  auto result =
      ccm::gst::probe_encoder([&] { return create_encoder(cand, codec, s, caps, nullptr); }, bound, cancelled);
  if (result.cancelled) return result;  // no answer: asked again next time
  cache.store(key, result);
  GST_INFO("test encode with %s: %s (%.1f ms)", cand.factory.c_str(), result.ok ? "ok" : result.reason.c_str(),
           result.ms);
  return result;
}

}  // namespace

ccm::catalog::Ranking rank_for(Codec codec, const Settings& s) {
  static const std::vector<std::string> none;
  std::vector<std::string> candidates = split_candidates(s.candidates);
  ccm::catalog::RankRequest request;
  request.codec = codec;
  request.policy = s.hardware;
  request.gpu = s.gpu;
  request.gpus = ccm::gst::detected_gpus();
  request.gst_version = ccm::gst::running_gst_version();
  request.has_factory = [](std::string_view f) { return ccm::gst::registry_has_element(f); };
  request.candidates = candidates;
  return ccm::catalog::rank(request);
}

// Tries the candidates in order (least loaded GPU first unless the order is the
// user's or a GPU is pinned): the probe (cached), then a session on this input.
// Every candidate not taken is added to `passed` with its reason.
std::shared_ptr<Session> ccm_enc_bin_walk(Self* self, std::vector<ccm::catalog::Candidate> cands, Codec codec,
                                                 const Settings& s, GstCaps* caps, std::vector<std::string>& passed) {
  auto* p = self->priv;
  const bool balance = s.gpu < 0 && s.candidates.empty();
  while (!cands.empty()) {
    std::optional<ccm::gst::GpuSessions::Lease> lease;
    if (any_hardware(cands)) {
      // Count, choose and take in one step, so concurrent starters spread out.
      const ccm::gst::GpuSessions registry(ccm::gst::GpuSessions::default_dir());
      const auto guard = registry.lock();
      if (balance) order_by_load(cands, guard.counts());
      if (cands.front().hardware && cands.front().gpu >= 0) lease = guard.acquire(gpu_key(cands.front().gpu));
    }
    const ccm::catalog::Candidate cand = cands.front();
    cands.erase(cands.begin());
    if (p->shutting_down) {
      passed.push_back(cand.factory + ": not tried, the stream is stopping");
      continue;
    }
    {
      std::lock_guard lk(p->lock);
      if (p->failed.contains(cand.factory)) {
        passed.push_back(cand.factory + ": failed earlier in this stream");
        continue;
      }
    }
    std::chrono::milliseconds bound;
    {
      std::lock_guard lk(p->lock);
      bound = std::chrono::milliseconds(stall_bound_us(p) / 1000);
    }
    const auto probe = probe_candidate(cand, codec, s, caps, bound, [p] { return p->shutting_down.load(); });
    if (probe.abandoned) ccm_enc_bin_left_behind(self, cand.factory, probe.reason);
    if (!probe.ok) {
      passed.push_back(cand.factory + ": test encode failed" + (probe.cached ? " (cached)" : "") + ": " + probe.reason);
      continue;
    }
    std::string why;
    auto sess = ccm_enc_bin_make_session(self, cand, codec, s, caps, &why);
    if (!sess) {
      passed.push_back(cand.factory + ": " + why);
      continue;
    }
    sess->lease = std::move(lease);
    sess->probe = !s.probe ? "off" : probe.cached ? "cached" : "ran";
    return sess;
  }
  return nullptr;
}

// Picks the codec and the first candidate that passes its test encode and takes
// this input. Called from the streaming thread on the first CAPS event; posts an
// element error naming cause and fix on failure.
bool ccm_enc_bin_start(Self* self, GstCaps* input_caps) {
  auto* p = self->priv;
  const gint64 t0 = now_us();
  Settings s;
  {
    std::lock_guard lk(p->lock);
    s = p->settings;
  }

  std::string settings_warning;
  {
    std::lock_guard lk(p->lock);
    settings_warning.swap(p->settings_warning);
  }
  if (!settings_warning.empty())
    GST_ELEMENT_WARNING(self, LIBRARY, SETTINGS, ("%s", settings_warning.c_str()),
                        ("set bitrate in kbit/s, 1 to %u", kMaxBitrate));

  if (s.rate_control != RateControl::Cqp && s.bitrate == 0) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("bitrate=0 kbit/s cannot be encoded"),
                      ("set bitrate to at least 1 (kbit/s), or use rate-control=cqp with a quantizer"));
    return false;
  }

  // Which codecs could we produce, in preference order?
  std::vector<Codec> accepted = codecs_downstream_accepts(self->srcpad);
  std::vector<Codec> wanted;
  if (auto forced = to_codec(s.codec)) {
    if (std::find(accepted.begin(), accepted.end(), *forced) == accepted.end()) {
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                        ("codec=%s but downstream does not accept %s", ccm::catalog::to_string(*forced),
                         ccm::catalog::caps_name(*forced)),
                        ("downstream accepts %s; set codec=auto or a codec downstream takes",
                         downstream_caps_string(self->srcpad).c_str()));
      return false;
    }
    wanted.push_back(*forced);
  } else {
    wanted = accepted;
  }
  if (wanted.empty()) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("downstream accepts none of AV1, H.265, VP9, H.264"),
                      ("downstream accepts %s; link ccmencbin to a muxer, parser or payloader for one "
                       "of video/x-av1, video/x-h265, video/x-vp9, video/x-h264",
                       downstream_caps_string(self->srcpad).c_str()));
    return false;
  }

  // Rank each wanted codec; with codec=auto prefer a codec a hardware encoder
  // makes, then the first codec with any encoder at all.
  std::vector<Plan> plans;
  for (Codec c : wanted) plans.push_back({c, rank_for(c, s)});
  std::stable_sort(plans.begin(), plans.end(), [](const Plan& a, const Plan& b) {
    auto score = [](const Plan& p) {
      if (p.ranking.candidates.empty()) return 2;
      return p.ranking.candidates.front().hardware ? 0 : 1;
    };
    return score(a) < score(b);
  });

  std::vector<std::string> failures;  // for the error when nothing works
  for (Plan& plan : plans) {
    std::vector<std::string> passed;
    for (const auto& po : plan.ranking.passed_over) passed.push_back(po.factory + ": " + po.reason);
    if (plan.codec != Codec::VP9)  // NVENC has no VP9
      if (std::string note = ccm_enc_bin_nvcodec_note(); !note.empty()) passed.push_back(std::move(note));
    const size_t ranked_out = passed.size();
    auto sess = ccm_enc_bin_walk(self, plan.ranking.candidates, plan.codec, s, input_caps, passed);
    if (sess) {
      std::string reason;
      if (s.candidates.empty())
        reason = std::string(sess->chain.hardware ? "best-ranked hardware encoder" : "best-ranked software encoder") +
                 " for " + ccm::catalog::to_string(plan.codec);
      else
        reason = "first usable element of candidates=" + s.candidates;
      if (sess->chain.hardware && s.gpu < 0 && s.candidates.empty())
        reason += ", on the least loaded GPU";
      if (passed.size() > ranked_out) reason += " that passed its test encode";
      // Why it ranks above a peer that was there too (catalogue data, measured).
      if (const auto* e = sess->chain.entry; e && !e->ranked_above.empty())
        for (const auto& c : plan.ranking.candidates)
          if (c.factory == e->ranked_above) {
            reason += "; ranked above " + c.factory + ": " + std::string(e->ranked_above_why);
            break;
          }
      if (!to_codec(s.codec))
        reason += std::string("; codec=auto chose ") + ccm::catalog::to_string(plan.codec) +
                  (sess->chain.hardware ? " (a hardware encoder makes it)"
                                        : " (first codec downstream accepts with an encoder)");
      const double start_ms = double(now_us() - t0) / 1000.0;
      {
        std::lock_guard lk(p->lock);
        p->current = sess;
        p->plan = plan;
      }
      p->stats.start_ms = start_ms;
      post_selected(self, *sess, passed, reason, start_ms);
      GST_INFO_OBJECT(self, "input %" GST_PTR_FORMAT, input_caps);
      return true;
    }
    for (const auto& line : passed) failures.push_back(std::string(ccm::catalog::to_string(plan.codec)) + " " + line);
  }

  if (p->shutting_down) return false;  // stopped while choosing: not the encoders' fault
  // Nothing usable: name the fix.
  std::string fix;
  if (s.hardware == HardwarePolicy::HardwareOnly) {
    fix = "no hardware encoder is usable here (" + std::to_string(ccm::gst::detected_gpus().size()) +
          " GPU(s) detected); set hardware=auto to allow software encoders";
  } else {
    GstVideoInfo vinfo;
    gst_video_info_from_caps(&vinfo, input_caps);
    for (const Plan& pl : plans) {
      if (!fix.empty()) fix += "; ";
      if (pl.ranking.candidates.empty() && !s.candidates.empty()) {
        // The user's list named nothing usable: say which names and why, not a package.
        std::vector<std::string> why;
        for (const auto& po : pl.ranking.passed_over) why.push_back(po.factory + ": " + po.reason);
        fix += "candidates=" + s.candidates + " names no usable " + ccm::catalog::to_string(pl.codec) +
               " encoder (" + join(why, "; ") +
               "); check the names with gst-inspect-1.0, or leave candidates empty for the catalogue's order";
        continue;
      }
      if (pl.ranking.candidates.empty()) {  // nothing installed: the package is the fix
        fix += std::string("for ") + ccm::catalog::to_string(pl.codec) + " install " +
               std::string(ccm::catalog::debian_package_for(pl.codec));
        continue;
      }
      // Installed, and each refused this input: say so, the reasons are in the debug text;
      // a frame below an encoder's smallest size is said here, with the size.
      std::vector<std::string> names, too_small;
      for (const auto& c : pl.ranking.candidates) names.push_back(c.factory);
      for (const auto& f : failures)
        if (f.find("takes frames of at least") != std::string::npos) too_small.push_back(f);
      fix += "none of " + join(names, ", ") + " takes " + std::to_string(GST_VIDEO_INFO_WIDTH(&vinfo)) + "x" +
             std::to_string(GST_VIDEO_INFO_HEIGHT(&vinfo)) + " " +
             gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&vinfo)) +
             (too_small.empty() ? " (see why below)"
                                : " (" + join(too_small, "; ") + "): scale it up first (videoscale)");
    }
  }
  std::string codecs;
  for (const Plan& pl : plans) codecs += std::string(codecs.empty() ? "" : ", ") + ccm::catalog::to_string(pl.codec);
  GST_ELEMENT_ERROR(self, CORE, MISSING_PLUGIN, ("no usable encoder for %s: %s", codecs.c_str(), fix.c_str()),
                    ("tried: %s", failures.empty() ? "nothing" : join(failures, "; ").c_str()));
  return false;
}

}  // namespace ccm::encbin
