// Hardware selection through GStreamer's registry: the detector reads a fixture
// sysfs tree (CCM_SYSFS_ROOT, set per test in meson.build), and hardware encoders
// are TEST DOUBLES (test_doubles.h) registered under the real element names.
#include "pipeline_util.h"
#include "test_doubles.h"

#include <gst/gst.h>
#include <gtest/gtest.h>

#include <string>

using ccm::test::probe_file;
using ccm::test::run_pipeline;
using ccm::test::temp_path;

namespace {

using ccm::test::passed_over;
using ccm::test::str_field;
using ccm::test::sysfs_fixture;
using ccm::test::sysfs_fixture_is;

// The software H.265 encoder ranked first: ours when built, else the stock one.
std::string software_h265() {
  GstElementFactory* f = gst_element_factory_find("ccmx265enc");
  if (!f) return "x265enc";
  gst_object_unref(f);
  return "ccmx265enc";
}

const char* kH265 = "videotestsrc num-buffers=5 ! video/x-raw,width=128,height=96 ! ccmencbin name=enc codec=h265 ";

// Intel iGPU (0000:00:02.0, renderD128), NVIDIA RTX 4090 (01:00.0, renderD129),
// AMD RX 7900 XTX (03:00.0, renderD130).
class Mix3 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!sysfs_fixture_is("mix3")) GTEST_SKIP() << "runs with CCM_SYSFS_ROOT=fixtures/sysfs/mix3";
    // What nvcodec and va would register on such a machine (for H.265).
    ASSERT_TRUE(ccm::test::register_hardware_double("nvh265enc", "x265enc"));
    ASSERT_TRUE(ccm::test::register_hardware_double("vah265enc", "x265enc"));
    ASSERT_TRUE(ccm::test::register_hardware_double("varenderD130h265enc", "x265enc"));
  }
};

TEST_F(Mix3, HardwareFirst) {
  const std::string out = temp_path("mix3.mkv");
  auto r = run_pipeline(std::string(kH265) + "! matroskamux ! filesink location=" + out);
  ASSERT_TRUE(r.eos) << r.error;
  const GstStructure* s = r.message("ccm-encoder-selected");
  ASSERT_NE(s, nullptr);
  gboolean hardware = FALSE;
  gst_structure_get_boolean(s, "hardware", &hardware);
  EXPECT_TRUE(hardware);
  EXPECT_EQ(str_field(s, "factory"), "nvh265enc");
  EXPECT_NE(str_field(s, "device").find("RTX 4090"), std::string::npos) << str_field(s, "device");
  // The new-API element of 1.22 is not registered here: passed over with its reason.
  EXPECT_NE(passed_over(s).find("nvcudah265enc: "), std::string::npos) << passed_over(s);
  auto p = probe_file(out);  // the double's bitstream is real
  EXPECT_TRUE(p.ok) << p.decoder_errors;
  EXPECT_EQ(p.frames, 5);
}

TEST_F(Mix3, GpuPicksThePerDeviceElement) {
  auto amd = run_pipeline(std::string(kH265) + "gpu=2 ! fakesink");
  ASSERT_TRUE(amd.eos) << amd.error;
  EXPECT_EQ(str_field(amd.message("ccm-encoder-selected"), "factory"), "varenderD130h265enc");
  auto intel = run_pipeline(std::string(kH265) + "gpu=0 ! fakesink");
  ASSERT_TRUE(intel.eos) << intel.error;
  EXPECT_EQ(str_field(intel.message("ccm-encoder-selected"), "factory"), "vah265enc");
}

TEST_F(Mix3, SoftwareOnly) {
  auto r = run_pipeline(std::string(kH265) + "hardware=software-only ! fakesink");
  ASSERT_TRUE(r.eos) << r.error;
  const GstStructure* s = r.message("ccm-encoder-selected");
  EXPECT_EQ(str_field(s, "factory"), software_h265());
  EXPECT_NE(passed_over(s).find("software-only"), std::string::npos) << passed_over(s);
}

TEST_F(Mix3, BitrateReachesTheHardwareElementInItsUnit) {
  guint seen = 0;
  auto r = run_pipeline("videotestsrc num-buffers=30 is-live=true ! video/x-raw,width=64,height=64 ! "
                        "ccmencbin name=enc codec=h265 bitrate=1234 ! fakesink",
                        60, [&](GstElement* pipeline) {
                          if (GstElement* e = ccm::test::element_in_bin(pipeline, "enc", "nvh265enc")) {
                            g_object_get(e, "bitrate", &seen, nullptr);
                            gst_object_unref(e);
                          }
                        });
  ASSERT_TRUE(r.eos) << r.error;
  EXPECT_EQ(seen, 1234u);  // nvh265enc takes kbit/s
}

// The H100 has no NVENC: nothing hardware is tried, and the reason says so.
class H100 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!sysfs_fixture_is("nvidia-h100")) GTEST_SKIP() << "runs with CCM_SYSFS_ROOT=fixtures/sysfs/nvidia-h100";
  }
};

TEST_F(H100, FallsToSoftwareAndSaysWhy) {
  auto r = run_pipeline(std::string(kH265) + "! fakesink");
  ASSERT_TRUE(r.eos) << r.error;
  const GstStructure* s = r.message("ccm-encoder-selected");
  EXPECT_EQ(str_field(s, "factory"), software_h265());
  const std::string why = passed_over(s);
  EXPECT_NE(why.find("H100"), std::string::npos) << why;
  EXPECT_NE(why.find("no hardware encoder"), std::string::npos) << why;
  // And what nvcodec registered here (on the real H100: decoders and cudaupload/download, no encoder).
  EXPECT_NE(why.find("nvcodec: "), std::string::npos) << why;
}

TEST_F(H100, HardwareOnlyIsAnErrorNamingTheFix) {
  auto r = run_pipeline(std::string(kH265) + "hardware=hardware-only ! fakesink");
  ASSERT_FALSE(r.eos);
  EXPECT_NE(r.error.find("no hardware encoder"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("hardware=auto"), std::string::npos) << r.error;
}

}  // namespace
