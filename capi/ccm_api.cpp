// libccm's C API (include/ccm/ccm.h) over EncodeSession.
//
// The caller's CodecConfig* is the first member of a Box that also points at
// the Handle behind it; the caller reads and sets the CodecConfig, libccm reads
// codec/low_latency/hdr/hw from it at ccm_configure_codec and writes profile.
//
// Locking: a handle has two mutexes. `configure_mutex` serialises applying
// settings to the encoder (which may build a pipeline); `mutex` guards the
// handle's fields and is only ever held for short bookkeeping, never while
// GStreamer works (state changes, pushes, pulls, property sets).
//
// The tuning callback runs on the encoder's output thread, where encoders may
// hold their own locks (some keep one across finish_frame). So a
// ccm_configure_codec made inside the callback touches no element: it is
// validated and recorded as `wanted`, and the next push, pull or finish, on a
// caller's thread, applies it. Everywhere else configure applies at once.
//
// Reconfiguration that needs a new encoder (size, fps, codec, GOP structure …)
// builds a second session and ends the first: pushes go to the newest session,
// pulls drain the oldest first, so packets stay in order and no frame is lost.
#include <gst/gst.h>

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <optional>

#include "ccm/ccm.h"
#include "encode_session.h"
#include "params/dynamic_params.h"
#include "plugin.h"
#include "status.h"

GST_DEBUG_CATEGORY(ccm_api_debug);
#define GST_CAT_DEFAULT ccm_api_debug

using ccm::DynamicParams;
using ccm::api::EncodeSession;
using ccm::api::fail;
using ccm::api::RateDecision;
using ccm::api::SamplePtr;
using ccm::api::Status;
using ccm::api::StreamSettings;

namespace {

constexpr uint32_t kMaxDimension = 16384;
constexpr uint32_t kMaxFps = 1000;
constexpr uint32_t kMinBitrate = 1000;  // bit/s: ccmencbin's unit is 1 kbit/s
constexpr float kMaxPsnr = 100;         // ccmratecontrol's max-psnr range
constexpr gint64 kOneSecondNs = 1'000'000'000;
// Push times kept for the latency metric; frames an encoder drops would
// otherwise accumulate forever.
constexpr std::size_t kMaxPendingPushTimes = 1024;

gint64 monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}


struct Handle;

// What ccm_init hands out: the caller's struct first, so a CodecConfig* is a Box*.
struct Box {
  CodecConfig pub;
  Handle* impl;
};
static_assert(std::is_standard_layout_v<Box> && offsetof(Box, pub) == 0);

struct Handle {
  Handle(bool hw, Box* owner) : hw_allowed(hw), box(owner) {}
  ~Handle() { release_packet(); }

  const bool hw_allowed;
  Box* const box;
  HardwareContext hw_found{};  // what ccm_init put in box->pub.hw

  std::mutex configure_mutex;
  mutable std::mutex mutex;  // guards every field below

  // Accepted by ccm_configure_codec (dynamic params merged over all calls) …
  std::optional<StreamSettings> wanted;
  std::optional<EncodingProfile> wanted_profile;
  // … and what the newest session runs with; they differ while a change made
  // in the tuning callback waits to be applied.
  std::optional<StreamSettings> running;
  std::optional<EncodingProfile> running_profile;
  std::deque<std::shared_ptr<EncodeSession>> sessions;  // front: pulled from; back: pushed to
  bool finished = false;
  GstClockTime next_auto_pts = 0;

  SamplePtr packet_sample;  // the packet handed out by the last ccm_pull_packet
  GstMapInfo packet_map{};
  bool packet_mapped = false;

  std::map<GstClockTime, gint64> push_times;  // pts → when it was pushed
  uint64_t frames_out = 0;
  std::deque<std::pair<GstClockTime, uint32_t>> recent_packets;  // last second of stream time
  uint64_t recent_bytes = 0;
  std::deque<gint64> recent_arrivals;                            // last second of wall time
  ccm_tuning_callback callback = nullptr;  // with callback_data: ccm_set_tuning_callback
  void* callback_data = nullptr;

  std::string last_error;

  void release_packet() {
    if (packet_mapped) gst_buffer_unmap(gst_sample_get_buffer(packet_sample.get()), &packet_map);
    packet_mapped = false;
    packet_sample.reset();
  }

  bool change_pending() const { return wanted && wanted != running; }

  // wanted_profile and its mirror in the caller's struct (caller holds `mutex`).
  void set_wanted_profile(const std::optional<EncodingProfile>& profile) {
    wanted_profile = profile;
    box->pub.profile = profile.value_or(EncodingProfile{});
  }

  // Streaming thread, once per packet reaching the appsink.
  void on_packet(GstBuffer* buffer, int64_t pts_ns, const RateDecision* decision) noexcept;
};

// The handle whose tuning callback this thread is running, if any.
thread_local const Handle* t_in_callback_of = nullptr;

void Handle::on_packet(GstBuffer* buffer, int64_t pts_ns, const RateDecision* decision) noexcept {
  try {
    const gint64 now = monotonic_ns();
    FrameMetrics m{};
    ccm_tuning_callback cb = nullptr;
    {
      std::lock_guard lock(mutex);
      const GstClockTime pts = pts_ns >= 0 ? GstClockTime(pts_ns) : GST_CLOCK_TIME_NONE;
      m.frame_number = frames_out++;
      m.pts_ns = pts_ns;
      m.size_bytes = uint32_t(gst_buffer_get_size(buffer));
      m.key_frame = !GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_DELTA_UNIT);
      m.encode_latency_ms = -1;
      if (auto it = push_times.find(pts); it != push_times.end()) {
        m.encode_latency_ms = double(now - it->second) / 1e6;
        push_times.erase(it);
      }

      // Bitrate over the last second of stream time: bytes in the window over
      // the time those frames cover at the configured rate.
      recent_packets.emplace_back(pts, m.size_bytes);
      recent_bytes += m.size_bytes;
      while (GST_CLOCK_TIME_IS_VALID(pts) && recent_packets.size() > 1 &&
             recent_packets.front().first + kOneSecondNs <= pts) {
        recent_bytes -= recent_packets.front().second;
        recent_packets.pop_front();
      }
      const double fps = running ? running->fps : 30.0;
      m.bitrate_kbps = double(recent_bytes) * 8.0 * fps / double(recent_packets.size()) / 1000.0;

      // Output rate over the last second of wall time: how fast packets come out.
      recent_arrivals.push_back(now);
      while (recent_arrivals.front() + kOneSecondNs <= now) recent_arrivals.pop_front();
      if (recent_arrivals.size() >= 2 && now > recent_arrivals.front())
        m.fps = double(recent_arrivals.size() - 1) * 1e9 / double(now - recent_arrivals.front());

      m.qp = -1;
      if (decision) {
        m.rate_controlled = true;
        m.qp = decision->qp;
        m.lambda = decision->lambda;
        m.target_bits = decision->target_bits;
        m.buffer_bits = decision->buffer_bits;
        m.complexity = decision->complexity;
        m.skip_blocks = decision->skip;
        m.fast_blocks = decision->fast;
        m.full_blocks = decision->full;
        m.scene_cut = decision->scene_cut;
      }

      cb = callback;
    }
    if (cb) {
      struct Mark {  // restores the mark however the callback returns
        const Handle* outer = t_in_callback_of;
        explicit Mark(const Handle* self) { t_in_callback_of = self; }
        ~Mark() { t_in_callback_of = outer; }
      } mark(this);
      cb(&box->pub, &m);
    }
  } catch (...) {
    // Nothing may unwind into GStreamer's streaming thread; a lost metric is harmless.
  }
}


thread_local std::string t_thread_error;    // ccm_last_error(NULL)
thread_local std::string t_returned_error;  // the copy ccm_last_error(handle) hands out

int record(const Handle* config, const Status& st) {
  if (st.is_ok()) return CCM_OK;
  try {
    t_thread_error = st.message;
    if (config) {
      std::lock_guard lock(config->mutex);
      const_cast<Handle*>(config)->last_error = st.message;
    }
  } catch (...) {
  }
  return st.code;
}

// Runs an API body; whatever it throws becomes an error code.
template <class Body>
int guarded(const Handle* config, Body&& body) noexcept {
  try {
    return record(config, body());
  } catch (const std::bad_alloc&) {
    return record(config, fail(CCM_ERROR_INTERNAL, "out of memory"));
  } catch (const std::exception& e) {
    return record(config, fail(CCM_ERROR_INTERNAL, std::string("internal error: ") + e.what()));
  } catch (...) {
    return record(config, fail(CCM_ERROR_INTERNAL, "internal error"));
  }
}

Status null_handle() { return fail(CCM_ERROR_INVALID_ARGUMENT, "config handle is NULL"); }

// The Handle behind a CodecConfig* that ccm_init returned.
Handle* handle_of(CodecConfig* config) { return config ? reinterpret_cast<Box*>(config)->impl : nullptr; }
const Handle* handle_of(const CodecConfig* config) {
  return config ? reinterpret_cast<const Box*>(config)->impl : nullptr;
}

// Reads a C bool without assuming the caller stored exactly 0 or 1.
bool read_c_bool(const bool& field) {
  unsigned char byte;
  std::memcpy(&byte, &field, 1);
  return byte != 0;
}

Status validate_profile(const EncodingProfile& p) {
  auto bad = [](std::string what) { return fail(CCM_ERROR_INVALID_ARGUMENT, std::move(what)); };
  if (p.width < 1 || p.width > kMaxDimension)
    return bad("width " + std::to_string(p.width) + " out of range 1..16384");
  if (p.height < 1 || p.height > kMaxDimension)
    return bad("height " + std::to_string(p.height) + " out of range 1..16384");
  if (p.fps < 1 || p.fps > kMaxFps) return bad("fps " + std::to_string(p.fps) + " out of range 1..1000");
  if (p.target_bitrate < kMinBitrate)
    return bad("target_bitrate " + std::to_string(p.target_bitrate) +
               " bit/s below 1000 (the unit is bit/s: 2 Mbit/s is 2000000)");
  if (!std::isfinite(p.max_psnr) || !(p.max_psnr >= 0) || p.max_psnr > kMaxPsnr)
    return bad("max_psnr " + std::to_string(p.max_psnr) + " out of range 0..100 dB (0 = no cap)");
  return Status::ok();
}

// The handle's own fields, read as the bytes the caller stored: an out-of-range
// value in an enum or bool object must be refused, not read as undefined.
Status read_codec_fields(const Handle& h, StreamSettings& s) {
  const CodecConfig& pub = h.box->pub;
  int codec;
  static_assert(sizeof codec == sizeof pub.codec);
  std::memcpy(&codec, &pub.codec, sizeof codec);
  if (codec < CODEC_AV1 || codec > CODEC_H264)
    return fail(CCM_ERROR_INVALID_ARGUMENT, "config->codec " + std::to_string(codec) +
                                                " is not a VideoCodec (CODEC_AV1 .. CODEC_H264)");
  if (std::memcmp(&pub.hw, &h.hw_found, sizeof pub.hw) != 0)
    return fail(CCM_ERROR_UNSUPPORTED,
                "config->hw was changed: this libccm opens no GPU backend of the caller's (the encoder "
                "elements open their own); leave config->hw as ccm_init set it");
  s.codec = VideoCodec(codec);
  s.hdr = read_c_bool(pub.hdr);
  s.low_latency = read_c_bool(pub.low_latency);
  return Status::ok();
}

Status needs_restart(const std::string& what) {
  return fail(CCM_ERROR_NEEDS_RESTART,
              what + " needs a new encoder (a restart), and the stream is finished (ccm_finish); "
                     "only changes the running encoder takes live can still be made");
}

// Whether `target` can reach the stream without a new session.
bool applies_live(const Handle& h, const StreamSettings& target) {
  return h.running && !h.sessions.empty() && h.sessions.back()->applies_live(*h.running, target);
}

// Brings the encoder to cfg->wanted: nothing, a live change, or a new session.
// Caller holds cfg->configure_mutex and no other lock. On failure `wanted`
// falls back to what runs, so a bad change is reported once, not forever.
Status apply_wanted(Handle* cfg) {
  StreamSettings target;
  std::optional<EncodingProfile> target_profile;
  std::optional<StreamSettings> running;
  std::shared_ptr<EncodeSession> newest;
  bool finished;
  {
    std::lock_guard lock(cfg->mutex);
    if (!cfg->change_pending()) return Status::ok();
    target = *cfg->wanted;
    target_profile = cfg->wanted_profile;
    running = cfg->running;
    finished = cfg->finished;
    if (!cfg->sessions.empty()) newest = cfg->sessions.back();
  }

  std::shared_ptr<EncodeSession> created;
  Status st;
  if (!newest || !newest->applies_live(*running, target)) {
    if (finished)
      st = needs_restart("this change");
    else
      st = EncodeSession::create(
          target,
          [cfg](GstBuffer* buffer, int64_t pts, const RateDecision* d) { cfg->on_packet(buffer, pts, d); },
          created);
    if (st.is_ok())
      GST_INFO("%s session %ux%u@%u %u bit/s", newest ? "new" : "first", target.width,
               target.height, target.fps, target.bitrate_bps);
  } else {
    st = newest->apply_live(*running, target);
  }

  std::lock_guard lock(cfg->mutex);
  if (!st.is_ok()) {
    if (cfg->wanted == target) {  // unless a newer change came in meanwhile
      cfg->wanted = cfg->running;
      cfg->set_wanted_profile(cfg->running_profile);
    }
    return st;
  }
  if (created) cfg->sessions.push_back(created);
  cfg->running = target;
  cfg->running_profile = target_profile;
  // Frames pushed from now on go to the new session; the old one drains.
  if (created && newest) newest->end_of_stream();
  return Status::ok();
}

// Applies a change the tuning callback asked for; called on the caller's threads.
Status apply_pending(Handle* cfg) {
  {
    std::lock_guard lock(cfg->mutex);
    if (!cfg->change_pending()) return Status::ok();
  }
  std::lock_guard configure_lock(cfg->configure_mutex);
  return apply_wanted(cfg);
}

// Validates a change against the handle's state and records it as `wanted`.
Status accept(Handle* cfg, const EncodingProfile& profile, const DynamicParams& incoming) {
  std::lock_guard lock(cfg->mutex);
  StreamSettings settings;
  if (cfg->wanted) settings.params = cfg->wanted->params;
  settings.params.merge(incoming);
  const DynamicParams& p = settings.params;
  if (p.min_quantizer && p.max_quantizer && *p.min_quantizer > *p.max_quantizer)
    return fail(CCM_ERROR_INVALID_ARGUMENT,
                "min_quantizer " + std::to_string(*p.min_quantizer) + " is above max_quantizer " +
                    std::to_string(*p.max_quantizer) + " (after merging with earlier settings)");
  if (!cfg->hw_allowed && p.hardware_policy == ccm::HardwarePolicy::HardwareOnly)
    return fail(CCM_ERROR_INVALID_ARGUMENT,
                "hardware_policy is hardware-only but ccm_init was called with enable_hw_accel=false");
  if (Status st = read_codec_fields(*cfg, settings); !st.is_ok()) return st;
  settings.low_latency = p.ultra_low_latency.value_or(settings.low_latency);
  settings.hw_allowed = cfg->hw_allowed;
  settings.width = profile.width;
  settings.height = profile.height;
  settings.fps = profile.fps;
  settings.bitrate_bps = profile.target_bitrate;
  settings.max_psnr = profile.max_psnr;
  if (cfg->finished && !applies_live(*cfg, settings)) return needs_restart("this change");
  cfg->wanted = settings;
  cfg->set_wanted_profile(profile);
  return Status::ok();
}

Status configure(Handle* cfg, const EncodingProfile* profile_in, const uint8_t* blob,
                 std::size_t blob_size) {
  if (!profile_in) return fail(CCM_ERROR_INVALID_ARGUMENT, "profile is NULL");
  if (blob_size > 0 && !blob)
    return fail(CCM_ERROR_INVALID_ARGUMENT, "dynamic_params is NULL but params_size is " +
                                                std::to_string(blob_size));
  const EncodingProfile profile = *profile_in;
  if (Status st = validate_profile(profile); !st.is_ok()) return st;

  // Everything is checked before anything changes.
  DynamicParams incoming;
  if (blob_size > 0) {
    auto parsed = ccm::parse_dynamic_params({blob, blob_size});
    if (!parsed) return fail(CCM_ERROR_MALFORMED_PARAMS, "dynamic_params: " + parsed.error().message);
    incoming = parsed.value();
  }

  if (t_in_callback_of == cfg) return accept(cfg, profile, incoming);  // applied on a caller's thread
  std::lock_guard configure_lock(cfg->configure_mutex);
  if (Status st = accept(cfg, profile, incoming); !st.is_ok()) return st;
  return apply_wanted(cfg);
}

Status push_frame(Handle* cfg, const uint8_t* data, std::size_t size, int64_t pts_ns) {
  if (!data) return fail(CCM_ERROR_INVALID_ARGUMENT, "frame data is NULL");
  if (Status st = apply_pending(cfg); !st.is_ok()) return st;
  for (;;) {
    std::shared_ptr<EncodeSession> session;
    GstClockTime pts;
    {
      std::lock_guard lock(cfg->mutex);
      if (cfg->sessions.empty())
        return fail(CCM_ERROR_NOT_CONFIGURED, "ccm_push_frame before ccm_configure_codec");
      if (cfg->finished)
        return fail(CCM_ERROR_INVALID_ARGUMENT, "ccm_push_frame after ccm_finish");
      session = cfg->sessions.back();
      pts = pts_ns >= 0 ? GstClockTime(pts_ns) : cfg->next_auto_pts;
      while (cfg->push_times.size() >= kMaxPendingPushTimes) cfg->push_times.erase(cfg->push_times.begin());
      cfg->push_times[pts] = monotonic_ns();
    }
    Status st = session->push({data, size}, pts);
    if (st.code == CCM_ERROR_EOS) {
      // Ended under us by a reconfiguration (or ccm_finish): go to the newest session.
      std::lock_guard lock(cfg->mutex);
      if (!cfg->finished && cfg->sessions.back() != session) continue;
      return fail(CCM_ERROR_INVALID_ARGUMENT, "ccm_push_frame after ccm_finish");
    }
    if (st.is_ok()) {
      std::lock_guard lock(cfg->mutex);
      cfg->next_auto_pts = pts + session->frame_duration();
    }
    return st;
  }
}

Status pull_packet(Handle* cfg, ccm_packet* out, int timeout_ms) {
  if (!out) return fail(CCM_ERROR_INVALID_ARGUMENT, "out_packet is NULL");
  *out = ccm_packet{nullptr, 0, -1, -1, false};
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  {
    std::lock_guard lock(cfg->mutex);
    cfg->release_packet();
  }
  if (Status st = apply_pending(cfg); !st.is_ok()) return st;
  for (;;) {
    std::shared_ptr<EncodeSession> session;
    {
      std::lock_guard lock(cfg->mutex);
      if (cfg->sessions.empty())
        return fail(CCM_ERROR_NOT_CONFIGURED, "ccm_pull_packet before ccm_configure_codec");
      session = cfg->sessions.front();
    }
    int remaining = timeout_ms;
    if (timeout_ms > 0)
      remaining = int(std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
    SamplePtr sample;
    Status st = session->pull(remaining, sample);
    if (st.is_ok()) {
      GstBuffer* buffer = gst_sample_get_buffer(sample.get());
      std::lock_guard lock(cfg->mutex);
      if (!buffer || !gst_buffer_map(buffer, &cfg->packet_map, GST_MAP_READ))
        return fail(CCM_ERROR_INTERNAL, "cannot read an encoded packet");
      cfg->packet_mapped = true;
      cfg->packet_sample = std::move(sample);
      out->data = cfg->packet_map.data;
      out->size = cfg->packet_map.size;
      const GstSegment* segment = gst_sample_get_segment(cfg->packet_sample.get());
      out->pts_ns = ccm::api::running_time_ns(segment, GST_BUFFER_PTS(buffer));
      out->dts_ns = ccm::api::running_time_ns(segment, GST_BUFFER_DTS(buffer));
      out->key_frame = !GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_DELTA_UNIT);
      return Status::ok();
    }
    if (st.code != CCM_ERROR_EOS) return st;
    std::shared_ptr<EncodeSession> retired;
    {
      std::lock_guard lock(cfg->mutex);
      if (cfg->sessions.size() > 1 && cfg->sessions.front() == session) {
        retired = std::move(cfg->sessions.front());
        cfg->sessions.pop_front();
      }
    }
    if (!retired) return fail(CCM_ERROR_EOS, "end of stream: every packet has been pulled");
    session.reset();
    retired.reset();  // stops its pipeline, outside the handle's lock
  }
}

}  // namespace

extern "C" {

CodecConfig* ccm_init(bool enable_hw_accel) {
  const bool hw = read_c_bool(enable_hw_accel);
  Box* created = nullptr;
  guarded(nullptr, [&]() -> Status {
    if (!gst_is_initialized()) {
      GError* raw_error = nullptr;
      if (!gst_init_check(nullptr, nullptr, &raw_error)) {
        ccm::api::GErrorPtr error(raw_error);
        return fail(CCM_ERROR_INIT, std::string("GStreamer failed to initialise: ") +
                                        (error ? error->message : "unknown reason"));
      }
    }
    static std::once_flag once;
    std::call_once(once, [] { GST_DEBUG_CATEGORY_INIT(ccm_api_debug, "ccmapi", 0, "libccm C API"); });
    ccm_plugin_register_static();
    if (GstElementFactory* f = gst_element_factory_find("ccmencbin"))
      gst_object_unref(f);
    else
      return fail(CCM_ERROR_INIT, "the ccm plugin's ccmencbin element could not be registered");
    auto box = std::make_unique<Box>();
    box->pub.codec = CODEC_AV1;  // the design's first choice; ccmencbin finds an AV1 encoder on every machine
    box->pub.profile = EncodingProfile{};
    box->pub.hw = HardwareContext{};  // no backend of ours is open (see ccm.h)
    box->pub.low_latency = true;
    box->pub.hdr = false;
    box->impl = new Handle(hw, box.get());
    box->impl->hw_found = box->pub.hw;
    created = box.release();
    return Status::ok();
  });
  return created ? &created->pub : nullptr;
}

int ccm_configure_codec(CodecConfig* config, const EncodingProfile* profile, const uint8_t* dynamic_params,
                        size_t params_size) {
  Handle* h = handle_of(config);
  return guarded(h, [&]() -> Status {
    if (!h) return null_handle();
    return configure(h, profile, dynamic_params, params_size);
  });
}

EncodingProfile ccm_get_current_profile(const CodecConfig* config) {
  const Handle* h = handle_of(config);
  if (!h) return EncodingProfile{};
  std::lock_guard lock(h->mutex);
  return h->wanted_profile.value_or(EncodingProfile{});
}

int ccm_get_encoder_name(const CodecConfig* config, char* buf, size_t buf_size) {
  const Handle* h = handle_of(config);
  return guarded(h, [&]() -> Status {
    if (!h) return null_handle();
    if (!buf || buf_size == 0) return fail(CCM_ERROR_INVALID_ARGUMENT, "buf is NULL or buf_size is 0");
    buf[0] = '\0';
    std::shared_ptr<EncodeSession> session;
    {
      std::lock_guard lock(h->mutex);
      if (h->sessions.empty()) return fail(CCM_ERROR_NOT_CONFIGURED, "no encoder before ccm_configure_codec");
      session = h->sessions.back();
    }
    const std::string name = session->encoder_name();
    const std::size_t n = std::min(name.size(), buf_size - 1);
    std::memcpy(buf, name.data(), n);
    buf[n] = '\0';
    if (n < name.size())
      return fail(CCM_ERROR_INVALID_ARGUMENT, "buf_size " + std::to_string(buf_size) + " too small for \"" +
                                                  name + "\" (needs " + std::to_string(name.size() + 1) + ")");
    return Status::ok();
  });
}

int ccm_set_tuning_callback(CodecConfig* config, ccm_tuning_callback callback, void* user_data) {
  Handle* h = handle_of(config);
  return guarded(h, [&]() -> Status {
    if (!h) return null_handle();
    std::lock_guard lock(h->mutex);
    h->callback = callback;
    h->callback_data = callback ? user_data : nullptr;
    return Status::ok();
  });
}

void* ccm_get_user_data(const CodecConfig* config) {
  const Handle* h = handle_of(config);
  if (!h) return nullptr;
  std::lock_guard lock(h->mutex);
  return h->callback_data;
}

int ccm_push_frame(CodecConfig* config, const uint8_t* data, size_t size, int64_t pts_ns) {
  Handle* h = handle_of(config);
  return guarded(h, [&]() -> Status {
    if (!h) return null_handle();
    return push_frame(h, data, size, pts_ns);
  });
}

int ccm_finish(CodecConfig* config) {
  Handle* h = handle_of(config);
  return guarded(h, [&]() -> Status {
    if (!h) return null_handle();
    if (Status st = apply_pending(h); !st.is_ok()) return st;
    std::shared_ptr<EncodeSession> session;
    {
      std::lock_guard lock(h->mutex);
      if (h->sessions.empty()) return fail(CCM_ERROR_NOT_CONFIGURED, "ccm_finish before ccm_configure_codec");
      h->finished = true;
      session = h->sessions.back();
    }
    session->end_of_stream();
    return Status::ok();
  });
}

int ccm_pull_packet(CodecConfig* config, ccm_packet* out_packet, int timeout_ms) {
  Handle* h = handle_of(config);
  return guarded(h, [&]() -> Status {
    if (!h) return null_handle();
    return pull_packet(h, out_packet, timeout_ms);
  });
}

void ccm_destroy(CodecConfig* config) {
  guarded(nullptr, [&]() -> Status {
    Handle* h = handle_of(config);
    if (!h) return Status::ok();
    std::deque<std::shared_ptr<EncodeSession>> sessions;
    {
      std::lock_guard lock(h->mutex);
      sessions.swap(h->sessions);
      h->release_packet();
    }
    sessions.clear();  // pipelines to NULL with no lock held: a callback may still be finishing
    Box* box = h->box;
    delete h;
    delete box;
    return Status::ok();
  });
}

const char* ccm_last_error(const CodecConfig* config) {
  const Handle* h = handle_of(config);
  if (!h) return t_thread_error.c_str();
  try {
    std::lock_guard lock(h->mutex);
    t_returned_error = h->last_error;
    return t_returned_error.c_str();
  } catch (...) {
    return "out of memory while reading the last error";
  }
}

const char* ccm_status_name(int status) {
  switch (status) {
    case CCM_OK: return "CCM_OK";
    case CCM_ERROR_INVALID_ARGUMENT: return "CCM_ERROR_INVALID_ARGUMENT";
    case CCM_ERROR_MALFORMED_PARAMS: return "CCM_ERROR_MALFORMED_PARAMS";
    case CCM_ERROR_UNSUPPORTED: return "CCM_ERROR_UNSUPPORTED";
    case CCM_ERROR_NO_ENCODER: return "CCM_ERROR_NO_ENCODER";
    case CCM_ERROR_NOT_CONFIGURED: return "CCM_ERROR_NOT_CONFIGURED";
    case CCM_ERROR_AGAIN: return "CCM_ERROR_AGAIN";
    case CCM_ERROR_EOS: return "CCM_ERROR_EOS";
    case CCM_ERROR_ENCODER: return "CCM_ERROR_ENCODER";
    case CCM_ERROR_INIT: return "CCM_ERROR_INIT";
    case CCM_ERROR_INTERNAL: return "CCM_ERROR_INTERNAL";
    case CCM_ERROR_NEEDS_RESTART: return "CCM_ERROR_NEEDS_RESTART";
  }
  return "CCM_ERROR_UNKNOWN";
}

uint32_t ccm_api_version(void) { return CCM_API_VERSION; }

}  // extern "C"
