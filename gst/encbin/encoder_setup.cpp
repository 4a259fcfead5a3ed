#include "encbin/encoder_setup.h"

#include <gst/gst.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

GST_DEBUG_CATEGORY_EXTERN(ccm_enc_bin_debug);
#define GST_CAT_DEFAULT ccm_enc_bin_debug

namespace ccm::gst {

namespace {

using catalog::EncoderEntry;
using catalog::RateControl;

// Property names that elements outside the catalogue commonly use.
constexpr std::string_view kGenericKeyframe[] = {"key-int-max", "keyframe-max-dist", "gop-size",
                                                 "keyframe-interval", "max-keyframe-interval"};
constexpr std::string_view kGenericQp[] = {"quantizer", "qp"};
constexpr std::string_view kGenericBframes[] = {"bframes", "b-frames"};

class Setter {
 public:
  Setter(GstElement* element, SetupReport& report) : element_(element), report_(report) {}

  bool set(std::string_view property, std::string_view value, std::string_view unit = {}) {
    if (property.empty()) return false;
    std::string why;
    if (!set_property_from_string(element_, property, value, &why)) {
      report_.skipped.push_back(std::string(property) + "=" + std::string(value) + ": " + why);
      return false;
    }
    std::string line = std::string(property) + "=" + std::string(value);
    if (!unit.empty()) line += " (" + std::string(unit) + ")";
    report_.applied.push_back(std::move(line));
    return true;
  }
  bool set(std::string_view property, long long value, std::string_view unit = {}) {
    return set(property, std::to_string(value), unit);
  }
  // The same value into every property of a ','-separated list ("qp-i,qp-p,qp-b").
  void set_each(std::string_view properties, long long value) {
    catalog::for_each_property(properties, [&](std::string_view p) { set(p, value); });
  }
  // First of several candidate names that the element has.
  std::string_view first_present(std::span<const std::string_view> names) const {
    for (auto n : names)
      if (find_writable(element_, n)) return n;
    return {};
  }
  void skipped(std::string line) { report_.skipped.push_back(std::move(line)); }

 private:
  GstElement* element_;
  SetupReport& report_;
};

}  // namespace

bool apply_bitrate(GstElement* encoder, const EncoderEntry* entry, guint kbps, std::string* applied) {
  return set_bitrate(encoder, find_bitrate_property(encoder, entry), kbps, applied);
}

SetupReport configure_encoder(GstElement* encoder, const EncoderEntry* entry,
                              const EncodeSettings& s) {
  SetupReport report;
  Setter set(encoder, report);

  // Trap fixes first, so that user settings below win where they overlap.
  if (entry)
    for (const auto& fix : entry->always) set.set(fix.property, fix.value);
  if (entry)
    for (const auto& ll : entry->low_latency) {
      if (s.low_latency)
        set.set(ll.property, ll.value);
      else if (ll.property == "low-latency")  // a switch that is on by default (ours, qsv): off means off
        set.set(ll.property, "false");
    }

  // Rate control.
  if (entry) {
    const std::string_view mode = catalog::rc_value(*entry, s.rate_control);
    if (!catalog::supports(*entry, s.rate_control))
      set.skipped(std::string("rate-control=") + catalog::to_string(s.rate_control) + ": " +
                  std::string(entry->factory) + " has no such mode");
    else if (!entry->rc_property.empty() && !mode.empty())
      set.set(entry->rc_property, mode);
  }

  if (s.rate_control == RateControl::Cqp) {
    const int qp_max = entry ? entry->qp_max : 63;
    const long long qp = std::min<long long>(s.quantizer, qp_max);
    std::string_view qp_props = entry ? entry->qp_property : set.first_present(kGenericQp);
    if (!qp_props.empty()) {
      set.set_each(qp_props, qp);
    } else if (entry && !entry->min_qp_property.empty() && !entry->max_qp_property.empty()) {
      // libvpx / libaom / openh264: constant quantizer is a range of one value.
      set.set_each(entry->min_qp_property, qp);
      set.set_each(entry->max_qp_property, qp);
    } else {
      set.skipped("quantizer: " + std::string(GST_OBJECT_NAME(encoder)) + " has no quantizer property");
    }
  } else {
    std::string applied;
    if (apply_bitrate(encoder, entry, s.bitrate_kbps, &applied))
      report.applied.push_back(applied);
    else
      set.skipped("bitrate: " + std::string(GST_OBJECT_NAME(encoder)) + " has no bitrate property we know");
  }

  if (s.rate_control != RateControl::Cqp && entry) {
    if (s.min_quantizer >= 0) set.set_each(entry->min_qp_property, std::min(s.min_quantizer, entry->qp_max));
    if (s.max_quantizer >= 0) set.set_each(entry->max_qp_property, std::min(s.max_quantizer, entry->qp_max));
  }

  if (s.keyframe_interval > 0) {
    std::string_view kf = entry ? entry->keyframe_interval_property : set.first_present(kGenericKeyframe);
    if (!set.set(kf, s.keyframe_interval, "frames") && kf.empty())
      set.skipped("keyframe-interval: no key-frame interval property");
  }

  const gint bframes = s.bframes >= 0 ? s.bframes : (s.low_latency ? 0 : -1);
  if (bframes >= 0) {
    std::string_view bf = entry ? entry->bframes_property : set.first_present(kGenericBframes);
    if (!bf.empty())
      set.set(bf, bframes);
    else if (s.bframes > 0)
      set.skipped("b-frames: " + std::string(GST_OBJECT_NAME(encoder)) + " has no B-frame setting");
  }

  if (s.threads > 0 && entry && !entry->threads_property.empty())
    set.set(entry->threads_property, s.threads);

  for (const auto& line : report.applied) GST_DEBUG_OBJECT(encoder, "set %s", line.c_str());
  for (const auto& line : report.skipped) GST_INFO_OBJECT(encoder, "not set: %s", line.c_str());
  return report;
}

}  // namespace ccm::gst
