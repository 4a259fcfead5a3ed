// How to set a property of an encoder element, in one place: find it, read the
// unit of an unknown element's bitrate, set a value clamped to the property's
// range, set the bitrate. ccmencbin (encbin/encoder_setup) configures encoders
// with it, ccmratecontrol (ratecontrol/encoder_adapters) steers them with it.
#pragma once

#include "catalog/catalog.h"

#include <gst/gst.h>

#include <string>
#include <string_view>

namespace ccm::gst {

// The property if `element` has it and it can be written after construction.
GParamSpec* find_writable(GstElement* element, std::string_view property);

// Sets `property` from its textual value, numbers clamped into the property's
// range (so 2^32-1 kbit/s gives the element's maximum rather than a GLib warning
// and an unchanged property); false (and the reason in *why) when the property
// is missing or the value is refused.
bool set_property_from_string(GstElement* element, std::string_view property, std::string_view value,
                              std::string* why = nullptr);

// The unit of an unknown element's bitrate property, from its description:
// "kbit/s", "kbps", "kb/s" mean kilobits (1); any other mention of bits ("bit/s",
// "bits/sec", "bitrate in bits") means bit/s (1000 per kbit/s).
guint units_per_kbps_from_blurb(GParamSpec* pspec);

// Where an encoder takes its bitrate: the catalogue's property and unit, else
// its own "bitrate" or "target-bitrate" with the unit its description names.
struct BitrateProperty {
  std::string name;            // empty: none we know
  guint units_per_kbps = 1;    // 1: kbit/s, 1000: bit/s
  explicit operator bool() const { return !name.empty(); }
};
BitrateProperty find_bitrate_property(GstElement* encoder, const catalog::EncoderEntry* entry);

// Sets the bitrate (kbit/s, fractions kept where the unit is bit/s), clamped;
// `applied` gets "target-bitrate=800000 (bit/s)".
bool set_bitrate(GstElement* encoder, const BitrateProperty& property, double kbps, std::string* applied = nullptr);

}  // namespace ccm::gst
