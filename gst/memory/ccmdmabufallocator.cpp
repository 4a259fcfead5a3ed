#include "memory/ccmdmabufallocator.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

GST_DEBUG_CATEGORY(ccm_dmabuf_debug);
#define GST_CAT_DEFAULT ccm_dmabuf_debug

using ccm::memory::AllocatorOptions;
using ccm::memory::AllocResult;
using ccm::memory::Backend;
using ccm::memory::BackendKind;

namespace {

void init_debug() {
  static gsize once = 0;
  if (g_once_init_enter(&once)) {
    GST_DEBUG_CATEGORY_INIT(ccm_dmabuf_debug, "ccmdmabuf", 0, "ccm aligned DMABuf memory and pool");
    g_once_init_leave(&once, 1);
  }
}

// What we know about each memory we made, until it is freed. GstMemory's own
// qdata is gone by the time the allocator frees it, so it lives here.
struct MemoryRecord {
  const gchar* backend;  // interned
  gsize bytes = 0;
  bool locked = false;
};

struct Stats {
  guint64 allocations = 0, fallbacks = 0, failures = 0;
  guint64 live_buffers = 0, live_bytes = 0;
  guint64 mlocked_bytes = 0, mlock_failures = 0;
  guint64 numa_bound = 0, numa_failures = 0;
  std::unordered_map<std::string, guint64> per_backend;
  std::string last_backend;
  bool last_dmabuf = false;
  std::string numa_note;
  std::string last_error;
};

// Shared by an allocator and its memfd companion, and outliving both while
// memories they made are alive (each memory holds its allocator, and the
// companion holds this).
struct Shared {
  std::mutex lock;
  Stats stats;
  std::unordered_map<const GstMemory*, MemoryRecord> records;
  bool warned_mlock = false, warned_numa = false, warned_align = false;
};

struct ChainEntry {
  std::unique_ptr<Backend> backend;
  bool unavailable = false;
  std::string why_unavailable;
};

enum class ForcedBy { Auto, Env, Caller };

const char* to_string(ForcedBy f) {
  switch (f) {
    case ForcedBy::Env: return "env";
    case ForcedBy::Caller: return "config";
    case ForcedBy::Auto: break;
  }
  return "auto";
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

}  // namespace

struct _GstCcmDmaBufAllocator {
  GstDmaBufAllocator parent;
  struct Private {
    AllocatorOptions options;
    ForcedBy forced_by = ForcedBy::Auto;
    std::mutex chain_lock;  // probing opens device nodes lazily
    std::vector<ChainEntry> chain;
    std::shared_ptr<Shared> shared = std::make_shared<Shared>();
    GstAllocator* memfd = nullptr;  // companion for memory that is not a DMABuf
  }* priv;
};

struct _GstCcmMemfdAllocator {
  GstFdAllocator parent;
  struct Private {
    AllocatorOptions options;
    std::shared_ptr<Shared> shared;
  }* priv;
};

G_DEFINE_TYPE_WITH_CODE(GstCcmDmaBufAllocator, gst_ccm_dmabuf_allocator, GST_TYPE_DMABUF_ALLOCATOR, init_debug())
G_DEFINE_TYPE_WITH_CODE(GstCcmMemfdAllocator, gst_ccm_memfd_allocator, GST_TYPE_FD_ALLOCATOR, init_debug())

namespace {

Shared* shared_of(GstAllocator* allocator) {
  if (GST_IS_CCM_DMABUF_ALLOCATOR(allocator)) return GST_CCM_DMABUF_ALLOCATOR(allocator)->priv->shared.get();
  if (GST_IS_CCM_MEMFD_ALLOCATOR(allocator)) return GST_CCM_MEMFD_ALLOCATOR(allocator)->priv->shared.get();
  return nullptr;
}

// Pages of `mem`, from the start of its mapping.
struct Pages {
  guint8* base;
  gsize bytes;
};

// Faults every page in now, so the first frames don't pay one fault per page.
void prefault(const Pages& pages) {
#ifdef MADV_POPULATE_WRITE
  if (madvise(pages.base, pages.bytes, MADV_POPULATE_WRITE) == 0) return;
#endif
  // Older kernels, or mappings populate refuses (PFN maps of a dmabuf): a read
  // per page faults it in without changing what is there.
  const gsize step = ccm::memory::page_size();
  volatile guint8 sink = 0;
  for (gsize off = 0; off < pages.bytes; off += step) sink = sink + pages.base[off];
  (void)sink;
}

// Wraps a new fd in GstFdMemory owned by `owner`, maps it once for good
// (KEEP_MAPPED: every later map returns this mapping), and applies the options.
// Returns nullptr (fd closed) when the mapping fails.
GstMemory* wrap(GstAllocator* owner, Shared& shared, const AllocatorOptions& options, const Backend* backend,
                const std::string& backend_name, AllocResult result, gsize prefix, gsize size, std::string* why) {
  const gsize bytes = result.size;
  GstMemory* mem = gst_fd_allocator_alloc(owner, result.fd.release(), bytes, GST_FD_MEMORY_FLAG_KEEP_MAPPED);
  if (!mem) {
    *why = "gst_fd_allocator_alloc failed";
    return nullptr;
  }
  gst_memory_resize(mem, static_cast<gssize>(prefix), size);

  GstMapInfo map;
  if (!gst_memory_map(mem, &map, GST_MAP_READWRITE)) {
    *why = backend_name + ": mmap of " + std::to_string(bytes) + " bytes failed";
    gst_memory_unref(mem);
    return nullptr;
  }
  const Pages pages{map.data - mem->offset, bytes};
  if (options.prefault) prefault(pages);

  bool locked = false, mlock_failed = false;
  int mlock_errno = 0;
  // A DMABuf's pages are pinned by the kernel (heap pages, or udmabuf's pinned
  // shmem): only memfd pages can be swapped out.
  if (options.mlock && !(backend && backend->is_dmabuf())) {
    // The raw syscall: sanitizer runtimes replace mlock() with a no-op that
    // reports success, which would hide RLIMIT_MEMLOCK refusals under test.
    locked = syscall(SYS_mlock, pages.base, pages.bytes) == 0;
    if (!locked) {
      mlock_failed = true;
      mlock_errno = errno;
    }
  }
  gst_memory_unmap(mem, &map);

  std::lock_guard lock(shared.lock);
  Stats& st = shared.stats;
  shared.records[mem] = MemoryRecord{g_intern_string(backend_name.c_str()), bytes, locked};
  st.allocations++;
  st.per_backend[backend_name]++;
  st.live_buffers++;
  st.live_bytes += bytes;
  if (locked) st.mlocked_bytes += bytes;
  if (mlock_failed) {
    st.mlock_failures++;
    if (!shared.warned_mlock) {
      shared.warned_mlock = true;
      GST_WARNING_OBJECT(owner,
                         "mlock of %" G_GSIZE_FORMAT " bytes refused (%s): frames stay pageable; raise "
                         "RLIMIT_MEMLOCK (ulimit -l) or grant CAP_IPC_LOCK to lock them",
                         bytes, std::strerror(mlock_errno));
    }
  }
  if (options.numa_node >= 0) {
    if (result.numa_bound) {
      st.numa_bound++;
    } else {
      st.numa_failures++;
      st.numa_note = result.numa_note;
      if (!shared.warned_numa) {
        shared.warned_numa = true;
        GST_WARNING_OBJECT(owner, "NUMA node %d refused (%s): pages go where the kernel puts them",
                           options.numa_node, result.numa_note.c_str());
      }
    }
  }
  if (st.last_backend != backend_name) {
    GST_INFO_OBJECT(owner, "allocating from %s%s", backend_name.c_str(),
                    backend && backend->is_dmabuf() ? " (DMABuf)" : " (fd memory, not a DMABuf)");
    st.last_backend = backend_name;
  }
  st.last_dmabuf = backend && backend->is_dmabuf();
  GST_DEBUG_OBJECT(owner, "%s: %" G_GSIZE_FORMAT " bytes, fd %d, mapped at %p", backend_name.c_str(), bytes,
                   gst_fd_memory_get_fd(mem), pages.base);
  return mem;
}

void record_failure(GstAllocator* self, Shared& shared, gsize size, const std::vector<std::string>& tried) {
  const std::string error = "cannot allocate " + std::to_string(size) + " bytes: " +
                            (tried.empty() ? std::string("no backend to try") : join(tried, "; "));
  GST_ERROR_OBJECT(self, "%s", error.c_str());
  std::lock_guard lock(shared.lock);
  shared.stats.failures++;
  shared.stats.last_error = error;
}

void check_params(GstAllocator* self, Shared& shared, const GstAllocationParams* params) {
  if (!params || params->align < ccm::memory::page_size()) return;
  std::lock_guard lock(shared.lock);
  if (shared.warned_align) return;
  shared.warned_align = true;
  GST_WARNING_OBJECT(self, "alignment %" G_GSIZE_FORMAT " asked for; mappings are page-aligned (%" G_GSIZE_FORMAT ")",
                     params->align + 1, ccm::memory::page_size());
}

GstMemory* dmabuf_alloc(GstAllocator* allocator, gsize size, GstAllocationParams* params) {
  auto* self = GST_CCM_DMABUF_ALLOCATOR(allocator);
  auto& p = *self->priv;
  check_params(allocator, *p.shared, params);
  const gsize prefix = params ? params->prefix : 0;
  const gsize total = prefix + size + (params ? params->padding : 0);
  const ccm::memory::Placement placement{p.options.numa_node};

  std::vector<std::string> tried;
  bool refused_earlier = false;  // an usable backend before the one that served it said no
  for (size_t i = 0; i < p.chain.size(); i++) {
    ChainEntry& entry = p.chain[i];
    const std::string name = entry.backend->name();
    {
      std::lock_guard lock(p.chain_lock);
      if (entry.unavailable) continue;
      std::string why;
      switch (entry.backend->probe(&why)) {
        case Backend::Probe::Usable: break;
        case Backend::Probe::Unavailable:
          entry.unavailable = true;
          entry.why_unavailable = why;
          GST_INFO_OBJECT(self, "%s unavailable: %s", name.c_str(), why.c_str());
          continue;
        case Backend::Probe::TryLater:
          tried.push_back(name + ": " + why);
          refused_earlier = true;
          continue;
      }
    }
    if (auto limit = entry.backend->size_limit(); limit && ccm::memory::round_up(total, ccm::memory::page_size()) > *limit) {
      tried.push_back(name + ": " + std::to_string(total) + " bytes exceed its limit of " + std::to_string(*limit));
      GST_DEBUG_OBJECT(self, "%s", tried.back().c_str());
      refused_earlier = true;
      continue;
    }
    AllocResult result = entry.backend->allocate(total, placement);
    if (!result.ok()) {
      tried.push_back(name + ": " + result.why);
      GST_DEBUG_OBJECT(self, "%s", tried.back().c_str());
      refused_earlier = true;
      continue;
    }
    GstAllocator* owner = entry.backend->is_dmabuf() ? allocator : p.memfd;
    std::string why;
    GstMemory* mem = wrap(owner, *p.shared, p.options, entry.backend.get(), name, std::move(result), prefix, size, &why);
    if (!mem) {
      tried.push_back(why);
      refused_earlier = true;
      continue;
    }
    if (params) GST_MINI_OBJECT_FLAG_SET(mem, params->flags);
    if (refused_earlier) {
      GST_INFO_OBJECT(self, "fell back to %s: %s", name.c_str(), join(tried, "; ").c_str());
      std::lock_guard lock(p.shared->lock);
      p.shared->stats.fallbacks++;
    }
    return mem;
  }
  record_failure(allocator, *p.shared, total, tried);
  return nullptr;
}

// Direct allocations from the companion (someone holding a memfd memory's
// allocator): memfd memory with the same options.
GstMemory* memfd_alloc(GstAllocator* allocator, gsize size, GstAllocationParams* params) {
  auto& p = *GST_CCM_MEMFD_ALLOCATOR(allocator)->priv;
  check_params(allocator, *p.shared, params);
  const gsize prefix = params ? params->prefix : 0;
  const gsize total = prefix + size + (params ? params->padding : 0);
  ccm::memory::MemfdBackend backend;
  AllocResult result = backend.allocate(total, ccm::memory::Placement{p.options.numa_node});
  std::string why = result.why;
  GstMemory* mem = result.ok() ? wrap(allocator, *p.shared, p.options, &backend, backend.name(), std::move(result),
                                      prefix, size, &why)
                               : nullptr;
  if (!mem) record_failure(allocator, *p.shared, total, {"memfd: " + why});
  return mem;
}

void forget(GstAllocator* allocator, GstMemory* mem) {
  Shared* shared = shared_of(allocator);
  if (!shared) return;
  std::lock_guard lock(shared->lock);
  auto it = shared->records.find(mem);
  if (it == shared->records.end()) return;  // a shared sub-memory
  shared->stats.live_buffers--;
  shared->stats.live_bytes -= it->second.bytes;
  if (it->second.locked) shared->stats.mlocked_bytes -= it->second.bytes;
  shared->records.erase(it);
}

void dmabuf_free(GstAllocator* allocator, GstMemory* mem) {
  forget(allocator, mem);
  GST_ALLOCATOR_CLASS(gst_ccm_dmabuf_allocator_parent_class)->free(allocator, mem);
}

void memfd_free(GstAllocator* allocator, GstMemory* mem) {
  forget(allocator, mem);
  GST_ALLOCATOR_CLASS(gst_ccm_memfd_allocator_parent_class)->free(allocator, mem);
}

}  // namespace

// ---- GObject --------------------------------------------------------------------

static void gst_ccm_dmabuf_allocator_finalize(GObject* object) {
  auto* self = GST_CCM_DMABUF_ALLOCATOR(object);
  if (self->priv->memfd) gst_object_unref(self->priv->memfd);
  delete self->priv;
  G_OBJECT_CLASS(gst_ccm_dmabuf_allocator_parent_class)->finalize(object);
}

static void gst_ccm_dmabuf_allocator_class_init(GstCcmDmaBufAllocatorClass* klass) {
  G_OBJECT_CLASS(klass)->finalize = gst_ccm_dmabuf_allocator_finalize;
  GST_ALLOCATOR_CLASS(klass)->alloc = dmabuf_alloc;
  GST_ALLOCATOR_CLASS(klass)->free = dmabuf_free;
}

static void gst_ccm_dmabuf_allocator_init(GstCcmDmaBufAllocator* self) {
  self->priv = new GstCcmDmaBufAllocator::Private();
}

static void gst_ccm_memfd_allocator_finalize(GObject* object) {
  delete GST_CCM_MEMFD_ALLOCATOR(object)->priv;
  G_OBJECT_CLASS(gst_ccm_memfd_allocator_parent_class)->finalize(object);
}

static void gst_ccm_memfd_allocator_class_init(GstCcmMemfdAllocatorClass* klass) {
  G_OBJECT_CLASS(klass)->finalize = gst_ccm_memfd_allocator_finalize;
  GST_ALLOCATOR_CLASS(klass)->alloc = memfd_alloc;
  GST_ALLOCATOR_CLASS(klass)->free = memfd_free;
}

static void gst_ccm_memfd_allocator_init(GstCcmMemfdAllocator* self) {
  self->priv = new GstCcmMemfdAllocator::Private();
}

namespace ccm::memory {

namespace {

GstAllocator* build(std::vector<std::unique_ptr<Backend>> chain, const AllocatorOptions& options, ForcedBy forced_by) {
  auto* self = GST_CCM_DMABUF_ALLOCATOR(g_object_new(GST_TYPE_CCM_DMABUF_ALLOCATOR, nullptr));
  gst_object_ref_sink(self);
  auto& p = *self->priv;
  p.options = options;
  p.forced_by = forced_by;
  for (auto& b : chain) p.chain.push_back(ChainEntry{std::move(b)});
  auto* memfd = GST_CCM_MEMFD_ALLOCATOR(g_object_new(GST_TYPE_CCM_MEMFD_ALLOCATOR, nullptr));
  gst_object_ref_sink(memfd);
  memfd->priv->options = options;
  memfd->priv->shared = p.shared;
  p.memfd = GST_ALLOCATOR(memfd);
  std::vector<std::string> names;
  for (const auto& e : p.chain) names.push_back(e.backend->name());
  GST_DEBUG_OBJECT(self, "backends %s (%s), mlock %d, numa node %d", join(names, ", ").c_str(), to_string(forced_by),
                   options.mlock, options.numa_node);
  return GST_ALLOCATOR(self);
}

}  // namespace

GstAllocator* new_allocator(const AllocatorOptions& options) {
  init_debug();
  std::optional<BackendKind> backend = options.backend;
  ForcedBy forced_by = backend ? ForcedBy::Caller : ForcedBy::Auto;
  if (!backend) {
    if (const char* env = g_getenv(CCM_DMABUF_BACKEND_ENV)) {
      bool valid = false;
      backend = parse_backend(env, &valid);
      if (!valid)
        GST_WARNING("%s=%s is not one of %s: trying every backend", CCM_DMABUF_BACKEND_ENV, env,
                    std::string(kBackendNames).c_str());
      else if (backend)
        forced_by = ForcedBy::Env;
    }
  }
  AllocatorOptions resolved = options;
  resolved.backend = backend;
  return build(make_backends(backend), resolved, forced_by);
}

GstAllocator* new_allocator(std::vector<std::unique_ptr<Backend>> chain, const AllocatorOptions& options) {
  init_debug();
  return build(std::move(chain), options, ForcedBy::Caller);
}

}  // namespace ccm::memory

// ---- C API --------------------------------------------------------------------

GstAllocator* ccm_dmabuf_allocator_new(void) { return ccm::memory::new_allocator(AllocatorOptions{}); }

void ccm_dmabuf_allocator_register(void) {
  gst_allocator_register(CCM_DMABUF_ALLOCATOR_NAME, ccm_dmabuf_allocator_new());
}

GstStructure* ccm_dmabuf_allocator_get_stats(GstAllocator* allocator) {
  g_return_val_if_fail(allocator != nullptr, nullptr);
  GstCcmDmaBufAllocator* self = nullptr;
  if (GST_IS_CCM_DMABUF_ALLOCATOR(allocator)) self = GST_CCM_DMABUF_ALLOCATOR(allocator);
  Shared* shared = shared_of(allocator);
  g_return_val_if_fail(shared != nullptr, nullptr);

  std::vector<std::string> chain, unavailable;
  const char* forced_by = "auto";
  AllocatorOptions options;
  if (self) {
    std::lock_guard lock(self->priv->chain_lock);
    for (const auto& e : self->priv->chain) {
      chain.push_back(e.backend->name());
      if (e.unavailable) unavailable.push_back(e.backend->name() + ": " + e.why_unavailable);
    }
    forced_by = to_string(self->priv->forced_by);
    options = self->priv->options;
  } else {
    chain.push_back("memfd");
    options = GST_CCM_MEMFD_ALLOCATOR(allocator)->priv->options;
  }

  std::lock_guard lock(shared->lock);
  const Stats& st = shared->stats;
  GstStructure* s = gst_structure_new(
      "ccm-dmabuf-allocator-stats", "backend", G_TYPE_STRING, st.last_backend.c_str(), "chain", G_TYPE_STRING,
      join(chain, ", ").c_str(), "forced-by", G_TYPE_STRING, forced_by, "unavailable", G_TYPE_STRING,
      join(unavailable, "; ").c_str(), "allocations", G_TYPE_UINT64, st.allocations, "fallbacks", G_TYPE_UINT64,
      st.fallbacks, "failures", G_TYPE_UINT64, st.failures, "live-buffers", G_TYPE_UINT64, st.live_buffers,
      "live-bytes", G_TYPE_UINT64, st.live_bytes, "dmabuf", G_TYPE_BOOLEAN, st.last_dmabuf, "mlock", G_TYPE_BOOLEAN,
      options.mlock, "mlocked-bytes", G_TYPE_UINT64, st.mlocked_bytes, "mlock-failures", G_TYPE_UINT64,
      st.mlock_failures, "numa-node", G_TYPE_INT, options.numa_node, "numa-bound", G_TYPE_UINT64, st.numa_bound,
      "numa-failures", G_TYPE_UINT64, st.numa_failures, "numa-note", G_TYPE_STRING, st.numa_note.c_str(),
      "prefault", G_TYPE_BOOLEAN, options.prefault, "last-error", G_TYPE_STRING, st.last_error.c_str(), nullptr);
  for (const auto& [name, count] : st.per_backend)
    gst_structure_set(s, ("allocations-" + name).c_str(), G_TYPE_UINT64, count, nullptr);
  return s;
}

gboolean ccm_dmabuf_memory_is_ours(GstMemory* mem) { return ccm_dmabuf_memory_get_backend(mem) != nullptr; }

const gchar* ccm_dmabuf_memory_get_backend(GstMemory* mem) {
  g_return_val_if_fail(mem != nullptr, nullptr);
  Shared* shared = shared_of(mem->allocator);
  if (!shared) return nullptr;
  const GstMemory* root = mem->parent ? mem->parent : mem;
  std::lock_guard lock(shared->lock);
  auto it = shared->records.find(root);
  return it == shared->records.end() ? nullptr : it->second.backend;
}
