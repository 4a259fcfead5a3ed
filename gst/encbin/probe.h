// Test-encoding a candidate before ccmencbin commits to it, and the on-disk
// cache of the answers.
//
// A probe pushes one small frame through `videoconvert ! <encoder>` in a pipeline
// of its own (its errors never reach the application's bus) and passes when the
// first output is a key frame. The cache ($XDG_CACHE_HOME/gst-ccm/probe-cache.v1)
// is keyed by factory, codec, device and the registry's record of the plugin
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

// Test-encodes one 320x240 frame, in a thread of its own, waiting up to `timeout`
// for the output once the frame is in. The call returns within `give_up` (plus up
// to 250 ms for a well-behaved encoder to close) whatever the encoder does: one that
// has not returned by then (a driver call that never returns, in its open, the push,
// a state change or its drain) fails the probe and is left behind with its thread
// and pipeline (`abandoned`). `give_up` is generous: opening an encoder on a loaded
// machine (libvpx under ASan) takes seconds. `cancelled`, polled every few ms, gives
// up early (the caller is shutting down). `make` is called in the calling thread.
ProbeResult probe_encoder(const EncoderMaker& make, std::chrono::milliseconds timeout = std::chrono::milliseconds(3000),
                          const std::function<bool()>& cancelled = {},
                          std::chrono::milliseconds give_up = std::chrono::milliseconds(10000));

// The cache key: "<factory>|<codec>|<device>|<registry signature>".
std::string probe_key(std::string_view factory, catalog::Codec codec, std::string_view device);

class ProbeCache {
 public:
  static constexpr std::chrono::seconds kFailureTtl{600};

  // $XDG_CACHE_HOME/gst-ccm/probe-cache.v1 (the variable read each time), else ~/.cache/...
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
