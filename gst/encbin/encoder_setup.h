// Maps ccmencbin's unified settings onto one encoder element, in that element's
// own property names and units, as the catalogue describes it. Elements the
// catalogue does not know are configured through the properties they do have.
#pragma once

#include "catalog/catalog.h"
#include "common/encoder_properties.h"

#include <gst/gst.h>

#include <string>
#include <vector>

namespace ccm::gst {

struct EncodeSettings {
  catalog::Codec codec = catalog::Codec::H264;
  guint bitrate_kbps = 2000;
  catalog::RateControl rate_control = catalog::RateControl::Cbr;
  guint quantizer = 28;
  guint keyframe_interval = 0;  // frames, 0 = the encoder's default
  bool low_latency = true;
  gint bframes = -1;            // -1 = encoder default (0 when low_latency)
  gint min_quantizer = -1;      // codec-native scale, -1 = encoder default
  gint max_quantizer = -1;
  guint threads = 0;            // 0 = encoder default
};

// Everything that was set, or could not be, as human-readable lines for the log
// and the ccm-encoder-selected message.
struct SetupReport {
  std::vector<std::string> applied;   // "bitrate=800 (kbit/s)"
  std::vector<std::string> skipped;   // "b-frames: vp9enc has no such property"
};

SetupReport configure_encoder(GstElement* encoder, const catalog::EncoderEntry* entry,
                              const EncodeSettings& settings);

// Sets only the bitrate (used for live changes; common/encoder_properties.h
// holds the rule). Returns false when the element has no bitrate property we know of.
bool apply_bitrate(GstElement* encoder, const catalog::EncoderEntry* entry, guint kbps,
                   std::string* applied = nullptr);

}  // namespace ccm::gst
