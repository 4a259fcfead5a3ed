// ccmdmabufpool: a GstVideoBufferPool of ccmdmabuf memory whose every plane
// offset and stride is a multiple of 256 bytes (or another power of two >= 64),
// with a GstVideoMeta on every buffer that says so.
//
// Config options (besides caps/size/min/max), set with the helpers below:
//   ccm-alignment  uint     plane offset/stride alignment in bytes (default 256)
//   ccm-backend    string   auto | dma-heap | udmabuf | memfd (default: CCM_DMABUF_BACKEND, else auto)
//   ccm-mlock      boolean  lock memfd pages in RAM (default false)
//   ccm-numa-node  int      -2 off, -1 auto (the GPU's node, else the local one), >= 0 that node
//   ccm-gpu        int      index of the GPU in use (ccm::gst::detected_gpus), for numa-node=-1
#pragma once

#include <gst/gst.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_TYPE_CCM_DMABUF_POOL (gst_ccm_dmabuf_pool_get_type())
G_DECLARE_FINAL_TYPE(GstCcmDmaBufPool, gst_ccm_dmabuf_pool, GST, CCM_DMABUF_POOL, GstVideoBufferPool)

#define CCM_DMABUF_POOL_NUMA_OFF -2
#define CCM_DMABUF_POOL_NUMA_AUTO -1

GstBufferPool* ccm_dmabuf_pool_new(void);

void ccm_dmabuf_pool_config_set_alignment(GstStructure* config, guint alignment);
void ccm_dmabuf_pool_config_set_backend(GstStructure* config, const gchar* backend);
void ccm_dmabuf_pool_config_set_mlock(GstStructure* config, gboolean mlock);
void ccm_dmabuf_pool_config_set_numa_node(GstStructure* config, gint node);
void ccm_dmabuf_pool_config_set_gpu(GstStructure* config, gint gpu);

// ccm-dmabuf-pool-stats: the allocator's stats (see ccm_dmabuf_allocator_get_stats)
// plus alignment, format, width, height, buffer-size, offsets, strides,
// min-buffers, max-buffers. NULL before a successful set_config. Also the
// pool's read-only "stats" property.
GstStructure* ccm_dmabuf_pool_get_stats(GstBufferPool* pool);

// For a sink pad's ALLOCATION query that downstream has answered: offers a
// ccmdmabufpool sized for the query's caps when the answer has no pool, or only
// a generic system-memory one (GstVideoBufferPool / GstBufferPool without a
// special allocator, as software encoders and videoconvert propose). A pool of
// any other kind (VA surfaces, CUDA memory ...) is the encoder's own: it is
// passed through untouched. `gpu` is the GPU in use (index into the detected
// GPUs, -1 for none), whose NUMA node the frames go to. Returns TRUE when our
// pool was put in the query.
gboolean ccm_propose_dmabuf_pool(GstObject* owner, GstQuery* query, gint gpu);

G_END_DECLS
