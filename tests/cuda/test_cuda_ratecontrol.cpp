// ccmratecontrol on frames in CUDA memory: cudaupload ! ccmratecontrol !
// cudadownload ! encoder. The element must negotiate memory:CUDAMemory, analyse
// on the GPU (stats say isa=cuda) and give, frame by frame, the same analysis as
// the same frames in system memory; every frame reaches the encoder. Exits 77
// without a GPU or without nvcodec's cudaupload/cudadownload.
#include <gst/gst.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/analysis_cuda.h"
#include "pipeline_util.h"

namespace {

struct FrameReport {
  guint64 number = 0;
  double mafd = 0, activity = 0, complexity = 0;
  guint skip = 0, fast = 0, full = 0;
};

struct PipelineRun {
  bool eos = false;
  std::string error;
  std::vector<FrameReport> frames;
  std::string sink_caps;  // what ccmratecontrol's sink pad negotiated
  std::string isa;        // from its stats
  guint64 frames_in = 0;
  int encoded = 0;        // buffers out of the encoder
};

GstPadProbeReturn count_buffer(GstPad*, GstPadProbeInfo*, gpointer data) {
  ++*static_cast<int*>(data);
  return GST_PAD_PROBE_OK;
}

PipelineRun run_pipeline_collecting(const std::string& description) {
  PipelineRun r;
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(description.c_str(), &err);
  if (!pipeline) {
    r.error = err ? err->message : "parse failed";
    g_clear_error(&err);
    return r;
  }
  GstElement* rc = gst_bin_get_by_name(GST_BIN(pipeline), "rc");
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstPad* enc_src = gst_element_get_static_pad(enc, "src");
  gst_pad_add_probe(enc_src, GST_PAD_PROBE_TYPE_BUFFER, count_buffer, &r.encoded, nullptr);
  gst_object_unref(enc_src);
  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  for (;;) {
    GstMessage* m = gst_bus_timed_pop_filtered(
        bus, 60 * GST_SECOND, static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_ELEMENT));
    if (!m) {
      r.error = "timeout";
      break;
    }
    if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ELEMENT) {
      const GstStructure* s = gst_message_get_structure(m);
      if (s && gst_structure_has_name(s, "ccm-ratecontrol")) {
        FrameReport f;
        gst_structure_get_uint64(s, "frame-number", &f.number);
        gst_structure_get_double(s, "mafd", &f.mafd);
        gst_structure_get_double(s, "spatial-activity", &f.activity);
        gst_structure_get_double(s, "complexity", &f.complexity);
        gst_structure_get_uint(s, "skip-blocks", &f.skip);
        gst_structure_get_uint(s, "fast-blocks", &f.fast);
        gst_structure_get_uint(s, "full-blocks", &f.full);
        r.frames.push_back(f);
      }
      gst_message_unref(m);
      continue;
    }
    if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
      GError* e = nullptr;
      gchar* dbg = nullptr;
      gst_message_parse_error(m, &e, &dbg);
      r.error = std::string(e->message) + " | " + (dbg ? dbg : "");
      g_clear_error(&e);
      g_free(dbg);
    } else {
      r.eos = true;
    }
    gst_message_unref(m);
    break;
  }
  GstPad* sink = gst_element_get_static_pad(rc, "sink");
  if (GstCaps* caps = gst_pad_get_current_caps(sink)) {
    gchar* s = gst_caps_to_string(caps);
    r.sink_caps = s;
    g_free(s);
    gst_caps_unref(caps);
  }
  gst_object_unref(sink);
  GstStructure* stats = nullptr;
  g_object_get(rc, "stats", &stats, nullptr);
  if (stats) {
    if (const gchar* isa = gst_structure_get_string(stats, "isa")) r.isa = isa;
    gst_structure_get_uint64(stats, "frames-in", &r.frames_in);
    gst_structure_free(stats);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(enc);
  gst_object_unref(rc);
  gst_object_unref(pipeline);
  return r;
}

// An encoder that every machine running this has: x264enc, else ours.
std::string encoder() {
  if (GstElementFactory* f = gst_element_factory_find("x264enc")) {
    gst_object_unref(f);
    return "x264enc name=enc speed-preset=ultrafast tune=zerolatency bitrate=800";
  }
  return "ccmx265enc name=enc";
}

constexpr int kFrames = 40;

std::string source(const char* format) {
  return "videotestsrc num-buffers=" + std::to_string(kFrames) + " pattern=ball ! video/x-raw,format=" + format +
         ",width=352,height=290,framerate=30/1";
}

void expect_same_analysis(const PipelineRun& cpu, const PipelineRun& gpu) {
  ASSERT_EQ(cpu.frames.size(), gpu.frames.size());
  for (size_t i = 0; i < cpu.frames.size(); ++i) {
    SCOPED_TRACE("frame " + std::to_string(i));
    EXPECT_EQ(cpu.frames[i].number, gpu.frames[i].number);
    EXPECT_EQ(cpu.frames[i].mafd, gpu.frames[i].mafd);
    EXPECT_EQ(cpu.frames[i].activity, gpu.frames[i].activity);
    EXPECT_NEAR(cpu.frames[i].complexity, gpu.frames[i].complexity, 1e-9 * std::max(1.0, cpu.frames[i].complexity));
    EXPECT_EQ(cpu.frames[i].skip, gpu.frames[i].skip);
    EXPECT_EQ(cpu.frames[i].fast, gpu.frames[i].fast);
    EXPECT_EQ(cpu.frames[i].full, gpu.frames[i].full);
  }
}

class CudaRateControl : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaRateControl, AnalysesCudaMemoryOnTheGpuLikeTheCpu) {
  const char* format = GetParam();
  const std::string rc = "ccmratecontrol name=rc mode=passthrough message-interval=1";
  const std::string gpu_pipeline = source(format) + " ! cudaupload ! video/x-raw(memory:CUDAMemory) ! " + rc +
                                   " ! cudadownload ! video/x-raw ! videoconvert ! " + encoder() + " ! fakesink";
  const std::string cpu_pipeline = source(format) + " ! " + rc + " ! videoconvert ! " + encoder() + " ! fakesink";
  const PipelineRun gpu = run_pipeline_collecting(gpu_pipeline);
  ASSERT_TRUE(gpu.eos) << gpu.error << "\n" << gpu_pipeline;
  EXPECT_NE(gpu.sink_caps.find("memory:CUDAMemory"), std::string::npos) << gpu.sink_caps;
  EXPECT_EQ(gpu.isa, "cuda");
  EXPECT_EQ(gpu.frames_in, static_cast<guint64>(kFrames));
  EXPECT_EQ(gpu.encoded, kFrames);

  const PipelineRun cpu = run_pipeline_collecting(cpu_pipeline);
  ASSERT_TRUE(cpu.eos) << cpu.error;
  EXPECT_EQ(cpu.sink_caps.find("memory:CUDAMemory"), std::string::npos) << cpu.sink_caps;
  EXPECT_NE(cpu.isa, "cuda");
  ASSERT_GE(gpu.frames.size(), static_cast<size_t>(kFrames) - 1);
  expect_same_analysis(cpu, gpu);
  double moving = 0;
  for (const auto& f : gpu.frames) moving += f.mafd;
  EXPECT_GT(moving, 0.0) << "the ball moves";
}

INSTANTIATE_TEST_SUITE_P(Formats, CudaRateControl, ::testing::Values("NV12", "I420", "P010_10LE"));

}  // namespace

int main(int argc, char** argv) {
  std::string why;
  if (!ccm::cuda::device_available(&why)) {
    std::printf("SKIP: no CUDA device (%s)\n", why.c_str());
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  ccm::test::init_gstreamer(&argc, &argv);
  for (const char* name : {"cudaupload", "cudadownload"}) {
    GstElementFactory* f = gst_element_factory_find(name);
    if (!f) {
      std::printf("SKIP: no %s (nvcodec) here\n", name);
      return 77;
    }
    gst_object_unref(f);
  }
  const int rc = RUN_ALL_TESTS();
  gst_deinit();
  return rc;
}
