#include "common/registry_probe.h"

#include <gst/gst.h>

#include <string>

namespace ccm::gst {

namespace {
std::filesystem::path detection_root() {
  const char* root = g_getenv("CCM_SYSFS_ROOT");
  return (root && *root) ? std::filesystem::path(root) : std::filesystem::path("/");
}
}  // namespace

const std::vector<hw::GpuInfo>& detected_gpus() {
  // Function-local static: detection reads sysfs and may dlopen NVML, so do it once.
  static const std::vector<hw::GpuInfo> gpus = [] {
    hw::GpuDetectOptions options;
    options.root = detection_root();
    return hw::detect_gpus(options);
  }();
  return gpus;
}

const hw::CpuInfo& detected_cpu() {
  static const hw::CpuInfo cpu = hw::detect_cpu(detection_root());
  return cpu;
}

bool registry_has_element(std::string_view factory) {
  std::string name(factory);
  GstPluginFeature* feature = gst_registry_lookup_feature(gst_registry_get(), name.c_str());
  if (!feature) return false;
  const bool is_element = GST_IS_ELEMENT_FACTORY(feature);
  gst_object_unref(feature);
  return is_element;
}

catalog::GstVersion running_gst_version() {
  guint major = 0, minor = 0, micro = 0, nano = 0;
  gst_version(&major, &minor, &micro, &nano);
  return catalog::GstVersion{static_cast<int>(major), static_cast<int>(minor)};
}

}  // namespace ccm::gst
