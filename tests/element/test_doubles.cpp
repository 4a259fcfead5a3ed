// TEST DOUBLES ONLY: see test_doubles.h.
#include "test_doubles.h"

#include "catalog/catalog.h"

#include <cstring>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace ccm::test {

namespace {

struct Registry {
  std::mutex lock;
  std::condition_variable wedge_released;  // wedged doubles wait on it (with `lock`)
  bool released = false;
  int wedged = 0;
  std::map<std::string, DoubleBehaviour> behaviours;
  std::map<std::string, int> instances;
  std::map<std::string, int> starts;
  std::map<std::string, int> open_sessions;
  bool env_read = false;
};

Registry& registry() {
  static Registry* r = new Registry();  // lives to the end of the process, like the GTypes using it
  return *r;
}

DoubleBehaviour behaviour_for(const std::string& factory) {
  auto& r = registry();
  bool read_env = false;
  {
    std::lock_guard lk(r.lock);
    read_env = !r.env_read;
    r.env_read = true;
  }
  if (read_env)
    if (const char* env = std::getenv("CCM_TEST_DOUBLES")) parse_double_behaviours(env);
  std::lock_guard lk(r.lock);
  const auto it = r.behaviours.find(factory);
  return it == r.behaviours.end() ? DoubleBehaviour{} : it->second;
}

struct HardwareDouble {
  GstBin parent;
  GstElement* inner;
  GstPad* sink;           // our ghost pad (owned by the element)
  std::string* factory;   // owned
  DoubleBehaviour behaviour;
  int frames;
  bool session_open;
  std::atomic<bool> wedged;
};

struct HardwareDoubleClass {
  GstBinClass parent;
  const char* inner_factory;  // owned by the class, lives as long as the type
};

enum { PROP_0, PROP_BITRATE };

GstElementClass* bin_class = nullptr;

// libvpx's target-bitrate is in bit/s, libaom's in kbit/s: their descriptions say which.
bool in_bits(GParamSpec* pspec) {
  const char* blurb = g_param_spec_get_blurb(pspec);
  return blurb && !strstr(blurb, "kilobit") && !strstr(blurb, "kbit");
}

void double_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  auto* self = reinterpret_cast<HardwareDouble*>(object);
  if (id != PROP_BITRATE) {
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
    return;
  }
  // kbit/s into the inner encoder's own unit (libvpx takes bit/s in target-bitrate).
  const guint kbps = g_value_get_uint(value);
  if (g_object_class_find_property(G_OBJECT_GET_CLASS(self->inner), "bitrate"))
    g_object_set(self->inner, "bitrate", kbps, nullptr);
  else if (GParamSpec* t = g_object_class_find_property(G_OBJECT_GET_CLASS(self->inner), "target-bitrate"))
    gst_util_set_object_arg(G_OBJECT(self->inner), "target-bitrate",
                            std::to_string(in_bits(t) ? std::min<guint>(kbps, 1000000) * 1000 : kbps).c_str());
}

void double_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  auto* self = reinterpret_cast<HardwareDouble*>(object);
  if (id == PROP_BITRATE) {
    guint v = 0;
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(self->inner), "bitrate")) {
      g_object_get(self->inner, "bitrate", &v, nullptr);
    } else if (GParamSpec* t = g_object_class_find_property(G_OBJECT_GET_CLASS(self->inner), "target-bitrate")) {
      GValue tv = G_VALUE_INIT, as_uint = G_VALUE_INIT;
      g_object_get_property(G_OBJECT(self->inner), "target-bitrate", &tv);
      g_value_init(&as_uint, G_TYPE_UINT);
      g_value_transform(&tv, &as_uint);
      v = in_bits(t) ? g_value_get_uint(&as_uint) / 1000 : g_value_get_uint(&as_uint);
      g_value_unset(&tv);
    }
    g_value_set_uint(value, v);
  } else {
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
}

void close_session(HardwareDouble* self) {
  if (!self->session_open) return;
  self->session_open = false;
  auto& r = registry();
  std::lock_guard lk(r.lock);
  r.open_sessions[*self->factory]--;
}

// Blocks until release_wedged_doubles(): the driver call that never returns.
void wedge(HardwareDouble* self) {
  auto& r = registry();
  std::unique_lock lk(r.lock);
  if (!self->wedged.exchange(true)) r.wedged++;
  r.wedge_released.wait(lk, [&] { return r.released; });
}

gboolean double_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  auto* self = reinterpret_cast<HardwareDouble*>(parent);
  if ((self->behaviour.wedge_after >= 0 || self->behaviour.wedge_on_stop) &&
      (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_START || GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP)) {
    // A driver that never looks at a flush: the encoder inside never hears of it.
    gst_event_unref(event);
    return TRUE;
  }
  if (GST_EVENT_TYPE(event) == GST_EVENT_CAPS && !self->session_open) {
    bool refuse = self->behaviour.refuse_open;
    std::string why = "told to refuse";
    if (!refuse && self->behaviour.max_sessions >= 0) {
      auto& r = registry();
      std::lock_guard lk(r.lock);
      refuse = r.open_sessions[*self->factory] >= self->behaviour.max_sessions;
      why = "session limit of " + std::to_string(self->behaviour.max_sessions) + " reached";
    }
    if (refuse) {
      GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ_WRITE,
                        ("test double %s: could not open an encode session", self->factory->c_str()),
                        ("%s", why.c_str()));
      gst_event_unref(event);
      return FALSE;
    }
    self->session_open = true;
    auto& r = registry();
    std::lock_guard lk(r.lock);
    r.open_sessions[*self->factory]++;
  }
  return gst_pad_event_default(pad, parent, event);
}

GstFlowReturn double_sink_chain(GstPad* pad, GstObject* parent, GstBuffer* buffer) {
  auto* self = reinterpret_cast<HardwareDouble*>(parent);
  const DoubleBehaviour& b = self->behaviour;
  const int n = self->frames++;
  if (b.slow_ms > 0) g_usleep(gulong(b.slow_ms) * 1000);
  if (b.fail_after >= 0 && n >= b.fail_after) {
    gst_buffer_unref(buffer);
    GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("test double %s: device lost after %d frames", self->factory->c_str(), n),
                      ("told to fail after %d frames", b.fail_after));
    return GST_FLOW_ERROR;
  }
  if (b.hang_after >= 0 && n >= b.hang_after) {
    // Stuck until someone flushes or shuts the element down, as a driver call that never returns would be
    // (minus the "never").
    gst_buffer_unref(buffer);
    while (!GST_PAD_IS_FLUSHING(pad)) g_usleep(2000);
    return GST_FLOW_FLUSHING;
  }
  if (b.wedge_after >= 0 && n >= b.wedge_after) {
    wedge(self);
    gst_buffer_unref(buffer);
    return GST_FLOW_FLUSHING;
  }
  if (b.stall_after >= 0 && n >= b.stall_after) {
    gst_buffer_unref(buffer);
    return GST_FLOW_OK;
  }
  return gst_proxy_pad_chain_default(pad, parent, buffer);
}

// "property=value property=value" onto `element`.
void apply_settings(GstElement* element, const std::string& settings) {
  gchar** list = g_strsplit(settings.c_str(), " ", -1);
  for (gchar** kv = list; *kv; kv++) {
    gchar** parts = g_strsplit(*kv, "=", 2);
    if (parts[0] && parts[1]) gst_util_set_object_arg(G_OBJECT(element), parts[0], parts[1]);
    g_strfreev(parts);
  }
  g_strfreev(list);
}

// settings_per_start: the set of this start onto the encoder inside.
void apply_start_settings(HardwareDouble* self) {
  if (self->behaviour.settings_per_start.empty()) return;
  int n = 0;
  {
    auto& r = registry();
    std::lock_guard lk(r.lock);
    n = r.starts[*self->factory]++;
  }
  gchar** sets = g_strsplit(self->behaviour.settings_per_start.c_str(), "|", -1);
  const guint count = g_strv_length(sets);
  if (count > 0) apply_settings(self->inner, sets[guint(n) % count]);
  g_strfreev(sets);
}

GstStateChangeReturn double_change_state(GstElement* element, GstStateChange transition) {
  auto* self = reinterpret_cast<HardwareDouble*>(element);
  // Closing a device whose call never returned never returns either.
  if (self->wedged || (self->behaviour.wedge_on_stop && transition == GST_STATE_CHANGE_PAUSED_TO_READY)) wedge(self);
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) apply_start_settings(self);
  const GstStateChangeReturn ret = bin_class->change_state(element, transition);
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) {
    close_session(self);
    self->frames = 0;
  }
  return ret;
}

void double_finalize(GObject* object) {
  auto* self = reinterpret_cast<HardwareDouble*>(object);
  close_session(self);
  delete self->factory;
  self->behaviour.~DoubleBehaviour();
  G_OBJECT_CLASS(bin_class)->finalize(object);
}

void double_class_init(gpointer klass, gpointer class_data) {
  auto* k = static_cast<HardwareDoubleClass*>(klass);
  k->inner_factory = static_cast<const char*>(class_data);
  bin_class = GST_ELEMENT_CLASS(g_type_class_peek_parent(klass));
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  gobject_class->set_property = double_set_property;
  gobject_class->get_property = double_get_property;
  gobject_class->finalize = double_finalize;
  GST_ELEMENT_CLASS(klass)->change_state = double_change_state;
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
  // The factory name this instance was made from: the type name minus our prefix.
  std::string type_name = g_type_name(G_TYPE_FROM_CLASS(klass));
  self->factory = new std::string(type_name.substr(type_name.find('_') + 1));
  new (&self->behaviour) DoubleBehaviour(behaviour_for(*self->factory));  // GObject gives raw memory
  self->frames = 0;
  self->session_open = false;
  new (&self->wedged) std::atomic<bool>(false);
  {
    auto& r = registry();
    std::lock_guard lk(r.lock);
    r.instances[*self->factory]++;
  }
  self->inner = gst_element_factory_make(k->inner_factory, nullptr);
  // Set up as ccmencbin would set the real thing up: low latency, by the catalogue.
  if (const auto* entry = ccm::catalog::find(k->inner_factory)) {
    for (const auto& list : {entry->always, entry->low_latency})
      for (const auto& setting : list)
        if (g_object_class_find_property(G_OBJECT_GET_CLASS(self->inner), std::string(setting.property).c_str()))
          gst_util_set_object_arg(G_OBJECT(self->inner), std::string(setting.property).c_str(),
                                  std::string(setting.value).c_str());
  }
  apply_settings(self->inner, self->behaviour.inner_settings);
  gst_bin_add(GST_BIN(self), self->inner);
  for (const char* name : {"sink", "src"}) {
    GstPad* target = gst_element_get_static_pad(self->inner, name);
    GstPad* ghost = gst_ghost_pad_new(name, target);
    gst_object_unref(target);
    if (g_str_equal(name, "sink")) {
      gst_pad_set_event_function(ghost, double_sink_event);
      gst_pad_set_chain_function(ghost, double_sink_chain);
      self->sink = ghost;
    }
    gst_element_add_pad(GST_ELEMENT(self), ghost);
  }
}

}  // namespace

bool register_hardware_double(const char* factory_name, const char* inner_factory, GstPlugin* plugin) {
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
  return gst_element_register(plugin, factory_name, GST_RANK_PRIMARY, type);
}

void set_double_behaviour(const std::string& factory, const DoubleBehaviour& behaviour) {
  auto& r = registry();
  std::lock_guard lk(r.lock);
  r.env_read = true;  // what the test says wins over the environment
  r.behaviours[factory] = behaviour;
}

void clear_double_behaviours() {
  auto& r = registry();
  std::lock_guard lk(r.lock);
  r.env_read = true;
  r.behaviours.clear();
}

bool parse_double_behaviours(std::string_view spec) {
  bool ok = true;
  gchar** entries = g_strsplit(std::string(spec).c_str(), ";", -1);
  for (gchar** e = entries; *e; e++) {
    if (!**e) continue;
    gchar** parts = g_strsplit(*e, ":", 2);
    if (!parts[0] || !parts[1]) {
      ok = false;
      g_strfreev(parts);
      continue;
    }
    DoubleBehaviour b;
    gchar** options = g_strsplit(parts[1], ",", -1);
    for (gchar** o = options; *o; o++) {
      gchar** kv = g_strsplit(*o, "=", 2);
      const std::string key = g_strstrip(kv[0]);
      const int value = kv[1] ? std::atoi(kv[1]) : 0;
      if (key == "refuse") b.refuse_open = true;
      else if (key == "max-sessions") b.max_sessions = value;
      else if (key == "fail-after") b.fail_after = value;
      else if (key == "stall-after") b.stall_after = value;
      else if (key == "hang-after") b.hang_after = value;
      else if (key == "slow-ms") b.slow_ms = value;
      else if (key == "wedge-after") b.wedge_after = value;
      else if (key == "wedge-on-stop") b.wedge_on_stop = true;
      else if (!key.empty()) ok = false;
      g_strfreev(kv);
    }
    g_strfreev(options);
    {
      auto& r = registry();
      std::lock_guard lk(r.lock);
      r.behaviours[g_strstrip(parts[0])] = b;
    }
    g_strfreev(parts);
  }
  g_strfreev(entries);
  return ok;
}

void release_wedged_doubles() {
  auto& r = registry();
  {
    std::lock_guard lk(r.lock);
    r.released = true;
  }
  r.wedge_released.notify_all();
}

int wedged_doubles() {
  auto& r = registry();
  std::lock_guard lk(r.lock);
  return r.wedged;
}

int double_instances(const std::string& factory) {
  auto& r = registry();
  std::lock_guard lk(r.lock);
  return r.instances[factory];
}

int double_starts(const std::string& factory) {
  auto& r = registry();
  std::lock_guard lk(r.lock);
  return r.starts[factory];
}

int double_open_sessions(const std::string& factory) {
  auto& r = registry();
  std::lock_guard lk(r.lock);
  return r.open_sessions[factory];
}

}  // namespace ccm::test
