// Building a session (session.h).
#include "encbin/session.h"

#include "common/registry_probe.h"
#include "encbin/downstream.h"
#include "encbin/failover.h"
#include "encbin/live_rate.h"
#include "encbin/session_pads.h"
#include "ratecontrol/ccmratecontrol.h"
#include "ratecontrol/encoder_adapters.h"

#include <gst/video/video.h>

#include <algorithm>
#include <span>

namespace ccm::encbin {

namespace {

ccm::gst::EncodeSettings encode_settings(Codec codec, const Settings& s, GstCaps* input_caps) {
  ccm::gst::EncodeSettings e;
  e.codec = codec;
  e.bitrate_kbps = s.bitrate;
  e.rate_control = s.rate_control;
  e.quantizer = s.quantizer;
  e.keyframe_interval = s.keyframe_interval;
  if (e.keyframe_interval == 0) {
    gint n = kAssumedFpsN, d = 1;
    gst_structure_get_fraction(gst_caps_get_structure(input_caps, 0), "framerate", &n, &d);
    e.keyframe_interval = (guint)std::max<gint64>(1, gst_util_uint64_scale_int(kAutoKeyframeSeconds, n, std::max(d, 1)));
  }
  e.low_latency = s.low_latency;
  e.bframes = s.bframes;
  e.min_quantizer = s.min_quantizer;
  e.max_quantizer = s.max_quantizer;
  const GstStructure* in = gst_caps_get_structure(input_caps, 0);
  gint w = 0, h = 0, fn = 0, fd = 1;
  if (gst_structure_get_int(in, "width", &w) && gst_structure_get_int(in, "height", &h) &&
      gst_structure_get_fraction(in, "framerate", &fn, &fd) && w > 0 && h > 0 && fn > 0 && fd > 0)
    e.pixel_rate = gst_util_uint64_scale_int(guint64(w) * guint64(h), fn, fd);
  e.cpus = g_get_num_processors();
  return e;
}

}  // namespace

// The candidate's element with every unified setting applied (floating).
GstElement* create_encoder(const ccm::catalog::Candidate& cand, Codec codec, const Settings& s, GstCaps* caps,
                           ccm::gst::SetupReport* report) {
  GstElement* e = gst_element_factory_make(cand.factory.c_str(), nullptr);
  if (!e) return nullptr;
  auto r = ccm::gst::configure_encoder(e, cand.entry, encode_settings(codec, s, caps));
  // nvautogpu elements pick their GPU by property: the balancer's choice.
  if (cand.entry && cand.entry->api == ccm::catalog::Api::NvencAutoGpu && cand.gpu >= 0) {
    const int ordinal = ccm::gst::detected_gpus()[cand.gpu].vendor_index;
    std::string why;
    if (ccm::gst::set_property_from_string(e, "cuda-device-id", std::to_string(ordinal), &why))
      r.applied.push_back("cuda-device-id=" + std::to_string(ordinal));
    else
      r.skipped.push_back("cuda-device-id: " + why);
  }
  if (report) *report = std::move(r);
  return e;
}

namespace {

// The 4:2:0 formats the encoder takes, 8-bit or (hdr) 10-bit, as caps for a
// capsfilter in front of it. 4:2:0 because that is what players, browsers and
// hardware decoders take: left alone, some encoders (av1enc) would negotiate
// 4:4:4 and a renegotiation would change the profile mid-stream.
// H.264 and H.265 cannot carry an odd width or height in 4:2:0 (their cropping
// works in chroma units), so odd sizes go in as 4:4:4 and keep their exact size.
GstCaps* encoder_input_caps(GstElement* encoder, bool hdr, bool full_chroma) {
  GstPad* pad = gst_element_get_static_pad(encoder, "sink");
  if (!pad) return nullptr;
  Ref<GstCaps> accepted(gst_pad_query_caps(pad, nullptr));
  gst_object_unref(pad);
  const char* const eight_bit[] = {"I420", "NV12", "YV12"};
  const char* const ten_bit[] = {"I420_10LE", "P010_10LE", "NV12_10LE32"};
  const char* const eight_bit_444[] = {"Y444"};
  const char* const ten_bit_444[] = {"Y444_10LE"};
  GValue list = G_VALUE_INIT;
  g_value_init(&list, GST_TYPE_LIST);
  std::span<const char* const> formats = hdr ? std::span<const char* const>(ten_bit) : std::span<const char* const>(eight_bit);
  if (full_chroma) formats = hdr ? std::span<const char* const>(ten_bit_444) : std::span<const char* const>(eight_bit_444);
  for (const char* fmt : formats) {
    Ref<GstCaps> want(gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, fmt, nullptr));
    if (!accepted || !gst_caps_can_intersect(accepted.get(), want.get())) continue;
    GValue v = G_VALUE_INIT;
    g_value_init(&v, G_TYPE_STRING);
    g_value_set_string(&v, fmt);
    gst_value_list_append_and_take_value(&list, &v);
  }
  if (gst_value_list_get_size(&list) == 0) {
    g_value_unset(&list);
    return nullptr;
  }
  GstCaps* caps = gst_caps_new_empty_simple("video/x-raw");
  gst_caps_set_value(caps, "format", &list);
  g_value_unset(&list);
  return caps;
}

// Some encoders refuse sizes their caps cannot express (ccmsvtav1enc: odd sizes,
// SVT-AV1 needs even ones for 4:2:0) in the accept-caps query. Asked with the input
// as the encoder would get it; only a refusal of caps its template takes counts,
// so elements with other memory or fields are not judged here.
bool encoder_takes_size(GstElement* encoder, GstCaps* input_caps, GstCaps* formats) {
  GstPad* pad = gst_element_get_static_pad(encoder, "sink");
  if (!pad) return true;
  Ref<GstCaps> caps(gst_caps_copy(input_caps));
  if (formats && gst_caps_get_size(formats) > 0) {
    const GValue* list = gst_structure_get_value(gst_caps_get_structure(formats, 0), "format");
    const GValue* first = list && GST_VALUE_HOLDS_LIST(list) ? gst_value_list_get_value(list, 0) : list;
    if (first) gst_caps_set_value(caps.get(), "format", first);
  }
  Ref<GstCaps> templ(gst_pad_get_pad_template_caps(pad));
  const bool refused = gst_caps_is_fixed(caps.get()) && gst_caps_can_intersect(templ.get(), caps.get()) &&
                       !gst_pad_query_accept_caps(pad, caps.get());
  gst_object_unref(pad);
  return !refused;
}

// The smallest frame the encoder's sink template takes, when `w`x`h` is below it:
// "takes frames of at least 4x4, not 1x1"; "" when the size is not too small.
// Elements refuse such frames at linking, which would otherwise only say "could
// not be linked".
std::string below_minimum_size(GstElement* encoder, int w, int h) {
  GstPad* pad = gst_element_get_static_pad(encoder, "sink");
  if (!pad) return {};
  GstCaps* templ = gst_pad_get_pad_template_caps(pad);
  gst_object_unref(pad);
  auto min_of = [](const GValue* v) {
    if (v && GST_VALUE_HOLDS_INT_RANGE(v)) return gst_value_get_int_range_min(v);
    if (v && G_VALUE_HOLDS_INT(v)) return g_value_get_int(v);
    return 1;
  };
  int min_w = G_MAXINT, min_h = G_MAXINT;
  for (guint i = 0; i < gst_caps_get_size(templ); i++) {
    const GstStructure* st = gst_caps_get_structure(templ, i);
    min_w = std::min(min_w, min_of(gst_structure_get_value(st, "width")));
    min_h = std::min(min_h, min_of(gst_structure_get_value(st, "height")));
  }
  gst_caps_unref(templ);
  if (min_w == G_MAXINT || (w >= min_w && h >= min_h)) return {};
  return "takes frames of at least " + std::to_string(min_w) + "x" + std::to_string(min_h) + ", not " +
         std::to_string(w) + "x" + std::to_string(h);
}

bool caps_in_cuda_memory(GstCaps* caps) {
  GstCapsFeatures* f = caps && gst_caps_get_size(caps) > 0 ? gst_caps_get_features(caps, 0) : nullptr;
  return f && gst_caps_features_contains(f, kCudaMemory);
}

// The pusher: takes items off the session's queue and pushes them in. Holds a
// reference on the bin so that a pusher stuck in a broken element never outlives it.
static void ccm_enc_bin_pusher(Self* self, std::shared_ptr<Session> s) {
  auto* p = self->priv;
  std::unique_lock lk(p->lock);
  for (;;) {
    p->cond.wait(lk, [&] { return s->stop || (!s->queue.empty() && !s->failed); });
    if (s->stop) break;
    Item item = std::move(s->queue.front());
    s->queue.pop_front();
    const gint64 t = now_us();
    const gint64 bound = stall_bound_us(p);
    s->busy = true;
    s->busy_since = t;
    const bool is_buffer = item.is_buffer();
    const bool is_eos = item.is_event(GST_EVENT_EOS);
    // Output is due from now on; a gap in the input (a paused live source) is
    // not the encoder's fault, so the clock restarts after one.
    if ((is_buffer || is_eos) && (s->waiting_since < 0 || (s->last_push >= 0 && t - s->last_push > bound)))
      s->waiting_since = t;
    if (is_buffer) {
      s->last_push = t;
      if (s->frames_pushed++ == 0) s->first_pushed_pts = GST_BUFFER_PTS(GST_BUFFER(item.obj));
    }
    lk.unlock();
    GstFlowReturn flow = GST_FLOW_OK;
    if (is_buffer) {
      flow = gst_pad_push(s->feed, GST_BUFFER(item.release()));
    } else {
      GstEvent* ev = GST_EVENT(item.release());
      const GstEventType type = GST_EVENT_TYPE(ev);
      if (!gst_pad_push_event(s->feed, ev) && type == GST_EVENT_CAPS)
        flow = GST_PAD_IS_FLUSHING(s->feed) ? GST_FLOW_FLUSHING : GST_FLOW_NOT_NEGOTIATED;
    }
    // Refused because a flush is going through (the flush may be over by the time we
    // look at p->flushing): not the encoder's failure either.
    const bool refused_in_flush = flow == GST_FLOW_FLUSHING && GST_PAD_IS_FLUSHING(s->feed);
    lk.lock();
    s->busy = false;
    if (flow < GST_FLOW_OK && !s->stop && !s->failed) {
      // Downstream's answer passed back through the encoder is not the encoder's failure.
      const bool from_downstream = s->downstream == flow;
      const bool flushing = flow == GST_FLOW_FLUSHING && (p->flushing || refused_in_flush);
      if (!from_downstream && !flushing) {
        s->failed = true;
        s->failure = std::string("returned ") + gst_flow_get_name(flow);
      }
    }
    p->cond.notify_all();
  }
  lk.unlock();
  gst_object_unref(self);
}

// Whether the application put a ccmratecontrol in front of us (through queues,
// capsfilters, converters and bin boundaries): that one steers, ours would fight it.
static bool rate_controller_upstream(GstPad* sinkpad) {
  GstElement* element = ccm::gst::linked_element(sinkpad);
  for (int hops = 0; element && hops < 32; ++hops) {
    if (GST_IS_CCM_RATE_CONTROLLER(element)) {
      gst_object_unref(element);
      return true;
    }
    GstPad* sink = ccm::gst::only_pad(element, GST_PAD_SINK);
    gst_object_unref(element);
    element = nullptr;
    if (!sink) break;
    element = ccm::gst::linked_element(sink);
    gst_object_unref(sink);
  }
  if (element) gst_object_unref(element);
  return false;
}

// ccmratecontrol goes in front of encoders it can steer frame by frame (QP meta,
// a live quantizer, x264enc's bitrate) when the rate is to be constant. Encoders
// that only take a new bitrate now and then (hardware, x265enc) keep their own
// rate control; bandwidth estimates set their bitrate (ccm_enc_bin_follow_estimate).
static bool wants_rate_controller(Self* self, Chain& c, const Settings& s) {
  if (rate_controller_upstream(self->sinkpad)) {
    GST_INFO_OBJECT(self, "a ccmratecontrol upstream steers the rate: none of our own");
    c.rate_kept_by = "ccmratecontrol upstream";
    return false;
  }
  if (s.rate_controller != RateController::Ccm || s.rate_control != RateControl::Cbr) return false;
  switch (ccm::gst::make_adapter(c.encoder)->family()) {
    case ccm::gst::EncoderFamily::QpMeta:
    case ccm::gst::EncoderFamily::Quantizer:
    case ccm::gst::EncoderFamily::Bitrate: return true;
    default: return false;
  }
}

// GStreamer 1.22's av1parse takes SVT-AV1's frames at 7680x2160 but rejects them
// at 6144x3456 and 7680x4320 ("Parse obu need more data", then "No valid frames
// found"), while dav1d and ffmpeg decode them: past 7680x2160 AV1 goes out unparsed
// (1.24 is not checked here; it keeps the parser). Width counts on its own: it
// rejects libaom's 8192x16 too, while 7696x16 and 16x8192 pass, so frames wider
// than 7680 go out unparsed as well.
static bool av1parse_breaks_on(Codec codec, const GstVideoInfo& info) {
  constexpr gint64 kLargestParsed = 7680 * 2160;
  constexpr gint kWidestParsed = 7680;
  return codec == Codec::AV1 && ccm::gst::running_gst_version() < ccm::catalog::GstVersion{1, 24} &&
         (gint64(GST_VIDEO_INFO_WIDTH(&info)) * GST_VIDEO_INFO_HEIGHT(&info) > kLargestParsed ||
          GST_VIDEO_INFO_WIDTH(&info) > kWidestParsed);
}

// The elements of a session until the bin holds them: our references, dropped
// when it goes (a session that cannot be built) or when the bin has them.
class Owned {
 public:
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() { drop(); }
  // Takes a floating element.
  GstElement* adopt(GstElement* e) {
    elements_.push_back(GST_ELEMENT(gst_object_ref_sink(e)));
    return e;
  }
  // A new element of `factory`, nullptr when there is none.
  GstElement* make(const char* factory) {
    GstElement* e = gst_element_factory_make(factory, nullptr);
    return e ? adopt(e) : nullptr;
  }
  void drop() {
    for (GstElement* e : elements_) gst_object_unref(e);
    elements_.clear();
  }

 private:
  std::vector<GstElement*> elements_;
};

// The capsfilter in front of the encoder (encoder_input_caps): 4:2:0, 10-bit for
// hdr, 4:4:4 for an odd H.264/H.265 size. "" or why the encoder cannot take this input.
std::string add_format_filter(Self* self, Chain& c, const Settings& s, GstCaps* input_caps, const GstVideoInfo& vinfo,
                              Owned& owned) {
  const bool odd = (GST_VIDEO_INFO_WIDTH(&vinfo) | GST_VIDEO_INFO_HEIGHT(&vinfo)) & 1;
  const bool full_chroma = odd && (c.codec == Codec::H264 || c.codec == Codec::H265);
  Ref<GstCaps> input(encoder_input_caps(c.encoder, s.hdr, full_chroma));
  if (!input && s.hdr) {
    GST_ELEMENT_WARNING(self, STREAM, FORMAT, ("%s cannot encode 10-bit video", c.factory.c_str()),
                        ("hdr=true ignored: the stream is 8-bit"));
    input.p = encoder_input_caps(c.encoder, false, full_chroma);
  }
  if (!input && full_chroma)
    return "cannot encode an odd size (4:2:0 " + std::string(ccm::catalog::to_string(c.codec)) +
           " cannot carry it, and the element takes no 4:4:4)";
  if (odd && c.entry && c.entry->even_sizes_only)
    return "takes even sizes only (4:2:0 in its library), not " + std::to_string(GST_VIDEO_INFO_WIDTH(&vinfo)) + "x" +
           std::to_string(GST_VIDEO_INFO_HEIGHT(&vinfo));
  if (std::string small = below_minimum_size(c.encoder, GST_VIDEO_INFO_WIDTH(&vinfo), GST_VIDEO_INFO_HEIGHT(&vinfo));
      !small.empty())
    return small;
  {
    // The size as the encoder would get it (the converter keeps it).
    Ref<GstCaps> sized(gst_caps_copy(input_caps));
    gst_caps_set_features(sized.get(), 0, nullptr);
    if (!encoder_takes_size(c.encoder, sized.get(), input.get()))
      return "refuses " + std::to_string(GST_VIDEO_INFO_WIDTH(&vinfo)) + "x" +
             std::to_string(GST_VIDEO_INFO_HEIGHT(&vinfo)) + " (its library cannot encode that size)";
  }
  if (full_chroma)
    GST_INFO_OBJECT(self, "odd size %dx%d: encoding 4:4:4 to keep the exact size", GST_VIDEO_INFO_WIDTH(&vinfo),
                    GST_VIDEO_INFO_HEIGHT(&vinfo));
  if (input) {
    c.format_filter = owned.make("capsfilter");
    g_object_set(c.format_filter, "caps", input.get(), nullptr);
  }
  return {};
}

// ccmratecontrol right before the encoder, where it keeps the rate (wants_rate_controller).
void add_rate_controller(Self* self, Chain& c, const Settings& s, const GstVideoInfo& vinfo, Owned& owned) {
  if (!wants_rate_controller(self, c, s) || !(c.rate_controller = owned.make("ccmratecontrol"))) return;
  // The bin answers allocation queries itself (with the GPU in mind).
  c.rate_kept_by = "ccmratecontrol";
  // Clamped: ccmratecontrol takes up to 10 Gbit/s, our bitrate any guint.
  ccm::gst::set_property_from_string(c.rate_controller, "target-bitrate", std::to_string(s.bitrate));
  g_object_set(c.rate_controller, "dmabuf-pool", FALSE, "message-interval", s.rate_message_interval, nullptr);
  // At 4K and above every other row tells the same story for half the bytes
  // (docs/ratecontrol.md, "Analysis cost").
  if ((gint64)GST_VIDEO_INFO_WIDTH(&vinfo) * GST_VIDEO_INFO_HEIGHT(&vinfo) >= 3840 * 2160)
    g_object_set(c.rate_controller, "analysis-row-step", 2u, nullptr);
}

// The codec's parser after the encoder, and for downstream that takes no
// byte-stream, a capsfilter for the in-band stream format after it.
void add_parser(Self* self, Chain& c, const GstVideoInfo& vinfo, Owned& owned) {
  const Codec codec = c.codec;
  if (av1parse_breaks_on(codec, vinfo)) {
    // The encoders' output is already OBU stream, one temporal unit per buffer.
    GST_INFO_OBJECT(self, "%dx%d AV1: no av1parse (GStreamer 1.22's drops frames this large as invalid)",
                    GST_VIDEO_INFO_WIDTH(&vinfo), GST_VIDEO_INFO_HEIGHT(&vinfo));
  } else if (!(c.parser = owned.make(ccm::catalog::parser_factory(codec)))) {
    GST_WARNING_OBJECT(self, "%s missing (gstreamer1.0-plugins-bad): output is not parsed",
                       ccm::catalog::parser_factory(codec));
  } else if (const char* format = in_band_stream_format(self->srcpad, codec)) {
    // Parameter sets with every key frame, and a stream format that says so: a
    // muxer keeps the first encoder's header (codec_data) and the stream carries
    // each encoder's own, so a failover or switch needs no caps change downstream.
    g_object_set(c.parser, "config-interval", -1, nullptr);
    c.stream_filter = owned.make("capsfilter");
    Ref<GstCaps> caps(gst_caps_new_simple(ccm::catalog::caps_name(codec), "stream-format", G_TYPE_STRING, format,
                                          "alignment", G_TYPE_STRING, "au", nullptr));
    g_object_set(c.stream_filter, "caps", caps.get(), nullptr);
  }
}

// The elements around the encoder, created and configured, not linked yet:
// [cudadownload] ! videoconvert ! [capsfilter] ! [ccmratecontrol] ! <encoder> !
// [parser [! capsfilter]]. "" or why the candidate cannot take this input.
std::string build_chain(Self* self, Chain& c, const Settings& s, GstCaps* input_caps, Owned& owned) {
  if (caps_in_cuda_memory(input_caps) && !(c.download = owned.make("cudadownload")))
    return "input is in CUDA memory and cudadownload is missing";
  if (!(c.convert = owned.make("videoconvert"))) return "videoconvert is missing (gstreamer1.0-plugins-base)";

  GstVideoInfo vinfo;
  gst_video_info_from_caps(&vinfo, input_caps);
  if (std::string why = add_format_filter(self, c, s, input_caps, vinfo, owned); !why.empty()) return why;
  add_rate_controller(self, c, s, vinfo, owned);
  add_parser(self, c, vinfo, owned);
  return {};
}

// Our two pads of the session, `feed` before its first element and `collect`
// after its last (session_pads.h).
void make_pads(Session& sess) {
  gchar* name = g_strdup_printf("feed%d", sess.id);
  sess.feed = GST_PAD(gst_object_ref_sink(gst_pad_new(name, GST_PAD_SRC)));
  g_free(name);
  name = g_strdup_printf("collect%d", sess.id);
  sess.collect = GST_PAD(gst_object_ref_sink(gst_pad_new(name, GST_PAD_SINK)));
  g_free(name);
  gst_pad_set_element_private(sess.feed, &sess);
  gst_pad_set_element_private(sess.collect, &sess);
  gst_pad_set_event_function(sess.feed, ccm_enc_bin_feed_event);
  gst_pad_set_query_function(sess.feed, ccm_enc_bin_feed_query);
  gst_pad_set_chain_function(sess.collect, ccm_enc_bin_collect_chain);
  gst_pad_set_event_function(sess.collect, ccm_enc_bin_collect_event);
  gst_pad_set_query_function(sess.collect, ccm_enc_bin_collect_query);
}

// The session's elements into the bin (which then holds them), linked between our
// pads, in the bin's state. From here on errors of its elements are attributed to
// it (handle_message). "" or why not; remove_from_bin undoes it either way.
std::string link_into_bin(Self* self, const std::shared_ptr<Session>& sess, Owned& owned) {
  auto* p = self->priv;
  {
    std::lock_guard lk(p->lock);
    p->attached.push_back(sess);
  }
  const auto elements = sess->chain.elements();
  for (GstElement* e : elements) gst_bin_add(GST_BIN(self), e);
  owned.drop();  // the bin holds them now
  bool linked = true;
  for (size_t k = 0; k + 1 < elements.size(); k++) linked = linked && gst_element_link(elements[k], elements[k + 1]);
  if (!linked) return "could not be linked (caps do not match)";
  {
    GstPad* first = gst_element_get_static_pad(elements.front(), "sink");
    GstPad* last = gst_element_get_static_pad(elements.back(), "src");
    const bool ok = first && last && gst_pad_link(sess->feed, first) == GST_PAD_LINK_OK &&
                    gst_pad_link(last, sess->collect) == GST_PAD_LINK_OK;
    if (first) gst_object_unref(first);
    if (last) gst_object_unref(last);
    if (!ok) return "could not be linked to ccmencbin's pads";
  }
  gst_pad_set_active(sess->feed, TRUE);
  gst_pad_set_active(sess->collect, TRUE);
  for (GstElement* e : elements) gst_element_sync_state_with_parent(e);
  return {};
}

// A session that could not start, out of the bin again.
void remove_from_bin(Self* self, const std::shared_ptr<Session>& sess) {
  auto* p = self->priv;
  {
    std::lock_guard lk(p->lock);
    std::erase(p->attached, sess);
  }
  gst_pad_set_active(sess->feed, FALSE);
  gst_pad_set_active(sess->collect, FALSE);
  for (GstElement* e : sess->chain.elements()) {
    gst_element_set_state(e, GST_STATE_NULL);
    gst_bin_remove(GST_BIN(self), e);
  }
}

// The session's first events: the latest bandwidth estimate, then the stream so
// far. "" or why the session cannot start.
std::string start_stream(Self* self, Session& sess, GstCaps* input_caps) {
  auto* p = self->priv;
  if (sess.chain.rate_controller) {
    double estimate = 0;
    {
      std::lock_guard lk(p->lock);
      estimate = p->bandwidth_estimate_bps;
    }
    // A new encoder starts from the network's latest word, not from `bitrate`.
    if (estimate > 0) gst_element_send_event(sess.chain.rate_controller, bandwidth_estimate_event(estimate));
  }

  // The stream so far, so the encoder opens now (errors show here, not on the first frame).
  GstEvent* start = gst_pad_get_sticky_event(self->sinkpad, GST_EVENT_STREAM_START, 0);
  if (!start) {
    gchar* id = gst_pad_create_stream_id(self->srcpad, GST_ELEMENT(self), nullptr);
    start = gst_event_new_stream_start(id);
    g_free(id);
  }
  gst_pad_push_event(sess.feed, start);
  const bool caps_ok = gst_pad_push_event(sess.feed, gst_event_new_caps(input_caps));
  if (GstEvent* segment = gst_pad_get_sticky_event(self->sinkpad, GST_EVENT_SEGMENT, 0))
    gst_pad_push_event(sess.feed, segment);
  std::string failure;
  {
    std::lock_guard lk(p->lock);
    if (sess.failed) failure = sess.failure;
  }
  if (!failure.empty()) return failure;
  if (!caps_ok) return "refused the input caps";
  return {};
}

// The session's pusher, unless a stop (PAUSED to READY) retired it meanwhile:
// its reaper has the elements then, and a pusher started now would never be joined.
bool start_pusher(Self* self, const std::shared_ptr<Session>& sess, std::string* why) {
  std::lock_guard lk(self->priv->lock);
  if (sess->retired) {
    *why = "not started: the stream is stopping";
    return false;
  }
  gst_object_ref(self);  // released by the pusher
  sess->pusher = std::thread(ccm_enc_bin_pusher, self, sess);
  sess->building = false;
  return true;
}

}  // namespace

// Builds one session: elements configured, linked and in the bin, our pads on
// both ends, the sticky events (stream-start, caps, segment) pushed in so the
// encoder opens now, and its pusher started. nullptr and the reason when the
// candidate cannot take this input.
std::shared_ptr<Session> ccm_enc_bin_make_session(Self* self, const ccm::catalog::Candidate& cand, Codec codec,
                                                  const Settings& s, GstCaps* input_caps, std::string* why) {
  auto* p = self->priv;
  auto sess = std::make_shared<Session>();
  sess->bin = self;
  {
    std::lock_guard lk(p->lock);
    sess->id = p->next_session_id++;
  }
  Chain& c = sess->chain;
  c.factory = cand.factory;
  c.entry = cand.entry;
  c.codec = codec;
  c.hardware = cand.hardware;
  c.gpu = cand.gpu;
  ccm::gst::SetupReport report;
  c.encoder = create_encoder(cand, codec, s, input_caps, &report);
  if (!c.encoder) {
    *why = "could not be created";
    return nullptr;
  }
  Owned owned;
  owned.adopt(c.encoder);
  if (std::string reason = build_chain(self, c, s, input_caps, owned); !reason.empty()) {
    *why = std::move(reason);
    return nullptr;
  }
  sess->setup_report = join(report.applied, ", ");
  if (!report.skipped.empty()) sess->setup_report += "; not set: " + join(report.skipped, "; ");
  sess->not_set = report.skipped;

  make_pads(*sess);
  std::string failure = link_into_bin(self, sess, owned);
  if (failure.empty()) failure = start_stream(self, *sess, input_caps);
  if (!failure.empty()) {
    remove_from_bin(self, sess);
    *why = std::move(failure);
    return nullptr;
  }
  return start_pusher(self, sess, why) ? sess : nullptr;
}

}  // namespace ccm::encbin
