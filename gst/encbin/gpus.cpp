// GPU load policy and the nvcodec diagnosis (gpus.h).
#include "encbin/gpus.h"

#include "common/registry_probe.h"
#include "hw/nvml.h"

#include <algorithm>
#include <cstring>

namespace ccm::encbin {

namespace {

// NVML, opened once per process, only where detection reads the real machine.
const ccm::hw::NvmlSession* nvml() {
  static const std::optional<ccm::hw::NvmlSession> session = []() -> std::optional<ccm::hw::NvmlSession> {
    const char* root = g_getenv("CCM_SYSFS_ROOT");
    if (root && *root && !g_str_equal(root, "/")) return std::nullopt;
    const auto& gpus = ccm::gst::detected_gpus();
    if (std::none_of(gpus.begin(), gpus.end(), [](const auto& g) { return g.vendor == ccm::hw::GpuVendor::Nvidia; }))
      return std::nullopt;
    return ccm::hw::NvmlSession::open();
  }();
  return session ? &*session : nullptr;
}

// Load of a GPU for choosing where a new session goes: live sessions (all
// processes) first, NVML encoder utilisation (percent) to break ties.
long gpu_load(int gpu, const std::map<std::string, int>& sessions) {
  const std::string key = gpu_key(gpu);
  if (key.empty()) return 0;
  const auto it = sessions.find(key);
  long load = it == sessions.end() ? 0 : 1000L * it->second;
  if (const auto* n = nvml())
    if (auto util = n->encoder_utilization(key)) load += *util;
  return load;
}

}  // namespace

std::string gpu_description(int gpu) {
  const auto& gpus = ccm::gst::detected_gpus();
  if (gpu < 0 || gpu >= (int)gpus.size()) return "cpu";
  return ccm::hw::describe(gpus[gpu]);
}

std::string gpu_key(int gpu) {
  const auto& gpus = ccm::gst::detected_gpus();
  return gpu >= 0 && gpu < (int)gpus.size() ? gpus[gpu].pci_address : std::string();
}

bool any_hardware(const std::vector<ccm::catalog::Candidate>& cands) {
  return std::any_of(cands.begin(), cands.end(), [](const auto& c) { return c.hardware; });
}

// Hardware candidates, least loaded GPU first (rank order among equals); the
// device-choosing nvautogpu elements get the least loaded NVIDIA GPU with an encoder.
void order_by_load(std::vector<ccm::catalog::Candidate>& cands, const std::map<std::string, int>& sessions) {
  const auto& gpus = ccm::gst::detected_gpus();
  int best_nvidia = -1;
  long best_load = 0;
  for (int i = 0; i < (int)gpus.size(); i++) {
    if (gpus[i].vendor != ccm::hw::GpuVendor::Nvidia || !gpus[i].has_encoder.value_or(true)) continue;
    const long l = gpu_load(i, sessions);
    if (best_nvidia < 0 || l < best_load) best_nvidia = i, best_load = l;
  }
  for (auto& c : cands)
    if (c.hardware && c.gpu < 0 && c.entry && c.entry->api == ccm::catalog::Api::NvencAutoGpu) c.gpu = best_nvidia;
  std::stable_sort(cands.begin(), cands.end(), [&](const auto& a, const auto& b) {
    if (a.hardware != b.hardware) return a.hardware;
    if (!a.hardware) return false;
    return gpu_load(a.gpu, sessions) < gpu_load(b.gpu, sessions);
  });
}

std::string device_of(const ccm::catalog::Candidate& c) {
  const auto& gpus = ccm::gst::detected_gpus();
  if (c.gpu < 0 || c.gpu >= (int)gpus.size()) return c.hardware ? "gpu?" : "cpu";
  return gpus[c.gpu].pci_address + " " + (gpus[c.gpu].name.empty() ? ccm::hw::to_string(gpus[c.gpu].vendor) : gpus[c.gpu].name);
}

// What nvcodec registered, when an NVIDIA GPU is here: a GPU without NVENC (H100,
// A100) or a driver that cannot open an encode session leaves nvcodec with
// decoders and memory elements only, which is worth saying next to the per-element
// reasons. "" without an NVIDIA GPU.
std::string ccm_enc_bin_nvcodec_note() {
  const auto& gpus = ccm::gst::detected_gpus();
  const auto nvidia = std::find_if(gpus.begin(), gpus.end(),
                                   [](const auto& g) { return g.vendor == ccm::hw::GpuVendor::Nvidia; });
  if (nvidia == gpus.end()) return {};
  GstPlugin* plugin = gst_registry_find_plugin(gst_registry_get(), "nvcodec");
  if (!plugin) return "nvcodec: the plugin is not in the registry (gstreamer1.0-plugins-bad)";
  gst_object_unref(plugin);
  std::vector<std::string> elements, encoders;
  GList* features = gst_registry_get_feature_list_by_plugin(gst_registry_get(), "nvcodec");
  for (GList* l = features; l; l = l->next) {
    if (!GST_IS_ELEMENT_FACTORY(l->data)) continue;
    GstElementFactory* f = GST_ELEMENT_FACTORY(l->data);
    const std::string name = GST_OBJECT_NAME(f);
    elements.push_back(name);
    const gchar* klass = gst_element_factory_get_metadata(f, GST_ELEMENT_METADATA_KLASS);
    if (klass && strstr(klass, "Encoder")) encoders.push_back(name);
  }
  gst_plugin_feature_list_free(features);
  if (!encoders.empty()) return {};
  if (elements.empty()) return "nvcodec: registered no element (no usable CUDA driver in this process)";
  std::sort(elements.begin(), elements.end());
  const std::string gpu = nvidia->name.empty() ? "the NVIDIA GPU" : nvidia->name;
  return "nvcodec: registered " + std::to_string(elements.size()) + " element(s) (" + join(elements, ", ") +
         ") and no encoder: " + gpu + (nvidia->has_encoder == false ? " has no NVENC" : " could not open NVENC");
}

}  // namespace ccm::encbin
