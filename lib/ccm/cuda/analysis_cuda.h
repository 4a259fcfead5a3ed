// The analysis of analysis/analysis.h on an NVIDIA GPU, for frames that already
// live in device memory (GstCudaMemory, NVDEC output). Same definitions, same
// integers: SAD and activity of every 16x16 block, 64x64 classes, the block
// counts and the frame totals are bit-exact with the scalar CPU code. Only
// `complexity`, a sum of doubles, is added in another order (a tree on the GPU
// instead of the CPU's row-major loop), so it may differ in the last bits.
//
// No CUDA header here: the plugin and the tests include this with any C++
// compiler. Device pointers travel in LumaPlane::data.
//
// Contexts: every call runs on the CUDA context current on the calling thread
// (the runtime API binds to a context the driver API made current, as
// gst_cuda_context_push does), or on the device's primary context when none is.
// An Analyser keeps device buffers and a stream of the context it first ran in:
// use and destroy it with that context current.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "analysis/analysis.h"

namespace ccm::cuda {

// Whether the CUDA runtime sees at least one device (false on machines without
// a GPU or driver; never throws). The reason is in `why` when given.
bool device_available(std::string* why = nullptr);

class Analyser {
 public:
  Analyser();
  ~Analyser();
  Analyser(const Analyser&) = delete;
  Analyser& operator=(const Analyser&) = delete;
  Analyser(Analyser&&) noexcept;
  Analyser& operator=(Analyser&&) noexcept;

  // analyse_frame() for planes in device memory (data = device pointer). Waits
  // for the results (about 10 kB for an 8K frame come back to the host).
  // with_blocks: also copy sad16/activity16 back (they stay empty otherwise;
  // the rate controller does not read them). false on an invalid plane or a
  // CUDA error (last_error() says which); `out` is then untouched.
  bool analyse(const analysis::LumaPlane& cur, const analysis::LumaPlane* prev,
               const analysis::AnalysisOptions& options, analysis::FrameAnalysis& out, bool with_blocks = false);

  // For benchmarks: the device time of `runs` analyses (kernels and the copy
  // of the results), each between two events on the analyser's stream after
  // `warmup` untimed ones; pair i uses frames[i % n]. Milliseconds per run.
  std::vector<float> time_runs(const std::vector<analysis::LumaPlane>& cur, const std::vector<analysis::LumaPlane>& prev,
                               const analysis::AnalysisOptions& options, int warmup, int runs);

  const std::string& last_error() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// A plane in device memory (cudaMallocPitch), for tests and benchmarks.
class DevicePlane {
 public:
  // Copies `host` to the device with the host's stride, starting `offset`
  // bytes into an allocation aligned to 256 bytes (an odd offset or stride
  // gives a plane that the 16-byte loads cannot take).
  static DevicePlane upload(const analysis::LumaPlane& host, int offset = 0, std::string* error = nullptr);
  DevicePlane() = default;
  ~DevicePlane();
  DevicePlane(const DevicePlane&) = delete;
  DevicePlane& operator=(const DevicePlane&) = delete;
  DevicePlane(DevicePlane&& o) noexcept;
  DevicePlane& operator=(DevicePlane&& o) noexcept;

  bool valid() const { return base_ != nullptr; }
  // The device view: data is a device pointer.
  const analysis::LumaPlane& plane() const { return plane_; }

 private:
  void* base_ = nullptr;
  analysis::LumaPlane plane_{};
};

// Read bandwidth of device memory (bytes read / s): a kernel summing `bytes`
// with 16-byte loads, median of `runs` timed with events. 0 on error.
double measure_read_bandwidth(size_t bytes, int runs);
// Device-to-device copy (bytes read + written) / s, median of `runs`. 0 on error.
double measure_copy_bandwidth(size_t bytes, int runs);
// The device's name and multiprocessor count, for reports.
std::string device_description();

}  // namespace ccm::cuda
