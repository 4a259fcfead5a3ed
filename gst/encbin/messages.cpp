// ccm-encoder-selected, ccm-encoder-switched and ccm-stats (messages.h).
#include "encbin/messages.h"

#include "encbin/gpus.h"

#include <algorithm>

namespace ccm::encbin {

namespace {

GValue string_array(const std::vector<std::string>& lines) {
  GValue arr = G_VALUE_INIT;
  gst_value_array_init(&arr, lines.size());
  for (const auto& l : lines) {
    GValue v = G_VALUE_INIT;
    g_value_init(&v, G_TYPE_STRING);
    g_value_set_string(&v, l.c_str());
    gst_value_array_append_and_take_value(&arr, &v);
  }
  return arr;
}

}  // namespace

void post_message(Self* self, GstStructure* s) {
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

void post_selected(Self* self, const Session& sess, const std::vector<std::string>& passed_over,
                   const std::string& reason, double start_ms) {
  const Chain& chain = sess.chain;
  const std::string device = gpu_description(chain.gpu);
  GstStructure* s = gst_structure_new(
      "ccm-encoder-selected", "factory", G_TYPE_STRING, chain.factory.c_str(), "codec", G_TYPE_STRING,
      ccm::catalog::to_string(chain.codec), "hardware", G_TYPE_BOOLEAN, chain.hardware, "device",
      G_TYPE_STRING, device.c_str(), "gpu", G_TYPE_INT, chain.gpu, "api", G_TYPE_STRING,
      chain.entry ? ccm::catalog::to_string(chain.entry->api) : "unknown", "reason", G_TYPE_STRING,
      reason.c_str(), "settings", G_TYPE_STRING, sess.setup_report.c_str(), "start-ms", G_TYPE_DOUBLE, start_ms,
      "probe", G_TYPE_STRING, sess.probe.c_str(), "rate-controller", G_TYPE_STRING, chain.rate_kept_by.c_str(), nullptr);
  GValue passed = string_array(passed_over);
  gst_structure_take_value(s, "passed-over", &passed);
  GValue not_set = string_array(sess.not_set);
  gst_structure_take_value(s, "not-set", &not_set);
  // The same for programs: one structure per candidate, its factory and reason apart.
  GValue details = G_VALUE_INIT;
  gst_value_array_init(&details, passed_over.size());
  for (const auto& line : passed_over) {
    const size_t colon = line.find(": ");
    const std::string factory = line.substr(0, colon);
    const std::string why = colon == std::string::npos ? "" : line.substr(colon + 2);
    GValue v = G_VALUE_INIT;
    g_value_init(&v, GST_TYPE_STRUCTURE);
    g_value_take_boxed(&v, gst_structure_new("passed-over", "factory", G_TYPE_STRING, factory.c_str(), "reason",
                                             G_TYPE_STRING, why.c_str(), nullptr));
    gst_value_array_append_and_take_value(&details, &v);
  }
  gst_structure_take_value(s, "passed-over-details", &details);
  GST_INFO_OBJECT(self, "selected %s (%s): %s", chain.factory.c_str(), device.c_str(), reason.c_str());
  post_message(self, s);
}

void post_switched(Self* self, const Chain& from, const Chain& to, const std::string& reason, guint frames,
                   bool requested, bool standby) {
  GstStructure* s = gst_structure_new(
      "ccm-encoder-switched", "from", G_TYPE_STRING, from.factory.c_str(), "to", G_TYPE_STRING,
      to.factory.c_str(), "from-codec", G_TYPE_STRING, ccm::catalog::to_string(from.codec), "codec", G_TYPE_STRING,
      ccm::catalog::to_string(to.codec), "hardware", G_TYPE_BOOLEAN, to.hardware, "device", G_TYPE_STRING,
      gpu_description(to.gpu).c_str(), "gpu", G_TYPE_INT, to.gpu, "reason", G_TYPE_STRING, reason.c_str(),
      "frames-reencoded", G_TYPE_UINT64, (guint64)frames, "requested", G_TYPE_BOOLEAN, requested, "standby", G_TYPE_BOOLEAN,
      standby, nullptr);
  GST_INFO_OBJECT(self, "switched %s -> %s (%s), %u frame(s) re-encoded", from.factory.c_str(), to.factory.c_str(),
                  reason.c_str(), frames);
  post_message(self, s);
}

void ccm_enc_bin_count_output(Self* self, GstBuffer* b) {
  auto& st = self->priv->stats;
  const gint64 now = now_us();
  st.frames_out++;
  st.bytes_out += gst_buffer_get_size(b);
  if (!GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DELTA_UNIT)) st.key_frames++;
  st.last_out_wall_us = now;
  bool post = false;
  {
    std::lock_guard lk(st.window_lock);
    if (GST_BUFFER_PTS_IS_VALID(b)) {
      if (st.first_out_pts.load() == GST_CLOCK_TIME_NONE) st.first_out_pts = GST_BUFFER_PTS(b);
      const GstClockTime end = GST_BUFFER_PTS(b) + (GST_BUFFER_DURATION_IS_VALID(b) ? GST_BUFFER_DURATION(b) : 0);
      if (st.last_out_end.load() == GST_CLOCK_TIME_NONE || end > st.last_out_end) st.last_out_end = end;
      st.window.emplace_back(end, gst_buffer_get_size(b));
      while (!st.window.empty() && st.window.front().first + GST_SECOND <= st.last_out_end) st.window.pop_front();
    }
    st.window_wall_us.push_back(now);
    while (st.window_wall_us.front() + 1000000 <= now) st.window_wall_us.pop_front();
    // One ccm-stats message every stats-interval of wall-clock time, the first
    // one interval after the first output.
    const guint interval = st.interval_ms;
    if (st.last_post_us < 0) st.last_post_us = now;
    if (interval > 0 && now - st.last_post_us >= gint64(interval) * 1000) {
      st.last_post_us = now;
      post = true;
    }
  }
  if (post) post_message(self, ccm_enc_bin_stats(self));
}

GstStructure* ccm_enc_bin_stats(Self* self) {
  auto& st = self->priv->stats;
  std::string factory, codec, rate_kept_by;
  bool hardware = false;
  GstElement* rc = nullptr;  // a reference, dropped below
  {
    std::lock_guard lk(self->priv->lock);
    if (const auto& cur = self->priv->current) {
      factory = cur->chain.factory;
      codec = ccm::catalog::to_string(cur->chain.codec);
      hardware = cur->chain.hardware;
      rate_kept_by = cur->chain.rate_kept_by;
      if (cur->chain.rate_controller) rc = GST_ELEMENT(gst_object_ref(cur->chain.rate_controller));
    }
  }
  // The built-in rate controller's word on whether the target is reachable: the
  // last frame at the lowest QP the settings allow (docs/ratecontrol.md).
  gboolean at_min_qp = FALSE;
  if (rc) {
    Ref<GstElement> owned(rc);
    GstStructure* rs = nullptr;
    g_object_get(rc, "stats", &rs, nullptr);
    if (rs) {
      gst_structure_get_boolean(rs, "at-min-qp", &at_min_qp);
      gst_structure_free(rs);
    }
  }
  const guint64 out = st.frames_out, bytes = st.bytes_out;
  double mean_fps = 0, mean_kbps = 0, fps = 0, kbps = 0;
  const gint64 t0 = st.first_in_wall_us, t1 = st.last_out_wall_us;
  if (t0 >= 0 && t1 > t0 && out > 1) mean_fps = (double)out * 1e6 / (double)(t1 - t0);
  const guint64 p0 = st.first_out_pts, p1 = st.last_out_end;
  if (p0 != GST_CLOCK_TIME_NONE && p1 != GST_CLOCK_TIME_NONE && p1 > p0)
    mean_kbps = (double)bytes * 8.0 / ((double)(p1 - p0) / GST_SECOND) / 1000.0;
  {
    // The last second, as ccmratecontrol reports it: bits over the last second
    // of stream time (or the stream so far), frames over the last wall second.
    std::lock_guard lk(st.window_lock);
    guint64 window_bytes = 0;
    for (const auto& [end, size] : st.window) window_bytes += size;
    if (p0 != GST_CLOCK_TIME_NONE && p1 != GST_CLOCK_TIME_NONE && p1 > p0)
      kbps = (double)window_bytes * 8.0 / ((double)std::min<guint64>(p1 - p0, GST_SECOND) / GST_SECOND) / 1000.0;
    if (!st.window_wall_us.empty() && t0 >= 0 && t1 > t0)
      fps = (double)st.window_wall_us.size() / std::min(1.0, (double)(t1 - t0) / 1e6);
  }
  return gst_structure_new(
      "ccm-stats", "encoder", G_TYPE_STRING, factory.c_str(), "codec", G_TYPE_STRING, codec.c_str(),
      "rate-controller", G_TYPE_STRING, rate_kept_by.c_str(), "hardware",
      G_TYPE_BOOLEAN, hardware, "frames-in", G_TYPE_UINT64, (guint64)st.frames_in, "frames-out", G_TYPE_UINT64, out,
      "key-frames", G_TYPE_UINT64, (guint64)st.key_frames, "bytes-out", G_TYPE_UINT64, bytes, "bitrate-kbps",
      G_TYPE_DOUBLE, kbps, "fps", G_TYPE_DOUBLE, fps, "mean-bitrate-kbps", G_TYPE_DOUBLE, mean_kbps, "mean-fps",
      G_TYPE_DOUBLE, mean_fps, "switches", G_TYPE_UINT64, (guint64)st.switches, "failovers",
      G_TYPE_UINT64, (guint64)st.failovers, "frames-reencoded", G_TYPE_UINT64, (guint64)st.frames_reencoded,
      "last-switch-ms", G_TYPE_DOUBLE, st.last_switch_ms.load(), "start-ms", G_TYPE_DOUBLE, st.start_ms.load(),
      "at-min-qp", G_TYPE_BOOLEAN, at_min_qp, "encoders-abandoned", G_TYPE_UINT64, (guint64)st.abandoned, nullptr);
}

}  // namespace ccm::encbin
