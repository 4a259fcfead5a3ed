// Helpers for element tests: run a gst-launch style pipeline to the end with the
// ccm plugin registered statically, and check files with real decoders.
#pragma once

#include <gst/gst.h>

#include <functional>
#include <string>
#include <vector>

namespace ccm::test {

// gst_init + static registration of the ccm plugin; call from main().
void init_gstreamer(int* argc, char*** argv);

struct RunResult {
  bool eos = false;                  // reached EOS without error
  std::string error;                 // first error: "message | debug"
  std::string error_source;          // name of the element that posted it
  std::vector<std::string> warnings; // "element: message | debug", in order
  std::vector<GstStructure*> element_messages;  // owned copies, freed by the destructor
  GstStructure* stats = nullptr;     // ccmencbin "stats" read after EOS (if an element "enc" exists)
  RunResult() = default;
  RunResult(const RunResult&) = delete;
  RunResult(RunResult&&) noexcept;
  ~RunResult();
  const GstStructure* message(const char* name) const;  // first element message of that name
  int count(const char* name) const;                    // element messages of that name
};

struct RunOptions {
  int timeout_s = 120;
  std::function<void(GstElement* pipeline)> before_play;  // before PLAYING: pad probes, signals
  std::function<void(GstElement* pipeline)> on_playing;   // once PLAYING: live property changes
  std::string stats_from = "enc";  // the element whose "stats" is read after the run
};

// Runs `description` (gst-launch syntax) until EOS or error or timeout.
RunResult run_pipeline(const std::string& description, const RunOptions& options);

// Runs `description` (gst-launch syntax) until EOS or error or timeout.
// on_playing, if given, runs once the pipeline reaches PLAYING (to change properties live).
RunResult run_pipeline(const std::string& description, int timeout_s = 120,
                       const std::function<void(GstElement* pipeline)>& on_playing = {});

// Calls `fn(enc)` in the streaming thread just before frame `n` (from 0) enters the
// element named "enc" (ccmencbin): live property changes at a known frame.
void at_frame(GstElement* pipeline, int n, std::function<void(GstElement* enc)> fn);

// The element made by `factory` inside the bin named `bin_name` in `pipeline` (a new
// reference; nullptr when there is none): the encoder ccmencbin chose, for one.
GstElement* element_in_bin(GstElement* pipeline, const char* bin_name, const char* factory);

// Fields of element messages and stats: "" / 0 when the structure or field is missing.
std::string str_field(const GstStructure* s, const char* field);
guint64 u64_field(const GstStructure* s, const char* field);
// ccm-encoder-selected's passed-over list, one "factory: reason" per line.
std::string passed_over(const GstStructure* selected);
// The fixture machine of this run (CCM_SYSFS_ROOT), "" for the real one; and whether it is `name`.
std::string sysfs_fixture();
bool sysfs_fixture_is(const char* name);

// Path of a clip in tests/media (CCM_TEST_MEDIA). A missing clip is a failure of
// the calling test (the clips are part of the repository), named with its path;
// the result is then "".
std::string media(const std::string& name);
// Raw frames of `source_chain` (gst-launch syntax ending in raw video) converted to
// `format`, pulled from an appsink with a bound: an error, a pipeline that never
// starts or never ends fails the calling test within `timeout_s`, naming the cause.
// `caps` (optional) receives the frames' caps (a new reference).
std::vector<GstBuffer*> decode_frames(const std::string& source_chain, const char* format, GstCaps** caps = nullptr,
                                      int timeout_s = 120);
std::string temp_path(const std::string& name);
// set_state(NULL) with a bound: a streaming thread that never returns aborts the
// test binary after `timeout_s` with `what` on stderr, instead of a silent hang.
void stop_pipeline(GstElement* pipeline, const std::string& what, int timeout_s = 30);

struct Probe {
  bool ok = false;            // ffmpeg -xerror decoded the whole file without error
  std::string decoder_errors; // what ffmpeg printed
  int frames = 0;             // frames decoded
  int width = 0, height = 0;
  std::string codec;          // ffprobe codec_name
  std::string pix_fmt;        // ffprobe pix_fmt ("yuv420p", "yuv420p10le" ...)
  double packet_bytes = 0;    // sum of packet sizes of the video stream
  double duration_s = 0;      // container duration
  double kbps() const { return duration_s > 0 ? packet_bytes * 8 / duration_s / 1000 : 0; }
};
// Decodes with ffmpeg (-xerror) and reads stream facts with ffprobe.
Probe probe_file(const std::string& path);

}  // namespace ccm::test
