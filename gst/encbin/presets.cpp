// ccmencbin's presets (presets.h).
#include "encbin/presets.h"

#include "config.h"

#include "encbin/encbin_private.h"

namespace ccm::encbin {

// ---- presets --------------------------------------------------------------------
//
// GStreamer reads GstCcmEncBin.prs from its own data folder, the user's and
// GST_PRESET_PATH. gst-ccm installed under another prefix (/usr/local) puts its
// presets where GStreamer does not look, so the names and values there are added
// to GStreamer's own: CCM_PRESETS_DIR (the environment variable, else the install
// folder compiled in). User-saved presets of the same name win.
//
// A preset sets only what the application has not set itself: gst-launch's
// `@preset=` is loaded after every property on the line, whatever the order,
// and `codec=h264 @preset=screen-share` must keep H.264. set_property records
// each property the application sets and, while a preset loads, skips those.

namespace {

struct PresetDefaults {
  gchar** (*get_preset_names)(GstPreset*) = nullptr;
  gboolean (*load_preset)(GstPreset*, const gchar*) = nullptr;
} preset_defaults;

GKeyFile* installed_presets() {
  const char* env = g_getenv("CCM_PRESETS_DIR");
  gchar* path = g_build_filename(env && *env ? env : CCM_PRESETS_DIR, "GstCcmEncBin.prs", nullptr);
  GKeyFile* file = g_key_file_new();
  const bool ok = g_key_file_load_from_file(file, path, G_KEY_FILE_NONE, nullptr);
  g_free(path);
  if (!ok) {
    g_key_file_unref(file);
    return nullptr;
  }
  return file;
}

gchar** ccm_enc_bin_get_preset_names(GstPreset* preset) {
  gchar** names = preset_defaults.get_preset_names(preset);
  GKeyFile* file = installed_presets();
  if (!file) return names;
  GStrvBuilder* all = g_strv_builder_new();
  if (names) g_strv_builder_addv(all, (const char**)names);
  gchar** groups = g_key_file_get_groups(file, nullptr);
  for (gchar** g = groups; *g; g++)
    if (!g_str_equal(*g, "_presets_") && !(names && g_strv_contains(names, *g))) g_strv_builder_add(all, *g);
  g_strfreev(groups);
  g_strfreev(names);
  g_key_file_unref(file);
  gchar** out = g_strv_builder_end(all);
  g_strv_builder_unref(all);  // end() hands over the array, not the builder (LeakSanitizer on Debian 13)
  return out;
}

gboolean load_preset_values(GstPreset* preset, const gchar* name) {
  if (preset_defaults.load_preset(preset, name)) return TRUE;
  GKeyFile* file = installed_presets();
  if (!file) return FALSE;
  gboolean found = g_key_file_has_group(file, name);
  if (found) {
    gchar** keys = g_key_file_get_keys(file, name, nullptr, nullptr);
    for (gchar** k = keys; keys && *k; k++) {
      if (g_str_has_prefix(*k, "_meta/")) continue;
      gchar* value = g_key_file_get_value(file, name, *k, nullptr);
      if (value && g_object_class_find_property(G_OBJECT_GET_CLASS(preset), *k))
        gst_util_set_object_arg(G_OBJECT(preset), *k, value);
      g_free(value);
    }
    g_strfreev(keys);
  }
  g_key_file_unref(file);
  return found;
}

gboolean ccm_enc_bin_load_preset(GstPreset* preset, const gchar* name) {
  auto* p = GST_CCM_ENC_BIN(preset)->priv;
  {
    std::lock_guard lock(p->lock);
    p->loading_preset = true;
  }
  const gboolean found = load_preset_values(preset, name);
  std::lock_guard lock(p->lock);
  p->loading_preset = false;
  return found;
}

}  // namespace

void gst_ccm_enc_bin_preset_init(gpointer g_iface, gpointer) {
  // GObject hands us the interface with GStreamer's default implementation
  // filled in: keep it and add the installed presets on top.
  auto* iface = static_cast<GstPresetInterface*>(g_iface);
  preset_defaults.get_preset_names = iface->get_preset_names;
  preset_defaults.load_preset = iface->load_preset;
  iface->get_preset_names = ccm_enc_bin_get_preset_names;
  iface->load_preset = ccm_enc_bin_load_preset;
}


}  // namespace ccm::encbin
