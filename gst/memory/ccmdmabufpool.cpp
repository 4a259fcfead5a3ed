#include "memory/ccmdmabufpool.h"

#include "common/registry_probe.h"
#include "memory/ccmdmabufallocator.h"
#include "memory/video_layout.h"

#include <mutex>
#include <string>

GST_DEBUG_CATEGORY_EXTERN(ccm_dmabuf_debug);
#define GST_CAT_DEFAULT ccm_dmabuf_debug

namespace {

constexpr const char* kAlignmentField = "ccm-alignment";
constexpr const char* kBackendField = "ccm-backend";
constexpr const char* kMlockField = "ccm-mlock";
constexpr const char* kNumaField = "ccm-numa-node";
constexpr const char* kGpuField = "ccm-gpu";

bool same_options(const ccm::memory::AllocatorOptions& a, const ccm::memory::AllocatorOptions& b) {
  return a.backend == b.backend && a.mlock == b.mlock && a.numa_node == b.numa_node && a.prefault == b.prefault;
}

// numa-node=-1: the GPU's node, else the node this thread runs on; nothing to
// choose on a machine with one node.
int resolve_numa_node(GstObject* pool, int requested, int gpu) {
  if (requested == CCM_DMABUF_POOL_NUMA_OFF) return -1;
  if (requested >= 0) return requested;
  if (ccm::memory::numa_node_count() <= 1) {
    GST_DEBUG_OBJECT(pool, "one NUMA node: no placement needed");
    return -1;
  }
  const auto& gpus = ccm::gst::detected_gpus();
  if (gpu >= 0 && gpu < (int)gpus.size() && gpus[gpu].numa_node >= 0) {
    GST_DEBUG_OBJECT(pool, "frames on NUMA node %d, the node of GPU %d", gpus[gpu].numa_node, gpu);
    return gpus[gpu].numa_node;
  }
  const int local = ccm::memory::numa_local_node();
  GST_DEBUG_OBJECT(pool, "frames on NUMA node %d, the node of this thread's CPU", local);
  return local;
}

bool same_alignment(const GstVideoAlignment& a, const GstVideoAlignment& b) {
  if (a.padding_top != b.padding_top || a.padding_bottom != b.padding_bottom || a.padding_left != b.padding_left ||
      a.padding_right != b.padding_right)
    return false;
  for (int i = 0; i < GST_VIDEO_MAX_PLANES; i++)
    if (a.stride_align[i] != b.stride_align[i]) return false;
  return true;
}

std::string plane_list(const GstVideoInfo& info, bool strides) {
  std::string out;
  for (guint i = 0; i < GST_VIDEO_INFO_N_PLANES(&info); i++) {
    if (i) out += ",";
    out += strides ? std::to_string(info.stride[i]) : std::to_string(info.offset[i]);
  }
  return out;
}

}  // namespace

struct _GstCcmDmaBufPool {
  GstVideoBufferPool parent;
  struct Private {
    std::mutex lock;
    bool configured = false;
    ccm::memory::AlignedLayout layout{};
    guint alignment = ccm::memory::kDefaultAlignment;
    gsize buffer_size = 0;
    guint min_buffers = 0, max_buffers = 0;
    ccm::memory::AllocatorOptions options;
    GstAllocator* allocator = nullptr;
    // The alignment we wrote into the config last time, and the upstream
    // request it was made from: a config that comes back with ours unchanged
    // (get_config, edit params, set_config) still means that request, not our
    // padding as a new one.
    GstVideoAlignment written{};
    bool has_request = false;
    GstVideoAlignment request{};
  }* priv;
};

// The allocator type's registration sets up the shared debug category.
G_DEFINE_TYPE_WITH_CODE(GstCcmDmaBufPool, gst_ccm_dmabuf_pool, GST_TYPE_VIDEO_BUFFER_POOL,
                        gst_ccm_dmabuf_allocator_get_type())

enum { PROP_0, PROP_STATS };

static const gchar** ccm_dmabuf_pool_get_options(GstBufferPool*) {
  static const gchar* options[] = {GST_BUFFER_POOL_OPTION_VIDEO_META, GST_BUFFER_POOL_OPTION_VIDEO_ALIGNMENT, nullptr};
  return options;
}

static gboolean ccm_dmabuf_pool_set_config(GstBufferPool* pool, GstStructure* config) {
  auto* self = GST_CCM_DMABUF_POOL(pool);
  auto& p = *self->priv;
  GstCaps* caps = nullptr;
  guint size = 0, min_buffers = 0, max_buffers = 0;
  if (!gst_buffer_pool_config_get_params(config, &caps, &size, &min_buffers, &max_buffers)) {
    GST_ERROR_OBJECT(pool, "config has no buffer parameters (caps, size, min, max)");
    return FALSE;
  }
  if (!caps) {
    GST_ERROR_OBJECT(pool, "config has no caps: set them with gst_buffer_pool_config_set_params");
    return FALSE;
  }
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, caps)) {
    GST_ERROR_OBJECT(pool, "caps are not complete raw video: %" GST_PTR_FORMAT, caps);
    return FALSE;
  }

  guint alignment = ccm::memory::kDefaultAlignment;
  if (gst_structure_has_field(config, kAlignmentField) && !gst_structure_get_uint(config, kAlignmentField, &alignment)) {
    GST_ERROR_OBJECT(pool, "%s must be an unsigned integer", kAlignmentField);
    return FALSE;
  }
  if (std::string problem = ccm::memory::alignment_problem(alignment); !problem.empty()) {
    GST_ERROR_OBJECT(pool, "%s: %s", kAlignmentField, problem.c_str());
    return FALSE;
  }

  ccm::memory::AllocatorOptions options;
  if (const gchar* name = gst_structure_get_string(config, kBackendField)) {
    bool valid = false;
    options.backend = ccm::memory::parse_backend(name, &valid);
    if (!valid) {
      GST_ERROR_OBJECT(pool, "%s=%s is not one of %s", kBackendField, name,
                       std::string(ccm::memory::kBackendNames).c_str());
      return FALSE;
    }
  }
  gboolean mlock = FALSE;
  if (gst_structure_get_boolean(config, kMlockField, &mlock)) options.mlock = mlock;
  gint numa = CCM_DMABUF_POOL_NUMA_AUTO, gpu = -1;
  gst_structure_get_int(config, kNumaField, &numa);
  gst_structure_get_int(config, kGpuField, &gpu);
  if (numa < CCM_DMABUF_POOL_NUMA_OFF) {
    GST_ERROR_OBJECT(pool, "%s=%d: use -2 (off), -1 (auto) or a node number", kNumaField, numa);
    return FALSE;
  }
  options.numa_node = resolve_numa_node(GST_OBJECT(pool), numa, gpu);

  // Padding that upstream asked for (decoders drawing outside the picture) is
  // kept; our alignment is added to its stride masks.
  GstVideoAlignment requested;
  bool has_requested = gst_buffer_pool_config_has_option(config, GST_BUFFER_POOL_OPTION_VIDEO_ALIGNMENT) &&
                       gst_buffer_pool_config_get_video_alignment(config, &requested);
  {
    std::lock_guard lock(p.lock);
    if (has_requested && p.configured && same_alignment(requested, p.written)) {
      has_requested = p.has_request;
      requested = p.request;
    }
  }
  ccm::memory::AlignedLayout layout{};
  std::string why;
  if (!ccm::memory::aligned_layout(info, alignment, has_requested ? &requested : nullptr, &layout, &why)) {
    GST_ERROR_OBJECT(pool, "cannot lay out %" GST_PTR_FORMAT ": %s", caps, why.c_str());
    return FALSE;
  }
  // Every buffer carries a GstVideoMeta: the strides are not GStreamer's
  // defaults, so only a producer that maps through the meta (gst_video_frame_map)
  // writes them right. Saying so in the config tells the caller.
  if (!gst_buffer_pool_config_has_option(config, GST_BUFFER_POOL_OPTION_VIDEO_META)) {
    GST_INFO_OBJECT(pool, "adding %s: buffers always carry GstVideoMeta", GST_BUFFER_POOL_OPTION_VIDEO_META);
    gst_buffer_pool_config_add_option(config, GST_BUFFER_POOL_OPTION_VIDEO_META);
  }
  if (!gst_buffer_pool_config_has_option(config, GST_BUFFER_POOL_OPTION_VIDEO_ALIGNMENT))
    gst_buffer_pool_config_add_option(config, GST_BUFFER_POOL_OPTION_VIDEO_ALIGNMENT);
  gst_buffer_pool_config_set_video_alignment(config, &layout.padding);

  const gsize buffer_size = ccm::memory::round_up(MAX((gsize)size, layout.info.size), alignment);
  GstAllocator* allocator = nullptr;
  {
    std::lock_guard lock(p.lock);
    if (p.allocator && same_options(p.options, options)) allocator = GST_ALLOCATOR(gst_object_ref(p.allocator));
  }
  if (!allocator) allocator = ccm::memory::new_allocator(options);
  GstAllocationParams params;
  gst_allocation_params_init(&params);
  params.align = alignment - 1;
  gst_buffer_pool_config_set_allocator(config, allocator, &params);
  gst_buffer_pool_config_set_params(config, caps, (guint)buffer_size, min_buffers, max_buffers);

  {
    std::lock_guard lock(p.lock);
    if (p.allocator) gst_object_unref(p.allocator);
    p.allocator = allocator;
    p.options = options;
    p.layout = layout;
    p.alignment = alignment;
    p.buffer_size = buffer_size;
    p.min_buffers = min_buffers;
    p.max_buffers = max_buffers;
    p.written = layout.padding;
    p.has_request = has_requested;
    if (has_requested) p.request = requested;
    p.configured = true;
  }
  GST_DEBUG_OBJECT(pool, "%s %dx%d: %" G_GSIZE_FORMAT "-byte buffers, offsets %s, strides %s, %u-byte aligned",
                   gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&info)), info.width, info.height, buffer_size,
                   plane_list(layout.info, false).c_str(), plane_list(layout.info, true).c_str(), alignment);

  // GstVideoBufferPool's own set_config would redo the layout with one stride
  // mask for every plane (which never converges for a palette or tiled plane);
  // the buffers are ours, so its bookkeeping is skipped for GstBufferPool's.
  auto* base = static_cast<GstBufferPoolClass*>(g_type_class_peek(GST_TYPE_BUFFER_POOL));
  return base->set_config(pool, config);
}

static GstFlowReturn ccm_dmabuf_pool_alloc_buffer(GstBufferPool* pool, GstBuffer** buffer,
                                                  GstBufferPoolAcquireParams*) {
  auto* self = GST_CCM_DMABUF_POOL(pool);
  auto& p = *self->priv;
  GstAllocator* allocator = nullptr;
  ccm::memory::AlignedLayout layout;
  gsize size = 0;
  guint alignment = 0;
  {
    std::lock_guard lock(p.lock);
    if (!p.configured || !p.allocator) {
      GST_ERROR_OBJECT(pool, "not configured");
      return GST_FLOW_ERROR;
    }
    allocator = GST_ALLOCATOR(gst_object_ref(p.allocator));
    layout = p.layout;
    size = p.buffer_size;
    alignment = p.alignment;
  }
  GstAllocationParams params;
  gst_allocation_params_init(&params);
  params.align = alignment - 1;
  GstMemory* mem = gst_allocator_alloc(allocator, size, &params);
  if (!mem) {
    GstStructure* st = ccm_dmabuf_allocator_get_stats(allocator);
    GST_ERROR_OBJECT(pool, "cannot allocate a %s %dx%d frame (%" G_GSIZE_FORMAT " bytes): %s",
                     gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&layout.info)), layout.info.width,
                     layout.info.height, size, gst_structure_get_string(st, "last-error"));
    gst_structure_free(st);
    gst_object_unref(allocator);
    return GST_FLOW_ERROR;
  }
  gst_object_unref(allocator);

  GstBuffer* buf = gst_buffer_new();
  gst_buffer_append_memory(buf, mem);
  GstVideoMeta* meta = gst_buffer_add_video_meta_full(
      buf, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT(&layout.info), GST_VIDEO_INFO_WIDTH(&layout.info),
      GST_VIDEO_INFO_HEIGHT(&layout.info), GST_VIDEO_INFO_N_PLANES(&layout.info), layout.info.offset,
      layout.info.stride);
  if (!meta || !gst_video_meta_set_alignment(meta, layout.padding))
    GST_DEBUG_OBJECT(pool, "GstVideoMeta does not carry the padding (strides are still the aligned ones)");
  *buffer = buf;
  return GST_FLOW_OK;
}

static void ccm_dmabuf_pool_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  if (id == PROP_STATS) {
    g_value_take_boxed(value, ccm_dmabuf_pool_get_stats(GST_BUFFER_POOL(object)));
    return;
  }
  G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
}

static void ccm_dmabuf_pool_finalize(GObject* object) {
  auto* self = GST_CCM_DMABUF_POOL(object);
  if (self->priv->allocator) gst_object_unref(self->priv->allocator);
  delete self->priv;
  G_OBJECT_CLASS(gst_ccm_dmabuf_pool_parent_class)->finalize(object);
}

static void gst_ccm_dmabuf_pool_class_init(GstCcmDmaBufPoolClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstBufferPoolClass* pool_class = GST_BUFFER_POOL_CLASS(klass);
  gobject_class->finalize = ccm_dmabuf_pool_finalize;
  gobject_class->get_property = ccm_dmabuf_pool_get_property;
  pool_class->get_options = ccm_dmabuf_pool_get_options;
  pool_class->set_config = ccm_dmabuf_pool_set_config;
  pool_class->alloc_buffer = ccm_dmabuf_pool_alloc_buffer;
  g_object_class_install_property(
      gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "ccm-dmabuf-pool-stats: backend in use, allocations per backend, fallbacks, failures, "
                         "live buffers and bytes, mlock and NUMA outcome, layout (alignment, offsets, strides)",
                         GST_TYPE_STRUCTURE, GParamFlags(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
}

static void gst_ccm_dmabuf_pool_init(GstCcmDmaBufPool* self) { self->priv = new GstCcmDmaBufPool::Private(); }

GstBufferPool* ccm_dmabuf_pool_new(void) {
  auto* pool = GST_BUFFER_POOL(g_object_new(GST_TYPE_CCM_DMABUF_POOL, nullptr));
  gst_object_ref_sink(pool);
  return pool;
}

void ccm_dmabuf_pool_config_set_alignment(GstStructure* config, guint alignment) {
  gst_structure_set(config, kAlignmentField, G_TYPE_UINT, alignment, nullptr);
}

void ccm_dmabuf_pool_config_set_backend(GstStructure* config, const gchar* backend) {
  gst_structure_set(config, kBackendField, G_TYPE_STRING, backend, nullptr);
}

void ccm_dmabuf_pool_config_set_mlock(GstStructure* config, gboolean mlock) {
  gst_structure_set(config, kMlockField, G_TYPE_BOOLEAN, mlock, nullptr);
}

void ccm_dmabuf_pool_config_set_numa_node(GstStructure* config, gint node) {
  gst_structure_set(config, kNumaField, G_TYPE_INT, node, nullptr);
}

void ccm_dmabuf_pool_config_set_gpu(GstStructure* config, gint gpu) {
  gst_structure_set(config, kGpuField, G_TYPE_INT, gpu, nullptr);
}

GstStructure* ccm_dmabuf_pool_get_stats(GstBufferPool* pool) {
  g_return_val_if_fail(GST_IS_CCM_DMABUF_POOL(pool), nullptr);
  auto& p = *GST_CCM_DMABUF_POOL(pool)->priv;
  std::lock_guard lock(p.lock);
  if (!p.configured || !p.allocator) return nullptr;
  GstStructure* s = ccm_dmabuf_allocator_get_stats(p.allocator);
  gst_structure_set_name(s, "ccm-dmabuf-pool-stats");
  const GstVideoInfo& info = p.layout.info;
  gst_structure_set(s, "alignment", G_TYPE_UINT, p.alignment, "format", G_TYPE_STRING,
                    gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&info)), "width", G_TYPE_INT, info.width,
                    "height", G_TYPE_INT, info.height, "buffer-size", G_TYPE_UINT64, (guint64)p.buffer_size,
                    "offsets", G_TYPE_STRING, plane_list(info, false).c_str(), "strides", G_TYPE_STRING,
                    plane_list(info, true).c_str(), "min-buffers", G_TYPE_UINT, p.min_buffers, "max-buffers",
                    G_TYPE_UINT, p.max_buffers, nullptr);
  return s;
}

// ---- proposing the pool upstream --------------------------------------------------

namespace {

// A pool anyone could have made: plain system memory, nothing a device needs.
bool is_generic_sysmem_pool(GstBufferPool* pool) {
  const GType type = G_OBJECT_TYPE(pool);
  if (type != GST_TYPE_VIDEO_BUFFER_POOL && type != GST_TYPE_BUFFER_POOL) return false;
  GstStructure* config = gst_buffer_pool_get_config(pool);
  GstAllocator* allocator = nullptr;
  gst_buffer_pool_config_get_allocator(config, &allocator, nullptr);
  const bool sysmem = !allocator || !allocator->mem_type || g_str_equal(allocator->mem_type, GST_ALLOCATOR_SYSMEM);
  gst_structure_free(config);
  return sysmem;
}

bool is_system_memory(GstCaps* caps) {
  if (gst_caps_get_size(caps) < 1) return false;
  GstCapsFeatures* f = gst_caps_get_features(caps, 0);
  return !f || gst_caps_features_is_any(f) || gst_caps_features_is_equal(f, GST_CAPS_FEATURES_MEMORY_SYSTEM_MEMORY);
}

}  // namespace

gboolean ccm_propose_dmabuf_pool(GstObject* owner, GstQuery* query, gint gpu) {
  g_return_val_if_fail(query && GST_QUERY_TYPE(query) == GST_QUERY_ALLOCATION, FALSE);
  gst_ccm_dmabuf_pool_get_type();  // the debug category
  GstCaps* caps = nullptr;
  gboolean need_pool = FALSE;
  gst_query_parse_allocation(query, &caps, &need_pool);
  GstVideoInfo info;
  if (!caps || !is_system_memory(caps) || !gst_video_info_from_caps(&info, caps)) return FALSE;
  if (!need_pool) {
    GST_DEBUG_OBJECT(owner, "upstream asks for no pool");
    return FALSE;
  }

  guint min_buffers = 0, max_buffers = 0;
  const guint n_pools = gst_query_get_n_allocation_pools(query);
  if (n_pools > 0) {
    GstBufferPool* theirs = nullptr;
    guint size = 0;
    gst_query_parse_nth_allocation_pool(query, 0, &theirs, &size, &min_buffers, &max_buffers);
    if (theirs && !is_generic_sysmem_pool(theirs)) {
      GST_INFO_OBJECT(owner, "downstream offers its own %s: passed through", G_OBJECT_TYPE_NAME(theirs));
      gst_object_unref(theirs);
      return FALSE;
    }
    if (theirs) gst_object_unref(theirs);
  }

  GstBufferPool* pool = ccm_dmabuf_pool_new();
  GstStructure* config = gst_buffer_pool_get_config(pool);
  gst_buffer_pool_config_set_params(config, caps, (guint)info.size, min_buffers, max_buffers);
  gst_buffer_pool_config_add_option(config, GST_BUFFER_POOL_OPTION_VIDEO_META);
  ccm_dmabuf_pool_config_set_gpu(config, gpu);
  if (!gst_buffer_pool_set_config(pool, config)) {
    GST_WARNING_OBJECT(owner, "ccmdmabufpool cannot take %" GST_PTR_FORMAT ": upstream keeps downstream's answer", caps);
    gst_object_unref(pool);
    return FALSE;
  }
  // A pool that cannot make one frame here (its backend forced to a device this
  // machine lacks, no file descriptors left) is not offered: upstream would stop
  // at its first buffer ("Internal data stream error") where its own memory
  // works. Found by tests/reliability (Faults.PoolBackendMissingFallsBack).
  GstBuffer* trial = nullptr;
  const bool can_allocate = gst_buffer_pool_set_active(pool, TRUE) &&
                            gst_buffer_pool_acquire_buffer(pool, &trial, nullptr) == GST_FLOW_OK;
  if (trial) gst_buffer_unref(trial);
  gst_buffer_pool_set_active(pool, FALSE);
  if (!can_allocate) {
    GST_WARNING_OBJECT(owner, "ccmdmabufpool cannot allocate a %s frame here: not offered, upstream keeps "
                       "downstream's answer", gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&info)));
    gst_object_unref(pool);
    return FALSE;
  }
  config = gst_buffer_pool_get_config(pool);
  guint size = 0;
  gst_buffer_pool_config_get_params(config, nullptr, &size, nullptr, nullptr);
  gst_structure_free(config);

  if (n_pools > 0)
    gst_query_set_nth_allocation_pool(query, 0, pool, size, min_buffers, max_buffers);
  else
    gst_query_add_allocation_pool(query, pool, size, min_buffers, max_buffers);
  if (!gst_query_find_allocation_meta(query, GST_VIDEO_META_API_TYPE, nullptr))
    gst_query_add_allocation_meta(query, GST_VIDEO_META_API_TYPE, nullptr);
  GST_INFO_OBJECT(owner, "offering ccmdmabufpool upstream: %u-byte %s buffers (%s)", size,
                  gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&info)),
                  n_pools > 0 ? "in place of a generic system-memory pool" : "downstream had none");
  gst_object_unref(pool);
  return TRUE;
}
