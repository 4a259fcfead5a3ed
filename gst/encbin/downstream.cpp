// What downstream takes (downstream.h).
#include "encbin/downstream.h"

#include "common/registry_probe.h"
#include "ratecontrol/encoder_adapters.h"

#include <cstring>

namespace ccm::encbin {

// The codecs downstream takes, in our preference order.
std::vector<Codec> codecs_downstream_accepts(GstPad* srcpad) {
  Ref<GstCaps> peer(gst_pad_peer_query_caps(srcpad, nullptr));
  std::vector<Codec> out;
  for (Codec c : ccm::catalog::kAllCodecs) {
    if (!peer || gst_caps_is_any(peer.get())) {
      out.push_back(c);
      continue;
    }
    Ref<GstCaps> codec_caps(gst_caps_new_empty_simple(ccm::catalog::caps_name(c)));
    if (gst_caps_can_intersect(peer.get(), codec_caps.get())) out.push_back(c);
  }
  return out;
}

std::string downstream_caps_string(GstPad* srcpad) {
  Ref<GstCaps> peer(gst_pad_peer_query_caps(srcpad, nullptr));
  if (!peer) return "nothing (not linked)";
  gchar* s = gst_caps_to_string(peer.get());
  std::string out = s;
  g_free(s);
  return out;
}

// The in-band stream format of H.264/H.265 (avc3, hev1) when downstream takes it
// but no byte-stream (matroskamux, mp4mux, qtmux); nullptr otherwise, where the
// parser's own negotiation is kept (byte-stream carries parameter sets in band).
// Parsers (and queues) downstream convert to whatever follows them, and would
// turn a failover's new parameter sets into new caps: what follows them decides.
// The sink pad of the first element past them (a new reference), nullptr when unlinked.
static GstPad* pad_past_parsers(GstPad* srcpad) {
  GstPad* pad = gst_pad_get_peer(srcpad);  // a sink pad downstream
  for (int hops = 0; pad && hops < 8; hops++) {
    GstElement* element = gst_pad_get_parent_element(pad);
    GstElementFactory* factory = element ? gst_element_get_factory(element) : nullptr;
    const gchar* klass = factory ? gst_element_factory_get_metadata(factory, GST_ELEMENT_METADATA_KLASS) : nullptr;
    const bool see_through =
        klass && (strstr(klass, "Parser") || g_str_equal(GST_OBJECT_NAME(factory), "queue"));
    GstPad* next = see_through ? ccm::gst::only_pad(element, GST_PAD_SRC) : nullptr;
    GstPad* next_peer = next ? gst_pad_get_peer(next) : nullptr;
    if (next) gst_object_unref(next);
    if (element) gst_object_unref(element);
    if (!next_peer) break;
    gst_object_unref(pad);
    pad = next_peer;
  }
  return pad;
}

static GstCaps* caps_past_parsers(GstPad* srcpad) {
  GstPad* pad = pad_past_parsers(srcpad);
  if (!pad) return nullptr;
  GstCaps* caps = gst_pad_query_caps(pad, nullptr);
  gst_object_unref(pad);
  return caps;
}

// The muxer downstream (past parsers and queues) that already took a stream, by
// name, or "": none of GStreamer 1.22's muxers takes another codec mid-stream
// (matroskamux, webmmux, mp4mux: "Caps changes are not supported"; mpegtsmux:
// "Stream type change ... not supported"), so a codec switch would end the recording.
std::string muxer_downstream(GstPad* srcpad) {
  GstPad* pad = pad_past_parsers(srcpad);
  if (!pad) return {};
  std::string name;
  GstElement* element = gst_pad_get_parent_element(pad);
  GstElementFactory* factory = element ? gst_element_get_factory(element) : nullptr;
  const gchar* klass = factory ? gst_element_factory_get_metadata(factory, GST_ELEMENT_METADATA_KLASS) : nullptr;
  if (klass && strstr(klass, "Muxer") && gst_pad_has_current_caps(pad)) name = GST_OBJECT_NAME(element);
  if (element) gst_object_unref(element);
  gst_object_unref(pad);
  return name;
}

const char* in_band_stream_format(GstPad* srcpad, Codec codec) {
  if (codec != Codec::H264 && codec != Codec::H265) return nullptr;
  const char* in_band = codec == Codec::H264 ? "avc3" : "hev1";
  Ref<GstCaps> peer(caps_past_parsers(srcpad));
  if (!peer || gst_caps_is_any(peer.get())) return nullptr;
  auto takes = [&](const char* format) {
    Ref<GstCaps> c(gst_caps_new_simple(ccm::catalog::caps_name(codec), "stream-format", G_TYPE_STRING, format,
                                       "alignment", G_TYPE_STRING, "au", nullptr));
    return gst_caps_can_intersect(peer.get(), c.get());
  };
  return !takes("byte-stream") && takes(in_band) ? in_band : nullptr;
}

// Whether caps from another encoder of the same stream describe a stream
// downstream can go on taking under its current caps: the same codec, size and
// stream format, with the parameter sets in band (byte-stream, avc3, hev1, AV1's
// OBU stream, VP9), differing only in what the stream itself carries at its next
// key frame (codec_data, profile, level, tier). Muxers that refuse any caps change
// (matroskamux, webmmux, mp4mux) then keep recording.
bool same_stream_in_band(GstCaps* next, GstCaps* current) {
  if (gst_caps_get_size(next) != 1 || gst_caps_get_size(current) != 1) return false;
  const GstStructure* a = gst_caps_get_structure(next, 0);
  const GstStructure* b = gst_caps_get_structure(current, 0);
  if (!gst_structure_has_name(a, gst_structure_get_name(b))) return false;
  const char* format = gst_structure_get_string(b, "stream-format");
  const bool in_band = gst_structure_has_name(b, "video/x-vp9") || gst_structure_has_name(b, "video/x-av1") ||
                       (format && (g_str_equal(format, "byte-stream") || g_str_equal(format, "avc3") ||
                                   g_str_equal(format, "hev1")));
  if (!in_band) return false;
  GstStructure* x = gst_structure_copy(a);
  GstStructure* y = gst_structure_copy(b);
  for (GstStructure* st : {x, y}) gst_structure_remove_fields(st, "codec_data", "profile", "level", "tier", nullptr);
  const bool same = gst_structure_is_equal(x, y);
  gst_structure_free(x);
  gst_structure_free(y);
  return same;
}

}  // namespace ccm::encbin
