// Failover, standby, switching and retiring sessions (failover.h).
#include "encbin/failover.h"

#include "encbin/choose.h"
#include "encbin/downstream.h"
#include "encbin/messages.h"

#include <gst/video/video.h>

#include <algorithm>

namespace ccm::encbin {

namespace {

bool healthy(const Self::Private* p, const Session& s, gint64 now, std::string* why) {
  if (s.failed) {
    *why = s.failure;
    return false;
  }
  const gint64 bound = stall_bound_us(p);
  if (bound <= 0 || s.in_downstream) return true;
  // Before its first output an encoder is still opening (threads, look-ahead, a
  // hardware session): it gets longer.
  const gint64 first = s.produced ? bound : 3 * bound;
  if (s.busy && now - s.busy_since > first) {
    *why = "stalled: inside one push for more than " + std::to_string(first / 1000) + " ms";
    return false;
  }
  if (s.waiting_since >= 0 && now - s.waiting_since > first) {
    *why = "stalled: no output for more than " + std::to_string(first / 1000) + " ms";
    return false;
  }
  return true;
}

}  // namespace

// stall-timeout is for frames up to 1080p; a software encoder spends about
// proportionally longer on larger ones (4K x4, 8K x16), which is slow, not dead.
gint64 stall_bound_us(const Self::Private* p) {
  constexpr gint64 k1080p = 1920 * 1080;
  const gint64 bound = gint64(p->settings.stall_timeout_ms) * 1000;
  return p->frame_pixels > k1080p ? bound * p->frame_pixels / k1080p : bound;
}

// An encoder that never returned is left behind: said on the bus, counted in stats.
// `finalizing`: no message (it would take a reference on an object being finalized).
void ccm_enc_bin_left_behind(Self* self, const std::string& factory, const std::string& why,
                             bool finalizing) {
  self->priv->stats.abandoned++;
  if (finalizing) {
    GST_WARNING("%s did not return and was left behind: %s", factory.c_str(), why.c_str());
    return;
  }
  GST_ELEMENT_WARNING(self, CORE, STATE_CHANGE,
                      ("%s did not return and was left behind: %s", factory.c_str(), why.c_str()),
                      ("its thread stays blocked and its memory is not freed until the process ends; "
                       "%" G_GUINT64_FORMAT " encoder(s) left behind by this element",
                       self->priv->stats.abandoned.load()));
}

// Takes a session out of the bin and out of service. Its pusher is unblocked
// with a flush; a thread of its own joins it and sets the elements to NULL, so
// an encoder that hangs never hangs the stream. Lock not held.
void ccm_enc_bin_retire(Self* self, const std::shared_ptr<Session>& s) {
  auto* p = self->priv;
  bool wedged = false;
  {
    std::lock_guard out(p->output_lock);
    std::lock_guard lk(p->lock);
    if (s->retired) return;
    const gint64 bound = stall_bound_us(p);
    wedged = s->busy && !s->in_downstream && bound > 0 && now_us() - s->busy_since > bound;
    s->retired = true;
    s->stop = true;
    std::erase(p->attached, s);
    if (p->current == s) p->current = nullptr;
    if (p->standby == s) p->standby = nullptr;
    s->queue.clear();
  }
  p->cond.notify_all();
  s->lease.reset();
  GST_DEBUG_OBJECT(self, "retiring session %d (%s)", s->id, s->chain.factory.c_str());
  gst_pad_push_event(s->feed, gst_event_new_flush_start());
  const auto elements = s->chain.elements();
  for (GstElement* e : elements) {
    gst_object_ref(e);
    gst_bin_remove(GST_BIN(self), e);
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread reaper([s, elements, done] {
    if (s->pusher.joinable()) s->pusher.join();
    for (GstElement* e : elements) gst_element_set_state(e, GST_STATE_NULL);
    gst_pad_set_active(s->feed, FALSE);
    gst_pad_set_active(s->collect, FALSE);
    if (GstPad* peer = gst_pad_get_peer(s->feed)) {
      gst_pad_unlink(s->feed, peer);
      gst_object_unref(peer);
    }
    if (GstPad* peer = gst_pad_get_peer(s->collect)) {
      gst_pad_unlink(peer, s->collect);
      gst_object_unref(peer);
    }
    for (GstElement* e : elements) gst_object_unref(e);
    *done = true;
  });
  std::lock_guard lk(p->lock);
  p->reapers.push_back({std::move(reaper), done, s->chain.factory, wedged});
}

// Waits for retired sessions to be gone; one that stays stuck past `bound` (an
// element that never returns), or one already seen stalled inside a push, is left
// behind: its thread detached, a warning naming it, counted in stats.
static void ccm_enc_bin_join_reapers(Self* self, std::chrono::milliseconds bound, bool finalizing) {
  auto* p = self->priv;
  std::vector<Self::Private::Reaper> reapers;
  {
    std::lock_guard lk(p->lock);
    reapers.swap(p->reapers);
  }
  const auto deadline = std::chrono::steady_clock::now() + bound;
  auto waiting = [&] {
    return std::any_of(reapers.begin(), reapers.end(), [](const auto& r) { return !*r.done && !r.wedged; });
  };
  while (waiting() && std::chrono::steady_clock::now() < deadline) g_usleep(2000);
  for (auto& r : reapers) {
    if (*r.done) {
      r.thread.join();
      continue;
    }
    r.thread.detach();
    ccm_enc_bin_left_behind(self, r.factory,
                            r.wedged ? std::string("it stalled inside a push and never came back")
                                     : "it did not stop within " + std::to_string(bound.count()) +
                                           " ms of being shut down",
                            finalizing);
  }
}

// Frames not out yet, and events not pushed yet, into a new session in stream
// order; the EOS again when it was on its way. Lock held. Returns frames re-encoded.
static guint ccm_enc_bin_requeue(Self* self, Session& next, std::deque<Item> leftovers) {
  auto* p = self->priv;
  std::vector<Item> items;
  for (const Item& f : p->pending) items.emplace_back(f.seq, gst_mini_object_ref(f.obj));
  const guint frames = items.size();
  for (Item& it : leftovers)
    if (!it.is_buffer() && !it.is_event(GST_EVENT_EOS)) items.push_back(std::move(it));
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.seq < b.seq; });
  for (Item& it : items) next.queue.push_back(std::move(it));
  if (p->final_eos) next.queue.emplace_back(p->next_seq++, GST_MINI_OBJECT(gst_event_new_eos()));
  p->cond.notify_all();
  return frames;
}

// The session in use failed: the next candidate (the standby when there is one)
// takes over and re-encodes what had not come out. Upstream streaming thread.
// False when nothing is left; the error naming every failure was posted.
static bool ccm_enc_bin_fail_over(Self* self, const std::shared_ptr<Session>& failed, const std::string& why) {
  auto* p = self->priv;
  const gint64 t0 = now_us();
  Settings s;
  std::optional<Plan> plan;
  Ref<GstCaps> caps;
  std::shared_ptr<Session> standby;
  {
    std::lock_guard lk(p->lock);
    if (p->current != failed) return !p->fatal;  // already dealt with
    s = p->settings;
    plan = p->plan;
    caps.p = p->input_caps ? gst_caps_ref(p->input_caps) : nullptr;
    p->failed.insert(failed->chain.factory);
    p->failures.push_back(failed->chain.factory + ": " + why);
    standby = p->standby;
    p->standby = nullptr;
  }
  GST_WARNING_OBJECT(self, "%s failed (%s): failing over", failed->chain.factory.c_str(), why.c_str());
  std::deque<Item> leftovers;
  {
    // No output of the failed session after this point.
    std::lock_guard out(p->output_lock);
    std::lock_guard lk(p->lock);
    leftovers = std::move(failed->queue);
    failed->queue.clear();
    failed->stop = true;
  }
  ccm_enc_bin_retire(self, failed);

  std::shared_ptr<Session> next;
  bool used_standby = false;
  std::string standby_trouble;
  if (standby) {
    std::lock_guard lk(p->lock);
    if (!standby->warming && healthy(p, *standby, now_us(), &standby_trouble) &&
        !p->failed.contains(standby->chain.factory)) {
      next = standby;
      used_standby = true;
      if (standby->frames_pushed > 0)  // it encoded its warm-up frame: the takeover starts on a key frame
        standby->queue.emplace_back(0, GST_MINI_OBJECT(gst_video_event_new_downstream_force_key_unit(
                                           GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE, TRUE, 0)));
    }
  }
  if (standby && !used_standby) ccm_enc_bin_retire(self, standby);
  std::vector<std::string> passed;
  if (!next && plan && caps) next = ccm_enc_bin_walk(self, plan->ranking.candidates, plan->codec, s, caps.get(), passed);
  if (!next) {
    std::string all;
    {
      std::lock_guard lk(p->lock);
      p->fatal = true;
      all = join(p->failures, "; ");
    }
    p->cond.notify_all();
    if (p->shutting_down) return false;  // stopped while choosing the next one
    GST_ELEMENT_ERROR(self, STREAM, ENCODE,
                      ("every encoder failed (%s); no candidate is left", all.c_str()),
                      ("failures in this stream: %s; not tried: %s", all.c_str(),
                       passed.empty() ? "none" : join(passed, "; ").c_str()));
    return false;
  }
  guint frames = 0;
  {
    std::lock_guard out(p->output_lock);
    std::lock_guard lk(p->lock);
    p->current = next;
    next->switch_started = t0;
    frames = ccm_enc_bin_requeue(self, *next, std::move(leftovers));
  }
  GST_INFO_OBJECT(self, "failover to %s ready after %.1f ms", next->chain.factory.c_str(),
                  double(now_us() - t0) / 1000.0);
  p->stats.failovers++;
  p->stats.switches++;
  p->stats.frames_reencoded += frames;
  post_switched(self, failed->chain, next->chain, why, frames, false, used_standby);
  ccm_enc_bin_build_standby(self);
  return true;
}

// Whether a candidate other than the one in use is left to fail over to. Lock held.
static bool ccm_enc_bin_has_alternative(const Self::Private* p, const Session& in_use) {
  if (p->standby && !p->standby->failed) return true;
  if (!p->plan) return false;
  for (const auto& c : p->plan->ranking.candidates)
    if (c.factory != in_use.chain.factory && !p->failed.contains(c.factory)) return true;
  return false;
}

// Waits, in the upstream streaming thread, until `done` holds; fails over
// whenever the session in use turns out dead meanwhile. False when flushing or
// when nothing is left.
bool ccm_enc_bin_wait(Self* self, std::unique_lock<std::mutex>& lk, const std::function<bool()>& done) {
  auto* p = self->priv;
  for (;;) {
    if (p->fatal || p->flushing || !p->current) return false;
    std::string why;
    auto cur = p->current;
    if (!healthy(p, *cur, now_us(), &why)) {
      // A slow encoder is better than none: with nowhere to move to, a stall is
      // a warning first, and the end of the stream (an error naming the encoder)
      // only once it has lasted as long again; errors always move on (and end
      // the stream without a candidate left).
      if (!cur->failed && !ccm_enc_bin_has_alternative(p, *cur)) {
        const gint64 now = now_us();
        const gint64 grace = stall_bound_us(p) * (cur->produced ? 1 : 3);
        if (cur->stall_reported < 0) {
          cur->stall_reported = now;
          const std::string factory = cur->chain.factory;
          lk.unlock();
          GST_ELEMENT_WARNING(self, STREAM, ENCODE,
                              ("%s is %s, and no other candidate is left: waiting %" G_GINT64_FORMAT
                               " ms more before giving up on it", factory.c_str(), why.c_str(), grace / 1000),
                              ("stall-timeout=0 waits for ever"));
          lk.lock();
          continue;
        }
        if (now - cur->stall_reported <= grace) {
          if (done()) return true;
          p->cond.wait_for(lk, std::chrono::milliseconds(5));
          continue;
        }
        why += ", and still after " + std::to_string(grace / 1000) + " ms more";
      }
      lk.unlock();
      const bool ok = ccm_enc_bin_fail_over(self, cur, why);
      lk.lock();
      if (!ok) return false;
      continue;
    }
    cur->stall_reported = -1;
    if (done()) return true;
    p->cond.wait_for(lk, std::chrono::milliseconds(5));
  }
}

// Prepares the next candidate in the background (standby=true), so a failover
// only has to hand the frames over.
void ccm_enc_bin_build_standby(Self* self) {
  auto* p = self->priv;
  guint64 generation;
  {
    std::lock_guard lk(p->lock);
    if (!p->settings.standby || p->fatal || p->flushing || !p->plan || !p->current || p->standby || !p->input_caps)
      return;
    generation = ++p->standby_generation;
  }
  if (p->standby_builder.joinable()) p->standby_builder.join();
  p->standby_builder = std::thread([self, generation] {
    auto* p = self->priv;
    Settings s;
    Plan plan;
    Ref<GstCaps> caps;
    std::string in_use;
    {
      std::lock_guard lk(p->lock);
      if (generation != p->standby_generation || !p->plan || !p->current) return;
      s = p->settings;
      plan = *p->plan;
      caps.p = gst_caps_ref(p->input_caps);
      in_use = p->current->chain.factory;
    }
    std::vector<ccm::catalog::Candidate> rest;
    for (const auto& c : plan.ranking.candidates)
      if (c.factory != in_use) rest.push_back(c);
    std::vector<std::string> passed;
    auto sess = ccm_enc_bin_walk(self, rest, plan.codec, s, caps.get(), passed);
    if (!sess) {
      GST_INFO_OBJECT(self, "no standby: %s", join(passed, "; ").c_str());
      return;
    }
    // Encoders do much of their opening on the first frame (threads, look-ahead,
    // a hardware session's first submission): one frame, dropped on the way out,
    // gets that done now. Only where a forced key unit is honoured, since the
    // stream it takes over must start on one (libaom ignores the request).
    const bool warm_up = sess->chain.entry && sess->chain.entry->key_unit == ccm::catalog::KeyUnit::Event;
    bool keep = false;
    {
      std::lock_guard lk(p->lock);
      if (generation == p->standby_generation && !p->standby && !p->flushing && !p->fatal) {
        p->standby = sess;
        keep = true;
        if (warm_up && p->last_input) {
          GstBuffer* frame = gst_buffer_copy(p->last_input);  // metadata only; the memory is shared
          // Earlier than any frame it may re-encode later, so its timestamps keep going up.
          const GstSegment* segment = nullptr;
          GstEvent* seg = gst_pad_get_sticky_event(sess->feed, GST_EVENT_SEGMENT, 0);
          if (seg) gst_event_parse_segment(seg, &segment);
          GST_BUFFER_PTS(frame) = segment && segment->format == GST_FORMAT_TIME ? segment->start : 0;
          GST_BUFFER_DTS(frame) = GST_CLOCK_TIME_NONE;
          if (seg) gst_event_unref(seg);
          sess->warming = true;
          sess->queue.emplace_back(0, GST_MINI_OBJECT(frame));
          p->cond.notify_all();
        }
      }
    }
    if (keep)
      GST_INFO_OBJECT(self, "standby ready: %s%s", sess->chain.factory.c_str(), warm_up ? " (warming up)" : "");
    else
      ccm_enc_bin_retire(self, sess);
  });
}

// ---- switching on request -----------------------------------------------------------

// Settings that choose the encoder changed while streaming: at this frame
// boundary, build the new session, drain the old one, and hand over. The old
// one stays when no new candidate can start (a warning says why).
void ccm_enc_bin_switch(Self* self) {
  auto* p = self->priv;
  Settings s;
  std::string reason;
  gint64 t0;
  std::shared_ptr<Session> old;
  Ref<GstCaps> caps;
  {
    std::lock_guard lk(p->lock);
    if (!p->current || p->fatal || !p->input_caps) return;
    s = p->settings;
    reason = p->switch_reason;
    t0 = p->switch_requested_us;
    old = p->current;
    caps.p = gst_caps_ref(p->input_caps);
  }
  Codec codec = old->chain.codec;
  if (auto forced = to_codec(s.codec)) codec = *forced;
  if (codec != old->chain.codec) {
    const auto accepted = codecs_downstream_accepts(self->srcpad);
    if (std::find(accepted.begin(), accepted.end(), codec) == accepted.end()) {
      GST_ELEMENT_WARNING(self, CORE, NEGOTIATION,
                          ("codec=%s requested but downstream does not accept %s: keeping %s",
                           ccm::catalog::to_string(codec), ccm::catalog::caps_name(codec),
                           ccm::catalog::to_string(old->chain.codec)),
                          ("downstream accepts %s", downstream_caps_string(self->srcpad).c_str()));
      return;
    }
    if (const std::string muxer = muxer_downstream(self->srcpad); !muxer.empty()) {
      GST_ELEMENT_WARNING(self, CORE, NEGOTIATION,
                          ("codec=%s requested but %s cannot change codec mid-stream: keeping %s",
                           ccm::catalog::to_string(codec), muxer.c_str(),
                           ccm::catalog::to_string(old->chain.codec)),
                          ("a muxer takes one codec per stream; to switch codecs, give each codec an output of "
                           "its own (see docs/ccmencbin.md, What downstream must take)"));
      return;
    }
  }
  Plan plan{codec, rank_for(codec, s)};
  std::vector<std::string> passed;
  auto next = ccm_enc_bin_walk(self, plan.ranking.candidates, codec, s, caps.get(), passed);
  if (!next) {
    for (const auto& po : plan.ranking.passed_over) passed.push_back(po.factory + ": " + po.reason);
    GST_ELEMENT_WARNING(self, STREAM, ENCODE, ("%s: no encoder can start with it, keeping %s", reason.c_str(),
                                               old->chain.factory.c_str()),
                        ("%s", join(passed, "; ").c_str()));
    return;
  }

  // Drain the old encoder: every frame it took comes out before the new one starts.
  {
    std::unique_lock lk(p->lock);
    old->queue.emplace_back(p->next_seq++, GST_MINI_OBJECT(gst_event_new_eos()));
    p->cond.notify_all();
    std::string why;
    while (!old->drained && !p->flushing && healthy(p, *old, now_us(), &why))
      p->cond.wait_for(lk, std::chrono::milliseconds(5));
    if (!old->drained) GST_WARNING_OBJECT(self, "%s did not drain (%s)", old->chain.factory.c_str(), why.c_str());
  }
  std::shared_ptr<Session> standby;
  guint frames = 0;
  {
    std::lock_guard out(p->output_lock);
    std::lock_guard lk(p->lock);
    std::deque<Item> leftovers = std::move(old->queue);
    old->queue.clear();
    old->stop = true;
    p->current = next;
    p->plan = plan;
    next->switch_started = t0;
    frames = ccm_enc_bin_requeue(self, *next, std::move(leftovers));
    standby = p->standby;  // prepared for the old settings
    p->standby = nullptr;
    p->standby_generation++;
  }
  ccm_enc_bin_retire(self, old);
  if (standby) ccm_enc_bin_retire(self, standby);
  p->stats.switches++;
  p->stats.frames_reencoded += frames;
  post_switched(self, old->chain, next->chain, reason, frames, true, false);
  ccm_enc_bin_build_standby(self);
}

// Everything back to before the first caps (PAUSED to READY, finalize).
void ccm_enc_bin_teardown(Self* self, bool finalizing) {
  auto* p = self->priv;
  if (finalizing) p->shutting_down = true;  // a standby still being built gives up now
  {
    std::lock_guard lk(p->lock);
    p->standby_generation++;
  }
  if (p->standby_builder.joinable()) p->standby_builder.join();
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard lk(p->lock);
    sessions = p->attached;
  }
  for (const auto& s : sessions) ccm_enc_bin_retire(self, s);
  ccm_enc_bin_join_reapers(self, kShutdownBound, finalizing);
  std::lock_guard lk(p->lock);
  p->current = nullptr;
  p->standby = nullptr;
  p->plan.reset();
  p->failed.clear();
  p->failures.clear();
  p->pending.clear();
  if (p->input_caps) gst_caps_unref(p->input_caps);
  p->input_caps = nullptr;
  gst_buffer_replace(&p->last_input, nullptr);
  p->final_eos = false;
  p->fatal = false;
  p->switch_requested = false;
}

}  // namespace ccm::encbin
