#include "ratecontrol/cuda/cuda_frame_analyser.h"

#include <gst/cuda/gstcudacontext.h>
#include <gst/cuda/gstcudamemory.h>

#include <optional>

#include "cuda/analysis_cuda.h"
#include "ratecontrol/luma_plane.h"

GST_DEBUG_CATEGORY_STATIC(ccm_rc_cuda_debug);
#define GST_CAT_DEFAULT ccm_rc_cuda_debug

namespace ccm::gst {

namespace {

// Makes a GstCudaContext current for a scope; the CUDA runtime inside
// lib/ccm/cuda then runs on it.
class ContextScope {
 public:
  explicit ContextScope(GstCudaContext* ctx) : pushed_(ctx && gst_cuda_context_push(ctx)) {}
  ~ContextScope() {
    if (pushed_) gst_cuda_context_pop(nullptr);
  }
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;
  bool ok() const { return pushed_; }

 private:
  bool pushed_;
};

GstCudaContext* context_of(GstBuffer* buf) {
  GstMemory* mem = gst_buffer_peek_memory(buf, 0);
  return mem && gst_is_cuda_memory(mem) ? GST_CUDA_MEMORY_CAST(mem)->context : nullptr;
}

}  // namespace

struct CudaFrameAnalyser::State {
  GstCudaContext* context = nullptr;  // ours (a ref); the analyser's buffers live in it
  std::optional<cuda::Analyser> analyser;
  GstVideoFrame current{};
  bool current_mapped = false;
  GstBuffer* prev_buffer = nullptr;
  GstVideoFrame prev{};

  void unmap_current() {
    if (current_mapped) gst_video_frame_unmap(&current);
    current_mapped = false;
  }
  void drop_prev() {
    if (!prev_buffer) return;
    gst_video_frame_unmap(&prev);
    gst_buffer_unref(prev_buffer);
    prev_buffer = nullptr;
  }
  // The analyser's device memory is freed with its own context current.
  void release_context() {
    if (!context) return;
    {
      ContextScope scope(context);
      analyser.reset();
    }
    gst_object_unref(context);
    context = nullptr;
  }
  ~State() {
    unmap_current();
    drop_prev();
    release_context();
  }
};

CudaFrameAnalyser::CudaFrameAnalyser() : state_(std::make_unique<State>()) {
  static gsize once = 0;
  if (g_once_init_enter(&once)) {
    GST_DEBUG_CATEGORY_INIT(ccm_rc_cuda_debug, "ccmratecontrol-cuda", 0, "ccmratecontrol analysis on CUDA memory");
    g_once_init_leave(&once, 1);
  }
}

CudaFrameAnalyser::~CudaFrameAnalyser() = default;

bool CudaFrameAnalyser::is_cuda_buffer(GstBuffer* buf) {
  const guint n = gst_buffer_n_memory(buf);
  if (n == 0) return false;
  for (guint i = 0; i < n; ++i)
    if (!gst_is_cuda_memory(gst_buffer_peek_memory(buf, i))) return false;
  return true;
}

bool CudaFrameAnalyser::analyse(GstBuffer* buf, const GstVideoInfo& info, const analysis::AnalysisOptions& options,
                                analysis::FrameAnalysis& out, std::string& error) {
  State& s = *state_;
  s.unmap_current();
  GstCudaContext* ctx = context_of(buf);
  if (!ctx) {
    error = "the buffer is not CUDA memory";
    return false;
  }
  if (ctx != s.context) {
    // Another GPU or context upstream: start again there.
    GST_INFO("CUDA context %p (was %p)", ctx, s.context);
    s.drop_prev();
    s.release_context();
    s.context = static_cast<GstCudaContext*>(gst_object_ref(ctx));
  }
  // GST_MAP_CUDA gives device pointers (uploading first only if someone wrote
  // the memory from the host); NO_REF keeps the buffer writable.
  const auto flags = static_cast<GstMapFlags>(GST_MAP_READ | GST_MAP_CUDA | GST_VIDEO_FRAME_MAP_FLAG_NO_REF);
  const gint64 t0 = g_get_monotonic_time();
  // Without a video meta the memory's own layout (its pitch) describes the
  // frame, not the caps' default strides.
  const GstVideoInfo* layout = &info;
  if (!gst_buffer_get_video_meta(buf) && gst_buffer_n_memory(buf) == 1)
    layout = &GST_CUDA_MEMORY_CAST(gst_buffer_peek_memory(buf, 0))->info;
  if (!gst_video_frame_map(&s.current, layout, buf, flags)) {
    error = "could not map the frame for CUDA";
    return false;
  }
  s.current_mapped = true;
  const gint64 t1 = g_get_monotonic_time();
  ContextScope scope(s.context);
  if (!scope.ok()) {
    error = "could not make the CUDA context current";
    return false;
  }
  if (!s.analyser) s.analyser.emplace();
  const analysis::LumaPlane cur = luma_plane_of(s.current);
  std::optional<analysis::LumaPlane> prev;
  if (s.prev_buffer) prev = luma_plane_of(s.prev);
  const gint64 t2 = g_get_monotonic_time();
  if (!s.analyser->analyse(cur, prev ? &*prev : nullptr, options, out)) {
    error = s.analyser->last_error();
    return false;
  }
  GST_LOG("map %" G_GINT64_FORMAT " us, context push %" G_GINT64_FORMAT " us, analysis %" G_GINT64_FORMAT " us",
          t1 - t0, t2 - t1, g_get_monotonic_time() - t2);
  return true;
}

void CudaFrameAnalyser::keep_as_previous(GstBuffer* buf) {
  State& s = *state_;
  s.drop_prev();
  if (!s.current_mapped) return;
  s.prev_buffer = gst_buffer_ref(buf);
  s.prev = s.current;
  s.current_mapped = false;
}

void CudaFrameAnalyser::forget_current() { state_->unmap_current(); }

void CudaFrameAnalyser::drop_previous() {
  state_->unmap_current();
  state_->drop_prev();
}

}  // namespace ccm::gst
