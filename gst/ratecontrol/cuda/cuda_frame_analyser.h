// ccmratecontrol's analysis of frames in GstCudaMemory (cudaupload, NVDEC
// decoders): mapped for the GPU (GST_MAP_CUDA), analysed by lib/ccm/cuda on the
// memory's own CUDA context, never downloaded. Built with the `cuda` option
// (CCM_HAVE_GST_CUDA); the element uses it when a buffer's memory is CUDA memory.
#pragma once

#include <gst/gst.h>
#include <gst/video/video.h>

#include <memory>
#include <string>

#include "analysis/analysis.h"

namespace ccm::gst {

class CudaFrameAnalyser {
 public:
  CudaFrameAnalyser();
  ~CudaFrameAnalyser();
  CudaFrameAnalyser(const CudaFrameAnalyser&) = delete;
  CudaFrameAnalyser& operator=(const CudaFrameAnalyser&) = delete;

  // Whether every memory of `buf` is CUDA memory (then analyse() takes it).
  static bool is_cuda_buffer(GstBuffer* buf);

  // Analyses `buf` (described by `info`) against the frame kept by
  // keep_as_previous(). The buffer is mapped for the GPU without a ref (it
  // stays writable for the QP meta); call keep_as_previous() or
  // forget_current() after. false with `error` set on a map or CUDA failure.
  bool analyse(GstBuffer* buf, const GstVideoInfo& info, const analysis::AnalysisOptions& options,
               analysis::FrameAnalysis& out, std::string& error);
  // The frame analyse() mapped last becomes the previous one (a ref is taken now).
  void keep_as_previous(GstBuffer* buf);
  // Unmaps the frame analyse() mapped, keeping the previous one.
  void forget_current();
  // Drops the previous frame (caps change, flush, stop).
  void drop_previous();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ccm::gst
