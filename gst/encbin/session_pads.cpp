// A session's feed and collect pads (session_pads.h).
#include "encbin/session_pads.h"

#include "encbin/downstream.h"
#include "encbin/messages.h"

namespace ccm::encbin {

namespace {

Session* session_of(GstPad* pad) { return static_cast<Session*>(gst_pad_get_element_private(pad)); }

// Frames whose output has come out are not needed any more: the one with this
// pts, and every frame with a pts below the output's dts (pts >= dts for every
// frame, so those are out already, with or without reordering).
void forget_pending(Self::Private* p, GstBuffer* out) {
  const GstClockTime pts = GST_BUFFER_PTS(out), dts = GST_BUFFER_DTS(out);
  for (auto it = p->pending.begin(); it != p->pending.end();) {
    const GstClockTime fp = GST_BUFFER_PTS(GST_BUFFER(it->obj));
    if ((GST_CLOCK_TIME_IS_VALID(pts) && fp == pts) || (GST_CLOCK_TIME_IS_VALID(dts) && fp < dts))
      it = p->pending.erase(it);
    else
      ++it;
  }
}

// Which input the session's first output is, to learn the constant an encoder
// moves timestamps by. The standby's warm-up frame is the first frame pushed. Else
// the oldest frame still waiting: the first frame pushed may have gone with a
// flush before anything came out (a seek in the first moments: taking it moved
// every timestamp by the seek's distance, and the frames out were never matched to
// the frames in, measured under AddressSanitizer on Debian 13). An output whose
// timestamp a waiting frame has is that frame: no offset.
GstClockTime first_output_reference(Self::Private* p, const Session* s, GstClockTime out_pts) {
  if (s->warming || p->pending.empty()) return s->first_pushed_pts;
  for (const auto& item : p->pending)
    if (GST_BUFFER_PTS(GST_BUFFER(item.obj)) == out_pts) return out_pts;
  return GST_BUFFER_PTS(GST_BUFFER(p->pending.front().obj));
}

}  // namespace

// Sticky events the session produced (caps, segment, tags) that downstream has
// not seen, before its first buffer out: a new codec or new parameters reach
// downstream as new caps.
static GstFlowReturn ccm_enc_bin_sync_sticky(Self* self, Session* s) {
  // Another codec is another stream: a new stream-start ahead of the new caps, so
  // that decoders and decodebin3 rebuild instead of taking VP9 for more H.265.
  if (GstCaps* ours = gst_pad_get_current_caps(s->collect)) {
    if (GstCaps* theirs = gst_pad_get_current_caps(self->srcpad)) {
      if (!gst_structure_has_name(gst_caps_get_structure(theirs, 0),
                                  gst_structure_get_name(gst_caps_get_structure(ours, 0)))) {
        GstEvent* old_start = gst_pad_get_sticky_event(self->srcpad, GST_EVENT_STREAM_START, 0);
        gchar* id = gst_pad_create_stream_id_printf(self->srcpad, GST_ELEMENT(self), "%s-%d",
                                                    ccm::catalog::to_string(s->chain.codec), s->id);
        GstEvent* start = gst_event_new_stream_start(id);
        g_free(id);
        guint group = 0;
        if (old_start && gst_event_parse_group_id(old_start, &group)) gst_event_set_group_id(start, group);
        if (old_start) gst_event_unref(old_start);
        gst_pad_push_event(self->srcpad, start);
      }
      gst_caps_unref(theirs);
    }
    gst_caps_unref(ours);
  }
  for (GstEventType type : {GST_EVENT_STREAM_START, GST_EVENT_CAPS, GST_EVENT_SEGMENT, GST_EVENT_TAG}) {
    // The segment is the one that came in: outputs carry the timestamps that came in.
    GstEvent* mine = gst_pad_get_sticky_event(type == GST_EVENT_SEGMENT ? s->feed : s->collect, type, 0);
    if (!mine) continue;
    GstEvent* theirs = gst_pad_get_sticky_event(self->srcpad, type, 0);
    bool same = false;
    if (theirs) {
      switch (type) {
        case GST_EVENT_STREAM_START: same = true; break;  // one stream for downstream, whatever encodes it
        case GST_EVENT_CAPS: {
          GstCaps *a = nullptr, *b = nullptr;
          gst_event_parse_caps(mine, &a);
          gst_event_parse_caps(theirs, &b);
          same = gst_caps_is_equal(a, b) || same_stream_in_band(a, b);
          if (same && !gst_caps_is_equal(a, b))
            GST_INFO_OBJECT(self, "%s: downstream keeps its caps %" GST_PTR_FORMAT " (parameter sets in band); "
                            "the new encoder's are %" GST_PTR_FORMAT, s->chain.factory.c_str(), b, a);
          break;
        }
        case GST_EVENT_SEGMENT: {
          const GstSegment *a = nullptr, *b = nullptr;
          gst_event_parse_segment(mine, &a);
          gst_event_parse_segment(theirs, &b);
          same = gst_segment_is_equal(a, b);
          break;
        }
        default: {
          GstTagList *a = nullptr, *b = nullptr;
          gst_event_parse_tag(mine, &a);
          gst_event_parse_tag(theirs, &b);
          same = gst_tag_list_is_equal(a, b);
          break;
        }
      }
      gst_event_unref(theirs);
    }
    const bool ok = same || gst_pad_push_event(self->srcpad, gst_event_ref(mine));
    gst_event_unref(mine);
    if (!ok && type == GST_EVENT_CAPS) return GST_FLOW_NOT_NEGOTIATED;
  }
  return GST_FLOW_OK;
}

GstFlowReturn ccm_enc_bin_collect_chain(GstPad* pad, GstObject*, GstBuffer* buffer) {
  Session* s = session_of(pad);
  Self* self = s->bin;
  auto* p = self->priv;
  std::lock_guard out(p->output_lock);
  {
    std::lock_guard lk(p->lock);
    if (!s->offset_known && GST_BUFFER_PTS_IS_VALID(buffer)) {
      const GstClockTime ref = first_output_reference(p, s, GST_BUFFER_PTS(buffer));
      s->offset_known = GST_CLOCK_TIME_IS_VALID(ref);
      s->pts_offset = s->offset_known ? gint64(GST_BUFFER_PTS(buffer)) - gint64(ref) : 0;
      if (s->pts_offset != 0)
        GST_DEBUG_OBJECT(self, "%s moves timestamps by %" G_GINT64_FORMAT " ns: undone on output",
                         s->chain.factory.c_str(), s->pts_offset);
    }
    if (s->warming) {
      // The standby's warm-up frame: its encoder is open and running now.
      s->warming = false;
      s->frames_out++;
      s->waiting_since = -1;
      gst_buffer_unref(buffer);
      p->cond.notify_all();
      return GST_FLOW_OK;
    }
    if (s->retired || s != p->current.get()) {
      GST_DEBUG_OBJECT(self, "dropping output of %s (no longer in use)", s->chain.factory.c_str());
      gst_buffer_unref(buffer);
      return s->retired ? GST_FLOW_FLUSHING : GST_FLOW_OK;
    }
    if (s->pts_offset != 0) {
      buffer = gst_buffer_make_writable(buffer);
      auto undo = [&](GstClockTime t) -> GstClockTime {
        if (!GST_CLOCK_TIME_IS_VALID(t)) return t;
        const gint64 v = gint64(t) - s->pts_offset;
        return v >= 0 ? GstClockTime(v) : GST_CLOCK_TIME_NONE;
      };
      GST_BUFFER_PTS(buffer) = undo(GST_BUFFER_PTS(buffer));
      GST_BUFFER_DTS(buffer) = undo(GST_BUFFER_DTS(buffer));
    }
    forget_pending(p, buffer);
    s->frames_out++;
    GST_LOG_OBJECT(self, "%s output pts %" GST_TIME_FORMAT " dts %" GST_TIME_FORMAT ", %zu frame(s) pending",
                   s->chain.factory.c_str(), GST_TIME_ARGS(GST_BUFFER_PTS(buffer)),
                   GST_TIME_ARGS(GST_BUFFER_DTS(buffer)), p->pending.size());
    const gint64 now = now_us();
    s->produced = true;
    if (!s->switch_measured && s->switch_started >= 0) {
      s->switch_measured = true;
      p->stats.last_switch_ms = double(now - s->switch_started) / 1000.0;
    }
    s->waiting_since = p->pending.empty() ? -1 : now;
    s->in_downstream = true;
  }
  p->cond.notify_all();
  GstFlowReturn flow = ccm_enc_bin_sync_sticky(self, s);
  if (flow == GST_FLOW_OK) {
    ccm_enc_bin_count_output(self, buffer);
    flow = gst_pad_push(self->srcpad, buffer);
  } else {
    gst_buffer_unref(buffer);
  }
  {
    std::lock_guard lk(p->lock);
    s->in_downstream = false;
    s->downstream = flow;
    if (s->busy) s->busy_since = now_us();
  }
  p->cond.notify_all();
  return flow;
}

gboolean ccm_enc_bin_collect_event(GstPad* pad, GstObject*, GstEvent* event) {
  Session* s = session_of(pad);
  Self* self = s->bin;
  auto* p = self->priv;
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_EOS: {
      // Our drain of this session came through. Downstream gets it only when it
      // is upstream's EOS; a drain for a switch stays inside.
      {
        std::lock_guard out(p->output_lock);
        bool forward = false;
        {
          std::lock_guard lk(p->lock);
          forward = !s->retired && s == p->current.get() && p->final_eos;
          // Frames went in, fewer came out, and some are still waiting: the
          // encoder lost them (an output thread that died). Not the end of the
          // stream, a failure: the next encoder re-encodes them, then ends it.
          if (forward && !p->pending.empty() && s->frames_out < s->frames_pushed && !s->failed) {
            s->failed = true;
            s->failure = "ended the stream with " + std::to_string(s->frames_pushed - s->frames_out) +
                         " frame(s) never output";
            gst_event_unref(event);
            p->cond.notify_all();
            return TRUE;
          }
        }
        if (forward) {
          ccm_enc_bin_sync_sticky(self, s);
          gst_pad_push_event(self->srcpad, event);
        } else {
          gst_event_unref(event);
        }
        std::lock_guard lk(p->lock);
        s->drained = true;
        s->waiting_since = -1;
        if (forward) p->pending.clear();  // what is left, the encoder dropped
      }
      p->cond.notify_all();
      return TRUE;
    }
    case GST_EVENT_FLUSH_START:
    case GST_EVENT_FLUSH_STOP:
      // Flushes reach downstream from our sink pad, once.
      gst_event_unref(event);
      return TRUE;
    default:
      break;
  }
  // The flags through gst_event_type_get_flags(), not GST_EVENT_IS_STICKY/SERIALIZED (and
  // gst_query_type_get_flags() below): those macros AND two enum types, deprecated in C++20
  // (GCC 14 warns).
  if (gst_event_type_get_flags(GST_EVENT_TYPE(event)) & GST_EVENT_TYPE_STICKY) {
    // Kept on this pad (returning TRUE stores it) and sent with the session's first buffer.
    gst_event_unref(event);
    return TRUE;
  }
  bool current;
  {
    std::lock_guard lk(p->lock);
    current = !s->retired && s == p->current.get();
  }
  if (!current) {
    gst_event_unref(event);
    return TRUE;
  }
  return gst_pad_push_event(self->srcpad, event);
}

gboolean ccm_enc_bin_collect_query(GstPad* pad, GstObject*, GstQuery* query) {
  Session* s = session_of(pad);
  Self* self = s->bin;
  bool current;
  {
    std::lock_guard lk(self->priv->lock);
    if (s->retired) return FALSE;
    current = s == self->priv->current.get();
  }
  if (GST_QUERY_TYPE(query) == GST_QUERY_ALLOCATION) {
    // Only for what downstream was told: a session that is still to take over
    // (other caps, maybe another codec) would confuse it. Encoders then use their own.
    GstCaps* caps = nullptr;
    gst_query_parse_allocation(query, &caps, nullptr);
    GstCaps* theirs = gst_pad_get_current_caps(self->srcpad);
    const bool same = current && caps && theirs && gst_caps_is_equal(caps, theirs);
    if (theirs) gst_caps_unref(theirs);
    if (!same) return FALSE;
  }
  if (gst_pad_peer_query(self->srcpad, query)) {
    if (GST_QUERY_TYPE(query) == GST_QUERY_ACCEPT_CAPS) {
      gboolean accepted = FALSE;
      gst_query_parse_accept_caps_result(query, &accepted);
      if (!accepted) {
        std::lock_guard lk(self->priv->lock);
        s->downstream = GST_FLOW_NOT_NEGOTIATED;  // downstream's refusal, not the encoder's failure
      }
    }
    return TRUE;
  }
  // Not linked yet (webrtcbin links late): anything goes until it is.
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS: {
      GstCaps* filter = nullptr;
      gst_query_parse_caps(query, &filter);
      Ref<GstCaps> templ(gst_pad_get_pad_template_caps(self->srcpad));
      Ref<GstCaps> result(filter ? gst_caps_intersect_full(filter, templ.get(), GST_CAPS_INTERSECT_FIRST)
                                 : gst_caps_ref(templ.get()));
      gst_query_set_caps_result(query, result.get());
      return TRUE;
    }
    case GST_QUERY_ACCEPT_CAPS:
      gst_query_set_accept_caps_result(query, TRUE);
      return TRUE;
    default:
      return FALSE;
  }
}

gboolean ccm_enc_bin_feed_event(GstPad* pad, GstObject*, GstEvent* event) {
  // Upstream events out of the session (QoS, reconfigure, seek): on to our
  // upstream when the session is the one in use.
  Session* s = session_of(pad);
  Self* self = s->bin;
  bool current;
  {
    std::lock_guard lk(self->priv->lock);
    current = !s->retired && s == self->priv->current.get();
  }
  if (!current && GST_EVENT_TYPE(event) != GST_EVENT_RECONFIGURE) {
    gst_event_unref(event);
    return TRUE;
  }
  return gst_pad_push_event(self->sinkpad, event);
}

gboolean ccm_enc_bin_feed_query(GstPad* pad, GstObject*, GstQuery* query) {
  Session* s = session_of(pad);
  return gst_pad_peer_query(s->bin->sinkpad, query);
}

}  // namespace ccm::encbin
