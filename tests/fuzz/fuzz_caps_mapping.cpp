// libFuzzer target: caps -> encoder settings.
//   - half the inputs: random caps (size, format, framerate, max-framerate,
//     memory, interlacing, colorimetry, or caps parsed from random text) sent to
//     ccmencbin's sink pad, then a frame or two when the caps describe a small
//     raw frame, then EOS. ccmencbin must end with EOS or an error message, never
//     crash, hang or leak (it maps caps to a nominal framerate, the key-frame
//     interval, 4:2:0/4:4:4, the encoder's input caps and size checks).
//   - the other half: gst/encbin/encoder_setup's mapping of unified settings
//     onto every encoder element this registry has (catalogued or not) and
//     set_property_from_string with random property names and values.
#include <gst/gst.h>
#include <gst/video/video.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "encbin/encoder_setup.h"
#include "plugin.h"

namespace {

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint32_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t u16() { return u8() | (u8() << 8); }
  uint32_t u32() { return u16() | (u16() << 16); }
  std::string text(size_t max) {
    std::string s;
    const size_t n = std::min<size_t>(u8() % (max + 1), size_ - pos_);
    s.assign(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    for (char& c : s)
      if (c == '\0') c = ' ';
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Sizes that trip code: 0, 1, odd, around block and CTU sizes, the 16384 limit and past it.
uint32_t dimension(Reader& in) {
  static constexpr uint32_t kSizes[] = {0, 1, 2, 3, 15, 16, 17, 63, 64, 65, 127, 129, 321, 16384, 16385, 65535};
  const uint32_t pick = in.u8();
  if (pick < 160) return kSizes[pick % 16];
  return 1 + in.u16() % 96;
}

GstCaps* random_caps(Reader& in, uint32_t* width, uint32_t* height) {
  const uint32_t kind = in.u8();
  if (kind % 8 == 7) {
    std::string text = in.text(120);
    if (kind & 0x80) text = "video/x-raw," + text;
    *width = *height = 0;
    return gst_caps_from_string(text.c_str());  // may be NULL
  }
  const char* media = (kind % 8 == 6) ? "video/x-bayer" : "video/x-raw";
  GstCaps* caps = gst_caps_new_empty_simple(media);
  GstStructure* s = gst_caps_get_structure(caps, 0);
  const uint32_t fields = in.u16();
  if (fields & 1) {
    const auto format = GstVideoFormat(in.u8() % (GST_VIDEO_FORMAT_NV12_10BE_8L128 + 2));
    const char* name = gst_video_format_to_string(format);
    gst_structure_set(s, "format", G_TYPE_STRING, name ? name : "NOT-A-FORMAT", nullptr);
  } else if (!(fields & 2)) {
    static constexpr const char* kCommon[] = {"I420", "NV12", "YUY2", "RGB", "GRAY8", "I420_10LE", "P010_10LE", "Y444"};
    gst_structure_set(s, "format", G_TYPE_STRING, kCommon[in.u8() % 8], nullptr);
  }
  *width = dimension(in);
  *height = dimension(in);
  // Frames of a few hundred megapixels make encoders reserve gigabytes at open
  // (vp9enc: 13 GB for 16385x16385), which is the allocator's limit, not a
  // finding: the bad-input table covers huge sizes (tests/reliability).
  if (uint64_t(*width) * *height > (uint64_t(1) << 22)) *height = 16;
  if (!(fields & 4)) gst_structure_set(s, "width", G_TYPE_INT, int(*width), nullptr);
  if (!(fields & 8)) gst_structure_set(s, "height", G_TYPE_INT, int(*height), nullptr);
  auto fraction = [&](const char* field) {
    static constexpr int kNum[] = {0, 1, 30, 30000, 60, 1000000, G_MAXINT, -30};
    static constexpr int kDen[] = {1, 1, 1, 1001, 1, 1, 1, G_MAXINT};
    const uint32_t a = in.u8(), b = in.u8();
    int n = kNum[a % 8], d = kDen[b % 8];
    if (a & 0x80) n = int(in.u32() >> 1);
    if (b & 0x80) d = 1 + int(in.u32() >> 2);
    gst_structure_set(s, field, GST_TYPE_FRACTION, n, d, nullptr);
  };
  if (!(fields & 16)) fraction("framerate");
  if (fields & 32) fraction("max-framerate");
  if (fields & 64) {
    static constexpr const char* kModes[] = {"progressive", "interleaved", "mixed", "fields", "alternate", "bogus"};
    gst_structure_set(s, "interlace-mode", G_TYPE_STRING, kModes[in.u8() % 6], nullptr);
  }
  if (fields & 128) {
    static constexpr const char* kColours[] = {"bt709", "bt601", "bt2100-pq", "bt2020", "sRGB", "1:4:0:0", "garbage"};
    gst_structure_set(s, "colorimetry", G_TYPE_STRING, kColours[in.u8() % 7], nullptr);
  }
  if (fields & 256) gst_structure_set(s, "pixel-aspect-ratio", GST_TYPE_FRACTION, int(in.u8()), 1 + int(in.u8()), nullptr);
  if (fields & 512) {
    static constexpr const char* kFeatures[] = {"memory:SystemMemory", "memory:GLMemory", "memory:CUDAMemory",
                                                "memory:DMABuf", "memory:VAMemory", "meta:GstVideoOverlayComposition"};
    gst_caps_set_features(caps, 0, gst_caps_features_new(kFeatures[in.u8() % 6], nullptr));
  }
  return caps;
}

// Runs ccmencbin on one caps event (and a frame or two) and waits for the end.
void run_encbin(Reader& in) {
  static constexpr const char* kCodecs[] = {"h264", "vp9", "h264", "vp9", "h264", "h265", "av1", "auto"};
  const uint32_t setup = in.u8();
  GstElement* pipeline = gst_pipeline_new(nullptr);
  GstElement* enc = gst_element_factory_make("ccmencbin", nullptr);
  GstElement* sink = gst_element_factory_make("fakesink", nullptr);
  // h264 and vp9 open fastest; the others only now and then.
  const uint32_t codec = setup & 7;
  gst_util_set_object_arg(G_OBJECT(enc), "codec", kCodecs[codec]);
  gst_util_set_object_arg(G_OBJECT(enc), "hardware", "software-only");
  g_object_set(enc, "probe", gboolean((setup & 8) != 0), "bitrate", 1 + in.u16(),
               "keyframe-interval", guint(in.u8() % 4 == 0 ? in.u32() % 1000 : 0), "low-latency",
               gboolean(!(setup & 16)), "dmabuf-pool", gboolean((setup & 32) != 0), nullptr);
  g_object_set(sink, "async", FALSE, "sync", FALSE, nullptr);
  gst_bin_add_many(GST_BIN(pipeline), enc, sink, nullptr);
  gst_element_link(enc, sink);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);

  GstPad* pad = gst_element_get_static_pad(enc, "sink");
  gst_pad_send_event(pad, gst_event_new_stream_start("fuzz"));
  uint32_t width = 0, height = 0;
  GstCaps* caps = random_caps(in, &width, &height);
  bool caps_ok = false;
  if (g_getenv("FUZZ_VERBOSE")) {
    gchar* text = caps ? gst_caps_to_string(caps) : nullptr;
    std::fprintf(stderr, "codec %s caps %s\n", kCodecs[codec], text ? text : "(none)");
    g_free(text);
  }
  if (caps) {
    caps_ok = gst_pad_send_event(pad, gst_event_new_caps(caps));
    gst_caps_unref(caps);
  }
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  gst_pad_send_event(pad, gst_event_new_segment(&segment));
  GstVideoInfo info;
  GstCaps* current = gst_pad_get_current_caps(pad);
  const bool small = current && gst_video_info_from_caps(&info, current) && info.size > 0 && info.size <= 256 * 1024;
  if (current) gst_caps_unref(current);
  if (caps_ok && small) {
    const int frames = 1 + int(in.u8() % 3);
    for (int i = 0; i < frames; ++i) {
      GstBuffer* buffer = gst_buffer_new_allocate(nullptr, info.size, nullptr);
      gst_buffer_memset(buffer, 0, uint8_t(17 * i + 60), info.size);
      GST_BUFFER_PTS(buffer) = (in.u8() & 0x80) ? GST_CLOCK_TIME_NONE : i * GST_SECOND / 30;
      if (gst_pad_chain(pad, buffer) != GST_FLOW_OK) break;
    }
  }
  gst_pad_send_event(pad, gst_event_new_eos());
  gst_object_unref(pad);

  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, 20 * GST_SECOND,
                                               GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  if (!msg) {
    std::fprintf(stderr, "fuzz_caps_mapping: ccmencbin neither finished nor failed within 20 s\n");
    std::abort();
  }
  gst_message_unref(msg);
  gst_object_unref(bus);
  if (gst_element_set_state(pipeline, GST_STATE_NULL) == GST_STATE_CHANGE_FAILURE) {
    std::fprintf(stderr, "fuzz_caps_mapping: ccmencbin refused to stop\n");
    std::abort();
  }
  gst_object_unref(pipeline);
}

// Encoder elements by factory name, made once (settings persist between inputs,
// which is what a long-lived pipeline does to them too).
GstElement* encoder(const std::string& factory) {
  static std::map<std::string, GstElement*> made;
  auto it = made.find(factory);
  if (it != made.end()) return it->second;
  GstElement* e = gst_element_factory_make(factory.c_str(), nullptr);
  if (e) gst_object_ref_sink(e);
  made[factory] = e;
  return e;
}

void run_setup(Reader& in) {
  static const std::vector<std::string> factories = [] {
    std::vector<std::string> names;
    for (const auto& entry : ccm::catalog::entries()) names.emplace_back(entry.factory);
    // Elements the catalogue does not know, configured through the properties they have.
    for (const char* extra : {"x264enc", "vp8enc", "avenc_mpeg4", "jpegenc", "identity"}) names.emplace_back(extra);
    return names;
  }();
  const std::string& factory = factories[in.u8() % factories.size()];
  GstElement* element = encoder(factory);
  if (!element) return;
  const ccm::catalog::EncoderEntry* entry = (in.u8() & 1) ? ccm::catalog::find(factory) : nullptr;

  ccm::gst::EncodeSettings s;
  s.codec = ccm::catalog::kAllCodecs[in.u8() % 4];
  s.bitrate_kbps = (in.u8() & 1) ? in.u32() : in.u16();
  s.rate_control = ccm::catalog::RateControl(in.u8() % 3);
  s.quantizer = in.u8();
  s.keyframe_interval = (in.u8() & 1) ? in.u32() : in.u16();
  s.low_latency = in.u8() & 1;
  s.bframes = int(in.u8()) - 2;
  s.min_quantizer = int(in.u8()) - 2;
  s.max_quantizer = int(in.u8()) - 2;
  s.threads = in.u8() % 130;
  const auto report = ccm::gst::configure_encoder(element, entry, s);
  (void)report;
  ccm::gst::apply_bitrate(element, entry, in.u32());

  guint n = 0;
  GParamSpec** specs = g_object_class_list_properties(G_OBJECT_GET_CLASS(element), &n);
  for (int i = 0, count = in.u8() % 4; i < count && n > 0; ++i) {
    const uint32_t pick = in.u8();
    const std::string property = (pick & 0x80) ? in.text(24) : specs[pick % n]->name;
    // "name" and "parent" would rename or reparent the shared element: not settings.
    if (property == "name" || property == "parent") continue;
    std::string why;
    ccm::gst::set_property_from_string(element, property, in.text(40), &why);
  }
  g_free(specs);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  gst_init(argc, argv);
  ccm_plugin_register_static();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  if (in.u8() & 1)
    run_encbin(in);
  else
    run_setup(in);
  return 0;
}
