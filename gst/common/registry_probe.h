// What this process can use: the GStreamer registry's encoder factories, the
// running GStreamer version, and the detected CPU and GPUs (detected once).
#pragma once

#include "catalog/rank.h"
#include "hw/cpu.h"
#include "hw/gpu.h"

#include <string_view>
#include <vector>

namespace ccm::gst {

// Detected once per process; the fixture root can be overridden for tests with
// the environment variable CCM_SYSFS_ROOT (a folder holding sys/ and proc/).
const std::vector<hw::GpuInfo>& detected_gpus();
const hw::CpuInfo& detected_cpu();

bool registry_has_element(std::string_view factory);
catalog::GstVersion running_gst_version();

}  // namespace ccm::gst
