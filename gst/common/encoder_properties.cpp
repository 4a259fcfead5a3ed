#include "common/encoder_properties.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace ccm::gst {

namespace {

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

// Property names that elements outside the catalogue commonly use for the bitrate.
constexpr std::string_view kGenericBitrate[] = {"bitrate", "target-bitrate"};

}  // namespace

GParamSpec* find_writable(GstElement* element, std::string_view property) {
  std::string name(property);
  GParamSpec* pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(element), name.c_str());
  if (!pspec || !(pspec->flags & G_PARAM_WRITABLE) || (pspec->flags & G_PARAM_CONSTRUCT_ONLY)) return nullptr;
  return pspec;
}

bool set_property_from_string(GstElement* element, std::string_view property, std::string_view value,
                              std::string* why) {
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

guint units_per_kbps_from_blurb(GParamSpec* pspec) {
  std::string blurb = g_param_spec_get_blurb(pspec) ? g_param_spec_get_blurb(pspec) : "";
  std::transform(blurb.begin(), blurb.end(), blurb.begin(), ::tolower);
  if (blurb.find("kbit") != std::string::npos || blurb.find("kbps") != std::string::npos ||
      blurb.find("kb/s") != std::string::npos)
    return 1;
  if (blurb.find("bit") != std::string::npos || blurb.find("bps") != std::string::npos) return 1000;
  return 1;
}

BitrateProperty find_bitrate_property(GstElement* encoder, const catalog::EncoderEntry* entry) {
  if (entry) return {std::string(entry->bitrate_property), entry->bitrate_units_per_kbps};
  for (auto name : kGenericBitrate)
    if (GParamSpec* p = find_writable(encoder, name)) return {std::string(name), units_per_kbps_from_blurb(p)};
  return {};
}

bool set_bitrate(GstElement* encoder, const BitrateProperty& property, double kbps, std::string* applied) {
  if (!property) return false;
  const long long value = std::llround(kbps * property.units_per_kbps);
  if (!set_property_from_string(encoder, property.name, std::to_string(value))) return false;
  if (applied)
    *applied = property.name + "=" + std::to_string(value) + (property.units_per_kbps == 1 ? " (kbit/s)" : " (bit/s)");
  return true;
}

}  // namespace ccm::gst
