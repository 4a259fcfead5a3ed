// Test-encoding a candidate before ccmencbin commits to it, and the on-disk
// cache of the answers.
//
// A probe pushes one small frame through `videoconvert ! <encoder>` in a pipeline
// of its own (its errors never reach the application's bus) and passes when the
// first output is a key frame. The cache ($XDG_CACHE_HOME/gst-ccm/probe-cache.v2,
// a GKeyFile: a group per key with result, when, ms and reason) is keyed by factory, codec, device and the registry's record of the plugin
// that provides the factory (file, mtime, size, version: what GStreamer itself
// compares to decide whether to rescan a plugin). Any change of the plugin, or
// of the program for statically registered elements, makes a new key. Failures
// are kept for kFailureTtl only: a refusal can be passing (a GPU's session limit).
#pragma once

#include "catalog/catalog.h"

#include <gst/gst.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace ccm::gst {

struct ProbeResult {
  bool ok = false;
  std::string reason;      // why it failed; "" when ok
  double ms = 0;           // how long the test encode took (when it ran)
  bool cached = false;     // answered from the cache
  bool abandoned = false;  // the encoder did not return within the bound: its thread was left behind
  bool cancelled = false;  // given up because the caller stopped (not an answer: not to be cached)
};

// Creates and configures the encoder for a probe (floating reference); nullptr
// when the element cannot be created.
using EncoderMaker = std::function<GstElement*()>;

// Test-encodes one 320x240 frame in a thread of its own. `bound` is ccmencbin's
// stall-timeout (scaled as for the stream; 0 = no bound) and governs the whole probe:
// - a call into the encoder (its start, the caps that configure it, the frame's push,
//   its drain, its stop) that has not returned after `bound` while idle (the probe's
//   thread and the threads born since it started, the encoder's own, running or
//   ready to run under 5% of the time: blocked, as in a driver call that never
//   returns) is a wedge: the probe fails at once and the encoder is left behind,
//   with its thread and pipeline (`abandoned`);
// - one still working (libvpx opening under ASan on a loaded machine, x265's pool
//   encoding while the push waits for it) is slow, not dead, and gets 3x `bound`, as
//   a stream's encoder before its first output; the clock restarts each time a call
//   returns, so a slow open is not charged to the encode;
// - the output, once the frame is in, is waited for 3x `bound` ("no output within").
// `cancelled`, polled every few ms, gives up early (the caller is stopping): a test
// encode that does not finish within 250 ms is then left to finish in the background
// (not abandoned) unless it turns out wedged by the rule above, `bound` then capped
// at 2 s (stall-timeout=0 included). `make` is called in the calling thread.
ProbeResult probe_encoder(const EncoderMaker& make, std::chrono::milliseconds bound = std::chrono::milliseconds(2000),
                          const std::function<bool()>& cancelled = {});

// The cache key: "<factory>|<codec>|<device>|<registry signature>".
std::string probe_key(std::string_view factory, catalog::Codec codec, std::string_view device);

class ProbeCache {
 public:
  static constexpr std::chrono::seconds kFailureTtl{600};

  // $XDG_CACHE_HOME/gst-ccm/probe-cache.v2 (the variable read each time), else ~/.cache/...
  static std::filesystem::path default_path();

  explicit ProbeCache(std::filesystem::path file) : file_(std::move(file)) {}
  std::optional<ProbeResult> lookup(const std::string& key) const;
  // Read-modify-rename under an flock on "<file>.lock": concurrent processes keep each other's entries.
  void store(const std::string& key, const ProbeResult& result) const;
  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
};

}  // namespace ccm::gst
