// TEST DOUBLES ONLY: see test_doubles.h.
#include "test_doubles.h"

#include <string>

namespace ccm::test {

namespace {

struct HardwareDouble {
  GstBin parent;
  GstElement* inner;
};

struct HardwareDoubleClass {
  GstBinClass parent;
  const char* inner_factory;  // owned by the class, lives as long as the type
};

enum { PROP_0, PROP_BITRATE };

void double_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  auto* self = reinterpret_cast<HardwareDouble*>(object);
  if (id == PROP_BITRATE)
    g_object_set(self->inner, "bitrate", g_value_get_uint(value), nullptr);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
}

void double_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  auto* self = reinterpret_cast<HardwareDouble*>(object);
  if (id == PROP_BITRATE) {
    guint v = 0;
    g_object_get(self->inner, "bitrate", &v, nullptr);
    g_value_set_uint(value, v);
  } else {
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
}

void double_class_init(gpointer klass, gpointer class_data) {
  auto* k = static_cast<HardwareDoubleClass*>(klass);
  k->inner_factory = static_cast<const char*>(class_data);
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  gobject_class->set_property = double_set_property;
  gobject_class->get_property = double_get_property;
  g_object_class_install_property(gobject_class, PROP_BITRATE,
      g_param_spec_uint("bitrate", "Bitrate", "Bitrate in kbit/s", 1, 2048000, 2048,
                        GParamFlags(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING)));

  GstElementFactory* inner = gst_element_factory_find(k->inner_factory);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  for (const GList* l = gst_element_factory_get_static_pad_templates(inner); l; l = l->next) {
    auto* t = static_cast<GstStaticPadTemplate*>(l->data);
    GstCaps* caps = gst_static_caps_get(&t->static_caps);
    gst_element_class_add_pad_template(element_class, gst_pad_template_new(t->name_template, t->direction,
                                                                           t->presence, caps));
    gst_caps_unref(caps);
  }
  gst_object_unref(inner);
  std::string description = std::string("TEST DOUBLE of a hardware encoder; encodes with ") + k->inner_factory;
  gst_element_class_set_metadata(element_class, "Hardware encoder test double", "Codec/Encoder/Video/Hardware",
                                 description.c_str(), "gst-ccm tests");
}

void double_instance_init(GTypeInstance* instance, gpointer klass) {
  auto* self = reinterpret_cast<HardwareDouble*>(instance);
  auto* k = static_cast<HardwareDoubleClass*>(klass);
  self->inner = gst_element_factory_make(k->inner_factory, nullptr);
  gst_bin_add(GST_BIN(self), self->inner);
  for (const char* name : {"sink", "src"}) {
    GstPad* target = gst_element_get_static_pad(self->inner, name);
    gst_element_add_pad(GST_ELEMENT(self), gst_ghost_pad_new(name, target));
    gst_object_unref(target);
  }
}

}  // namespace

bool register_hardware_double(const char* factory_name, const char* inner_factory) {
  GstElementFactory* inner = gst_element_factory_find(inner_factory);
  if (!inner) return false;
  gst_object_unref(inner);
  std::string type_name = std::string("CcmTestDouble_") + factory_name;
  GType type = g_type_from_name(type_name.c_str());
  if (!type) {
    GTypeInfo info = {};
    info.class_size = sizeof(HardwareDoubleClass);
    info.class_init = double_class_init;
    info.class_data = g_strdup(inner_factory);  // lives as long as the type
    info.instance_size = sizeof(HardwareDouble);
    info.instance_init = double_instance_init;
    type = g_type_register_static(GST_TYPE_BIN, type_name.c_str(), &info, GTypeFlags(0));
  }
  return gst_element_register(nullptr, factory_name, GST_RANK_PRIMARY, type);
}

}  // namespace ccm::test
