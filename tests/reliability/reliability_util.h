// Shared by the reliability tests: a pipeline run that records everything the
// bus says, counts frames into and out of the element named "enc", and never
// waits for ever; and a guard that turns a hang into a test failure.
#pragma once

#include <gst/gst.h>

#include <atomic>
#include <functional>
#include <string>
#include <vector>

namespace ccm::reliability {

struct Outcome {
  bool eos = false;
  bool timed_out = false;
  std::vector<std::string> errors;    // "source: message | debug"
  std::vector<std::string> warnings;
  std::vector<GstStructure*> messages;  // element messages, owned
  guint64 frames_in = 0, frames_out = 0;  // buffers at enc's sink and src pads
  bool caps_refused = false;              // feed(): ccmencbin returned FALSE for a caps event
  Outcome() = default;
  Outcome(const Outcome&) = delete;
  Outcome(Outcome&& o) noexcept;
  ~Outcome();
  std::string error() const { return errors.empty() ? "" : errors.front(); }
  int count(const char* message_name) const;
  // One line for logs and the docs table: "EOS, 30 in / 30 out" or "error: ...".
  std::string summary() const;
};

// Runs `description` (gst-launch syntax) to EOS, the first error, or `timeout_s`.
// `setup` runs before PLAYING; `tick` runs every 50 ms on this thread while it plays
// (return false to stop ticking).
Outcome run(const std::string& description, int timeout_s = 30,
            const std::function<void(GstElement* pipeline)>& setup = {},
            const std::function<bool(GstElement* pipeline, double seconds)>& tick = {});

// Drives "ccmencbin name=enc <enc_props> ! <downstream>" from its sink pad, as an
// upstream element would: stream-start, caps parsed from `caps` (sent even when
// GStreamer's own sources could never produce them), a segment, `frames` gray
// frames of the size the caps give (timestamped at the caps' framerate, none at
// 0/1), EOS; then waits for EOS or an error. `caps_after` (optional): caps sent
// after the first half of the frames, the rest of the frames in that size.
Outcome feed(const std::string& enc_props, const std::string& caps, int frames,
             const std::string& downstream = "fakesink async=false", const std::string& caps_after = {},
             int timeout_s = 30);

// Runs `body` on a thread; if it has not returned after `seconds`, the test fails
// with `what` and the process exits (a hang must not hang the suite).
void within(double seconds, const char* what, const std::function<void()>& body);

}  // namespace ccm::reliability
