#include "reliability_util.h"

#include <gst/video/video.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>

namespace ccm::reliability {

Outcome::Outcome(Outcome&& o) noexcept
    : eos(o.eos), timed_out(o.timed_out), errors(std::move(o.errors)), warnings(std::move(o.warnings)),
      messages(std::move(o.messages)), frames_in(o.frames_in), frames_out(o.frames_out) {
  o.messages.clear();
}

Outcome::~Outcome() {
  for (GstStructure* s : messages) gst_structure_free(s);
}

int Outcome::count(const char* name) const {
  int n = 0;
  for (GstStructure* s : messages) n += gst_structure_has_name(s, name);
  return n;
}

std::string Outcome::summary() const {
  std::string s;
  if (timed_out) s = "TIMEOUT";
  else if (!errors.empty()) s = "error: " + errors.front().substr(0, errors.front().find(" | "));
  else if (eos) s = "EOS";
  s += ", " + std::to_string(frames_in) + " in / " + std::to_string(frames_out) + " out";
  // ccmratecontrol's note that 2000 kbit/s is more than tiny raw frames carry is
  // expected with the small frames used here: the first other warning is shown.
  for (const auto& w : warnings)
    if (w.find("more than the raw video") == std::string::npos) {
      s += ", warning: " + w.substr(0, w.find(" | "));
      break;
    }
  return s;
}

namespace {

GstPadProbeReturn count_buffer(GstPad*, GstPadProbeInfo* info, gpointer counter) {
  if (GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_BUFFER)
    static_cast<std::atomic<guint64>*>(counter)->fetch_add(1);
  return GST_PAD_PROBE_OK;
}

}  // namespace

Outcome run(const std::string& description, int timeout_s, const std::function<void(GstElement*)>& setup,
            const std::function<bool(GstElement*, double)>& tick) {
  Outcome out;
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(description.c_str(), &err);
  if (!pipeline || err) {
    out.errors.push_back(std::string("parse: ") + (err ? err->message : "?"));
    if (err) g_error_free(err);
    if (pipeline) gst_object_unref(pipeline);
    return out;
  }
  std::atomic<guint64> in{0}, outc{0};
  if (GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc")) {
    for (auto [name, counter] : {std::pair{"sink", &in}, std::pair{"src", &outc}}) {
      if (GstPad* pad = gst_element_get_static_pad(enc, name)) {
        gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_buffer, counter, nullptr);
        gst_object_unref(pad);
      }
    }
    gst_object_unref(enc);
  }
  if (setup) setup(pipeline);
  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  const auto start = std::chrono::steady_clock::now();
  bool done = false, ticking = bool(tick);
  while (!done) {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (t > timeout_s) {
      out.timed_out = true;
      break;
    }
    if (ticking) ticking = tick(pipeline, t);
    GstMessage* msg = gst_bus_timed_pop(bus, 50 * GST_MSECOND);
    if (!msg) continue;
    switch (GST_MESSAGE_TYPE(msg)) {
      case GST_MESSAGE_EOS: out.eos = done = true; break;
      case GST_MESSAGE_ERROR:
      case GST_MESSAGE_WARNING: {
        GError* e = nullptr;
        gchar* dbg = nullptr;
        const bool error = GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR;
        if (error) gst_message_parse_error(msg, &e, &dbg);
        else gst_message_parse_warning(msg, &e, &dbg);
        std::string text = std::string(GST_MESSAGE_SRC_NAME(msg)) + ": " + e->message + " | " + (dbg ? dbg : "");
        (error ? out.errors : out.warnings).push_back(std::move(text));
        done = error;
        g_error_free(e);
        g_free(dbg);
        break;
      }
      case GST_MESSAGE_ELEMENT:
        if (const GstStructure* s = gst_message_get_structure(msg)) out.messages.push_back(gst_structure_copy(s));
        break;
      default: break;
    }
    gst_message_unref(msg);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  out.frames_in = in.load();
  out.frames_out = outc.load();
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  return out;
}

Outcome feed(const std::string& enc_props, const std::string& caps, int frames, const std::string& downstream,
             const std::string& caps_after, int timeout_s) {
  std::thread pusher;
  std::atomic<bool> refused{false};
  // The frames go in from a thread of their own, as from an upstream element's
  // streaming thread, so the bus is read (and a hang times out) meanwhile.
  auto push = [caps, caps_after, frames, &refused](GstElement* enc) {
    GstPad* pad = gst_element_get_static_pad(enc, "sink");
    gst_pad_send_event(pad, gst_event_new_stream_start("reliability"));
    GstClockTime pts = 0;
    auto send_caps = [&](const std::string& text, GstVideoInfo* info) {
      GstCaps* c = gst_caps_from_string(text.c_str());
      const bool ok = c && gst_pad_send_event(pad, gst_event_new_caps(c));  // the event takes its own ref
      if (!ok) refused = true;
      if (!(c && gst_video_info_from_caps(info, c))) gst_video_info_init(info);
      if (c) gst_caps_unref(c);
      return ok;
    };
    GstVideoInfo info;
    bool ok = send_caps(caps, &info);
    GstSegment segment;
    gst_segment_init(&segment, GST_FORMAT_TIME);
    gst_pad_send_event(pad, gst_event_new_segment(&segment));
    for (int i = 0; i < frames && ok; ++i) {
      if (!caps_after.empty() && i == frames / 2) ok = send_caps(caps_after, &info);
      const gsize size = info.size ? info.size : 64;
      GstBuffer* b = gst_buffer_new_allocate(nullptr, size, nullptr);
      gst_buffer_memset(b, 0, 0x80, size);
      if (info.fps_n > 0 && info.fps_d > 0) {
        GST_BUFFER_PTS(b) = pts;
        GST_BUFFER_DURATION(b) = gst_util_uint64_scale_int(GST_SECOND, info.fps_d, info.fps_n);
        pts += GST_BUFFER_DURATION(b);
      } else if (i == 0) {
        GST_BUFFER_PTS(b) = 0;  // as a raw .h264 decoded by GStreamer: the first frame only
      }
      if (gst_pad_chain(pad, b) != GST_FLOW_OK) break;
    }
    gst_pad_send_event(pad, gst_event_new_eos());
    gst_object_unref(pad);
    gst_object_unref(enc);
  };
  Outcome out = run("ccmencbin name=enc " + enc_props + " ! " + downstream, timeout_s, {},
                    [&](GstElement* pipeline, double) {
                      pusher = std::thread(push, gst_bin_get_by_name(GST_BIN(pipeline), "enc"));
                      return false;
                    });
  // run() set the pipeline to NULL: a push still blocked inside has been released.
  if (pusher.joinable()) pusher.join();
  out.caps_refused = refused;
  return out;
}

void within(double seconds, const char* what, const std::function<void()>& body) {
  std::packaged_task<void()> task(body);
  auto done = task.get_future();
  std::thread worker(std::move(task));
  if (done.wait_for(std::chrono::duration<double>(seconds)) != std::future_status::ready) {
    ADD_FAILURE() << what << ": still running after " << seconds << " s (hang)";
    std::fprintf(stderr, "HANG: %s\n", what);
    std::fflush(stderr);
    std::_Exit(1);
  }
  worker.join();
  done.get();
}

}  // namespace ccm::reliability
