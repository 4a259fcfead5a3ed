// The catalogue against the real GStreamer registry: for every catalogue entry
// whose element this machine has, the element must have every property the entry
// names, take every value the entry would set (read back equal), use the bitrate
// unit the entry claims, and honour (or ignore) force-key-unit as the entry says.
//
// Build: executable('test_catalog_registry', ..., dependencies: [ccm_core_dep, gst_dep,
// gtest_dep]); it has its own main() (gst_init / gst_deinit).

#include "catalog/catalog.h"

#include <gst/gst.h>
#include <gtest/gtest.h>

#if defined(__SANITIZE_ADDRESS__)
#define CCM_TEST_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CCM_TEST_HAVE_LSAN 1
#endif
#endif
#ifdef CCM_TEST_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <vector>

using namespace ccm::catalog;

namespace {

struct ObjectUnref {
  void operator()(gpointer p) const { gst_object_unref(p); }
};
using ElementPtr = std::unique_ptr<GstElement, ObjectUnref>;

struct GValueHolder {
  GValue v = G_VALUE_INIT;
  GValueHolder() = default;
  GValueHolder(const GValueHolder&) = delete;
  GValueHolder& operator=(const GValueHolder&) = delete;
  ~GValueHolder() {
    if (G_IS_VALUE(&v)) g_value_unset(&v);
  }
};

ElementPtr make(std::string_view factory) {
  GstElement* e = gst_element_factory_make(std::string(factory).c_str(), nullptr);
  if (e) gst_object_ref_sink(e);
  return ElementPtr(e);
}

bool in_registry(std::string_view factory) {
  GstElementFactory* f = gst_element_factory_find(std::string(factory).c_str());
  if (!f) return false;
  gst_object_unref(f);
  return true;
}

// The catalogue entries this registry has an element for (the version-valid ones).
std::vector<const EncoderEntry*> present_entries() {
  const GstVersion running{static_cast<int>(GST_VERSION_MAJOR), static_cast<int>(GST_VERSION_MINOR)};
  std::vector<const EncoderEntry*> out;
  for (const auto& e : entries())
    if (e.available_in(running) && in_registry(e.factory)) out.push_back(&e);
  return out;
}

GParamSpec* writable_property(GstElement* element, std::string_view name) {
  GParamSpec* p = g_object_class_find_property(G_OBJECT_GET_CLASS(element), std::string(name).c_str());
  if (!p || !(p->flags & G_PARAM_WRITABLE) || (p->flags & G_PARAM_CONSTRUCT_ONLY)) return nullptr;
  return p;
}

// Sets property=value the way the element side does (gst_util_set_object_arg) and
// checks that the value was understood, is in range, and reads back equal.
::testing::AssertionResult sets(GstElement* element, std::string_view property, std::string_view value) {
  const std::string where = std::string(GST_OBJECT_NAME(element)) + "." + std::string(property) + "=" +
                            std::string(value);
  GParamSpec* pspec = writable_property(element, property);
  if (!pspec) return ::testing::AssertionFailure() << where << ": no such writable property";
  GValueHolder want;
  g_value_init(&want.v, pspec->value_type);
  if (!gst_value_deserialize_with_pspec(&want.v, std::string(value).c_str(), pspec))
    return ::testing::AssertionFailure() << where << ": not a valid " << g_type_name(pspec->value_type);
  if (g_param_value_validate(pspec, &want.v))
    return ::testing::AssertionFailure() << where << ": out of the property's range";
  gst_util_set_object_arg(G_OBJECT(element), pspec->name, std::string(value).c_str());
  GValueHolder got;
  g_value_init(&got.v, pspec->value_type);
  g_object_get_property(G_OBJECT(element), pspec->name, &got.v);
  if (gst_value_compare(&want.v, &got.v) != GST_VALUE_EQUAL) {
    gchar* s = gst_value_serialize(&got.v);
    auto r = ::testing::AssertionFailure() << where << ": reads back as " << (s ? s : "?");
    g_free(s);
    return r;
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> names_in(std::string_view list) {
  std::vector<std::string> out;
  for_each_property(list, [&](std::string_view p) { out.emplace_back(p); });
  return out;
}

// Upper bound of an integer property, as a double (all the ones we name are ints).
double maximum_of(GParamSpec* p) {
  switch (G_TYPE_FUNDAMENTAL(p->value_type)) {
    case G_TYPE_INT: return G_PARAM_SPEC_INT(p)->maximum;
    case G_TYPE_UINT: return G_PARAM_SPEC_UINT(p)->maximum;
    case G_TYPE_INT64: return static_cast<double>(G_PARAM_SPEC_INT64(p)->maximum);
    case G_TYPE_UINT64: return static_cast<double>(G_PARAM_SPEC_UINT64(p)->maximum);
    default: return -1;
  }
}

double default_of(GParamSpec* p) {
  switch (G_TYPE_FUNDAMENTAL(p->value_type)) {
    case G_TYPE_INT: return G_PARAM_SPEC_INT(p)->default_value;
    case G_TYPE_UINT: return G_PARAM_SPEC_UINT(p)->default_value;
    case G_TYPE_INT64: return static_cast<double>(G_PARAM_SPEC_INT64(p)->default_value);
    case G_TYPE_UINT64: return static_cast<double>(G_PARAM_SPEC_UINT64(p)->default_value);
    default: return -1;
  }
}

std::string lower(const char* s) {
  std::string out = s ? s : "";
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

class CatalogRegistry : public ::testing::TestWithParam<const EncoderEntry*> {};

TEST(CatalogRegistryCoverage, ThisMachineHasSomeCatalogueEncoders) {
  // Debian 12 with the usual plugin packages has all five software encoders; the
  // other checks are vacuous without at least one.
  if (present_entries().empty()) GTEST_SKIP() << "no catalogue encoder in this registry";
  // The entry of this version (av1enc has one per behaviour: 1.22, 1.26).
  const GstVersion running{static_cast<int>(GST_VERSION_MAJOR), static_cast<int>(GST_VERSION_MINOR)};
  for (const EncoderEntry* e : present_entries()) EXPECT_EQ(find(e->factory, running), e);
}

TEST_P(CatalogRegistry, NamedPropertiesExistAndTakeTheCatalogueValues) {
  const EncoderEntry& e = *GetParam();
  ElementPtr el = make(e.factory);
  ASSERT_TRUE(el) << e.factory;

  // Every property the entry names exists and is writable.
  for (std::string_view list : {e.bitrate_property, e.rc_property, e.qp_property, e.min_qp_property,
                                e.max_qp_property, e.keyframe_interval_property, e.bframes_property,
                                e.threads_property})
    for (const auto& name : names_in(list))
      EXPECT_NE(writable_property(el.get(), name), nullptr) << e.factory << " has no property " << name;

  // Rate-control modes are enum nicks the element knows.
  for (RateControl rc : {RateControl::Cbr, RateControl::Vbr, RateControl::Cqp})
    if (!rc_value(e, rc).empty()) {
      EXPECT_TRUE(sets(el.get(), e.rc_property, rc_value(e, rc))) << to_string(rc);
    }

  // Quantizers: the whole native range, 0 to qp_max, is accepted.
  const std::string qp_max = std::to_string(e.qp_max);
  for (std::string_view list : {e.qp_property, e.min_qp_property, e.max_qp_property})
    for (const auto& name : names_in(list)) {
      GParamSpec* p = writable_property(el.get(), name);
      if (!p) continue;
      EXPECT_GE(maximum_of(p), e.qp_max) << e.factory << "." << name << " cannot reach qp_max";
      EXPECT_TRUE(sets(el.get(), name, qp_max));
      EXPECT_TRUE(sets(el.get(), name, "1"));
    }

  // Numbers the element side writes.
  EXPECT_TRUE(sets(el.get(), e.keyframe_interval_property, "120"));
  if (!e.bframes_property.empty()) {
    EXPECT_TRUE(sets(el.get(), e.bframes_property, "0"));
  }
  if (!e.threads_property.empty()) {
    EXPECT_TRUE(sets(el.get(), e.threads_property, "2"));
  }
  EXPECT_TRUE(sets(el.get(), e.bitrate_property, std::to_string(2500ull * e.bitrate_units_per_kbps)));

  // Trap fixes and low-latency settings.
  for (const Setting& s : e.always) EXPECT_TRUE(sets(el.get(), s.property, s.value)) << "always";
  for (const Setting& s : e.low_latency) EXPECT_TRUE(sets(el.get(), s.property, s.value)) << "low_latency";
  // Many-cores settings, "{cpus}" as a 16-core machine has it.
  for (const Setting& s : e.many_cores)
    EXPECT_TRUE(sets(el.get(), s.property, s.value == "{cpus}" ? std::string_view("16") : s.value)) << "many_cores";
}

TEST_P(CatalogRegistry, BitrateUnitMatchesTheProperty) {
  const EncoderEntry& e = *GetParam();
  ElementPtr el = make(e.factory);
  ASSERT_TRUE(el);
  GParamSpec* p = writable_property(el.get(), e.bitrate_property);
  ASSERT_NE(p, nullptr);
  // 100 Mbit/s must fit, and the default must be a plausible video bitrate
  // (16 kbit/s .. 50 Mbit/s) when read in the claimed unit: a factor 1000 off
  // lands far outside either way.
  EXPECT_GE(maximum_of(p), 100000.0 * e.bitrate_units_per_kbps) << e.factory;
  const double default_kbps = default_of(p) / e.bitrate_units_per_kbps;
  if (default_of(p) > 0) {
    EXPECT_GE(default_kbps, 16.0) << e.factory;
    EXPECT_LE(default_kbps, 50000.0) << e.factory;
  }
  const std::string blurb = lower(g_param_spec_get_blurb(p));
  const bool says_kbit = blurb.find("kbit") != std::string::npos || blurb.find("kilobit") != std::string::npos ||
                         blurb.find("kbps") != std::string::npos;
  if (e.bitrate_units_per_kbps == 1) {
    EXPECT_TRUE(says_kbit) << e.factory << ": '" << blurb << "'";
  } else {
    EXPECT_TRUE(!says_kbit && blurb.find("bit") != std::string::npos) << e.factory << ": '" << blurb << "'";
  }
}

TEST_P(CatalogRegistry, FactoryMetadataMatches) {
  const EncoderEntry& e = *GetParam();
  GstElementFactory* f = gst_element_factory_find(std::string(e.factory).c_str());
  ASSERT_NE(f, nullptr);
  const std::string klass = gst_element_factory_get_metadata(f, GST_ELEMENT_METADATA_KLASS);
  EXPECT_NE(klass.find("Encoder/Video"), std::string::npos) << klass;
  EXPECT_EQ(klass.find("Hardware") != std::string::npos, e.hardware()) << e.factory << ": " << klass;
  bool produces_codec = false;
  for (const GList* l = gst_element_factory_get_static_pad_templates(f); l; l = l->next) {
    auto* t = static_cast<GstStaticPadTemplate*>(l->data);
    if (t->direction != GST_PAD_SRC) continue;
    GstCaps* caps = gst_static_caps_get(&t->static_caps);
    for (guint i = 0; i < gst_caps_get_size(caps); ++i)
      produces_codec |= gst_structure_has_name(gst_caps_get_structure(caps, i), caps_name(e.codec));
    gst_caps_unref(caps);
  }
  EXPECT_TRUE(produces_codec) << e.factory << " does not output " << caps_name(e.codec);
  gst_object_unref(f);
}

// Frame indices of key frames out of `frames` encoded frames, with a force-key-unit
// event sent upstream after frame `force_at` arrived.
std::vector<int> key_frames(const EncoderEntry& e, int frames, int force_at) {
  std::string desc = "videotestsrc pattern=ball num-buffers=" + std::to_string(frames) +
                     " ! video/x-raw,format=I420,width=160,height=128,framerate=30/1 ! " +
                     std::string(e.factory) + " name=enc ! appsink name=sink sync=false max-buffers=2";
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
  if (!pipeline) {
    ADD_FAILURE() << desc << ": " << (err ? err->message : "?");
    g_clear_error(&err);
    return {};
  }
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  auto apply = [enc](const Setting& s) {
    if (writable_property(enc, s.property))
      gst_util_set_object_arg(G_OBJECT(enc), std::string(s.property).c_str(), std::string(s.value).c_str());
  };
  for (const Setting& s : e.always) apply(s);
  for (const Setting& s : e.low_latency) apply(s);
  gst_util_set_object_arg(G_OBJECT(enc), std::string(e.keyframe_interval_property).c_str(), "1000");
  gst_util_set_object_arg(G_OBJECT(enc), std::string(e.bitrate_property).c_str(),
                          std::to_string(300ull * e.bitrate_units_per_kbps).c_str());

  std::vector<int> keys;
  EXPECT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  for (int n = 0;; ++n) {
    GstSample* sample = nullptr;
    g_signal_emit_by_name(sink, "try-pull-sample", 20 * GST_SECOND, &sample);
    if (!sample) break;
    if (!GST_BUFFER_FLAG_IS_SET(gst_sample_get_buffer(sample), GST_BUFFER_FLAG_DELTA_UNIT)) keys.push_back(n);
    gst_sample_unref(sample);
    if (n == force_at) {
      // What gst_video_event_new_upstream_force_key_unit() builds.
      GstStructure* s = gst_structure_new("GstForceKeyUnit", "running-time", G_TYPE_UINT64, GST_CLOCK_TIME_NONE,
                                          "all-headers", G_TYPE_BOOLEAN, TRUE, "count", G_TYPE_UINT, 1u, nullptr);
      gst_element_send_event(sink, gst_event_new_custom(GST_EVENT_CUSTOM_UPSTREAM, s));
    }
  }
  GstMessage* error = gst_bus_pop_filtered(GST_ELEMENT_BUS(pipeline), GST_MESSAGE_ERROR);
  if (error) {
    GError* gerr = nullptr;
    gst_message_parse_error(error, &gerr, nullptr);
    ADD_FAILURE() << e.factory << ": " << (gerr ? gerr->message : "error");
    g_clear_error(&gerr);
    gst_message_unref(error);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(sink);
  gst_object_unref(enc);
  gst_object_unref(pipeline);
  return keys;
}

TEST_P(CatalogRegistry, ForceKeyUnitBehavesAsCatalogued) {
  const EncoderEntry& e = *GetParam();
  if (e.hardware()) GTEST_SKIP() << "hardware encoders are not run here";
  constexpr int kFrames = 20, kForceAt = 4;
  const std::vector<int> keys = key_frames(e, kFrames, kForceAt);
  ASSERT_FALSE(keys.empty()) << e.factory << " produced no key frame at all";
  EXPECT_EQ(keys.front(), 0);
  const bool forced = std::any_of(keys.begin(), keys.end(), [](int k) { return k > kForceAt; });
  if (e.key_unit == KeyUnit::Event) {
    EXPECT_TRUE(forced) << e.factory << " ignored force-key-unit";
  } else {
    EXPECT_FALSE(forced) << e.factory << " honours force-key-unit: the catalogue says it does not";
  }
}

std::string entry_name(const ::testing::TestParamInfo<const EncoderEntry*>& info) {
  std::string name(info.param->factory);
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Present, CatalogRegistry, ::testing::ValuesIn(present_entries()), entry_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CatalogRegistry);

}  // namespace

int main(int argc, char** argv) {
  // With a fresh registry file gst_init scans every plugin in this process
  // (GST_REGISTRY_FORK=no), and GLib quarks, fontconfig and plugin libraries
  // allocate memory they never free: not ours to report.
#ifdef CCM_TEST_HAVE_LSAN
  __lsan_disable();
#endif
  gst_init(&argc, &argv);
#ifdef CCM_TEST_HAVE_LSAN
  __lsan_enable();
#endif
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  gst_deinit();
  return rc;
}
