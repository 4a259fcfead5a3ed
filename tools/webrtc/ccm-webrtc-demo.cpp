// ccm-webrtc-demo: serves a page and its signalling (WebSocket) on one port and
// sends video from ccmencbin through webrtcbin to every viewer that opens it.
//
// One pipeline per viewer: source -> frame stamp -> ccmencbin -> payloader ->
// webrtcbin, so each viewer has its own rate control and a viewer that goes
// away takes only its own pipeline down. RTCP from the browser feeds a
// bandwidth controller (lib/ccm/rtp/bandwidth.h) whose target goes to
// ccmencbin as `ccm-bandwidth-estimate` events; PLI/FIR reach ccmencbin as
// force-key-unit events through rtpsession and the payloader.
//
// Signalling (JSON text messages on /ws):
//   server -> page: {"type":"offer","sdp":...}, {"type":"ice","candidate":...,"sdpMLineIndex":n},
//                   {"type":"sender-stats", ...},
//                   {"type":"error","message":...} (the sender's pipeline failed: the page shows
//                   the text; a missing element names the Debian package to install)
//   page -> server: {"type":"answer","sdp":...}, {"type":"ice","candidate":...,"sdpMLineIndex":n}
// Anything else, or anything malformed, is logged and closes that viewer only.
#include <gst/gst.h>
#include <gst/rtp/rtp.h>
#include <gst/sdp/sdp.h>
#include <gst/video/video.h>
#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <deque>
#include <tuple>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "common/bandwidth_estimate.h"
#include "config.h"
#include "rtp/bandwidth.h"

GST_DEBUG_CATEGORY_STATIC(demo_debug);
#define GST_CAT_DEFAULT demo_debug

namespace {

struct Options {
  std::string codec = "av1";
  int port = 8080;
  std::string bind = "127.0.0.1";
  std::string source;    // "" = built-in test source; a file, /dev/videoN or a launch fragment
  std::string encoder;   // "" = ccmencbin; else a fixed encoder description (e.g. vp9enc ...)
  std::string page_dir;
  int width = 640;
  int height = 360;
  int fps = 30;
  int bitrate_kbps = 2000;
  int min_kbps = 150;
  int max_kbps = 20000;
  bool bwe = true;
  double min_bpp = 0.08;  // bits per pixel under which the resolution steps down
  int duration_s = 0;     // 0 = serve until SIGINT/SIGTERM
  bool stats = false;     // print a JSON line per viewer per second on stdout
  bool twcc = true;       // transport-wide congestion control feedback (else REMB)
  bool hide_key_frames = false;  // test aid: key frames dropped until the receiver asks for one
  std::string candidates;  // ccmencbin's candidates ("" = its own choice)
  std::string switch_to;   // test aid: ccmencbin's candidates set to this after switch_after_s
  int switch_after_s = 3;
};

void log_line(const char* fmt, ...) G_GNUC_PRINTF(1, 2);
void log_line(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  gchar* text = g_strdup_vprintf(fmt, args);
  va_end(args);
  g_printerr("ccm-webrtc-demo: %s\n", text);
  g_free(text);
}

std::string json_string(JsonBuilder* builder) {
  JsonNode* root = json_builder_get_root(builder);
  JsonGenerator* gen = json_generator_new();
  json_generator_set_root(gen, root);
  gchar* text = json_generator_to_data(gen, nullptr);
  std::string out = text;
  g_free(text);
  g_object_unref(gen);
  json_node_unref(root);
  return out;
}

std::string error_json(const std::string& message) {
  JsonBuilder* b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "type");
  json_builder_add_string_value(b, "error");
  json_builder_set_member_name(b, "message");
  json_builder_add_string_value(b, message.c_str());
  json_builder_end_object(b);
  std::string out = json_string(b);
  g_object_unref(b);
  return out;
}

// "element X is missing: install the Debian package P" for each element a
// description named that this GStreamer does not have.
std::string missing_elements_text(GstParseContext* context) {
  std::string out;
  gchar** missing = gst_parse_context_get_missing_elements(context);
  for (gchar** m = missing; m && *m; m++) {
    if (!out.empty()) out += "; ";
    out += ccm::catalog::missing_element_advice(*m);
  }
  g_strfreev(missing);
  return out;
}

// What webrtcbin's stats say about the video stream (copied out of the promise reply).
struct SenderFigures {
  std::optional<double> bytes_sent;
  std::optional<double> rtt_s;
  std::optional<double> fraction_lost;
  std::optional<double> jitter_s;
  std::optional<double> packets_lost;
  std::optional<double> pli_count;
  std::optional<double> fir_count;
  std::optional<double> nack_count;
};

struct TwccFigures {
  std::optional<double> bitrate_sent;
  std::optional<double> bitrate_recv;
  std::optional<double> loss_pct;
  std::optional<double> delta_of_delta_ms;
};

std::optional<double> number_field(const GstStructure* s, const char* name) {
  const GValue* v = gst_structure_get_value(s, name);
  if (!v) return std::nullopt;
  GValue d = G_VALUE_INIT;
  g_value_init(&d, G_TYPE_DOUBLE);
  if (!g_value_type_transformable(G_VALUE_TYPE(v), G_TYPE_DOUBLE) || !g_value_transform(v, &d)) {
    g_value_unset(&d);
    return std::nullopt;
  }
  const double out = g_value_get_double(&d);
  g_value_unset(&d);
  return out;
}

SenderFigures read_stats(const GstStructure* reply) {
  SenderFigures f;
  const int n = gst_structure_n_fields(reply);
  for (int i = 0; i < n; ++i) {
    const GValue* v = gst_structure_get_value(reply, gst_structure_nth_field_name(reply, i));
    if (!GST_VALUE_HOLDS_STRUCTURE(v)) continue;
    const GstStructure* s = gst_value_get_structure(v);
    GstWebRTCStatsType type;
    if (!gst_structure_get_enum(s, "type", GST_TYPE_WEBRTC_STATS_TYPE, reinterpret_cast<gint*>(&type)))
      continue;
    if (type == GST_WEBRTC_STATS_OUTBOUND_RTP) {
      f.bytes_sent = number_field(s, "bytes-sent");
      f.pli_count = number_field(s, "pli-count");
      f.fir_count = number_field(s, "fir-count");
      f.nack_count = number_field(s, "nack-count");
    } else if (type == GST_WEBRTC_STATS_REMOTE_INBOUND_RTP) {
      f.rtt_s = number_field(s, "round-trip-time");
      f.fraction_lost = number_field(s, "fraction-lost");
      f.jitter_s = number_field(s, "jitter");
      f.packets_lost = number_field(s, "packets-lost");
    }
  }
  return f;
}

class Server;

// One viewer: its WebSocket and its pipeline.
struct Peer {
  guint id = 0;
  SoupWebsocketConnection* ws = nullptr;
  GstElement* pipeline = nullptr;
  GstElement* webrtc = nullptr;
  GstElement* encoder = nullptr;  // ccmencbin or the fixed encoder
  GstElement* size_filter = nullptr;
  GstElement* rtpbin = nullptr;
  gulong feedback_handler = 0;
  GObject* session = nullptr;  // rtpsession with the feedback hook
  GstElement* session_element = nullptr;  // rtpbin's rtpsession: twcc-stats
  guint stats_timer = 0;
  gint64 started_us = 0;
  bool switch_requested = false;  // --switch-to done
  std::atomic<uint64_t> remb_bps{0};
  std::atomic<uint32_t> key_requests{0};  // force-key-unit events that reached the encoder
  std::atomic<uint32_t> frames{0};
  std::atomic<uint64_t> payload_bytes{0};  // RTP bytes out of the payloader: the sent rate
  std::optional<ccm::rtp::BandwidthController> bwe;
  std::deque<std::pair<double, double>> bytes_sent;  // (time s, bytes) of the last ~second
  std::optional<std::tuple<double, double, double>> last_feedback;  // rtt, fraction lost, packets lost
  double last_target_bps = 0;
  int resolution_step = 0;
  bool negotiated = false;
};

// Work handed from a GStreamer thread to the main loop, addressed by peer id so a
// peer that went away in between is simply not found.
struct Posted {
  Server* server;
  guint peer_id;
  std::string json;                       // to send on the peer's socket
  std::optional<SenderFigures> figures;   // a stats reply
  bool close = false;                     // the peer's pipeline failed
  std::string offer_sdp;                  // an offer: local description, then sent
};

class Server {
 public:
  explicit Server(Options options) : options_(std::move(options)) {}
  ~Server() {
    std::vector<guint> ids;
    for (auto& [id, peer] : peers_) ids.push_back(id);
    for (guint id : ids) remove_peer(id, "server stopping");
    if (soup_) g_object_unref(soup_);
  }

  bool start();
  const Options& options() const { return options_; }

  // From any thread.
  void post(Posted* p) {
    g_main_context_invoke_full(nullptr, G_PRIORITY_DEFAULT, Server::on_posted, p,
                               [](gpointer d) { delete static_cast<Posted*>(d); });
  }

 private:
  static gboolean on_posted(gpointer data);
  static void on_http(SoupServer*, SoupServerMessage* msg, const char* path, GHashTable*, gpointer self);
  static void on_websocket(SoupServer*, SoupServerMessage*, const char*, SoupWebsocketConnection* conn,
                           gpointer self);
  static void on_ws_message(SoupWebsocketConnection* conn, gint type, GBytes* message, gpointer data);
  static void on_ws_closed(SoupWebsocketConnection* conn, gpointer data);
  static gboolean on_stats_timer(gpointer data);
  static gboolean on_bus(GstBus*, GstMessage* message, gpointer data);

  Peer* find(guint id) {
    auto it = peers_.find(id);
    return it == peers_.end() ? nullptr : it->second.get();
  }
  bool build_pipeline(Peer* peer, std::string* error);
  void fail_peer(guint id, const std::string& message, const char* why);
  void handle_message(Peer* peer, const char* text, gsize size);
  void handle_stats(Peer* peer, const SenderFigures& figures);
  void apply_resolution_step(Peer* peer, int step);
  void send(Peer* peer, const std::string& json);
  void remove_peer(guint id, const char* why);
  std::string page_dir() const;

  Options options_;
  SoupServer* soup_ = nullptr;
  std::map<guint, std::unique_ptr<Peer>> peers_;
  guint next_id_ = 1;
};

// ---- frame stamp: capture time and frame number painted as blocks -----------
//
// Row 0: 32 blocks = the low 32 bits of the wall-clock time in ms when the frame
// left the source; row 1: 16 blocks = frame number. Block size = width / 40
// rounded down to a multiple of 4 (at least 4): the page reads the blocks back
// from a canvas to measure glass-to-glass latency.
int stamp_block_size(int width) { return std::max(4, (width / 40) & ~3); }

void paint_blocks(GstVideoFrame* frame, int row, uint64_t value, int bits) {
  const int block = stamp_block_size(GST_VIDEO_FRAME_WIDTH(frame));
  auto* y = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(frame, 0));
  const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(frame, 0);
  const int height = GST_VIDEO_FRAME_HEIGHT(frame);
  for (int bit = 0; bit < bits; ++bit) {
    const uint8_t luma = ((value >> (bits - 1 - bit)) & 1) ? 235 : 16;
    for (int dy = 0; dy < block && row * block + dy < height; ++dy) {
      uint8_t* line = y + static_cast<size_t>(row * block + dy) * stride + bit * block;
      if ((bit + 1) * block <= GST_VIDEO_FRAME_WIDTH(frame)) memset(line, luma, block);
    }
  }
  // Neutral chroma under the blocks, so they stay grey whatever the source was.
  for (int plane = 1; plane < 3; ++plane) {
    auto* c = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(frame, plane));
    const int cstride = GST_VIDEO_FRAME_PLANE_STRIDE(frame, plane);
    const int cheight = GST_VIDEO_FRAME_COMP_HEIGHT(frame, plane);
    for (int dy = 0; dy < block / 2 && (row * block) / 2 + dy < cheight; ++dy) {
      const int width = std::min(bits * block / 2, GST_VIDEO_FRAME_COMP_WIDTH(frame, plane));
      memset(c + static_cast<size_t>((row * block) / 2 + dy) * cstride, 128, width);
    }
  }
}

GstPadProbeReturn stamp_frame(GstPad* pad, GstPadProbeInfo* info, gpointer data) {
  auto* peer = static_cast<Peer*>(data);
  GstCaps* caps = gst_pad_get_current_caps(pad);
  if (!caps) return GST_PAD_PROBE_OK;
  GstVideoInfo vinfo;
  const bool ok = gst_video_info_from_caps(&vinfo, caps);
  gst_caps_unref(caps);
  if (!ok || GST_VIDEO_INFO_FORMAT(&vinfo) != GST_VIDEO_FORMAT_I420) return GST_PAD_PROBE_OK;
  GstBuffer* buffer = gst_buffer_make_writable(GST_PAD_PROBE_INFO_BUFFER(info));
  GST_PAD_PROBE_INFO_DATA(info) = buffer;
  GstVideoFrame frame;
  if (!gst_video_frame_map(&frame, &vinfo, buffer, GST_MAP_READWRITE)) return GST_PAD_PROBE_OK;
  const uint64_t now_ms = static_cast<uint64_t>(g_get_real_time() / 1000);
  paint_blocks(&frame, 0, now_ms & 0xffffffffu, 32);
  paint_blocks(&frame, 1, peer->frames.fetch_add(1) & 0xffff, 16);
  gst_video_frame_unmap(&frame);
  return GST_PAD_PROBE_OK;
}

// webrtcbin's outbound bytes-sent moves in steps (it follows the RTCP sender
// reports), too coarse for a rate over a second: count what the payloader sends.
GstPadProbeReturn count_rtp_bytes(GstPad*, GstPadProbeInfo* info, gpointer data) {
  auto* peer = static_cast<Peer*>(data);
  if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
    peer->payload_bytes += gst_buffer_get_size(GST_PAD_PROBE_INFO_BUFFER(info));
  } else if (info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
    GstBufferList* list = GST_PAD_PROBE_INFO_BUFFER_LIST(info);
    const guint n = gst_buffer_list_length(list);
    for (guint i = 0; i < n; ++i) peer->payload_bytes += gst_buffer_get_size(gst_buffer_list_get(list, i));
  }
  return GST_PAD_PROBE_OK;
}

// Test aid (--hide-key-frames): the receiver gets delta frames only, cannot decode,
// and must ask for a key frame (PLI/FIR); the first key frame after that request
// reaching the encoder goes through.
GstPadProbeReturn hide_key_frames(GstPad*, GstPadProbeInfo* info, gpointer data) {
  auto* peer = static_cast<Peer*>(data);
  GstBuffer* buffer = GST_PAD_PROBE_INFO_BUFFER(info);
  if (peer->key_requests.load() == 0 && !GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_DELTA_UNIT))
    return GST_PAD_PROBE_DROP;
  return GST_PAD_PROBE_OK;
}

GstPadProbeReturn count_key_requests(GstPad*, GstPadProbeInfo* info, gpointer data) {
  GstEvent* event = GST_PAD_PROBE_INFO_EVENT(info);
  if (gst_video_event_is_force_key_unit(event)) {
    auto* peer = static_cast<Peer*>(data);
    const uint32_t n = ++peer->key_requests;
    GST_INFO("viewer %u: key unit requested by the receiver (%u so far)", peer->id, n);
  }
  return GST_PAD_PROBE_OK;
}

// ---- pipeline --------------------------------------------------------------

std::string source_description(const Options& o) {
  if (o.source.empty())
    return "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! "
           "timeoverlay halignment=right valignment=bottom font-desc=\"Sans 20\"";
  if (g_str_has_prefix(o.source.c_str(), "/dev/video"))
    return "v4l2src device=" + o.source;
  if (g_file_test(o.source.c_str(), G_FILE_TEST_IS_REGULAR)) {
    // gst-launch syntax quotes with double quotes (backslash escapes), not shell quotes.
    std::string quoted = "\"";
    for (char c : o.source) {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
    quoted += '"';
    return "filesrc location=" + quoted + " ! decodebin ! clocksync";  // played once, at its own pace
  }
  return o.source;  // a gst-launch fragment
}

struct CodecChain {
  const char* encoding_name;
  std::string after_encoder;  // caps + payloader
};

std::optional<CodecChain> codec_chain(const std::string& codec) {
  if (codec == "av1")
    return CodecChain{"AV1", "video/x-av1,stream-format=obu-stream,alignment=tu ! ccmrtpav1pay name=pay mtu=1200"};
  if (codec == "vp9")
    return CodecChain{"VP9", "video/x-vp9 ! rtpvp9pay name=pay mtu=1200 picture-id-mode=15-bit"};
  if (codec == "h264")
    return CodecChain{"H264",
                      "h264parse ! video/x-h264,stream-format=byte-stream,alignment=au ! "
                      "rtph264pay name=pay mtu=1200 config-interval=-1 aggregate-mode=zero-latency"};
  if (codec == "h265")
    return CodecChain{"H265",
                      "h265parse ! video/x-h265,stream-format=byte-stream,alignment=au ! "
                      "rtph265pay name=pay mtu=1200 config-interval=-1 aggregate-mode=zero-latency"};
  return std::nullopt;
}

// Step k halves the pixel rate k times: steps 1 and 2 halve the pixels (sides a
// multiple of 8, which every encoder takes), step 3 also halves the frame rate.
std::string size_caps(const Options& o, int step) {
  const int pixel_steps = std::min(step, 2);
  const double scale = std::pow(0.5, pixel_steps / 2.0);
  const int w = std::max(64, static_cast<int>(o.width * scale) & ~7);
  const int h = std::max(64, static_cast<int>(o.height * scale) & ~7);
  const int fps = step > 2 ? std::max(1, o.fps / 2) : o.fps;
  return "video/x-raw,format=I420,width=" + std::to_string(w) + ",height=" + std::to_string(h) +
         ",framerate=" + std::to_string(fps) + "/1,pixel-aspect-ratio=1/1";
}

using PeerRef = std::pair<Server*, guint>;

void on_offer_created(GstPromise* promise, gpointer data) {
  auto* r = static_cast<PeerRef*>(data);
  if (gst_promise_wait(promise) != GST_PROMISE_RESULT_REPLIED) return;
  const GstStructure* reply = gst_promise_get_reply(promise);
  GstWebRTCSessionDescription* offer = nullptr;
  if (reply) gst_structure_get(reply, "offer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &offer, nullptr);
  if (!offer) {
    r->first->post(new Posted{r->first, r->second, "", std::nullopt, true});
    return;
  }
  gchar* sdp = gst_sdp_message_as_text(offer->sdp);
  auto* posted = new Posted{r->first, r->second, "", std::nullopt, false};
  posted->offer_sdp = sdp;
  r->first->post(posted);
  g_free(sdp);
  gst_webrtc_session_description_free(offer);
}

void on_negotiation_needed(GstElement* webrtc, gpointer data) {
  GstPromise* promise = gst_promise_new_with_change_func(on_offer_created, new PeerRef(*static_cast<PeerRef*>(data)),
                                                         [](gpointer d) { delete static_cast<PeerRef*>(d); });
  g_signal_emit_by_name(webrtc, "create-offer", nullptr, promise);
  gst_promise_unref(promise);
}

void on_ice_candidate(GstElement*, guint mline, gchar* candidate, gpointer data) {
  auto* r = static_cast<PeerRef*>(data);
  JsonBuilder* b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "type");
  json_builder_add_string_value(b, "ice");
  json_builder_set_member_name(b, "candidate");
  json_builder_add_string_value(b, candidate);
  json_builder_set_member_name(b, "sdpMLineIndex");
  json_builder_add_int_value(b, mline);
  json_builder_end_object(b);
  r->first->post(new Posted{r->first, r->second, json_string(b), std::nullopt, false});
  g_object_unref(b);
}

constexpr const char* kTwccUri = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

bool Server::build_pipeline(Peer* peer, std::string* error_text) {
  const auto chain = codec_chain(options_.codec);
  if (!chain) {
    *error_text = "unknown codec " + options_.codec;
    return false;
  }
  std::string encoder = options_.encoder.empty()
                            ? "ccmencbin name=enc codec=" + options_.codec +
                                  " bitrate=" + std::to_string(options_.bitrate_kbps) +
                                  (options_.candidates.empty() ? "" : " candidates=" + options_.candidates)
                            : options_.encoder + " name=enc";
  const std::string rtp_caps = std::string("application/x-rtp,media=video,payload=96,clock-rate=90000,encoding-name=") +
                               chain->encoding_name +
                               ",rtcp-fb-nack-pli=(boolean)true,rtcp-fb-ccm-fir=(boolean)true,"
                               "rtcp-fb-nack=(boolean)true" +
                               (options_.twcc ? std::string(",rtcp-fb-transport-cc=(boolean)true,extmap-1=") + kTwccUri
                                              : std::string());
  const std::string description =
      source_description(options_) + " ! videoconvert ! videoscale ! videorate ! capsfilter name=size caps=\"" +
      size_caps(options_, 0) + "\" ! identity name=stamp ! queue max-size-buffers=2 leaky=downstream ! " +
      encoder + " ! " + chain->after_encoder + " ! " + rtp_caps +
      " ! webrtcbin name=webrtc bundle-policy=max-bundle latency=50";
  GError* error = nullptr;
  GstParseContext* parse_context = gst_parse_context_new();
  peer->pipeline = gst_parse_launch_full(description.c_str(), parse_context, GST_PARSE_FLAG_FATAL_ERRORS, &error);
  if (!peer->pipeline || error) {
    *error_text = std::string("cannot build the pipeline: ") + (error ? error->message : "?");
    const std::string missing = missing_elements_text(parse_context);
    if (!missing.empty()) *error_text += " (" + missing + ")";
    log_line("viewer %u: %s\n  %s", peer->id, error_text->c_str(), description.c_str());
    g_clear_error(&error);
    gst_parse_context_free(parse_context);
    if (peer->pipeline) {
      gst_object_unref(peer->pipeline);
      peer->pipeline = nullptr;
    }
    return false;
  }
  gst_parse_context_free(parse_context);
  GST_INFO("viewer %u pipeline: %s", peer->id, description.c_str());
  peer->webrtc = gst_bin_get_by_name(GST_BIN(peer->pipeline), "webrtc");
  peer->encoder = gst_bin_get_by_name(GST_BIN(peer->pipeline), "enc");
  peer->size_filter = gst_bin_get_by_name(GST_BIN(peer->pipeline), "size");

  GstElement* stamp = gst_bin_get_by_name(GST_BIN(peer->pipeline), "stamp");
  GstPad* stamp_src = gst_element_get_static_pad(stamp, "src");
  gst_pad_add_probe(stamp_src, GST_PAD_PROBE_TYPE_BUFFER, stamp_frame, peer, nullptr);
  gst_object_unref(stamp_src);
  gst_object_unref(stamp);
  GstElement* pay = gst_bin_get_by_name(GST_BIN(peer->pipeline), "pay");
  if (options_.twcc) {
    // Transport-wide sequence numbers on every packet: the browser then answers with
    // TWCC feedback, which rtpsession turns into received rate and loss (twcc-stats).
    if (GstRTPHeaderExtension* ext = gst_rtp_header_extension_create_from_uri(kTwccUri)) {
      gst_rtp_header_extension_set_id(ext, 1);
      g_signal_emit_by_name(pay, "add-extension", ext);
      gst_object_unref(ext);
    } else {
      log_line("no TWCC header extension (rtphdrexttwcc): REMB only");
    }
  }
  GstPad* pay_src = gst_element_get_static_pad(pay, "src");
  gst_pad_add_probe(pay_src, static_cast<GstPadProbeType>(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST),
                    count_rtp_bytes, peer, nullptr);
  gst_object_unref(pay_src);
  gst_object_unref(pay);
  GstPad* enc_src = gst_element_get_static_pad(peer->encoder, "src");
  gst_pad_add_probe(enc_src, GST_PAD_PROBE_TYPE_EVENT_UPSTREAM, count_key_requests, peer, nullptr);
  if (options_.hide_key_frames)
    gst_pad_add_probe(enc_src, GST_PAD_PROBE_TYPE_BUFFER, hide_key_frames, peer, nullptr);
  gst_object_unref(enc_src);

  // Send only; the sender priority is set once the transport exists (set_priority).
  GstWebRTCRTPTransceiver* transceiver = nullptr;
  g_signal_emit_by_name(peer->webrtc, "get-transceiver", 0, &transceiver);
  if (transceiver) {
    g_object_set(transceiver, "direction", GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY, "do-nack", TRUE,
                 nullptr);
    gst_object_unref(transceiver);
  }

  auto destroy = [](gpointer d, GClosure*) { delete static_cast<PeerRef*>(d); };
  g_signal_connect_data(peer->webrtc, "on-negotiation-needed", G_CALLBACK(on_negotiation_needed),
                        new PeerRef(this, peer->id), destroy, static_cast<GConnectFlags>(0));
  g_signal_connect_data(peer->webrtc, "on-ice-candidate", G_CALLBACK(on_ice_candidate),
                        new PeerRef(this, peer->id), destroy, static_cast<GConnectFlags>(0));

  GstBus* bus = gst_element_get_bus(peer->pipeline);
  gst_bus_add_watch_full(bus, G_PRIORITY_DEFAULT, on_bus, new PeerRef(this, peer->id),
                         [](gpointer d) { delete static_cast<PeerRef*>(d); });
  gst_object_unref(bus);
  return true;
}

void Server::send(Peer* peer, const std::string& json) {
  if (peer->ws && soup_websocket_connection_get_state(peer->ws) == SOUP_WEBSOCKET_STATE_OPEN)
    soup_websocket_connection_send_text(peer->ws, json.c_str());
}

gboolean Server::on_posted(gpointer data) {
  auto* p = static_cast<Posted*>(data);
  Server* self = p->server;
  Peer* peer = self->find(p->peer_id);
  if (!peer) return G_SOURCE_REMOVE;
  if (p->close) {
    self->remove_peer(p->peer_id, "webrtcbin could not make an offer");
  } else if (p->figures) {
    self->handle_stats(peer, *p->figures);
  } else if (!p->offer_sdp.empty()) {
    // The offer becomes the local description here, on the main loop, so a peer
    // removed meanwhile is never touched; then it leaves.
    GstSDPMessage* sdp = nullptr;
    gst_sdp_message_new_from_text(p->offer_sdp.c_str(), &sdp);
    GstWebRTCSessionDescription* desc = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_OFFER, sdp);
    g_signal_emit_by_name(peer->webrtc, "set-local-description", desc, nullptr);
    gst_webrtc_session_description_free(desc);
    JsonBuilder* b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "type");
    json_builder_add_string_value(b, "offer");
    json_builder_set_member_name(b, "sdp");
    json_builder_add_string_value(b, p->offer_sdp.c_str());
    json_builder_end_object(b);
    self->send(peer, json_string(b));
    g_object_unref(b);
    log_line("viewer %u: offer sent (%s)", peer->id, self->options_.codec.c_str());
  } else if (!p->json.empty()) {
    self->send(peer, p->json);
  }
  return G_SOURCE_REMOVE;
}

// The text of an error message: which element, what, and the Debian package when
// the error says an element is missing.
std::string bus_error_text(GstMessage* message, gchar** debug) {
  GError* error = nullptr;
  gst_message_parse_error(message, &error, debug);
  std::string text = std::string("pipeline error from ") + GST_OBJECT_NAME(GST_MESSAGE_SRC(message)) + ": " +
                     (error ? error->message : "?");
  g_clear_error(&error);
  return text;
}

gboolean Server::on_bus(GstBus*, GstMessage* message, gpointer data) {
  switch (GST_MESSAGE_TYPE(message)) {
    case GST_MESSAGE_ERROR: {
      auto* r = static_cast<PeerRef*>(data);
      gchar* debug = nullptr;
      const std::string text = bus_error_text(message, &debug);
      log_line("viewer %u: %s (%s)", r->second, text.c_str(), debug ? debug : "");
      g_free(debug);
      // The page shows it: a stopped picture says why.
      if (Peer* peer = r->first->find(r->second)) r->first->send(peer, error_json(text));
      break;
    }
    case GST_MESSAGE_WARNING: {
      GError* error = nullptr;
      gst_message_parse_warning(message, &error, nullptr);
      GST_WARNING("warning from %s: %s", GST_OBJECT_NAME(GST_MESSAGE_SRC(message)), error->message);
      g_clear_error(&error);
      break;
    }
    case GST_MESSAGE_ELEMENT: {
      const GstStructure* s = gst_message_get_structure(message);
      if (s && (gst_structure_has_name(s, "ccm-encoder-selected") ||
                gst_structure_has_name(s, "ccm-encoder-switched"))) {
        gchar* text = gst_structure_to_string(s);
        log_line("%s", text);
        g_free(text);
      }
      break;
    }
    default:
      break;
  }
  return G_SOURCE_CONTINUE;
}

// ---- bandwidth -------------------------------------------------------------

void on_feedback_rtcp(GObject*, guint type, guint fbtype, guint, guint, GstBuffer* fci, gpointer data) {
  if (type != GST_RTCP_TYPE_PSFB || fbtype != GST_RTCP_PSFB_TYPE_AFB || !fci) return;
  GstMapInfo map;
  if (!gst_buffer_map(fci, &map, GST_MAP_READ)) return;
  if (auto bps = ccm::rtp::parse_remb({map.data, map.size})) static_cast<Peer*>(data)->remb_bps = *bps;
  gst_buffer_unmap(fci, &map);
}

gboolean Server::on_stats_timer(gpointer data) {
  auto* r = static_cast<std::pair<Server*, guint>*>(data);
  Peer* peer = r->first->find(r->second);
  if (!peer) return G_SOURCE_REMOVE;
  // The RTP session exists once negotiation created it: hook REMB then.
  if (!peer->session_element && peer->rtpbin) {
    GstElement* element = nullptr;
    g_signal_emit_by_name(peer->rtpbin, "get-session", 0u, &element);
    peer->session_element = element;
  }
  if (!peer->session) {
    if (!peer->rtpbin) peer->rtpbin = gst_bin_get_by_name(GST_BIN(peer->webrtc), "rtpbin");
    if (peer->rtpbin) {
      GObject* session = nullptr;
      g_signal_emit_by_name(peer->rtpbin, "get-internal-session", 0u, &session);
      if (session) {
        // RTT needs a sender report answered: at the default 5 s between reports
        // the delay signal would be seconds old.
        if (g_object_class_find_property(G_OBJECT_GET_CLASS(session), "rtcp-min-interval"))
          g_object_set(session, "rtcp-min-interval", static_cast<guint64>(500 * GST_MSECOND), nullptr);
        peer->session = session;
        peer->feedback_handler = g_signal_connect(session, "on-feedback-rtcp", G_CALLBACK(on_feedback_rtcp), peer);
      }
    }
  }
  // Test aid: a live encoder switch (ccmencbin's candidates changed while PLAYING),
  // into an encoder whose parameter sets differ; the browser must keep decoding.
  // Counted in frames the first encoder put out, not in time from the viewer's
  // arrival: on a slow build (AddressSanitizer, Debian 13) the first encoder was
  // not chosen yet after 3 s, and the "switch" chose the second one from the start.
  const Options& o = r->first->options_;
  auto frames_out = [](GstElement* encoder) {
    guint64 n = 0;
    GstStructure* st = nullptr;
    g_object_get(encoder, "stats", &st, nullptr);
    if (st) {
      gst_structure_get_uint64(st, "frames-out", &n);
      gst_structure_free(st);
    }
    return n;
  };
  if (!o.switch_to.empty() && !peer->switch_requested && peer->encoder &&
      g_object_class_find_property(G_OBJECT_GET_CLASS(peer->encoder), "candidates") &&
      g_get_monotonic_time() - peer->started_us >= gint64(o.switch_after_s) * G_USEC_PER_SEC &&
      frames_out(peer->encoder) >= guint64(o.switch_after_s) * guint64(std::max(1, o.fps))) {
    peer->switch_requested = true;
    g_object_set(peer->encoder, "candidates", o.switch_to.c_str(), nullptr);
    log_line("viewer %u: encoder switch requested (candidates=%s)", peer->id, o.switch_to.c_str());
  }
  auto* pr = new std::pair<Server*, guint>(*r);
  GstPromise* promise = gst_promise_new_with_change_func(
      [](GstPromise* promise, gpointer d) {
        auto* r = static_cast<std::pair<Server*, guint>*>(d);
        if (gst_promise_wait(promise) != GST_PROMISE_RESULT_REPLIED) return;
        const GstStructure* reply = gst_promise_get_reply(promise);
        if (!reply) return;
        r->first->post(new Posted{r->first, r->second, "", read_stats(reply), false});
      },
      pr, [](gpointer d) { delete static_cast<std::pair<Server*, guint>*>(d); });
  g_signal_emit_by_name(peer->webrtc, "get-stats", nullptr, promise);
  gst_promise_unref(promise);
  return G_SOURCE_CONTINUE;
}

void Server::apply_resolution_step(Peer* peer, int step) {
  if (step == peer->resolution_step || !peer->size_filter) return;
  const std::string caps_text = size_caps(options_, step);
  GstCaps* caps = gst_caps_from_string(caps_text.c_str());
  g_object_set(peer->size_filter, "caps", caps, nullptr);
  gst_caps_unref(caps);
  log_line("viewer %u: resolution step %d -> %d (%s)", peer->id, peer->resolution_step, step, caps_text.c_str());
  peer->resolution_step = step;
}

void Server::handle_stats(Peer* peer, const SenderFigures& f) {
  const double now = (g_get_monotonic_time() - peer->started_us) / 1e6;
  // Sent rate over at least a second: a 0.5 s window of a bursty encoder (a key
  // frame, a stall on the socket) says little about the link.
  double sent_bps = 0;
  const double bytes = static_cast<double>(peer->payload_bytes.load());
  peer->bytes_sent.emplace_back(now, bytes);
  while (peer->bytes_sent.size() > 2 && now - peer->bytes_sent[1].first >= 1.0) peer->bytes_sent.pop_front();
  if (const auto& [t0, b0] = peer->bytes_sent.front(); now - t0 >= 0.9) sent_bps = (bytes - b0) * 8 / (now - t0);
  ccm::rtp::LinkReport report;
  report.time_s = now;
  report.sent_bps = sent_bps;
  if (f.rtt_s) report.rtt_ms = *f.rtt_s * 1000;
  if (f.fraction_lost) report.loss = *f.fraction_lost;
  if (f.jitter_s) report.jitter_ms = *f.jitter_s * 1000;
  if (const uint64_t remb = peer->remb_bps.load()) report.remb_bps = static_cast<double>(remb);
  // New loss figures: the counters moved. A new RTT: it moved by more than the
  // rounding of the same report read again.
  const double rtt = f.rtt_s.value_or(-1) * 1000, fraction = f.fraction_lost.value_or(-1),
               lost = f.packets_lost.value_or(-1);
  if (peer->last_feedback) {
    const auto& [last_rtt, last_fraction, last_lost] = *peer->last_feedback;
    report.fresh_loss = fraction != last_fraction || lost != last_lost;
    report.fresh_rtt = rtt >= 0 && std::fabs(rtt - last_rtt) > 0.5;
  }
  peer->last_feedback = std::make_tuple(rtt, fraction, lost);

  TwccFigures twcc;
  if (peer->session_element && options_.twcc) {
    GstStructure* ts = nullptr;
    g_object_get(peer->session_element, "twcc-stats", &ts, nullptr);
    if (ts) {
      twcc.bitrate_recv = number_field(ts, "bitrate-recv");
      twcc.bitrate_sent = number_field(ts, "bitrate-sent");
      twcc.loss_pct = number_field(ts, "packet-loss-pct");
      if (auto dod = number_field(ts, "avg-delta-of-delta")) twcc.delta_of_delta_ms = *dod / 1e6;
      gst_structure_free(ts);
    }
    // All zero until the first feedback arrives.
    if (twcc.bitrate_recv && *twcc.bitrate_recv > 0) {
      report.received_bps = *twcc.bitrate_recv;
      if (twcc.bitrate_sent && *twcc.bitrate_sent > 0) report.wire_sent_bps = *twcc.bitrate_sent;
      if (twcc.loss_pct) {
        report.loss = *twcc.loss_pct / 100.0;
        report.fresh_loss = true;
      }
    }
  }

  ccm::rtp::BandwidthDecision decision;
  if (peer->bwe && peer->negotiated && sent_bps > 0) {
    decision = peer->bwe->update(report, static_cast<double>(options_.width) * options_.height * options_.fps);
    const double target = decision.target_bps;
    // ccmencbin hands the estimate to its rate control; a change under 3% is noise.
    if (std::fabs(target - peer->last_target_bps) > 0.03 * peer->last_target_bps) {
      GstPad* src = gst_element_get_static_pad(peer->encoder, "src");
      GstEvent* event = gst_ccm_bandwidth_estimate_new(GST_EVENT_CUSTOM_UPSTREAM, target);
      if (!gst_pad_send_event(src, event))
        GST_INFO("viewer %u: the encoder did not take the bandwidth estimate", peer->id);
      gst_object_unref(src);
      peer->last_target_bps = target;
    }
    apply_resolution_step(peer, decision.resolution_step);
  }

  gchar* encoder_name = nullptr;
  if (g_object_class_find_property(G_OBJECT_GET_CLASS(peer->encoder), "encoder"))
    g_object_get(peer->encoder, "encoder", &encoder_name, nullptr);
  else
    encoder_name = g_strdup(GST_OBJECT_NAME(gst_element_get_factory(peer->encoder)));
  // ccmencbin counts its live switches and failovers: the page (and browser_check
  // --expect-switch) learns of a switch from the count, not only from a change of name
  // it may have missed while it was still connecting.
  guint64 switches = 0, failovers = 0;
  if (g_object_class_find_property(G_OBJECT_GET_CLASS(peer->encoder), "stats")) {
    GstStructure* st = nullptr;
    g_object_get(peer->encoder, "stats", &st, nullptr);
    if (st) {
      gst_structure_get_uint64(st, "switches", &switches);
      gst_structure_get_uint64(st, "failovers", &failovers);
      gst_structure_free(st);
    }
  }

  JsonBuilder* b = json_builder_new();
  json_builder_begin_object(b);
  auto add_num = [b](const char* name, double v) {
    json_builder_set_member_name(b, name);
    json_builder_add_double_value(b, v);
  };
  json_builder_set_member_name(b, "type");
  json_builder_add_string_value(b, "sender-stats");
  json_builder_set_member_name(b, "viewer");
  json_builder_add_int_value(b, peer->id);
  json_builder_set_member_name(b, "encoder");
  json_builder_add_string_value(b, encoder_name ? encoder_name : "");
  json_builder_set_member_name(b, "codec");
  json_builder_add_string_value(b, options_.codec.c_str());
  add_num("time", now);
  add_num("sentKbps", sent_bps / 1000);
  add_num("targetKbps", peer->bwe ? peer->bwe->target_bps() / 1000 : options_.bitrate_kbps);
  if (f.rtt_s) add_num("rttMs", *f.rtt_s * 1000);
  if (f.fraction_lost) add_num("fractionLost", *f.fraction_lost);
  if (f.jitter_s) add_num("jitterMs", *f.jitter_s * 1000);
  if (f.pli_count) add_num("pliCount", *f.pli_count);
  if (f.fir_count) add_num("firCount", *f.fir_count);
  if (f.nack_count) add_num("nackCount", *f.nack_count);
  if (report.remb_bps) add_num("rembKbps", *report.remb_bps / 1000);
  if (twcc.bitrate_recv) add_num("twccRecvKbps", *twcc.bitrate_recv / 1000);
  if (twcc.bitrate_sent) add_num("twccSentKbps", *twcc.bitrate_sent / 1000);
  if (twcc.loss_pct) add_num("twccLossPct", *twcc.loss_pct);
  if (twcc.delta_of_delta_ms) add_num("twccDeltaOfDeltaMs", *twcc.delta_of_delta_ms);
  add_num("keyUnitRequests", peer->key_requests.load());
  add_num("encoderSwitches", double(switches));
  add_num("encoderFailovers", double(failovers));
  add_num("framesStamped", peer->frames.load());
  add_num("resolutionStep", peer->resolution_step);
  json_builder_set_member_name(b, "reason");
  json_builder_add_string_value(b, decision.reason ? decision.reason : "");
  json_builder_end_object(b);
  const std::string json = json_string(b);
  g_object_unref(b);
  g_free(encoder_name);
  send(peer, json);
  if (options_.stats) g_print("STATS %s\n", json.c_str());
}

// ---- signalling ------------------------------------------------------------

// Video marked with the priority webrtcbin 1.22 maps to DSCP AF42 (HIGH for video
// is AF42, 36; MEDIUM gives AF43). webrtcbin hooks the marking into the transports
// that exist when the priority changes, so this runs once the offer made them.
//
// webrtcbin 1.22 applies the marking only when its sink pad's caps change after
// the transceiver got its mid, which a stream negotiated once never does; so the
// same DSCP is also put on the ICE stream here, through the public
// gst_webrtc_ice_set_tos (the call webrtcbin itself makes).
bool set_priority(GstElement* webrtc) {
  constexpr guint kDscpAf42 = 36;
  GstWebRTCRTPTransceiver* transceiver = nullptr;
  g_signal_emit_by_name(webrtc, "get-transceiver", 0, &transceiver);
  if (!transceiver) return false;
  GstWebRTCRTPSender* sender = nullptr;
  g_object_get(transceiver, "sender", &sender, nullptr);
  gst_object_unref(transceiver);
  if (!sender) return false;
  gst_webrtc_rtp_sender_set_priority(sender, GST_WEBRTC_PRIORITY_TYPE_HIGH);
  bool marked = false;
  GstWebRTCDTLSTransport* dtls = nullptr;
  g_object_get(sender, "transport", &dtls, nullptr);
  gst_object_unref(sender);
  if (!dtls) return false;
  GstWebRTCICETransport* ice_transport = nullptr;
  g_object_get(dtls, "transport", &ice_transport, nullptr);
  gst_object_unref(dtls);
  if (ice_transport && g_object_class_find_property(G_OBJECT_GET_CLASS(ice_transport), "stream")) {
    GstWebRTCICEStream* stream = nullptr;
    GstWebRTCICE* ice = nullptr;
    g_object_get(ice_transport, "stream", &stream, nullptr);
    g_object_get(webrtc, "ice-agent", &ice, nullptr);
    if (stream && ice) {
      gst_webrtc_ice_set_tos(ice, stream, kDscpAf42 << 2);
      marked = true;
    }
    if (stream) gst_object_unref(stream);
    if (ice) gst_object_unref(ice);
  }
  if (ice_transport) gst_object_unref(ice_transport);
  return marked;
}

void Server::handle_message(Peer* peer, const char* text, gsize size) {
  JsonParser* parser = json_parser_new();
  GError* error = nullptr;
  std::string problem;
  if (!json_parser_load_from_data(parser, text, static_cast<gssize>(size), &error)) {
    problem = std::string("not JSON: ") + error->message;
    g_clear_error(&error);
  } else if (!JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
    problem = "not a JSON object";
  } else {
    JsonObject* o = json_node_get_object(json_parser_get_root(parser));
    const char* type = json_object_get_string_member_with_default(o, "type", nullptr);
    if (!type) {
      problem = "no string \"type\"";
    } else if (g_strcmp0(type, "answer") == 0) {
      const char* sdp_text = json_object_get_string_member_with_default(o, "sdp", nullptr);
      GstSDPMessage* sdp = nullptr;
      if (!sdp_text || gst_sdp_message_new_from_text(sdp_text, &sdp) != GST_SDP_OK) {
        problem = "answer without a parsable \"sdp\"";
        if (sdp) gst_sdp_message_free(sdp);
      } else if (gst_sdp_message_medias_len(sdp) == 0) {
        problem = "answer without media";
        gst_sdp_message_free(sdp);
      } else {
        if (!set_priority(peer->webrtc)) log_line("viewer %u: could not mark video DSCP AF42", peer->id);
        GstWebRTCSessionDescription* desc = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_ANSWER, sdp);
        g_signal_emit_by_name(peer->webrtc, "set-remote-description", desc, nullptr);
        gst_webrtc_session_description_free(desc);
        peer->negotiated = true;
        log_line("viewer %u: answer received", peer->id);
      }
    } else if (g_strcmp0(type, "ice") == 0) {
      const char* candidate = json_object_get_string_member_with_default(o, "candidate", nullptr);
      const gint64 mline = json_object_get_int_member_with_default(o, "sdpMLineIndex", -1);
      if (!candidate || mline < 0 || mline > 16) {
        problem = "ice without \"candidate\" or \"sdpMLineIndex\"";
      } else if (candidate[0] != '\0') {  // "" = end of candidates
        g_signal_emit_by_name(peer->webrtc, "add-ice-candidate", static_cast<guint>(mline), candidate);
      }
    } else {
      problem = std::string("unknown message type \"") + type + "\"";
    }
  }
  g_object_unref(parser);
  if (!problem.empty()) {
    const std::string shown(text, std::min<gsize>(size, 80));
    log_line("viewer %u: malformed signalling (%s): %s", peer->id, problem.c_str(), shown.c_str());
    remove_peer(peer->id, "malformed signalling");
  }
}

void Server::on_ws_message(SoupWebsocketConnection*, gint type, GBytes* message, gpointer data) {
  auto* r = static_cast<std::pair<Server*, guint>*>(data);
  Peer* peer = r->first->find(r->second);
  if (!peer) return;
  gsize size = 0;
  const auto* bytes = static_cast<const char*>(g_bytes_get_data(message, &size));
  if (type != SOUP_WEBSOCKET_DATA_TEXT) {
    log_line("viewer %u: binary message ignored", peer->id);
    return;
  }
  r->first->handle_message(peer, bytes, size);
}

void Server::on_ws_closed(SoupWebsocketConnection*, gpointer data) {
  auto* r = static_cast<std::pair<Server*, guint>*>(data);
  r->first->remove_peer(r->second, "page closed the connection");
}

void Server::on_websocket(SoupServer*, SoupServerMessage*, const char*, SoupWebsocketConnection* conn,
                          gpointer data) {
  auto* self = static_cast<Server*>(data);
  auto peer = std::make_unique<Peer>();
  peer->id = self->next_id_++;
  peer->ws = SOUP_WEBSOCKET_CONNECTION(g_object_ref(conn));
  peer->started_us = g_get_monotonic_time();
  if (self->options_.bwe && self->options_.encoder.empty()) {
    ccm::rtp::BandwidthConfig config;
    config.start_bps = self->options_.bitrate_kbps * 1000.0;
    config.min_bps = self->options_.min_kbps * 1000.0;
    config.max_bps = self->options_.max_kbps * 1000.0;
    config.bps_per_pixel_low = self->options_.min_bpp;
    config.bps_per_pixel_high = self->options_.min_bpp * 1.5;
    peer->bwe.emplace(config);
    peer->last_target_bps = config.start_bps;
  }
  const guint id = peer->id;
  Peer* raw = peer.get();
  self->peers_[id] = std::move(peer);
  log_line("viewer %u connected (%zu viewer(s))", id, self->peers_.size());

  auto destroy = [](gpointer d, GClosure*) { delete static_cast<std::pair<Server*, guint>*>(d); };
  g_signal_connect_data(conn, "message", G_CALLBACK(on_ws_message), new std::pair<Server*, guint>(self, id),
                        destroy, static_cast<GConnectFlags>(0));
  g_signal_connect_data(conn, "closed", G_CALLBACK(on_ws_closed), new std::pair<Server*, guint>(self, id), destroy,
                        static_cast<GConnectFlags>(0));

  std::string error;
  if (!self->build_pipeline(raw, &error)) {
    self->fail_peer(id, error, "no pipeline");
    return;
  }
  if (gst_element_set_state(raw->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    // The element that refused has said why on the bus (not dispatched yet).
    std::string text = "the pipeline would not start";
    GstBus* bus = gst_element_get_bus(raw->pipeline);
    if (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
      text += ": " + bus_error_text(m, nullptr);
      gst_message_unref(m);
    }
    gst_object_unref(bus);
    log_line("viewer %u: %s", id, text.c_str());
    self->fail_peer(id, text, "pipeline would not start");
    return;
  }
  raw->stats_timer = g_timeout_add_full(G_PRIORITY_DEFAULT, 500, on_stats_timer,
                                        new std::pair<Server*, guint>(self, id),
                                        [](gpointer d) { delete static_cast<std::pair<Server*, guint>*>(d); });
}

// Tells the page what went wrong ({"type":"error"}), then closes its socket.
void Server::fail_peer(guint id, const std::string& message, const char* why) {
  if (Peer* peer = find(id)) send(peer, error_json(message));
  remove_peer(id, why);
}

void Server::remove_peer(guint id, const char* why) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  std::unique_ptr<Peer> peer = std::move(it->second);
  peers_.erase(it);
  log_line("viewer %u removed: %s (%zu viewer(s) left)", id, why, peers_.size());
  if (peer->stats_timer) g_source_remove(peer->stats_timer);
  if (peer->pipeline) {
    // NULL joins the streaming threads: no callback sees this peer afterwards.
    gst_element_set_state(peer->pipeline, GST_STATE_NULL);
    GstBus* bus = gst_element_get_bus(peer->pipeline);
    gst_bus_remove_watch(bus);
    gst_object_unref(bus);
  }
  if (peer->session) {
    g_signal_handler_disconnect(peer->session, peer->feedback_handler);
    g_object_unref(peer->session);
  }
  if (peer->session_element) gst_object_unref(peer->session_element);
  if (peer->rtpbin) gst_object_unref(peer->rtpbin);
  if (peer->size_filter) gst_object_unref(peer->size_filter);
  if (peer->encoder) gst_object_unref(peer->encoder);
  if (peer->webrtc) gst_object_unref(peer->webrtc);
  if (peer->pipeline) gst_object_unref(peer->pipeline);
  if (peer->ws) {
    g_signal_handlers_disconnect_matched(peer->ws, G_SIGNAL_MATCH_FUNC, 0, 0, nullptr,
                                         reinterpret_cast<gpointer>(on_ws_message), nullptr);
    g_signal_handlers_disconnect_matched(peer->ws, G_SIGNAL_MATCH_FUNC, 0, 0, nullptr,
                                         reinterpret_cast<gpointer>(on_ws_closed), nullptr);
    if (soup_websocket_connection_get_state(peer->ws) == SOUP_WEBSOCKET_STATE_OPEN)
      soup_websocket_connection_close(peer->ws, SOUP_WEBSOCKET_CLOSE_NORMAL, why);
    g_object_unref(peer->ws);
  }
}

// ---- HTTP ------------------------------------------------------------------

// The page beside this program: the source tree's for the binary in the build
// tree, the installed copy for the installed binary (even where the source tree
// it was built from is still there).
std::string Server::page_dir() const {
  if (!options_.page_dir.empty()) return options_.page_dir;
  if (const char* env = g_getenv("CCM_WEBRTC_PAGE_DIR")) return env;
  gchar* exe = g_file_read_link("/proc/self/exe", nullptr);
  const bool in_build_tree = exe && g_str_has_prefix(exe, CCM_BUILD_ROOT "/");
  g_free(exe);
  return in_build_tree ? CCM_WEBRTC_PAGE_SOURCE_DIR : CCM_WEBRTC_PAGE_INSTALL_DIR;
}

void Server::on_http(SoupServer*, SoupServerMessage* msg, const char* path, GHashTable*, gpointer data) {
  auto* self = static_cast<Server*>(data);
  if (g_strcmp0(soup_server_message_get_method(msg), "GET") != 0) {
    soup_server_message_set_status(msg, SOUP_STATUS_NOT_IMPLEMENTED, nullptr);
    return;
  }
  std::string name = g_strcmp0(path, "/") == 0 ? "index.html" : std::string(path + 1);
  // Only plain names from the page folder: no paths, no dot files.
  if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') {
    soup_server_message_set_status(msg, SOUP_STATUS_NOT_FOUND, nullptr);
    return;
  }
  gchar* file = g_build_filename(self->page_dir().c_str(), name.c_str(), nullptr);
  gchar* contents = nullptr;
  gsize length = 0;
  if (!g_file_get_contents(file, &contents, &length, nullptr)) {
    soup_server_message_set_status(msg, SOUP_STATUS_NOT_FOUND, nullptr);
    g_free(file);
    return;
  }
  const char* type = g_str_has_suffix(name.c_str(), ".html") ? "text/html; charset=utf-8"
                     : g_str_has_suffix(name.c_str(), ".js") ? "text/javascript; charset=utf-8"
                     : g_str_has_suffix(name.c_str(), ".css") ? "text/css; charset=utf-8"
                                                               : "application/octet-stream";
  soup_server_message_set_response(msg, type, SOUP_MEMORY_TAKE, contents, length);
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Cache-Control", "no-store");
  soup_server_message_set_status(msg, SOUP_STATUS_OK, nullptr);
  g_free(file);
}

bool Server::start() {
  if (!codec_chain(options_.codec)) {
    log_line("unknown codec %s (av1, vp9, h264, h265)", options_.codec.c_str());
    return false;
  }
  soup_ = soup_server_new("server-header", "ccm-webrtc-demo", nullptr);
  soup_server_add_handler(soup_, nullptr, on_http, this, nullptr);
  soup_server_add_websocket_handler(soup_, "/ws", nullptr, nullptr, on_websocket, this, nullptr);
  GInetAddress* address = g_inet_address_new_from_string(options_.bind.c_str());
  if (!address) {
    log_line("--bind %s is not an IP address", options_.bind.c_str());
    return false;
  }
  GSocketAddress* socket_address = g_inet_socket_address_new(address, static_cast<guint16>(options_.port));
  g_object_unref(address);
  GError* error = nullptr;
  const gboolean ok =
      soup_server_listen(soup_, socket_address, static_cast<SoupServerListenOptions>(0), &error);
  g_object_unref(socket_address);
  if (!ok) {
    log_line("cannot listen on %s:%d: %s", options_.bind.c_str(), options_.port, error->message);
    g_clear_error(&error);
    return false;
  }
  log_line("serving http://%s:%d/ (codec %s, %dx%d@%d, %s, page from %s)", options_.bind.c_str(), options_.port,
           options_.codec.c_str(), options_.width, options_.height, options_.fps,
           options_.encoder.empty() ? "ccmencbin" : options_.encoder.c_str(), page_dir().c_str());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  gchar* codec = nullptr;
  gchar* bind = nullptr;
  gchar* source = nullptr;
  gchar* encoder = nullptr;
  gchar* page_dir = nullptr;
  gboolean no_bwe = FALSE;
  gboolean stats = FALSE;
  gboolean no_twcc = FALSE;
  gboolean hide_keys = FALSE;
  gchar* candidates = nullptr;
  gchar* switch_to = nullptr;
  gdouble min_bpp = o.min_bpp;
  GOptionEntry entries[] = {
      {"codec", 'c', 0, G_OPTION_ARG_STRING, &codec, "av1, vp9, h264 or h265 (default av1)", "CODEC"},
      {"port", 'p', 0, G_OPTION_ARG_INT, &o.port, "port for the page and its WebSocket (default 8080)", "P"},
      {"bind", 0, 0, G_OPTION_ARG_STRING, &bind, "address to listen on (default 127.0.0.1)", "ADDR"},
      {"source", 's', 0, G_OPTION_ARG_STRING, &source,
       "a file, /dev/videoN or a gst-launch fragment (default: built-in test pattern)", "SRC"},
      {"encoder", 0, 0, G_OPTION_ARG_STRING, &encoder,
       "a fixed encoder instead of ccmencbin, e.g. \"vp9enc deadline=1 target-bitrate=2000000\" (no rate "
       "control from the network)",
       "DESC"},
      {"width", 0, 0, G_OPTION_ARG_INT, &o.width, "width (default 640)", "W"},
      {"height", 0, 0, G_OPTION_ARG_INT, &o.height, "height (default 360)", "H"},
      {"fps", 0, 0, G_OPTION_ARG_INT, &o.fps, "frame rate (default 30)", "F"},
      {"bitrate", 'b', 0, G_OPTION_ARG_INT, &o.bitrate_kbps, "start bitrate in kbit/s (default 2000)", "KBPS"},
      {"min-bitrate", 0, 0, G_OPTION_ARG_INT, &o.min_kbps, "lowest bitrate in kbit/s (default 150)", "KBPS"},
      {"max-bitrate", 0, 0, G_OPTION_ARG_INT, &o.max_kbps, "highest bitrate in kbit/s (default 20000)", "KBPS"},
      {"min-bpp", 0, 0, G_OPTION_ARG_DOUBLE, &min_bpp,
       "bits per pixel under which the resolution steps down (default 0.08)", "BPP"},
      {"no-bwe", 0, 0, G_OPTION_ARG_NONE, &no_bwe, "no bandwidth estimation (fixed bitrate)", nullptr},
      {"no-twcc", 0, 0, G_OPTION_ARG_NONE, &no_twcc,
       "do not offer transport-wide congestion control feedback (the browser then sends REMB)", nullptr},
      {"hide-key-frames", 0, 0, G_OPTION_ARG_NONE, &hide_keys,
       "test aid: drop key frames until the browser asks for one (PLI/FIR must reach the encoder)", nullptr},
      {"page-dir", 0, 0, G_OPTION_ARG_FILENAME, &page_dir, "folder with index.html", "DIR"},
      {"duration", 0, 0, G_OPTION_ARG_INT, &o.duration_s, "stop after this many seconds (0 = never)", "S"},
      {"candidates", 0, 0, G_OPTION_ARG_STRING, &candidates,
       "ccmencbin's candidates: encoder factories to choose from, in order (default: its own ranking)", "LIST"},
      {"switch-to", 0, 0, G_OPTION_ARG_STRING, &switch_to,
       "test aid: set ccmencbin's candidates to LIST --switch-after seconds into each viewer's stream", "LIST"},
      {"switch-after", 0, 0, G_OPTION_ARG_INT, &o.switch_after_s,
       "seconds, and seconds' worth of frames out of the first encoder, before --switch-to (default 3)", "S"},
      {"stats", 0, 0, G_OPTION_ARG_NONE, &stats, "print a JSON line per viewer per second (STATS ...)", nullptr},
      {nullptr}};
  GOptionContext* context = g_option_context_new("- send ccmencbin video to browsers over WebRTC");
  g_option_context_add_main_entries(context, entries, nullptr);
  g_option_context_add_group(context, gst_init_get_option_group());
  GError* error = nullptr;
  if (!g_option_context_parse(context, &argc, &argv, &error)) {
    g_printerr("%s\n", error->message);
    g_clear_error(&error);
    g_option_context_free(context);
    return 2;
  }
  g_option_context_free(context);
  auto take = [](gchar* s, std::string& into) {
    if (s) into = s;
    g_free(s);
  };
  take(codec, o.codec);
  take(bind, o.bind);
  take(source, o.source);
  take(encoder, o.encoder);
  take(page_dir, o.page_dir);
  take(candidates, o.candidates);
  take(switch_to, o.switch_to);
  o.bwe = !no_bwe;
  o.stats = stats;
  o.twcc = !no_twcc;
  o.hide_key_frames = hide_keys;
  o.min_bpp = min_bpp;

  gst_init(nullptr, nullptr);
  GST_DEBUG_CATEGORY_INIT(demo_debug, "ccm-webrtc-demo", 0, "WebRTC demo sender");
  // The ccm elements come from the plugin (installed, GST_PLUGIN_PATH, or the
  // build tree this program was built in), not linked in: one copy of them per process.
  if (GstPluginFeature* f = gst_registry_lookup_feature(gst_registry_get(), "ccmencbin"))
    gst_object_unref(f);
  else
    gst_registry_scan_path(gst_registry_get(), CCM_PLUGIN_BUILD_DIR);
  for (const char* needed : {"ccmencbin", "ccmrtpav1pay", "webrtcbin", "nicesrc", "dtlssrtpenc"}) {
    GstElementFactory* f = gst_element_factory_find(needed);
    if (!f) {
      const std::string_view package = ccm::catalog::debian_package_for_element(needed);
      if (package.empty())
        log_line("GStreamer element %s is missing (the gst-ccm plugin: install it or set GST_PLUGIN_PATH)", needed);
      else
        log_line("GStreamer element %s is missing: install the Debian package %.*s (or scripts/install-deps)",
                 needed, static_cast<int>(package.size()), package.data());
      gst_deinit();
      return 1;
    }
    gst_object_unref(f);
  }

  GMainLoop* loop = g_main_loop_new(nullptr, FALSE);
  int rc = 0;
  {
    Server server(o);
    if (!server.start()) {
      rc = 1;
    } else {
      // Sources stay attached (CONTINUE) so they can all be removed after the loop.
      auto quit = [](gpointer l) -> gboolean {
        g_main_loop_quit(static_cast<GMainLoop*>(l));
        return G_SOURCE_CONTINUE;
      };
      const guint sigint = g_unix_signal_add(SIGINT, quit, loop);
      const guint sigterm = g_unix_signal_add(SIGTERM, quit, loop);
      guint timeout = 0;
      if (o.duration_s > 0) timeout = g_timeout_add_seconds(static_cast<guint>(o.duration_s), quit, loop);
      g_main_loop_run(loop);
      g_source_remove(sigint);
      g_source_remove(sigterm);
      if (timeout) g_source_remove(timeout);
      log_line("stopping");
    }
  }
  g_main_loop_unref(loop);
  gst_deinit();
  return rc;
}
