// NVML, loaded at run time with dlopen so libccm has no link-time dependency on
// the NVIDIA driver. Only the few calls GPU detection needs.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace ccm::hw {

struct NvmlGpuFacts {
  std::string name;                 // "" when NVML could not tell
  // false when the MIG profiles count no NVENC engine, or the encoder capacity
  // query answers NOT_SUPPORTED; true when capacity answers; nullopt otherwise.
  std::optional<bool> has_encoder;
  int encoder_capacity = -1;        // H.264 encoder capacity in percent, -1 unknown
};

// One nvmlInit_v2 .. nvmlShutdown span with the library loaded; move-only.
// open() gives nullopt when the library is absent or init fails.
class NvmlSession {
 public:
  static std::optional<NvmlSession> open(const char* library_name = "libnvidia-ml.so.1");

  NvmlSession(NvmlSession&&) noexcept;
  NvmlSession& operator=(NvmlSession&&) noexcept;
  ~NvmlSession();

  // Facts for the GPU at "0000:01:00.0"; nullopt when NVML does not know the
  // device (bound to another driver, hidden from this container ...).
  std::optional<NvmlGpuFacts> query(std::string_view pci_address) const;

  // Encoder utilisation in percent over NVML's last sampling period
  // (nvmlDeviceGetEncoderUtilization); nullopt when NVML cannot tell.
  std::optional<unsigned> encoder_utilization(std::string_view pci_address) const;

 private:
  struct Library;
  explicit NvmlSession(std::unique_ptr<Library> lib);
  std::unique_ptr<Library> lib_;
};

}  // namespace ccm::hw
