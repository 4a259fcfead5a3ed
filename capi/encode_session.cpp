#include "encode_session.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>

GST_DEBUG_CATEGORY_EXTERN(ccm_api_debug);
#define GST_CAT_DEFAULT ccm_api_debug

namespace ccm::api {
namespace {

// Raw frames queued in appsrc before push waits: enough to keep the encoder
// busy, few enough that a stalled encoder stops the caller promptly.
constexpr guint64 kQueuedFrames = 4;

// pull and push wait in slices this long so that a pipeline error (which
// appsink/appsrc know nothing about) ends the wait promptly.
constexpr auto kWaitSlice = std::chrono::milliseconds(20);

const char* codec_nick(VideoCodec codec) {
  switch (codec) {
    case CODEC_AV1: return "av1";
    case CODEC_HEVC: return "h265";
    case CODEC_VP9: return "vp9";
    case CODEC_H264: return "h264";
    case CODEC_RAW: break;
  }
  return "";
}

// What packet consumers get: whole access units / temporal units in the
// stream formats that decoders and muxers read without a parser.
const char* output_caps(VideoCodec codec) {
  switch (codec) {
    case CODEC_H264: return "video/x-h264,stream-format=byte-stream,alignment=au";
    case CODEC_HEVC: return "video/x-h265,stream-format=byte-stream,alignment=au";
    case CODEC_AV1: return "video/x-av1,stream-format=obu-stream,alignment=tu";
    case CODEC_VP9: return "video/x-vp9";
    case CODEC_RAW: break;
  }
  return "";
}

const char* rate_control_nick(RateControlMode rc) {
  switch (rc) {
    case RateControlMode::Cbr: return "cbr";
    case RateControlMode::Vbr: return "vbr";
    case RateControlMode::Cqp: return "cqp";
  }
  return "cbr";
}

const char* hardware_nick(HardwarePolicy policy) {
  switch (policy) {
    case HardwarePolicy::Auto: return "auto";
    case HardwarePolicy::HardwareOnly: return "hardware-only";
    case HardwarePolicy::SoftwareOnly: return "software-only";
  }
  return "auto";
}

// Sets a ccmencbin property from its textual form, failing loudly: a setting
// the caller asked for must not be dropped because the element lacks it.
Status set_property(GstElement* element, const char* name, const std::string& value) {
  GParamSpec* pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), name);
  if (!pspec || !(pspec->flags & G_PARAM_WRITABLE))
    return fail(CCM_ERROR_UNSUPPORTED, std::string(GST_ELEMENT_NAME(element)) +
                                           " has no writable property '" + name +
                                           "' (ccmencbin older than this libccm?)");
  GValue v = G_VALUE_INIT;
  g_value_init(&v, pspec->value_type);
  // g_object_set_property would only warn on an out-of-range value and keep the old one.
  const bool parsed = gst_value_deserialize(&v, value.c_str()) && !g_param_value_validate(pspec, &v);
  if (parsed) g_object_set_property(G_OBJECT(element), name, &v);
  g_value_unset(&v);
  if (!parsed)
    return fail(CCM_ERROR_INVALID_ARGUMENT, std::string(GST_ELEMENT_NAME(element)) + ": " + name +
                                                " does not take the value '" + value + "'");
  return Status::ok();
}

GstElement* make_element(const char* factory, Status& status) {
  GstElement* e = gst_element_factory_make(factory, nullptr);
  if (!e && status.is_ok())
    status = fail(CCM_ERROR_INIT, std::string("GStreamer element '") + factory +
                                      "' is missing (gstreamer1.0-plugins-base / the ccm plugin)");
  return e;
}

}  // namespace

int64_t running_time_ns(const GstSegment* segment, GstClockTime ts) {
  if (!segment || !GST_CLOCK_TIME_IS_VALID(ts)) return -1;
  guint64 rt = 0;
  const gint sign = gst_segment_to_running_time_full(segment, GST_FORMAT_TIME, ts, &rt);
  if (sign == 0) return -1;
  return sign > 0 ? int64_t(rt) : -int64_t(rt);
}

std::size_t packed_frame_size(uint32_t width, uint32_t height, bool hdr) {
  const std::size_t w = width, h = height;
  const std::size_t samples = w * h + 2 * ((w + 1) / 2) * ((h + 1) / 2);
  return hdr ? samples * 2 : samples;
}

bool StreamSettings::changes_structure(const StreamSettings& n) const {
  const DynamicParams& a = params;
  const DynamicParams& b = n.params;
  return codec != n.codec || hdr != n.hdr || low_latency != n.low_latency ||
         hw_allowed != n.hw_allowed || width != n.width || height != n.height || fps != n.fps ||
         a.ultra_low_latency != b.ultra_low_latency || a.b_frames != b.b_frames ||
         a.keyframe_interval != b.keyframe_interval || a.rate_control != b.rate_control ||
         a.hardware_policy != b.hardware_policy || a.gpu_index != b.gpu_index;
}

namespace {

// The ccmencbin properties a live change may set, each with whether it differs.
struct LiveProperty {
  const char* name;
  bool changed;
  std::string value;
};

std::vector<LiveProperty> live_properties(const StreamSettings& current, const StreamSettings& n) {
  const DynamicParams& old = current.params;
  auto changed = [](const auto& before, const auto& after) { return after && after != before; };
  auto text = [](const auto& v) { return v ? std::to_string(*v) : std::string(); };
  return {
      {"bitrate", n.bitrate_kbps() != current.bitrate_kbps(), std::to_string(n.bitrate_kbps())},
      {"quantizer", changed(old.quantizer, n.params.quantizer), text(n.params.quantizer)},
      {"max-quantizer", changed(old.max_quantizer, n.params.max_quantizer), text(n.params.max_quantizer)},
      {"min-quantizer", changed(old.min_quantizer, n.params.min_quantizer), text(n.params.min_quantizer)},
  };
}

bool mutable_while_playing(GstElement* element, const char* name) {
  GParamSpec* pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), name);
  return pspec && (pspec->flags & G_PARAM_WRITABLE) && (pspec->flags & GST_PARAM_MUTABLE_PLAYING);
}

bool is_rate_controller(GstElement* element) {
  GstElementFactory* factory = gst_element_get_factory(element);
  return factory && g_strcmp0(GST_OBJECT_NAME(factory), "ccmratecontrol") == 0;
}

}  // namespace

EncodeSession::EncodeSession(const StreamSettings& settings, PacketObserver observer)
    : settings_(settings), observer_(std::move(observer)) {
  gst_segment_init(&output_segment_, GST_FORMAT_TIME);
}

Status EncodeSession::create(const StreamSettings& settings, PacketObserver observer,
                             std::shared_ptr<EncodeSession>& out) {
  std::shared_ptr<EncodeSession> session(new EncodeSession(settings, std::move(observer)));
  Status st = session->build();
  if (!st.is_ok()) return st;  // the destructor tears down whatever was built
  out = std::move(session);
  return Status::ok();
}

Status EncodeSession::build() {
  const bool raw = settings_.codec == CODEC_RAW;
  const GstVideoFormat format = settings_.hdr ? GST_VIDEO_FORMAT_I420_10LE : GST_VIDEO_FORMAT_I420;
  if (!gst_video_info_set_format(&video_info_, format, settings_.width, settings_.height))
    return fail(CCM_ERROR_INVALID_ARGUMENT, "GStreamer refuses a " + std::to_string(settings_.width) +
                                                "x" + std::to_string(settings_.height) + " frame");
  const gint fps_n = gint(settings_.fps), fps_d = 1;
  GST_VIDEO_INFO_FPS_N(&video_info_) = fps_n;
  GST_VIDEO_INFO_FPS_D(&video_info_) = fps_d;
  if (settings_.hdr) gst_video_colorimetry_from_string(&video_info_.colorimetry, "bt2100-pq");
  frame_duration_ = gst_util_uint64_scale_int(GST_SECOND, fps_d, fps_n);
  frame_size_ = packed_frame_size(settings_.width, settings_.height, settings_.hdr);
  max_queued_bytes_ = kQueuedFrames * std::max<guint64>(frame_size_, GST_VIDEO_INFO_SIZE(&video_info_));

  pipeline_.reset(GST_ELEMENT(gst_object_ref_sink(gst_pipeline_new(nullptr))));
  BusPtr bus(gst_element_get_bus(pipeline_.get()));
  // A sync handler instead of popping the bus later: nobody runs a main loop
  // here, so queued messages would pile up for the whole stream.
  gst_bus_set_sync_handler(bus.get(), &EncodeSession::on_bus_message, this, nullptr);
  max_psnr_ = settings_.max_psnr;
  g_signal_connect(pipeline_.get(), "deep-element-added", G_CALLBACK(&EncodeSession::on_element_added), this);

  Status st;
  appsrc_ = make_element("appsrc", st);
  appsink_ = make_element("appsink", st);
  GstElement* capsfilter = nullptr;
  if (!raw) {
    encbin_ = make_element("ccmencbin", st);
    capsfilter = make_element("capsfilter", st);
  }
  for (GstElement* e : {appsrc_, appsink_, encbin_, capsfilter})
    if (e) gst_bin_add(GST_BIN(pipeline_.get()), e);
  if (!st.is_ok()) return st;

  CapsPtr input_caps(gst_video_info_to_caps(&video_info_));
  g_object_set(appsrc_, "caps", input_caps.get(), "format", GST_FORMAT_TIME, "is-live", FALSE,
               "block", FALSE, "max-bytes", max_queued_bytes_, "min-percent", 50u, "emit-signals",
               FALSE, nullptr);
  GstAppSrcCallbacks callbacks{};
  callbacks.need_data = &EncodeSession::on_need_data;
  gst_app_src_set_callbacks(GST_APP_SRC(appsrc_), &callbacks, this, nullptr);
  g_object_set(appsink_, "sync", FALSE, "emit-signals", FALSE, "max-buffers", 0u, "drop", FALSE,
               "enable-last-sample", FALSE, nullptr);

  if (raw) {
    if (!gst_element_link(appsrc_, appsink_))
      return fail(CCM_ERROR_INIT, "cannot link appsrc to appsink");
  } else {
    CapsPtr out_caps(gst_caps_from_string(output_caps(settings_.codec)));
    g_object_set(capsfilter, "caps", out_caps.get(), nullptr);
    st = configure_encoder_bin(encbin_);
    if (!st.is_ok()) return st;
    if (!gst_element_link_many(appsrc_, encbin_, capsfilter, appsink_, nullptr))
      return fail(CCM_ERROR_INIT, std::string("cannot link appsrc ! ccmencbin ! ") +
                                      output_caps(settings_.codec) + " ! appsink");
  }

  PadPtr sinkpad(gst_element_get_static_pad(appsink_, "sink"));
  gst_pad_add_probe(sinkpad.get(),
                    GstPadProbeType(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST |
                                    GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM),
                    &EncodeSession::on_sink_buffer, this, nullptr);

  if (gst_element_set_state(pipeline_.get(), GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    st = pipeline_error();
    return st.is_ok() ? fail(CCM_ERROR_ENCODER, "the encoding pipeline refused to start") : st;
  }
  return pipeline_error();
}

Status EncodeSession::configure_encoder_bin(GstElement* encbin) {
  const StreamSettings& s = settings_;
  const DynamicParams& p = s.params;
  std::vector<std::pair<const char*, std::string>> props = {
      {"codec", codec_nick(s.codec)},
      {"bitrate", std::to_string(s.bitrate_kbps())},
      {"low-latency", s.low_latency ? "true" : "false"},
      // Every frame's decision for the tuning callback (read on the bus, never queued).
      {"rate-message-interval", "1"},
  };
  if (s.hdr) props.emplace_back("hdr", "true");
  const HardwarePolicy hw =
      s.hw_allowed ? p.hardware_policy.value_or(HardwarePolicy::Auto) : HardwarePolicy::SoftwareOnly;
  if (hw != HardwarePolicy::Auto) props.emplace_back("hardware", hardware_nick(hw));
  if (p.gpu_index) props.emplace_back("gpu", std::to_string(*p.gpu_index));
  if (p.rate_control) props.emplace_back("rate-control", rate_control_nick(*p.rate_control));
  if (p.quantizer) props.emplace_back("quantizer", std::to_string(*p.quantizer));
  if (p.keyframe_interval) props.emplace_back("keyframe-interval", std::to_string(*p.keyframe_interval));
  // Ultra low latency means no reordering unless the caller asked for B-frames.
  if (p.b_frames)
    props.emplace_back("b-frames", std::to_string(*p.b_frames));
  else if (p.ultra_low_latency.value_or(false))
    props.emplace_back("b-frames", "0");
  if (p.max_quantizer) props.emplace_back("max-quantizer", std::to_string(*p.max_quantizer));
  if (p.min_quantizer) props.emplace_back("min-quantizer", std::to_string(*p.min_quantizer));

  for (const auto& [name, value] : props) {
    Status st = set_property(encbin, name, value);
    if (!st.is_ok()) return st;
  }
  return Status::ok();
}

bool EncodeSession::applies_live(const StreamSettings& current, const StreamSettings& n) const {
  if (current.changes_structure(n)) return false;
  if (!encbin_) return true;  // RAW: nothing to apply
  for (const LiveProperty& p : live_properties(current, n))
    if (p.changed && !mutable_while_playing(encbin_, p.name)) return false;
  return true;  // max_psnr: ccmratecontrol's max-psnr is mutable while PLAYING
}

Status EncodeSession::apply_live(const StreamSettings& current, const StreamSettings& n) {
  if (!encbin_) return Status::ok();
  for (const LiveProperty& p : live_properties(current, n)) {
    if (!p.changed) continue;
    Status st = set_property(encbin_, p.name, p.value);
    if (!st.is_ok()) return st;
  }
  if (n.max_psnr != current.max_psnr) set_max_psnr(n.max_psnr);
  return Status::ok();
}

void EncodeSession::set_max_psnr(double db) {
  {
    std::lock_guard lock(mutex_);
    max_psnr_ = db;
  }
  GstIterator* it = gst_bin_iterate_recurse(GST_BIN(pipeline_.get()));
  GValue item = G_VALUE_INIT;
  bool done = false;
  while (!done) {
    switch (gst_iterator_next(it, &item)) {
      case GST_ITERATOR_OK: {
        auto* element = GST_ELEMENT(g_value_get_object(&item));
        if (is_rate_controller(element)) g_object_set(element, "max-psnr", db, nullptr);
        g_value_reset(&item);
        break;
      }
      case GST_ITERATOR_RESYNC: gst_iterator_resync(it); break;
      default: done = true; break;
    }
  }
  g_value_unset(&item);
  gst_iterator_free(it);
}

// Any thread that adds an element under the pipeline (ccmencbin builds its
// chains on the streaming thread).
void EncodeSession::on_element_added(GstBin*, GstBin*, GstElement* element, gpointer self_ptr) {
  if (!is_rate_controller(element)) return;
  auto* self = static_cast<EncodeSession*>(self_ptr);
  auto wanted = [self] {
    std::lock_guard lock(self->mutex_);
    return self->max_psnr_;
  };
  // set_max_psnr may run meanwhile: it stores first, then sets every element,
  // so re-reading after our set leaves the newest value on this one.
  for (double db = wanted();;) {
    g_object_set(element, "max-psnr", db, nullptr);
    const double now = wanted();
    if (now == db) break;
    db = now;
  }
}

EncodeSession::~EncodeSession() {
  if (!pipeline_) return;
  gst_element_set_state(pipeline_.get(), GST_STATE_NULL);
  BusPtr bus(gst_element_get_bus(pipeline_.get()));
  gst_bus_set_sync_handler(bus.get(), nullptr, nullptr, nullptr);
}

Status EncodeSession::pipeline_error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

void EncodeSession::record_error(Status status) {
  {
    std::lock_guard lock(mutex_);
    if (error_.is_ok()) error_ = std::move(status);
  }
  room_.notify_all();
}

void EncodeSession::notify_room() {
  // Taking the mutex orders this wake-up after a waiter's last check.
  { std::lock_guard lock(mutex_); }
  room_.notify_all();
}

Status EncodeSession::push(std::span<const uint8_t> frame, GstClockTime pts) {
  if (frame.size() != frame_size_)
    return fail(CCM_ERROR_INVALID_ARGUMENT,
                "frame is " + std::to_string(frame.size()) + " bytes; a packed " +
                    std::to_string(settings_.width) + "x" + std::to_string(settings_.height) +
                    (settings_.hdr ? " I420_10LE" : " I420") + " frame is " +
                    std::to_string(frame_size_));
  GstAppSrc* src = GST_APP_SRC(appsrc_);
  for (;;) {
    std::unique_lock lock(mutex_);
    if (!error_.is_ok()) return error_;
    if (ended_) return fail(CCM_ERROR_EOS, "session ended");
    if (gst_app_src_get_current_level_bytes(src) < max_queued_bytes_) break;
    room_.wait_for(lock, kWaitSlice);
  }

  const bool raw = settings_.codec == CODEC_RAW;
  // RAW packets are the caller's frames byte for byte; encoders get GStreamer's
  // default I420 layout (rows padded to 4 bytes) so no element needs a video meta.
  GstBuffer* buffer =
      gst_buffer_new_allocate(nullptr, raw ? frame_size_ : GST_VIDEO_INFO_SIZE(&video_info_), nullptr);
  if (!buffer) return fail(CCM_ERROR_INTERNAL, "out of memory for a frame");
  GstMapInfo map;
  if (!gst_buffer_map(buffer, &map, GST_MAP_WRITE)) {
    gst_buffer_unref(buffer);
    return fail(CCM_ERROR_INTERNAL, "cannot map a new buffer");
  }
  if (raw) {
    std::memcpy(map.data, frame.data(), frame.size());
  } else {
    const std::size_t sample_bytes = settings_.hdr ? 2 : 1;
    std::size_t src_offset = 0;
    for (guint plane = 0; plane < 3; ++plane) {
      const std::size_t row_bytes = std::size_t(GST_VIDEO_INFO_COMP_WIDTH(&video_info_, plane)) * sample_bytes;
      const guint rows = GST_VIDEO_INFO_COMP_HEIGHT(&video_info_, plane);
      const std::size_t stride = GST_VIDEO_INFO_PLANE_STRIDE(&video_info_, plane);
      uint8_t* dst = map.data + GST_VIDEO_INFO_PLANE_OFFSET(&video_info_, plane);
      for (guint row = 0; row < rows; ++row) {
        std::memcpy(dst + row * stride, frame.data() + src_offset, row_bytes);
        src_offset += row_bytes;
      }
    }
  }
  gst_buffer_unmap(buffer, &map);
  GST_BUFFER_PTS(buffer) = pts;
  GST_BUFFER_DURATION(buffer) = frame_duration_;

  switch (gst_app_src_push_buffer(src, buffer)) {
    case GST_FLOW_OK: return Status::ok();
    case GST_FLOW_EOS: return fail(CCM_ERROR_EOS, "session ended");
    default: {
      Status st = pipeline_error();
      return st.is_ok() ? fail(CCM_ERROR_ENCODER, "the encoding pipeline stopped") : st;
    }
  }
}

void EncodeSession::end_of_stream() {
  {
    std::lock_guard lock(mutex_);
    if (ended_) return;
    ended_ = true;
  }
  room_.notify_all();
  gst_app_src_end_of_stream(GST_APP_SRC(appsrc_));
}

Status EncodeSession::pull(int timeout_ms, SamplePtr& out) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  GstAppSink* sink = GST_APP_SINK(appsink_);
  for (;;) {
    auto slice = std::chrono::duration_cast<std::chrono::nanoseconds>(kWaitSlice);
    if (timeout_ms >= 0)
      slice = std::clamp(std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now()),
                         std::chrono::nanoseconds(0), slice);
    if (GstSample* sample = gst_app_sink_try_pull_sample(sink, GstClockTime(slice.count()))) {
      out.reset(sample);
      return Status::ok();
    }
    // The error first: a source that fails also sends EOS downstream.
    if (Status st = pipeline_error(); !st.is_ok()) return st;
    if (gst_app_sink_is_eos(sink)) return fail(CCM_ERROR_EOS, "end of stream");
    if (timeout_ms >= 0 && Clock::now() >= deadline)
      return fail(CCM_ERROR_AGAIN, "no packet within " + std::to_string(timeout_ms) + " ms");
  }
}

std::string EncodeSession::encoder_name() const {
  if (!encbin_) return "raw";
  if (g_object_class_find_property(G_OBJECT_GET_CLASS(encbin_), "encoder")) {
    gchar* name = nullptr;
    g_object_get(encbin_, "encoder", &name, nullptr);
    GCharPtr owned(name);
    if (name && *name) return name;
  }
  std::lock_guard lock(mutex_);
  return selected_encoder_;
}

// A ccm-ratecontrol message, posted on the encoder's output thread before the
// frame's packet moves on to the appsink.
void EncodeSession::record_decision(const GstStructure* s) {
  guint64 pts = GST_CLOCK_TIME_NONE;
  if (!gst_structure_get_uint64(s, "pts", &pts) || pts == GST_CLOCK_TIME_NONE) return;
  RateDecision d;
  gst_structure_get_int(s, "qp", &d.qp);
  gst_structure_get_double(s, "lambda", &d.lambda);
  gst_structure_get_double(s, "target-bits", &d.target_bits);
  gst_structure_get_double(s, "buffer-bits", &d.buffer_bits);
  gst_structure_get_double(s, "mafd", &d.complexity);
  gst_structure_get_uint(s, "skip-blocks", &d.skip);
  gst_structure_get_uint(s, "fast-blocks", &d.fast);
  gst_structure_get_uint(s, "full-blocks", &d.full);
  gboolean cut = FALSE;
  gst_structure_get_boolean(s, "scene-cut", &cut);
  d.scene_cut = cut;
  std::lock_guard lock(mutex_);
  decisions_[pts] = d;
  // Frames whose packet never reaches the appsink (dropped) must not pile up.
  while (decisions_.size() > 256) decisions_.erase(decisions_.begin());
}

GstBusSyncReply EncodeSession::on_bus_message(GstBus*, GstMessage* message, gpointer self_ptr) {
  auto* self = static_cast<EncodeSession*>(self_ptr);
  switch (GST_MESSAGE_TYPE(message)) {
    case GST_MESSAGE_ERROR: {
      GError* raw_error = nullptr;
      gchar* raw_debug = nullptr;
      gst_message_parse_error(message, &raw_error, &raw_debug);
      GErrorPtr error(raw_error);
      GCharPtr debug(raw_debug);
      GCharPtr source(gst_object_get_path_string(GST_MESSAGE_SRC(message)));
      const bool missing = error && error->domain == GST_CORE_ERROR &&
                           error->code == GST_CORE_ERROR_MISSING_PLUGIN;
      std::string text = std::string(source ? source.get() : "pipeline") + ": " +
                         (error ? error->message : "unknown error");
      if (debug) text += std::string(" (") + debug.get() + ")";
      GST_WARNING("pipeline error: %s", text.c_str());
      self->record_error(fail(missing ? CCM_ERROR_NO_ENCODER : CCM_ERROR_ENCODER, std::move(text)));
      break;
    }
    case GST_MESSAGE_ELEMENT: {
      const GstStructure* s = gst_message_get_structure(message);
      if (s && gst_structure_has_name(s, "ccm-ratecontrol")) self->record_decision(s);
      if (s && gst_structure_has_name(s, "ccm-encoder-selected")) {
        if (const gchar* factory = gst_structure_get_string(s, "factory")) {
          std::lock_guard lock(self->mutex_);
          self->selected_encoder_ = factory;
        }
        GST_INFO("encoder selected: %" GST_PTR_FORMAT, s);
      }
      break;
    }
    default:
      break;
  }
  // A sync handler that drops a message owns it (gstbus.h): without this unref every
  // message of every session leaked (found by scripts/memcheck).
  gst_message_unref(message);
  return GST_BUS_DROP;
}

GstPadProbeReturn EncodeSession::on_sink_buffer(GstPad*, GstPadProbeInfo* info, gpointer self_ptr) {
  auto* self = static_cast<EncodeSession*>(self_ptr);
  if (info->type & GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM) {
    GstEvent* event = GST_PAD_PROBE_INFO_EVENT(info);
    if (GST_EVENT_TYPE(event) == GST_EVENT_SEGMENT) {
      const GstSegment* segment = nullptr;
      gst_event_parse_segment(event, &segment);
      std::lock_guard lock(self->mutex_);
      gst_segment_copy_into(segment, &self->output_segment_);
    }
    return GST_PAD_PROBE_OK;
  }
  if (!self->observer_) return GST_PAD_PROBE_OK;
  auto observe = [self](GstBuffer* buffer) {
    int64_t pts;
    std::optional<RateDecision> decision;
    {
      std::lock_guard lock(self->mutex_);
      pts = running_time_ns(&self->output_segment_, GST_BUFFER_PTS(buffer));
      if (auto it = self->decisions_.find(GST_BUFFER_PTS(buffer)); it != self->decisions_.end()) {
        decision = it->second;
        self->decisions_.erase(self->decisions_.begin(), std::next(it));  // older ones will not come
      }
    }
    self->observer_(buffer, pts, decision ? &*decision : nullptr);
  };
  if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
    observe(GST_PAD_PROBE_INFO_BUFFER(info));
  } else if (info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
    GstBufferList* list = GST_PAD_PROBE_INFO_BUFFER_LIST(info);
    for (guint i = 0; i < gst_buffer_list_length(list); ++i) observe(gst_buffer_list_get(list, i));
  }
  return GST_PAD_PROBE_OK;
}

void EncodeSession::on_need_data(GstAppSrc*, guint, gpointer self) {
  static_cast<EncodeSession*>(self)->notify_room();
}

}  // namespace ccm::api
