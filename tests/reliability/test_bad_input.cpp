// The bad-input table of docs/reliability.md, one test per row: what ccmencbin
// (and libccm's C API) do with absurd sizes, framerates, formats, bitrates,
// truncated dynamic_params, caps changes mid-stream and a downstream that takes
// no codec (the C API's rows: test_bad_input_capi.cpp). Every row must end (EOS or one error naming the cause), never crash
// or hang; each prints "ROW | input | outcome" for the table.
#include "pipeline_util.h"
#include "reliability_util.h"

#include <gst/gst.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <limits>
#include <string>
#include <vector>

using ccm::reliability::feed;
using ccm::reliability::Outcome;
using ccm::reliability::run;
using ccm::reliability::within;

namespace {

void row(const std::string& input, const Outcome& o) {
  std::printf("ROW | %s | %s\n", input.c_str(), o.summary().c_str());
}

const char* kRaw = "video/x-raw,format=I420";

// ---- sizes ---------------------------------------------------------------------

TEST(BadInput, ZeroByZeroCapsAreRefusedWithAnError) {
  within(60, "0x0 caps", [] {
    const Outcome o = feed("codec=h264", std::string(kRaw) + ",width=0,height=0,framerate=30/1", 3);
    row("caps 0x0", o);
    EXPECT_FALSE(o.timed_out);
    EXPECT_FALSE(o.eos && o.errors.empty() && o.frames_out > 0) << "0x0 frames cannot have been encoded";
    EXPECT_EQ(o.frames_out, 0u);
  });
}

TEST(BadInput, OneByOneIsEncoded) {
  within(60, "1x1", [] {
    for (const char* codec : {"h264", "vp9"}) {
      const Outcome o = feed(std::string("codec=") + codec, std::string(kRaw) + ",width=1,height=1,framerate=30/1", 10);
      row(std::string("1x1 I420, codec=") + codec, o);
      EXPECT_TRUE(o.eos) << o.summary();
      EXPECT_EQ(o.frames_out, o.frames_in) << o.summary();
      EXPECT_EQ(o.frames_in, 10u);
    }
  });
}

TEST(BadInput, Width16385EndsWithAnErrorOrEveryFrame) {
  within(120, "16385 wide", [] {
    const Outcome o = feed("codec=h264", std::string(kRaw) + ",width=16385,height=16,framerate=30/1", 3);
    row("16385x16 I420, codec=h264", o);
    // The error's debug text lists every candidate and why it was passed over.
    std::printf("%s\n", o.error().c_str());
    EXPECT_FALSE(o.timed_out);
    if (o.errors.empty()) EXPECT_EQ(o.frames_out, o.frames_in) << o.summary();
    else EXPECT_EQ(o.frames_out, 0u) << "an error after some frames: " << o.summary();
  });
}

// ---- framerates ----------------------------------------------------------------

TEST(BadInput, FramerateZeroGetsANominalRate) {
  within(60, "framerate 0/1", [] {
    const Outcome o = feed("codec=h264", std::string(kRaw) + ",width=64,height=48,framerate=0/1", 10);
    row("framerate=0/1, only the first frame timestamped", o);
    EXPECT_TRUE(o.eos) << o.summary();
    EXPECT_EQ(o.frames_out, 10u) << o.summary();
  });
}

TEST(BadInput, HugeFramerate) {
  within(60, "huge framerate", [] {
    for (const char* rate : {"1000000/1", "2147483647/1", "1/2147483647"}) {
      const Outcome o = feed("codec=h264", std::string(kRaw) + ",width=64,height=48,framerate=" + rate, 10);
      row(std::string("framerate=") + rate, o);
      EXPECT_FALSE(o.timed_out);
      if (o.errors.empty()) {
        EXPECT_EQ(o.frames_out, o.frames_in) << o.summary();
      }
    }
  });
}

// ---- formats -------------------------------------------------------------------

TEST(BadInput, MemoryWithNoConverterIsRefusedByName) {
  within(60, "GLMemory", [] {
    const Outcome o = feed("codec=h264", "video/x-raw(memory:GLMemory),format=RGBA,width=64,height=48,framerate=30/1", 3);
    row("video/x-raw(memory:GLMemory)", o);
    ASSERT_FALSE(o.errors.empty()) << o.summary();
    EXPECT_NE(o.error().find("memory:GLMemory"), std::string::npos) << o.error();
    EXPECT_EQ(o.frames_out, 0u);
  });
}

TEST(BadInput, FormatsVideoconvertCannotTake) {
  within(60, "odd formats", [] {
    // A packed format no converter handles in 1.22, and one GStreamer does not know.
    for (const char* caps : {"video/x-raw,format=NV12_4L4,width=64,height=48,framerate=30/1",
                             "video/x-raw,format=NOT-A-FORMAT,width=64,height=48,framerate=30/1",
                             "video/x-bayer,format=rggb,width=64,height=48,framerate=30/1"}) {
      const Outcome o = feed("codec=h264", caps, 3);
      row(std::string(caps) + (o.caps_refused ? " (caps event refused: upstream gets not-negotiated)" : ""), o);
      EXPECT_FALSE(o.timed_out);
      if (o.errors.empty()) {
        EXPECT_EQ(o.frames_out, o.frames_in) << o.summary();
      }
    }
  });
}

// ---- bitrates ------------------------------------------------------------------

// bitrate's range starts at 1 (the valid values, as gst-inspect shows them):
// GObject refuses 0 with a warning naming the property, and the stream goes on.
TEST(BadInput, BitrateZeroIsRefusedAndTheStreamGoesOn) {
  within(60, "bitrate 0", [] {
    guint kept = 0;
    const Outcome o = run("videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! ccmencbin name=enc codec=h264 "
                          "bitrate=0 ! fakesink",
                          30, [&](GstElement* p) {
                            GstElement* enc = gst_bin_get_by_name(GST_BIN(p), "enc");
                            g_object_get(enc, "bitrate", &kept, nullptr);
                            gst_object_unref(enc);
                          });
    row("bitrate=0 at start", o);
    EXPECT_TRUE(o.eos) << o.summary();
    EXPECT_EQ(o.frames_out, 10u) << o.summary();
    EXPECT_EQ(kept, 2000u) << "the default stays";
  });
}

TEST(BadInput, BitrateZeroWhilePlayingKeepsTheOldOne) {
  within(60, "bitrate 0 live", [] {
    static guint kept = 0;
    const Outcome o = run(
        "videotestsrc num-buffers=60 ! video/x-raw,width=64,height=48,framerate=30/1 ! ccmencbin name=enc codec=h264 "
        "bitrate=500 ! fakesink",
        30, [](GstElement* p) {
          GstElement* enc = gst_bin_get_by_name(GST_BIN(p), "enc");
          GstPad* pad = gst_element_get_static_pad(enc, "sink");
          gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER,
                            [](GstPad* pad, GstPadProbeInfo*, gpointer) {
                              GstElement* e = gst_pad_get_parent_element(pad);
                              g_object_set(e, "bitrate", 0u, nullptr);  // GLib: out of range
                              g_object_get(e, "bitrate", &kept, nullptr);
                              gst_object_unref(e);
                              return GST_PAD_PROBE_REMOVE;
                            },
                            nullptr, nullptr);
          gst_object_unref(pad);
          gst_object_unref(enc);
        });
    row("bitrate=0 while PLAYING", o);
    EXPECT_TRUE(o.eos) << o.summary();
    EXPECT_EQ(o.frames_out, 60u);
    EXPECT_EQ(kept, 500u) << "the old bitrate stays";
  });
}

TEST(BadInput, BitrateMaxIsClampedToEachEncoder) {
  within(120, "bitrate max", [] {
    for (const char* codec : {"h264", "vp9", "h265"}) {
      const Outcome o = run(std::string("videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! ccmencbin "
                                        "name=enc bitrate=4294967295 codec=") + codec + " ! fakesink");
      row(std::string("bitrate=4294967295, codec=") + codec, o);
      EXPECT_TRUE(o.eos) << o.summary();
      EXPECT_EQ(o.frames_out, 10u) << o.summary();
    }
  });
}

TEST(BadInput, AbsurdBandwidthEstimatesAreIgnored) {
  within(60, "bandwidth estimates", [] {
    const Outcome o = run(
        "videotestsrc num-buffers=60 ! video/x-raw,width=64,height=48,framerate=30/1 ! ccmencbin name=enc codec=h265 "
        "candidates=ccmx265enc ! fakesink",
        30, {}, [sent = 0](GstElement* p, double t) mutable {
          if (t < 0.3) return true;
          GstElement* enc = gst_bin_get_by_name(GST_BIN(p), "enc");
          GstPad* src = gst_element_get_static_pad(enc, "src");
          for (double bps : {0.0, -5.0, 1e300, std::numeric_limits<double>::quiet_NaN()})
            gst_pad_send_event(src, gst_event_new_custom(GST_EVENT_CUSTOM_UPSTREAM,
                                                         gst_structure_new("ccm-bandwidth-estimate", "bitrate",
                                                                           G_TYPE_DOUBLE, bps, nullptr)));
          gst_pad_send_event(src, gst_event_new_custom(GST_EVENT_CUSTOM_UPSTREAM,
                                                       gst_structure_new("ccm-bandwidth-estimate", "bitrate",
                                                                         G_TYPE_STRING, "fast", nullptr)));
          gst_object_unref(src);
          gst_object_unref(enc);
          return ++sent < 1;
        });
    row("ccm-bandwidth-estimate of 0, -5, 1e300, NaN, \"fast\"", o);
    EXPECT_TRUE(o.eos) << o.summary();
    EXPECT_EQ(o.frames_out, 60u) << o.summary();
  });
}

// ---- stream changes and downstream -----------------------------------------------

TEST(BadInput, CapsChangeMidStreamKeepsEveryFrame) {
  within(60, "caps change", [] {
    for (const char* codec : {"h264", "vp9", "h265"}) {
      const Outcome o = feed(std::string("codec=") + codec, std::string(kRaw) + ",width=64,height=48,framerate=30/1", 20,
                             "fakesink", std::string(kRaw) + ",width=96,height=64,framerate=25/1");
      row(std::string("caps 64x48@30 -> 96x64@25 at frame 10, codec=") + codec, o);
      EXPECT_TRUE(o.eos) << o.summary();
      EXPECT_EQ(o.frames_out, 20u) << o.summary();
    }
  });
}

TEST(BadInput, DownstreamThatRefusesEveryCodec) {
  within(60, "downstream refuses", [] {
    // Linked without checks, as a sink that changes its mind after linking: its
    // caps query then says image/png only.
    const Outcome o = run("videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! ccmencbin name=enc", 30,
                          [](GstElement* p) {
                            GstElement* sink = gst_element_factory_make("appsink", nullptr);
                            GstCaps* png = gst_caps_from_string("image/png");
                            g_object_set(sink, "caps", png, "sync", FALSE, nullptr);
                            gst_caps_unref(png);
                            gst_bin_add(GST_BIN(p), sink);
                            GstElement* enc = gst_bin_get_by_name(GST_BIN(p), "enc");
                            GstPad* src = gst_element_get_static_pad(enc, "src");
                            GstPad* sinkpad = gst_element_get_static_pad(sink, "sink");
                            gst_pad_link_full(src, sinkpad, GST_PAD_LINK_CHECK_NOTHING);
                            gst_object_unref(sinkpad);
                            gst_object_unref(src);
                            gst_object_unref(enc);
                          });
    row("downstream takes only image/png (codec=auto)", o);
    ASSERT_FALSE(o.errors.empty()) << o.summary();
    EXPECT_NE(o.error().find("downstream accepts none of"), std::string::npos) << o.error();
  });
}

TEST(BadInput, ForcedCodecDownstreamRefuses) {
  within(60, "forced codec refused", [] {
    const Outcome o = run("videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! ccmencbin name=enc codec=vp9 ! "
                          "video/x-h264 ! fakesink");
    row("codec=vp9, downstream takes only video/x-h264", o);
    ASSERT_FALSE(o.errors.empty()) << o.summary();
    EXPECT_NE(o.error().find("vp9"), std::string::npos) << o.error();
  });
}

}  // namespace

int main(int argc, char** argv) {
  ccm::test::init_gstreamer(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  gst_deinit();
  return rc;
}
