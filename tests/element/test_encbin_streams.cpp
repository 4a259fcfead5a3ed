// Recording across an encoder change into an encoder whose stream differs at each
// start (issue 16's third double): a TEST DOUBLE (test_doubles.h, settings_per_start)
// whose test encode and session emit other parameter sets, codec_data and profile
// than each other and than the encoder before it. A requested switch or a failover
// into it while recording through mp4mux, matroskamux (H.264, H.265, AV1) and webmmux
// (VP9, AV1): every frame is in the file and ffmpeg decodes it without an error.
#include "pipeline_util.h"
#include "test_doubles.h"

#include <gst/gst.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>

namespace {

namespace fs = std::filesystem;

constexpr int kFrames = 60;
constexpr int kChangeAt = 20;

struct StreamCase {
  const char* name;
  const char* codec;
  const char* real;                // the encoder before it (a switch) or the one it replaces
  const char* settings_per_start;  // the hostile double's: test encode | session | ...
  const char* muxer;
  const char* ext;
  bool failover;  // a failover of a dying double into it, else a switch requested from `real`
};

// Each set differs from the one before and from the real encoder's low-latency
// settings (x264enc/x265enc ultrafast, vp9enc realtime): another profile (High
// against Constrained Baseline), other SPS/PPS, other VP9 frame headers.
const StreamCase kCases[] = {
    {"h264_mp4mux_switch", "h264", "x264enc", "speed-preset=faster|speed-preset=medium", "mp4mux", "mp4", false},
    {"h264_matroskamux_failover", "h264", "x264enc", "speed-preset=faster|speed-preset=medium", "matroskamux", "mkv",
     true},
    {"h265_mp4mux_failover", "h265", "x265enc", "speed-preset=fast|speed-preset=slower", "mp4mux", "mp4", true},
    {"h265_matroskamux_switch", "h265", "x265enc", "speed-preset=fast|speed-preset=slower", "matroskamux", "mkv",
     false},
    {"vp9_webmmux_switch", "vp9", "vp9enc", "cpu-used=8|cpu-used=4 error-resilient=default", "webmmux", "webm", false},
    {"vp9_webmmux_failover", "vp9", "vp9enc", "cpu-used=8|cpu-used=4 error-resilient=default", "webmmux", "webm",
     true},
    // AV1 (issue 16: "AV1 into webmmux across a switch"): another preset and key-frame
    // distance per start, so other sequence headers.
    {"av1_webmmux_switch", "av1", "ccmsvtav1enc", "speed-preset=12|speed-preset=10 keyframe-interval=45", "webmmux",
     "webm", false},
    {"av1_matroskamux_failover", "av1", "ccmsvtav1enc", "speed-preset=12|speed-preset=10 keyframe-interval=45",
     "matroskamux", "mkv", true},
};

// Distinct sequence parameter sets in an H.264/H.265 file (its stream in Annex B
// through ffmpeg's mp4toannexb filter, which also writes out the codec_data's):
// 2 and more when the stream's configuration changed within the file.
int distinct_sps(const std::string& file, const std::string& codec) {
  const std::string annexb = file + ".annexb";
  const std::string bsf = codec == "h264" ? "h264_mp4toannexb" : "hevc_mp4toannexb";
  const gchar* argv[] = {"ffmpeg", "-v", "error", "-y", "-i", file.c_str(), "-map", "0:v:0", "-c", "copy",
                         "-bsf:v", bsf.c_str(), "-f", codec == "h264" ? "h264" : "hevc", annexb.c_str(), nullptr};
  gint status = -1;
  if (!g_spawn_sync(nullptr, const_cast<gchar**>(argv), nullptr, G_SPAWN_SEARCH_PATH, nullptr, nullptr, nullptr,
                    nullptr, &status, nullptr) ||
      status != 0)
    return -1;
  gchar* data = nullptr;
  gsize size = 0;
  if (!g_file_get_contents(annexb.c_str(), &data, &size, nullptr)) return -1;
  const std::string bytes(data, size);
  g_free(data);
  std::set<std::string> sps;
  for (size_t at = bytes.find(std::string("\0\0\1", 3)); at != std::string::npos;) {
    const size_t start = at + 3, next = bytes.find(std::string("\0\0\1", 3), start);
    std::string nal = bytes.substr(start, next == std::string::npos ? std::string::npos : next - start);
    while (!nal.empty() && nal.back() == 0) nal.pop_back();  // the next start code's leading zero
    const int type = nal.empty() ? -1 : codec == "h264" ? (nal[0] & 0x1f) : ((guint8(nal[0]) >> 1) & 0x3f);
    if (type == (codec == "h264" ? 7 : 33)) sps.insert(nal);
    at = next;
  }
  return int(sps.size());
}

class IntoAnotherStream : public ::testing::TestWithParam<StreamCase> {
 protected:
  void SetUp() override {
    gchar* dir = g_dir_make_tmp("ccm-streams-XXXXXX", nullptr);
    dir_ = dir;
    g_free(dir);
    g_setenv("XDG_CACHE_HOME", (dir_ + "/cache").c_str(), TRUE);  // empty probe cache: a test encode each time
    g_setenv("XDG_RUNTIME_DIR", (dir_ + "/run").c_str(), TRUE);
    ccm::test::clear_double_behaviours();
  }
  void TearDown() override {
    ccm::test::clear_double_behaviours();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_P(IntoAnotherStream, EveryFrameRecordedAndDecodable) {
  const StreamCase& c = GetParam();
  const std::string hostile = std::string("testrestart_") + c.codec, dying = std::string("testdying_") + c.codec;
  ASSERT_TRUE(ccm::test::register_hardware_double(hostile.c_str(), c.real));
  ASSERT_TRUE(ccm::test::register_hardware_double(dying.c_str(), c.real));
  ccm::test::set_double_behaviour(hostile, {.settings_per_start = c.settings_per_start});
  ccm::test::set_double_behaviour(dying, {.fail_after = kChangeAt});
  const int starts_before = ccm::test::double_starts(hostile);
  const std::string out = ccm::test::temp_path(std::string("streams-") + c.name + "." + c.ext);
  const std::string first = c.failover ? dying + "," + hostile : std::string(c.real);
  ccm::test::RunOptions options;
  options.timeout_s = 120;
  if (!c.failover)
    options.before_play = [&hostile](GstElement* pipeline) {
      ccm::test::at_frame(pipeline, kChangeAt,
                          [hostile](GstElement* enc) { g_object_set(enc, "candidates", hostile.c_str(), nullptr); });
    };
  auto r = ccm::test::run_pipeline(
      "videotestsrc pattern=ball num-buffers=" + std::to_string(kFrames) +
          " ! video/x-raw,width=128,height=96,framerate=30/1 ! ccmencbin name=enc codec=" + c.codec +
          " candidates=" + first + " ! " + c.muxer + " ! filesink location=" + out,
      options);
  ASSERT_TRUE(r.eos) << r.error;
  const GstStructure* sw = r.message("ccm-encoder-switched");
  ASSERT_NE(sw, nullptr) << "no encoder change";
  EXPECT_EQ(ccm::test::str_field(sw, "to"), hostile);
  // Its test encode and its session: two starts, two stream configurations.
  EXPECT_GE(ccm::test::double_starts(hostile) - starts_before, 2);
  EXPECT_EQ(ccm::test::u64_field(r.stats, "frames-out"), (guint64)kFrames);
  const auto p = ccm::test::probe_file(out);
  EXPECT_TRUE(p.ok) << p.decoder_errors;
  EXPECT_EQ(p.frames, kFrames);
  EXPECT_EQ(p.codec, std::string(c.codec) == "h265" ? "hevc" : c.codec);
  // The file does carry two stream configurations (ffmpeg decoded across them).
  if (std::string(c.codec) == "h264" || std::string(c.codec) == "h265") {
    EXPECT_GE(distinct_sps(out, c.codec), 2);
  }
}

INSTANTIATE_TEST_SUITE_P(Muxers, IntoAnotherStream, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
