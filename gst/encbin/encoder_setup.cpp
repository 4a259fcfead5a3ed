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

GParamSpec* find_writable(GstElement* element, std::string_view property) {
  std::string name(property);
  GParamSpec* pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), name.c_str());
  if (!pspec || !(pspec->flags & G_PARAM_WRITABLE) || (pspec->flags & G_PARAM_CONSTRUCT_ONLY))
    return nullptr;
  return pspec;
}

// Clamps a number into the property's range, so 2^32-1 kbit/s gives the element's
// maximum instead of a GLib critical and an unchanged property.
template <typename Spec, typename T>
T clamp_to(GParamSpec* pspec, T v) {
  auto* s = reinterpret_cast<Spec*>(pspec);
  return std::clamp<T>(v, s->minimum, s->maximum);
}

bool set_number(GstElement* element, GParamSpec* pspec, double number) {
  GValue v = G_VALUE_INIT;
  g_value_init(&v, pspec->value_type);
  switch (G_TYPE_FUNDAMENTAL(pspec->value_type)) {
    case G_TYPE_INT:
      g_value_set_int(&v, clamp_to<GParamSpecInt, gint>(pspec, (gint)std::clamp(number, -2147483648.0, 2147483647.0)));
      break;
    case G_TYPE_UINT:
      g_value_set_uint(&v, clamp_to<GParamSpecUInt, guint>(pspec, (guint)std::clamp(number, 0.0, 4294967295.0)));
      break;
    case G_TYPE_INT64:
      g_value_set_int64(&v, clamp_to<GParamSpecInt64, gint64>(pspec, (gint64)number));
      break;
    case G_TYPE_UINT64:
      g_value_set_uint64(&v, clamp_to<GParamSpecUInt64, guint64>(pspec, (guint64)std::max(0.0, number)));
      break;
    case G_TYPE_LONG:
      g_value_set_long(&v, clamp_to<GParamSpecLong, glong>(pspec, (glong)number));
      break;
    case G_TYPE_ULONG:
      g_value_set_ulong(&v, clamp_to<GParamSpecULong, gulong>(pspec, (gulong)std::max(0.0, number)));
      break;
    case G_TYPE_DOUBLE:
      g_value_set_double(&v, clamp_to<GParamSpecDouble, gdouble>(pspec, number));
      break;
    case G_TYPE_FLOAT:
      g_value_set_float(&v, clamp_to<GParamSpecFloat, gfloat>(pspec, (gfloat)number));
      break;
    default:
      g_value_unset(&v);
      return false;
  }
  g_object_set_property(G_OBJECT(element), pspec->name, &v);
  g_value_unset(&v);
  return true;
}

// Guesses the unit of an unknown element's bitrate property from its blurb:
// "kbit/s", "kbps", "Kbps" mean kilobits; any other mention of bits means bit/s.
guint units_per_kbps_from_blurb(GParamSpec* pspec) {
  std::string blurb = g_param_spec_get_blurb(pspec) ? g_param_spec_get_blurb(pspec) : "";
  std::transform(blurb.begin(), blurb.end(), blurb.begin(), ::tolower);
  if (blurb.find("kbit") != std::string::npos || blurb.find("kbps") != std::string::npos ||
      blurb.find("kb/s") != std::string::npos)
    return 1;
  if (blurb.find("bit") != std::string::npos || blurb.find("bps") != std::string::npos)
    return 1000;
  return 1;
}

// Property names that elements outside the catalogue commonly use.
constexpr std::string_view kGenericBitrate[] = {"bitrate", "target-bitrate"};
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

bool set_property_from_string(GstElement* element, std::string_view property,
                              std::string_view value, std::string* why) {
  GParamSpec* pspec = find_writable(element, property);
  if (!pspec) {
    if (why) *why = std::string(GST_OBJECT_NAME(element)) + " has no writable property '" + std::string(property) + "'";
    return false;
  }
  std::string text(value);
  switch (G_TYPE_FUNDAMENTAL(pspec->value_type)) {
    case G_TYPE_INT: case G_TYPE_UINT: case G_TYPE_INT64: case G_TYPE_UINT64:
    case G_TYPE_LONG: case G_TYPE_ULONG: case G_TYPE_DOUBLE: case G_TYPE_FLOAT: {
      char* end = nullptr;
      double number = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0' || !std::isfinite(number)) {
        if (why) *why = "'" + text + "' is not a number";
        return false;
      }
      return set_number(element, pspec, number);
    }
    default: {
      GValue v = G_VALUE_INIT;
      g_value_init(&v, pspec->value_type);
      if (!gst_value_deserialize(&v, text.c_str())) {
        g_value_unset(&v);
        if (why) *why = "'" + text + "' is not a valid value for " + g_type_name(pspec->value_type);
        return false;
      }
      g_object_set_property(G_OBJECT(element), pspec->name, &v);
      g_value_unset(&v);
      return true;
    }
  }
}

bool apply_bitrate(GstElement* encoder, const EncoderEntry* entry, guint kbps, std::string* applied) {
  std::string_view property;
  guint units = 1;
  if (entry) {
    property = entry->bitrate_property;
    units = entry->bitrate_units_per_kbps;
  } else {
    for (auto n : kGenericBitrate)
      if (GParamSpec* p = find_writable(encoder, n)) {
        property = n;
        units = units_per_kbps_from_blurb(p);
        break;
      }
  }
  if (property.empty()) return false;
  const unsigned long long value = static_cast<unsigned long long>(kbps) * units;
  if (!set_property_from_string(encoder, property, std::to_string(value))) return false;
  if (applied)
    *applied = std::string(property) + "=" + std::to_string(value) + (units == 1 ? " (kbit/s)" : " (bit/s)");
  return true;
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

  // Live input that one core cannot carry: the library's own way of using them all.
  if (entry && s.low_latency && s.cpus > 1 && entry->many_cores_from > 0 && s.pixel_rate >= entry->many_cores_from) {
    const std::string cpus = std::to_string(s.cpus);
    for (const auto& m : entry->many_cores) set.set(m.property, m.value == "{cpus}" ? std::string_view(cpus) : m.value);
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
