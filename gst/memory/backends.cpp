#include "memory/backends.h"

#include <fcntl.h>
#include <linux/dma-heap.h>
#include <linux/udmabuf.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>

#ifdef CCM_HAVE_NUMA
#include <numa.h>
#include <numaif.h>
#endif

namespace ccm::memory {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

const char* to_string(BackendKind kind) {
  switch (kind) {
    case BackendKind::DmaHeap: return "dma-heap";
    case BackendKind::Udmabuf: return "udmabuf";
    case BackendKind::Memfd: return "memfd";
  }
  return "unknown";
}

std::optional<BackendKind> parse_backend(std::string_view name, bool* valid) {
  *valid = true;
  for (BackendKind k : {BackendKind::DmaHeap, BackendKind::Udmabuf, BackendKind::Memfd})
    if (name == to_string(k)) return k;
  if (name.empty() || name == "auto") return std::nullopt;
  *valid = false;
  return std::nullopt;
}

size_t page_size() {
  static const size_t size = [] {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<size_t>(p) : size_t{4096};
  }();
  return size;
}

size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

namespace {

std::string errno_text(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

AllocResult failure(int err, std::string why) {
  AllocResult r;
  r.error = err;
  r.why = std::move(why);
  return r;
}

#ifdef CCM_HAVE_NUMA
// A node mask in the unsigned-long words the NUMA calls take, wide enough for
// `highest_node`; `node` >= 0 sets that node's bit.
struct NodeMask {
  static constexpr int kBits = sizeof(unsigned long) * CHAR_BIT;
  std::vector<unsigned long> words;
  NodeMask(int highest_node, int node) : words(std::max(highest_node, node) / kBits + 1, 0) {
    if (node >= 0) words[node / kBits] |= 1UL << (node % kBits);
  }
  // The kernel reads maxnode - 1 bits.
  unsigned long max_node() const { return words.size() * kBits + 1; }
};

// The thread's memory policy prefers `node` while this lives; the old policy
// comes back after. Pages allocated by the kernel on this thread's behalf (a dma
// heap's) follow it.
class ScopedThreadPolicy {
 public:
  ScopedThreadPolicy(int node, std::string* why) : old_mask_(numa_max_possible_node(), -1) {
    if (numa_available() < 0) {
      *why = "the kernel has no NUMA support";
      return;
    }
    if (get_mempolicy(&old_mode_, old_mask_.words.data(), old_mask_.max_node(), nullptr, 0) != 0) {
      *why = errno_text("get_mempolicy", errno);
      return;
    }
    NodeMask mask(0, node);
    if (set_mempolicy(MPOL_PREFERRED, mask.words.data(), mask.max_node()) != 0) {
      *why = errno_text("set_mempolicy(MPOL_PREFERRED)", errno);
      return;
    }
    active_ = true;
  }
  ~ScopedThreadPolicy() {
    if (active_) set_mempolicy(old_mode_, old_mask_.words.data(), old_mask_.max_node());
  }
  bool active() const { return active_; }
  ScopedThreadPolicy(const ScopedThreadPolicy&) = delete;
  ScopedThreadPolicy& operator=(const ScopedThreadPolicy&) = delete;

 private:
  int old_mode_ = MPOL_DEFAULT;
  NodeMask old_mask_;
  bool active_ = false;
};
#endif

// Sets a shared "prefer this node" policy on a shmem file before any page
// exists: the policy lives in the inode, so every page allocated for it later,
// by whichever thread touches it first or by udmabuf's pinning, lands there.
// MPOL_PREFERRED rather than BIND: a full node spills over instead of OOM-killing.
bool prefer_node_for_shmem(int memfd, size_t size, int node, std::string* why) {
#ifdef CCM_HAVE_NUMA
  if (numa_available() < 0) {
    *why = "the kernel has no NUMA support";
    return false;
  }
  void* addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (addr == MAP_FAILED) {
    *why = errno_text("mmap for mbind", errno);
    return false;
  }
  NodeMask mask(0, node);
  const bool ok = mbind(addr, size, MPOL_PREFERRED, mask.words.data(), mask.max_node(), 0) == 0;
  if (!ok) *why = errno_text(("mbind(MPOL_PREFERRED, node " + std::to_string(node) + ")").c_str(), errno);
  munmap(addr, size);
  return ok;
#else
  (void)memfd;
  (void)size;
  (void)node;
  *why = "built without libnuma";
  return false;
#endif
}

}  // namespace

AllocResult make_sealed_memfd(size_t size, const Placement& placement) {
  const size_t bytes = round_up(size == 0 ? 1 : size, page_size());
  UniqueFd fd(memfd_create("ccmdmabuf", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return failure(errno, errno_text("memfd_create", errno));
  if (ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
    return failure(errno, errno_text("ftruncate", errno));
  // Nobody holding the fd may shrink it under a mapping (SIGBUS) or grow it.
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    return failure(errno, errno_text("F_ADD_SEALS", errno));
  AllocResult r;
  if (placement.numa_node >= 0) r.numa_bound = prefer_node_for_shmem(fd.get(), bytes, placement.numa_node, &r.numa_note);
  r.fd = std::move(fd);
  r.size = bytes;
  return r;
}

// ---- dma-heap -----------------------------------------------------------------

DmaHeapBackend::DmaHeapBackend(std::string heap_path) : path_(std::move(heap_path)) {}

// Opens a backend's device once: usable, missing for good (why says what provides
// it), or out of descriptors or memory for now.
static Backend::Probe open_device(UniqueFd& fd, const std::string& path, int flags, const char* provided_by,
                                  std::string* why) {
  if (fd) return Backend::Probe::Usable;
  fd = UniqueFd(open(path.c_str(), flags | O_CLOEXEC));
  if (fd) return Backend::Probe::Usable;
  const int err = errno;
  if (err == EMFILE || err == ENFILE || err == ENOMEM) {
    *why = errno_text(("open " + path).c_str(), err);
    return Backend::Probe::TryLater;
  }
  if (err == ENOENT)
    *why = path + " does not exist (" + provided_by + ")";
  else if (err == EACCES || err == EPERM)
    *why = "no permission to open " + path + " (a udev rule or group membership grants it)";
  else
    *why = errno_text(("open " + path).c_str(), err);
  return Backend::Probe::Unavailable;
}

Backend::Probe DmaHeapBackend::probe(std::string* why) {
  return open_device(heap_, path_, O_RDONLY, "kernel without CONFIG_DMABUF_HEAPS_SYSTEM", why);
}

AllocResult DmaHeapBackend::allocate(size_t size, const Placement& placement) {
  if (!heap_) return failure(ENODEV, path_ + " is not open");
  dma_heap_allocation_data data{};
  data.len = round_up(size == 0 ? 1 : size, page_size());
  data.fd_flags = O_RDWR | O_CLOEXEC;
  bool bound = false;
  std::string note;
#ifdef CCM_HAVE_NUMA
  std::optional<ScopedThreadPolicy> policy;
  if (placement.numa_node >= 0) {
    policy.emplace(placement.numa_node, &note);
    bound = policy->active();
  }
#else
  if (placement.numa_node >= 0) note = "built without libnuma";
#endif
  if (ioctl(heap_.get(), DMA_HEAP_IOCTL_ALLOC, &data) != 0)
    return failure(errno, errno_text("DMA_HEAP_IOCTL_ALLOC", errno));
  AllocResult r;
  r.fd = UniqueFd(static_cast<int>(data.fd));
  r.size = data.len;
  r.numa_bound = bound;
  r.numa_note = note;
  return r;
}

// ---- udmabuf ------------------------------------------------------------------

size_t read_udmabuf_limit(const std::string& param_path) {
  constexpr size_t kDefaultMiB = 64;  // the module's default size_limit_mb
  std::ifstream in(param_path);
  long long mib = 0;
  if (in >> mib && mib > 0) return static_cast<size_t>(mib) << 20;
  return kDefaultMiB << 20;
}

UdmabufBackend::UdmabufBackend(std::string device_path, std::optional<size_t> limit)
    : path_(std::move(device_path)), limit_(limit ? *limit : read_udmabuf_limit()) {}

Backend::Probe UdmabufBackend::probe(std::string* why) {
  return open_device(device_, path_, O_RDWR, "modprobe udmabuf; kernel option CONFIG_UDMABUF", why);
}

AllocResult UdmabufBackend::allocate(size_t size, const Placement& placement) {
  if (!device_) return failure(ENODEV, path_ + " is not open");
  const size_t bytes = round_up(size == 0 ? 1 : size, page_size());
  if (bytes > limit_)
    return failure(EFBIG, std::to_string(bytes) + " bytes exceed udmabuf's limit of " +
                              std::to_string(limit_ >> 20) + " MiB (size_limit_mb)");
  AllocResult memfd = make_sealed_memfd(bytes, placement);
  if (!memfd.ok()) return memfd;
  udmabuf_create create{};
  create.memfd = static_cast<__u32>(memfd.fd.get());
  create.flags = UDMABUF_FLAGS_CLOEXEC;
  create.offset = 0;
  create.size = bytes;
  const int dmabuf = ioctl(device_.get(), UDMABUF_CREATE, &create);
  if (dmabuf < 0) return failure(errno, errno_text("UDMABUF_CREATE", errno));
  // The dmabuf holds the shmem pages; the memfd can go.
  AllocResult r;
  r.fd = UniqueFd(dmabuf);
  r.size = bytes;
  r.numa_bound = memfd.numa_bound;
  r.numa_note = memfd.numa_note;
  return r;
}

// ---- memfd --------------------------------------------------------------------

Backend::Probe MemfdBackend::probe(std::string*) { return Probe::Usable; }

AllocResult MemfdBackend::allocate(size_t size, const Placement& placement) {
  return make_sealed_memfd(size, placement);
}

std::vector<std::unique_ptr<Backend>> make_backends(std::optional<BackendKind> forced) {
  std::vector<std::unique_ptr<Backend>> chain;
  auto want = [&](BackendKind k) { return !forced || *forced == k; };
  if (want(BackendKind::DmaHeap)) chain.push_back(std::make_unique<DmaHeapBackend>());
  if (want(BackendKind::Udmabuf)) chain.push_back(std::make_unique<UdmabufBackend>());
  if (want(BackendKind::Memfd)) chain.push_back(std::make_unique<MemfdBackend>());
  return chain;
}

int numa_node_count() {
#ifdef CCM_HAVE_NUMA
  if (numa_available() < 0) return 1;
  const int n = numa_num_configured_nodes();
  return n > 0 ? n : 1;
#else
  return 1;
#endif
}

int numa_local_node() {
#ifdef CCM_HAVE_NUMA
  if (numa_available() < 0) return -1;
  const int cpu = sched_getcpu();
  return cpu >= 0 ? numa_node_of_cpu(cpu) : -1;
#else
  return -1;
#endif
}

}  // namespace ccm::memory
