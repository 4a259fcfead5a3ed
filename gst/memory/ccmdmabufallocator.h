// ccmdmabuf: frame memory from the best kernel source this machine has
// (dma-heap, udmabuf, memfd; see backends.h), mapped once and kept mapped.
//
// DMABuf memory (dma-heap, udmabuf) belongs to GstCcmDmaBufAllocator, a
// GstDmaBufAllocator: gst_is_dmabuf_memory() is true, the fd is exported, and
// every CPU map/unmap brackets DMA_BUF_IOCTL_SYNC. memfd memory belongs to a
// companion GstCcmMemfdAllocator, a plain GstFdAllocator: fd memory that does
// not claim to be DMABuf, so importers never try to import it.
#pragma once

#include <gst/allocators/allocators.h>
#include <gst/gst.h>

G_BEGIN_DECLS

#define CCM_DMABUF_ALLOCATOR_NAME "ccmdmabuf"
// Forces a backend for allocators that were not given one: dma-heap, udmabuf, memfd, auto.
#define CCM_DMABUF_BACKEND_ENV "CCM_DMABUF_BACKEND"

#define GST_TYPE_CCM_DMABUF_ALLOCATOR (gst_ccm_dmabuf_allocator_get_type())
G_DECLARE_FINAL_TYPE(GstCcmDmaBufAllocator, gst_ccm_dmabuf_allocator, GST, CCM_DMABUF_ALLOCATOR,
                     GstDmaBufAllocator)

#define GST_TYPE_CCM_MEMFD_ALLOCATOR (gst_ccm_memfd_allocator_get_type())
G_DECLARE_FINAL_TYPE(GstCcmMemfdAllocator, gst_ccm_memfd_allocator, GST, CCM_MEMFD_ALLOCATOR, GstFdAllocator)

// A ccmdmabuf allocator with default options (backend from CCM_DMABUF_BACKEND, else auto).
GstAllocator* ccm_dmabuf_allocator_new(void);

// Registers a default allocator as "ccmdmabuf" (gst_allocator_find finds it).
void ccm_dmabuf_allocator_register(void);

// ccm-dmabuf-allocator-stats: backend (of the latest allocation), chain, forced-by,
// unavailable, allocations, allocations-<backend>, fallbacks, failures,
// live-buffers, live-bytes, dmabuf, mlock, mlocked-bytes, mlock-failures,
// numa-node, numa-bound, numa-failures, numa-note, prefault, last-error.
// Accepts either of our allocator types. Free with gst_structure_free.
GstStructure* ccm_dmabuf_allocator_get_stats(GstAllocator* allocator);

// Memory made by one of our allocators (the registered one or any pool's).
gboolean ccm_dmabuf_memory_is_ours(GstMemory* mem);
// The backend that made it ("dma-heap", "udmabuf", "memfd"), NULL when not ours.
const gchar* ccm_dmabuf_memory_get_backend(GstMemory* mem);

G_END_DECLS

#ifdef __cplusplus
#include "memory/backends.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ccm::memory {

struct AllocatorOptions {
  // nullopt: CCM_DMABUF_BACKEND when set, else every backend in order.
  std::optional<BackendKind> backend;
  bool mlock = false;       // lock pages of memfd memory in RAM (dmabufs are pinned already)
  int numa_node = -1;       // >= 0: prefer this node for the pages
  bool prefault = true;     // fault every page in at allocation, not on the first frame
};

GstAllocator* new_allocator(const AllocatorOptions& options);
// With a given backend chain (tests inject backends with small limits or failures).
GstAllocator* new_allocator(std::vector<std::unique_ptr<Backend>> chain, const AllocatorOptions& options);

}  // namespace ccm::memory
#endif
