#include "hw/nvml.h"

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <string>

namespace ccm::hw {
namespace {

// The handful of NVML declarations we need, written from the documented C API
// so that building needs no NVIDIA headers.
using nvmlReturn_t = int;
constexpr nvmlReturn_t NVML_SUCCESS = 0;
constexpr nvmlReturn_t NVML_ERROR_NOT_SUPPORTED = 3;
struct nvmlDevice_st;
using nvmlDevice_t = nvmlDevice_st*;
using nvmlEncoderType_t = int;
constexpr nvmlEncoderType_t NVML_ENCODER_QUERY_H264 = 0;
constexpr unsigned NVML_DEVICE_NAME_V2_BUFFER_SIZE = 96;

using InitFn = nvmlReturn_t (*)();
using ShutdownFn = nvmlReturn_t (*)();
using GetHandleByPciBusIdFn = nvmlReturn_t (*)(const char*, nvmlDevice_t*);
using GetNameFn = nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned);
using GetEncoderCapacityFn = nvmlReturn_t (*)(nvmlDevice_t, nvmlEncoderType_t, unsigned*);
using GetEncoderUtilizationFn = nvmlReturn_t (*)(nvmlDevice_t, unsigned*, unsigned*);

// nvmlGpuInstanceProfileInfo_t (version 1), the MIG profile description. Its
// encoderCount is the number of NVENC engines a GPU instance of that profile
// gets; on MIG-capable parts the largest profile spans the whole GPU.
struct nvmlGpuInstanceProfileInfo_t {
  unsigned id;
  unsigned isP2pSupported;
  unsigned sliceCount;
  unsigned instanceCount;
  unsigned multiprocessorCount;
  unsigned copyEngineCount;
  unsigned decoderCount;
  unsigned encoderCount;
  unsigned jpegCount;
  unsigned ofaCount;
  unsigned long long memorySizeMB;
};
using GetGpuInstanceProfileInfoFn = nvmlReturn_t (*)(nvmlDevice_t, unsigned, nvmlGpuInstanceProfileInfo_t*);
// Profile ids are small enums (1-slice = 0 ... 7-slice = 4, newer variants above);
// ids a part does not have answer an error and are skipped.
constexpr unsigned kMaxGpuInstanceProfile = 16;

template <typename Fn>
Fn symbol(void* handle, const char* name) {
  return reinterpret_cast<Fn>(dlsym(handle, name));
}

}  // namespace

struct NvmlSession::Library {
  void* handle = nullptr;
  bool initialised = false;
  ShutdownFn shutdown = nullptr;
  GetHandleByPciBusIdFn get_handle = nullptr;
  GetNameFn get_name = nullptr;
  GetEncoderCapacityFn get_encoder_capacity = nullptr;
  GetGpuInstanceProfileInfoFn get_profile_info = nullptr;
  GetEncoderUtilizationFn get_encoder_utilization = nullptr;

  // NVENC engines of the largest MIG profile; nullopt on parts without MIG.
  std::optional<unsigned> nvenc_engine_count(nvmlDevice_t device) const {
    if (get_profile_info == nullptr) return std::nullopt;
    std::optional<unsigned> most;
    for (unsigned profile = 0; profile < kMaxGpuInstanceProfile; ++profile) {
      nvmlGpuInstanceProfileInfo_t info{};
      if (get_profile_info(device, profile, &info) != NVML_SUCCESS) continue;
      most = std::max(most.value_or(0u), info.encoderCount);
    }
    return most;
  }

  Library() = default;
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;
  ~Library() {
    if (initialised && shutdown != nullptr) shutdown();
    if (handle != nullptr) dlclose(handle);
  }
};

std::optional<NvmlSession> NvmlSession::open(const char* library_name) {
  auto lib = std::make_unique<Library>();
  // RTLD_LOCAL keeps NVML's symbols out of the global namespace of whatever
  // process (a GStreamer application) loaded us.
  lib->handle = dlopen(library_name, RTLD_NOW | RTLD_LOCAL);
  if (lib->handle == nullptr) return std::nullopt;

  const auto init = symbol<InitFn>(lib->handle, "nvmlInit_v2");
  lib->shutdown = symbol<ShutdownFn>(lib->handle, "nvmlShutdown");
  lib->get_handle = symbol<GetHandleByPciBusIdFn>(lib->handle, "nvmlDeviceGetHandleByPciBusId_v2");
  lib->get_name = symbol<GetNameFn>(lib->handle, "nvmlDeviceGetName");
  lib->get_encoder_capacity = symbol<GetEncoderCapacityFn>(lib->handle, "nvmlDeviceGetEncoderCapacity");
  lib->get_profile_info = symbol<GetGpuInstanceProfileInfoFn>(lib->handle, "nvmlDeviceGetGpuInstanceProfileInfo");
  lib->get_encoder_utilization = symbol<GetEncoderUtilizationFn>(lib->handle, "nvmlDeviceGetEncoderUtilization");
  if (init == nullptr || lib->shutdown == nullptr || lib->get_handle == nullptr) return std::nullopt;

  // Fails without a loaded kernel module or with no permission on /dev/nvidiactl.
  if (init() != NVML_SUCCESS) return std::nullopt;
  lib->initialised = true;
  return NvmlSession(std::move(lib));
}

NvmlSession::NvmlSession(std::unique_ptr<Library> lib) : lib_(std::move(lib)) {}
NvmlSession::NvmlSession(NvmlSession&&) noexcept = default;
NvmlSession& NvmlSession::operator=(NvmlSession&&) noexcept = default;
NvmlSession::~NvmlSession() = default;

std::optional<NvmlGpuFacts> NvmlSession::query(std::string_view pci_address) const {
  if (!lib_) return std::nullopt;
  const std::string bus_id(pci_address);
  nvmlDevice_t device = nullptr;
  if (lib_->get_handle(bus_id.c_str(), &device) != NVML_SUCCESS || device == nullptr) return std::nullopt;

  NvmlGpuFacts facts;
  if (lib_->get_name != nullptr) {
    std::array<char, NVML_DEVICE_NAME_V2_BUFFER_SIZE> name{};
    if (lib_->get_name(device, name.data(), static_cast<unsigned>(name.size())) == NVML_SUCCESS) {
      name.back() = '\0';
      facts.name = name.data();
    }
  }
  // Measured on the H100 (driver 580): the H.264 capacity query answers SUCCESS
  // and 100% although the part has no NVENC at all. The MIG profiles count
  // the engines for real, so on MIG-capable parts they decide; other parts
  // answer the profile query with an error and the capacity query decides.
  const auto engines = lib_->nvenc_engine_count(device);
  if (engines && *engines == 0) {
    facts.has_encoder = false;
    return facts;
  }
  if (lib_->get_encoder_capacity != nullptr) {
    unsigned capacity = 0;
    const nvmlReturn_t rc = lib_->get_encoder_capacity(device, NVML_ENCODER_QUERY_H264, &capacity);
    if (rc == NVML_SUCCESS) {
      // Capacity is what is left right now (0 when fully loaded), so any success
      // means the part has NVENC.
      facts.has_encoder = true;
      facts.encoder_capacity = static_cast<int>(capacity);
    } else if (rc == NVML_ERROR_NOT_SUPPORTED) {
      facts.has_encoder = false;
    }
  }
  if (!facts.has_encoder && engines) facts.has_encoder = *engines > 0;
  return facts;
}

std::optional<unsigned> NvmlSession::encoder_utilization(std::string_view pci_address) const {
  if (!lib_ || lib_->get_encoder_utilization == nullptr) return std::nullopt;
  const std::string bus_id(pci_address);
  nvmlDevice_t device = nullptr;
  if (lib_->get_handle(bus_id.c_str(), &device) != NVML_SUCCESS || device == nullptr) return std::nullopt;
  unsigned utilization = 0, sampling_period_us = 0;
  if (lib_->get_encoder_utilization(device, &utilization, &sampling_period_us) != NVML_SUCCESS) return std::nullopt;
  return utilization;
}

}  // namespace ccm::hw
