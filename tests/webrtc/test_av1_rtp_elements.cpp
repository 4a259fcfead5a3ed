// ccmrtpav1pay ! ccmrtpav1depay on a real AV1 encoder: key and delta frames larger
// than the MTU come back with bit-exact OBUs, packets respect the MTU, one marker
// per temporal unit, and the depayloaded stream decodes (ffmpeg -xerror, dav1d).
#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "pipeline_util.h"
#include "rtp/av1_rtp.h"

using namespace ccm::rtp::av1;

namespace {

constexpr guint kMtu = 1200;

struct Unit {
  std::vector<uint8_t> bytes;
  bool marker = false;  // RTP only
  bool delta = false;
};

struct Collected {
  std::mutex lock;
  std::vector<Unit> units;
};

GstFlowReturn on_sample(GstAppSink* sink, gpointer data) {
  auto* out = static_cast<Collected*>(data);
  GstSample* sample = gst_app_sink_pull_sample(sink);
  GstBuffer* buffer = gst_sample_get_buffer(sample);
  Unit unit;
  GstMapInfo map;
  gst_buffer_map(buffer, &map, GST_MAP_READ);
  unit.bytes.assign(map.data, map.data + map.size);
  gst_buffer_unmap(buffer, &map);
  unit.delta = GST_BUFFER_FLAG_IS_SET(buffer, GST_BUFFER_FLAG_DELTA_UNIT);
  if (unit.bytes.size() >= 2) unit.marker = unit.bytes[1] & 0x80;
  {
    std::lock_guard guard(out->lock);
    out->units.push_back(std::move(unit));
  }
  gst_sample_unref(sample);
  return GST_FLOW_OK;
}

void collect(GstElement* pipeline, const char* name, Collected* into) {
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), name);
  ASSERT_NE(sink, nullptr);
  GstAppSinkCallbacks callbacks{};
  callbacks.new_sample = on_sample;
  gst_app_sink_set_callbacks(GST_APP_SINK(sink), &callbacks, into, nullptr);
  gst_object_unref(sink);
}

// OBUs that travel: no temporal delimiter, padding or tile list; size fields on.
std::vector<uint8_t> sent_obus(std::span<const uint8_t> tu) {
  std::vector<uint8_t> out;
  const auto obus = parse_obus(tu);
  EXPECT_TRUE(obus);
  if (!obus) return out;
  for (const Obu& o : *obus) {
    if (o.type == ObuType::TemporalDelimiter || o.type == ObuType::Padding ||
        o.type == ObuType::TileList)
      continue;
    out.push_back(o.header[0] | 0x02);
    if (o.header.size() == 2) out.push_back(o.header[1]);
    uint8_t leb[8];
    const size_t n = write_leb128(o.payload.size(), leb);
    out.insert(out.end(), leb, leb + n);
    out.insert(out.end(), o.payload.begin(), o.payload.end());
  }
  return out;
}

std::string av1_encoder() {
  for (const char* f : {"ccmsvtav1enc", "av1enc"}) {
    GstElementFactory* factory = gst_element_factory_find(f);
    if (factory) {
      gst_object_unref(factory);
      return std::string(f) == "av1enc" ? "av1enc cpu-used=8 usage-profile=realtime" : f;
    }
  }
  return "";
}

}  // namespace

TEST(Av1RtpElements, RoundTripIsBitExactAndDecodes) {
  const std::string encoder = av1_encoder();
  if (encoder.empty()) GTEST_SKIP() << "no AV1 encoder";
  // snow: every frame, key or delta, is far larger than the MTU.
  const int frames = 20;
  const std::string description =
      "videotestsrc num-buffers=" + std::to_string(frames) +
      " pattern=snow ! video/x-raw,width=320,height=240,framerate=30/1 ! " + encoder +
      " ! av1parse ! video/x-av1,stream-format=obu-stream,alignment=tu ! tee name=t "
      "t. ! queue ! appsink name=orig sync=false "
      "t. ! queue ! ccmrtpav1pay mtu=" + std::to_string(kMtu) + " ! tee name=r "
      "r. ! queue ! appsink name=rtp sync=false "
      "r. ! queue ! ccmrtpav1depay ! appsink name=back sync=false";
  GError* error = nullptr;
  GstElement* pipeline = gst_parse_launch(description.c_str(), &error);
  ASSERT_NE(pipeline, nullptr) << (error ? error->message : "");
  Collected orig, rtp, back;
  collect(pipeline, "orig", &orig);
  collect(pipeline, "rtp", &rtp);
  collect(pipeline, "back", &back);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND,
                                               static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  ASSERT_NE(msg, nullptr) << "timeout";
  EXPECT_EQ(GST_MESSAGE_TYPE(msg), GST_MESSAGE_EOS);
  gst_message_unref(msg);
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);

  ASSERT_EQ(orig.units.size(), static_cast<size_t>(frames));
  ASSERT_EQ(back.units.size(), orig.units.size());

  size_t markers = 0;
  for (const Unit& p : rtp.units) {
    EXPECT_LE(p.bytes.size(), kMtu);
    markers += p.marker;
  }
  EXPECT_EQ(markers, orig.units.size());

  bool big_key = false, big_delta = false;
  std::ofstream file(ccm::test::temp_path("av1_rtp_roundtrip.obu"), std::ios::binary);
  for (size_t i = 0; i < orig.units.size(); ++i) {
    const auto& o = orig.units[i].bytes;
    const auto& b = back.units[i].bytes;
    if (o.size() > kMtu) (orig.units[i].delta ? big_delta : big_key) = true;
    ASSERT_GE(b.size(), 2u);
    EXPECT_EQ(b[0], 0x12) << "temporal delimiter first";
    EXPECT_EQ(std::vector<uint8_t>(b.begin() + 2, b.end()), sent_obus(o)) << "unit " << i;
    EXPECT_EQ(back.units[i].delta, orig.units[i].delta) << "unit " << i;
    file.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
  file.close();
  EXPECT_TRUE(big_key);
  EXPECT_TRUE(big_delta);
  EXPECT_GT(rtp.units.size(), 2 * orig.units.size()) << "large units are fragmented";

  auto probe = ccm::test::probe_file(ccm::test::temp_path("av1_rtp_roundtrip.obu"));
  EXPECT_TRUE(probe.ok) << probe.decoder_errors;
  EXPECT_EQ(probe.frames, frames);
  EXPECT_EQ(probe.width, 320);
  EXPECT_EQ(probe.height, 240);
  const std::string dav1d = "dav1d -q -i " + ccm::test::temp_path("av1_rtp_roundtrip.obu") +
                            " -o /dev/null --muxer null 2>&1";
  if (gchar* path = g_find_program_in_path("dav1d")) {
    g_free(path);
    EXPECT_EQ(std::system(dav1d.c_str()), 0);
  }
}

// Packets lost on the way: the depayloader drops the broken units until the next
// key frame and asks upstream for one (the RTP session makes that a PLI).
TEST(Av1RtpElements, LossDropsUntilKeyFrameAndAsksForOne) {
  const std::string encoder = av1_encoder();
  if (encoder.empty()) GTEST_SKIP() << "no AV1 encoder";
  const std::string description =
      "videotestsrc num-buffers=30 pattern=snow ! video/x-raw,width=320,height=240,framerate=30/1 ! " +
      encoder + " ! av1parse ! video/x-av1,stream-format=obu-stream,alignment=tu ! ccmrtpav1pay mtu=" +
      std::to_string(kMtu) + " name=pay ! identity name=loss ! ccmrtpav1depay name=depay ! appsink name=back sync=false";
  GstElement* pipeline = gst_parse_launch(description.c_str(), nullptr);
  ASSERT_NE(pipeline, nullptr);
  Collected back;
  collect(pipeline, "back", &back);

  // Drop the 160th RTP packet (inside the third unit, a delta frame, with snow at 320x240); mark the next one DISCONT as
  // rtpjitterbuffer would.
  struct LossState {
    int count = 0;
    int key_requests = 0;
  } state;
  GstElement* loss = gst_bin_get_by_name(GST_BIN(pipeline), "loss");
  GstPad* loss_sink = gst_element_get_static_pad(loss, "sink");
  gst_pad_add_probe(
      loss_sink, GST_PAD_PROBE_TYPE_BUFFER,
      [](GstPad*, GstPadProbeInfo* info, gpointer data) -> GstPadProbeReturn {
        auto* s = static_cast<LossState*>(data);
        ++s->count;
        if (s->count == 160) return GST_PAD_PROBE_DROP;
        if (s->count == 161) {
          GstBuffer* b = gst_buffer_make_writable(GST_PAD_PROBE_INFO_BUFFER(info));
          GST_BUFFER_FLAG_SET(b, GST_BUFFER_FLAG_DISCONT);
          GST_PAD_PROBE_INFO_DATA(info) = b;
        }
        return GST_PAD_PROBE_OK;
      },
      &state, nullptr);
  GstElement* pay = gst_bin_get_by_name(GST_BIN(pipeline), "pay");
  GstPad* pay_src = gst_element_get_static_pad(pay, "src");
  gst_pad_add_probe(
      pay_src, GST_PAD_PROBE_TYPE_EVENT_UPSTREAM,
      [](GstPad*, GstPadProbeInfo* info, gpointer data) -> GstPadProbeReturn {
        if (gst_video_event_is_force_key_unit(GST_PAD_PROBE_INFO_EVENT(info)))
          static_cast<LossState*>(data)->key_requests++;
        return GST_PAD_PROBE_OK;
      },
      &state, nullptr);
  gst_object_unref(pay_src);
  gst_object_unref(pay);
  gst_object_unref(loss_sink);
  gst_object_unref(loss);

  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND,
                                               static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(GST_MESSAGE_TYPE(msg), GST_MESSAGE_EOS);
  gst_message_unref(msg);
  gst_object_unref(bus);
  GstElement* depay = gst_bin_get_by_name(GST_BIN(pipeline), "depay");
  guint64 dropped = 0;
  g_object_get(depay, "dropped", &dropped, nullptr);
  gst_object_unref(depay);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);

  EXPECT_GE(state.key_requests, 1);
  EXPECT_GE(dropped, 1u);
  EXPECT_LT(back.units.size(), 30u);
  EXPECT_GE(back.units.size(), 2u);  // the units before the loss
  for (const Unit& u : back.units) EXPECT_TRUE(parse_obus(u.bytes));
}

int main(int argc, char** argv) {
  ccm::test::init_gstreamer(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
