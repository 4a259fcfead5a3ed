// ccmencbin's sink and src pads (pads.h).
#include "encbin/pads.h"

#include "common/bandwidth_estimate.h"
#include "common/registry_probe.h"
#include "encbin/choose.h"
#include "encbin/failover.h"
#include "encbin/live_rate.h"
#include "memory/ccmdmabufpool.h"

#include <gst/video/video.h>

#include <algorithm>

namespace ccm::encbin {

namespace {

// Raw formats offered upstream before the encoder is chosen: 4:2:0 first, so a
// source that can produce it does, and videoconvert stays in passthrough.
GstCaps* preferred_raw_caps() {
  GValue list = G_VALUE_INIT;
  g_value_init(&list, GST_TYPE_LIST);
  auto append = [&](GstVideoFormat f) {
    GValue v = G_VALUE_INIT;
    g_value_init(&v, G_TYPE_STRING);
    g_value_set_string(&v, gst_video_format_to_string(f));
    gst_value_list_append_and_take_value(&list, &v);
  };
  const GstVideoFormat first[] = {GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_NV12,
                                  GST_VIDEO_FORMAT_I420_10LE, GST_VIDEO_FORMAT_P010_10LE};
  for (auto f : first) append(f);
  guint n = 0;
  const GstVideoFormat* all = gst_video_formats_raw(&n);
  for (guint i = 0; i < n; i++)
    if (std::find(std::begin(first), std::end(first), all[i]) == std::end(first)) append(all[i]);
  GstCaps* caps = gst_caps_new_empty_simple("video/x-raw");
  gst_caps_set_value(caps, "format", &list);
  g_value_unset(&list);
  return caps;
}

// Why these caps cannot be taken, or "" when they can.
std::string refuse_reason(GstCaps* caps) {
  if (!caps || gst_caps_get_size(caps) != 1) return "caps are not fixed";
  GstStructure* s = gst_caps_get_structure(caps, 0);
  if (!gst_structure_has_name(s, "video/x-raw"))
    return std::string("ccmencbin takes raw video, not ") + gst_structure_get_name(s) +
           ": decode first (decodebin)";
  GstCapsFeatures* f = gst_caps_get_features(caps, 0);
  // CUDA memory (cudaupload, nvdec upstream) is downloaded inside when cudadownload exists.
  const bool cuda_ok = f && gst_caps_features_contains(f, "memory:CUDAMemory") &&
                       ccm::gst::registry_has_element("cudadownload");
  if (f && !gst_caps_features_is_any(f) && !cuda_ok &&
      !gst_caps_features_is_equal(f, GST_CAPS_FEATURES_MEMORY_SYSTEM_MEMORY)) {
    gchar* fs = gst_caps_features_to_string(f);
    std::string why = std::string("ccmencbin cannot convert video in ") + fs +
                      ": download it to system memory first (gldownload, cudadownload, "
                      "vapostproc ! video/x-raw)";
    g_free(fs);
    return why;
  }
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, caps))
    return "incomplete or unknown raw video caps (format, width and height are required)";
  if (GST_VIDEO_INFO_FORMAT(&info) == GST_VIDEO_FORMAT_ENCODED ||
      GST_VIDEO_INFO_FORMAT(&info) == GST_VIDEO_FORMAT_UNKNOWN)
    return "raw format has no converter to a format encoders take";
  if (info.width < 1 || info.height < 1) return "frame size must be at least 1x1";
  // No encoder element takes more (AV1, HEVC and H.264 levels end below it), and
  // some reserve memory for the whole frame at open (vp9enc: ~13 GB at 16385x16385).
  constexpr int kMaxSide = 16384;
  if (info.width > kMaxSide || info.height > kMaxSide)
    return std::to_string(info.width) + "x" + std::to_string(info.height) +
           " is larger than any encoder takes (" + std::to_string(kMaxSide) +
           " per side at most): scale it down first (videoscale)";
  return {};
}

// Encoders need a nominal framerate; see kAssumedFpsN.
GstCaps* with_nominal_framerate(GstCaps* caps, bool* changed) {
  *changed = false;
  GstStructure* s = gst_caps_get_structure(caps, 0);
  gint n = 0, d = 1;
  if (gst_structure_get_fraction(s, "framerate", &n, &d) && n > 0 && d > 0) return gst_caps_ref(caps);
  gint mn = 0, md = 1;
  if (!gst_structure_get_fraction(s, "max-framerate", &mn, &md) || mn <= 0 || md <= 0) {
    mn = kAssumedFpsN;
    md = 1;
  }
  GstCaps* fixed = gst_caps_copy(caps);
  gst_caps_set_simple(fixed, "framerate", GST_TYPE_FRACTION, mn, md, nullptr);
  *changed = true;
  return fixed;
}

bool can_download_cuda() { return ccm::gst::registry_has_element("cudadownload"); }

}  // namespace

static bool ccm_enc_bin_is_built(Self* self) {
  std::lock_guard lk(self->priv->lock);
  return self->priv->current != nullptr || self->priv->fatal;
}

gboolean ccm_enc_bin_sink_event(GstPad*, GstObject* parent, GstEvent* event) {
  Self* self = GST_CCM_ENC_BIN(parent);
  auto* p = self->priv;
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps = nullptr;
      gst_event_parse_caps(event, &caps);
      std::string refused = refuse_reason(caps);
      if (!refused.empty()) {
        gchar* cs = gst_caps_to_string(caps);
        GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("%s", refused.c_str()), ("input caps: %s", cs));
        g_free(cs);
        gst_event_unref(event);
        return FALSE;
      }
      bool changed = false;
      Ref<GstCaps> nominal(with_nominal_framerate(caps, &changed));
      if (changed)
        GST_INFO_OBJECT(self, "variable framerate input: encoders get %" GST_PTR_FORMAT, nominal.get());
      {
        GstStructure* st = gst_caps_get_structure(nominal.get(), 0);
        gint n = 0, d = 1;
        gst_structure_get_fraction(st, "framerate", &n, &d);
        std::lock_guard lk(p->lock);
        p->frame_duration = n > 0 ? gst_util_uint64_scale_int(GST_SECOND, d, n) : GST_CLOCK_TIME_NONE;
        gint w = 0, h = 0;
        gst_structure_get_int(st, "width", &w);
        gst_structure_get_int(st, "height", &h);
        p->frame_pixels = gint64(w) * h;
        gst_caps_replace(&p->input_caps, nominal.get());
      }
      if (!ccm_enc_bin_is_built(self)) {
        // The session gets the caps (and what came before them) when it is built.
        const bool ok = ccm_enc_bin_start(self, nominal.get());
        if (!ok) {
          std::lock_guard lk(p->lock);
          p->fatal = true;
        }
        gst_event_unref(event);
        return ok;
      }
      GstEvent* replaced = gst_event_new_caps(nominal.get());
      GST_EVENT_SEQNUM(replaced) = GST_EVENT_SEQNUM(event);
      gst_event_unref(event);
      event = replaced;
      break;
    }
    case GST_EVENT_FLUSH_START: {
      std::shared_ptr<Session> cur;
      {
        std::lock_guard lk(p->lock);
        p->flushing = true;
        cur = p->current;
      }
      p->cond.notify_all();
      if (cur) gst_pad_push_event(cur->feed, gst_event_ref(event));
      return gst_pad_push_event(self->srcpad, event);
    }
    case GST_EVENT_FLUSH_STOP: {
      std::shared_ptr<Session> cur;
      {
        std::unique_lock lk(p->lock);
        cur = p->current;
        if (cur) {
          p->cond.wait_for(lk, std::chrono::seconds(2), [&] { return !cur->busy; });
          cur->queue.clear();
        }
        p->pending.clear();
      }
      if (cur) gst_pad_push_event(cur->feed, gst_event_ref(event));
      {
        std::lock_guard lk(p->lock);
        p->flushing = false;
        p->final_eos = false;
        p->next_pts = GST_CLOCK_TIME_NONE;
        if (cur) {
          cur->drained = false;
          cur->downstream = GST_FLOW_OK;
          cur->waiting_since = -1;
        }
      }
      return gst_pad_push_event(self->srcpad, event);
    }
    case GST_EVENT_SEGMENT: {
      // A new segment: untimed frames count again from its start.
      const GstSegment* segment = nullptr;
      gst_event_parse_segment(event, &segment);
      std::lock_guard lk(p->lock);
      p->next_pts = segment->format == GST_FORMAT_TIME ? segment->start : GST_CLOCK_TIME_NONE;
      break;
    }
    case GST_EVENT_EOS: {
      if (!ccm_enc_bin_is_built(self)) {
        // Nothing was ever negotiated: pass EOS straight on so the pipeline ends.
        return gst_pad_push_event(self->srcpad, event);
      }
      std::unique_lock lk(p->lock);
      if (p->fatal || !p->current) {
        gst_event_unref(event);
        return FALSE;
      }
      p->final_eos = true;
      p->current->queue.emplace_back(p->next_seq++, GST_MINI_OBJECT(event));
      p->cond.notify_all();
      // Returns once the drain came out (after any failover on the way).
      return ccm_enc_bin_wait(self, lk, [&] { return p->current->drained; });
    }
    case GST_EVENT_CUSTOM_DOWNSTREAM:
    case GST_EVENT_CUSTOM_DOWNSTREAM_OOB:
    case GST_EVENT_CUSTOM_BOTH:
    case GST_EVENT_CUSTOM_BOTH_OOB: {
      double bps = -1;
      if (!gst_ccm_bandwidth_estimate_parse(event, &bps)) break;
      std::shared_ptr<Session> cur;
      {
        std::lock_guard lk(p->lock);
        cur = p->current;
      }
      // The event itself goes on into the session in use, in order with the frames.
      ccm_enc_bin_follow_estimate(self, bps, cur && cur->chain.rate_controller ? cur.get() : nullptr);
      break;
    }
    default:
      break;
  }
  if (!ccm_enc_bin_is_built(self)) {
    // Kept as sticky on our pad (returning TRUE stores it) and pushed into the
    // session when it is built; other events before caps have nowhere to go.
    gst_event_unref(event);
    return TRUE;
  }
  if (!(gst_event_type_get_flags(GST_EVENT_TYPE(event)) & GST_EVENT_TYPE_SERIALIZED)) {
    std::shared_ptr<Session> cur;
    {
      std::lock_guard lk(p->lock);
      cur = p->current;
    }
    if (!cur) {
      gst_event_unref(event);
      return FALSE;
    }
    return gst_pad_push_event(cur->feed, event);
  }
  // In stream order with the frames.
  std::lock_guard lk(p->lock);
  if (!p->current) {
    gst_event_unref(event);
    return FALSE;
  }
  p->current->queue.emplace_back(p->next_seq++, GST_MINI_OBJECT(event));
  p->cond.notify_all();
  return TRUE;
}

// Encoders and muxers need a pts on every frame; frames without one get the
// previous frame's end, at the nominal framerate.
static GstBuffer* ccm_enc_bin_complete_timestamps(Self* self, GstBuffer* buffer) {
  auto* p = self->priv;
  std::lock_guard lk(p->lock);
  if (!GST_BUFFER_PTS_IS_VALID(buffer) || !GST_BUFFER_DURATION_IS_VALID(buffer)) {
    buffer = gst_buffer_make_writable(buffer);
    if (!GST_BUFFER_PTS_IS_VALID(buffer))
      GST_BUFFER_PTS(buffer) = GST_CLOCK_TIME_IS_VALID(p->next_pts) ? p->next_pts : 0;
    if (!GST_BUFFER_DURATION_IS_VALID(buffer)) GST_BUFFER_DURATION(buffer) = p->frame_duration;
  }
  p->next_pts = GST_BUFFER_PTS(buffer) + (GST_BUFFER_DURATION_IS_VALID(buffer) ? GST_BUFFER_DURATION(buffer) : 0);
  return buffer;
}

GstFlowReturn ccm_enc_bin_sink_chain(GstPad*, GstObject* parent, GstBuffer* buffer) {
  Self* self = GST_CCM_ENC_BIN(parent);
  auto* p = self->priv;
  if (p->shutting_down) {
    // Stopping: the sessions are gone already (see change_state), which is no error.
    gst_buffer_unref(buffer);
    return GST_FLOW_FLUSHING;
  }
  if (!ccm_enc_bin_is_built(self)) {
    gst_buffer_unref(buffer);
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("data arrived before caps"),
                      ("the upstream element must send caps (video/x-raw) before buffers"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  auto& st = p->stats;
  if (st.frames_in.fetch_add(1) == 0) st.first_in_wall_us = now_us();
  buffer = ccm_enc_bin_complete_timestamps(self, buffer);
  if (p->switch_requested.exchange(false)) ccm_enc_bin_switch(self);

  std::unique_lock lk(p->lock);
  GstFlowReturn ret = GST_FLOW_OK;
  if (p->flushing) ret = GST_FLOW_FLUSHING;
  else if (p->fatal || !p->current) ret = GST_FLOW_ERROR;
  else if (p->final_eos) ret = GST_FLOW_EOS;
  if (ret != GST_FLOW_OK) {
    gst_buffer_unref(buffer);
    return ret;
  }
  const guint64 seq = p->next_seq++;
  if (p->settings.standby) gst_buffer_replace(&p->last_input, buffer);  // one more frame held, only for standby
  p->pending.emplace_back(seq, GST_MINI_OBJECT(gst_buffer_ref(buffer)));
  p->current->queue.emplace_back(seq, GST_MINI_OBJECT(buffer));
  p->cond.notify_all();
  // Hand-over: return once the pusher took the frame, so encoding overlaps
  // with upstream's next frame and flow returns come back one frame late, as
  // through a queue of one.
  if (!ccm_enc_bin_wait(self, lk, [&] { return p->current->queue.empty(); }))
    return p->fatal ? GST_FLOW_ERROR : GST_FLOW_FLUSHING;
  const GstFlowReturn down = p->current->downstream;
  const bool want_standby = p->settings.standby && !p->standby && p->standby_generation == 0;
  lk.unlock();
  if (want_standby) ccm_enc_bin_build_standby(self);
  return down < GST_FLOW_OK || down == GST_FLOW_EOS ? down : GST_FLOW_OK;
}

static GstCaps* ccm_enc_bin_sink_caps() {
  GstCaps* caps = preferred_raw_caps();
  if (can_download_cuda()) {
    // After system memory: elements that can give either give that.
    GstCaps* cuda = gst_caps_copy(caps);
    gst_caps_set_features(cuda, 0, gst_caps_features_new(kCudaMemory, nullptr));
    gst_caps_append(caps, cuda);
  }
  return caps;
}

gboolean ccm_enc_bin_sink_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  Self* self = GST_CCM_ENC_BIN(parent);
  auto* p = self->priv;
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS: {
      // Whatever the encoder, videoconvert inside takes any raw format; 4:2:0 first.
      GstCaps* filter = nullptr;
      gst_query_parse_caps(query, &filter);
      Ref<GstCaps> caps(ccm_enc_bin_sink_caps());
      if (filter) {
        Ref<GstCaps> i(gst_caps_intersect_full(filter, caps.get(), GST_CAPS_INTERSECT_FIRST));
        gst_query_set_caps_result(query, i.get());
      } else {
        gst_query_set_caps_result(query, caps.get());
      }
      return TRUE;
    }
    case GST_QUERY_ACCEPT_CAPS: {
      GstCaps* caps = nullptr;
      gst_query_parse_accept_caps(query, &caps);
      // Any raw video is "accepted" here so that caps we cannot take reach the
      // CAPS event, which refuses them with an error that names the fix;
      // the CAPS query above only offers what we can take.
      gst_query_set_accept_caps_result(
          query, caps && gst_caps_get_size(caps) == 1 &&
                     gst_structure_has_name(gst_caps_get_structure(caps, 0), "video/x-raw"));
      return TRUE;
    }
    default:
      break;
  }
  std::shared_ptr<Session> cur;
  {
    std::unique_lock lk(p->lock);
    if ((gst_query_type_get_flags(GST_QUERY_TYPE(query)) & GST_QUERY_TYPE_SERIALIZED) && p->current) {
      // In stream order: once the session has taken everything before it.
      if (!ccm_enc_bin_wait(self, lk, [&] { return p->current->queue.empty() && !p->current->busy; })) return FALSE;
    }
    cur = p->current;
  }
  if (!cur) return gst_pad_query_default(pad, parent, query);
  const gboolean answered = gst_pad_peer_query(cur->feed, query);
  if (GST_QUERY_TYPE(query) == GST_QUERY_ALLOCATION) {
    // The session answers first; a generic answer becomes our aligned DMABuf pool.
    Settings s;
    {
      std::lock_guard lk(p->lock);
      s = p->settings;
    }
    if (answered && s.dmabuf_pool) ccm_propose_dmabuf_pool(GST_OBJECT(self), query, cur->chain.gpu);
  }
  return answered;
}

gboolean ccm_enc_bin_src_event(GstPad*, GstObject* parent, GstEvent* event) {
  // Upstream events from downstream (force-key-unit, QoS, seek): into the
  // session in use, which passes what it does not handle on upstream.
  Self* self = GST_CCM_ENC_BIN(parent);
  double bps = -1;
  if (GST_EVENT_TYPE(event) == GST_EVENT_CUSTOM_UPSTREAM && gst_ccm_bandwidth_estimate_parse(event, &bps)) {
    // Every session's rate control, including one in standby; then on upstream,
    // for a ccmratecontrol the application put in front of us.
    ccm_enc_bin_follow_estimate(self, bps, nullptr);
    gst_pad_push_event(self->sinkpad, event);
    return TRUE;
  }
  std::shared_ptr<Session> cur;
  {
    std::lock_guard lk(self->priv->lock);
    cur = self->priv->current;
  }
  if (cur) return gst_pad_push_event(cur->collect, event);
  return gst_pad_push_event(self->sinkpad, event);
}

gboolean ccm_enc_bin_src_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  Self* self = GST_CCM_ENC_BIN(parent);
  std::shared_ptr<Session> cur;
  {
    std::lock_guard lk(self->priv->lock);
    cur = self->priv->current;
  }
  if (cur) return gst_pad_peer_query(cur->collect, query);
  if (GST_QUERY_TYPE(query) == GST_QUERY_CAPS) {
    // Before the first caps: every codec we make, even with codec= set, so that
    // linking succeeds and a refusal comes with our message naming the fix.
    GstCaps* filter = nullptr;
    gst_query_parse_caps(query, &filter);
    Ref<GstCaps> caps(gst_pad_get_pad_template_caps(pad));
    Ref<GstCaps> result(filter ? gst_caps_intersect_full(filter, caps.get(), GST_CAPS_INTERSECT_FIRST)
                               : gst_caps_ref(caps.get()));
    gst_query_set_caps_result(query, result.get());
    return TRUE;
  }
  return gst_pad_peer_query(self->sinkpad, query);
}

}  // namespace ccm::encbin
