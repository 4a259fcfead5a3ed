// Where frame memory comes from: kernel sources of a file descriptor that can be
// mapped by the CPU and, for real DMABufs, imported by devices. No GStreamer here:
// the allocator (ccmdmabufallocator) wraps what these return.
//
// Order of preference (make_backends):
//   dma-heap  /dev/dma_heap/system, DMA_HEAP_IOCTL_ALLOC: a real DMABuf from the heap
//   udmabuf   /dev/udmabuf, UDMABUF_CREATE on a sealed shmem memfd: a real DMABuf
//             over ordinary pages, within the module's size limit
//   memfd     a sealed shmem memfd: mappable and shareable, but not a DMABuf
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ccm::memory {

// Owns a file descriptor; closes it once.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

enum class BackendKind { DmaHeap, Udmabuf, Memfd };

const char* to_string(BackendKind kind);  // "dma-heap", "udmabuf", "memfd"
// Accepts the names above; "auto" and "" give nullopt with *valid = true.
std::optional<BackendKind> parse_backend(std::string_view name, bool* valid);
constexpr std::string_view kBackendNames = "auto, dma-heap, udmabuf, memfd";

size_t page_size();
size_t round_up(size_t value, size_t multiple);

// Where the pages should live. node < 0: wherever the kernel puts them.
struct Placement {
  int numa_node = -1;
};

struct AllocResult {
  UniqueFd fd;              // valid on success
  size_t size = 0;          // bytes behind the fd (>= the request, page-rounded)
  int error = 0;            // errno of the failure
  std::string why;          // on failure: which call failed and why, for logs and stats
  // NUMA placement, when one was asked for.
  bool numa_bound = false;
  std::string numa_note;    // why not, when it was refused
  bool ok() const { return static_cast<bool>(fd); }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendKind kind() const = 0;
  virtual std::string name() const { return to_string(kind()); }
  // A real DMABuf (importable by devices; CPU access needs DMA_BUF_IOCTL_SYNC).
  virtual bool is_dmabuf() const = 0;
  // Largest single allocation, when the backend has a limit.
  virtual std::optional<size_t> size_limit() const { return std::nullopt; }
  // Whether it can work here at all (device node present and openable); `why` when not.
  // The caller remembers Unavailable (a missing device stays missing for the
  // process) and asks again after TryLater (out of file descriptors, say).
  enum class Probe { Usable, Unavailable, TryLater };
  virtual Probe probe(std::string* why) = 0;
  virtual AllocResult allocate(size_t size, const Placement& placement) = 0;
};

class DmaHeapBackend final : public Backend {
 public:
  explicit DmaHeapBackend(std::string heap_path = "/dev/dma_heap/system");
  BackendKind kind() const override { return BackendKind::DmaHeap; }
  bool is_dmabuf() const override { return true; }
  Probe probe(std::string* why) override;
  AllocResult allocate(size_t size, const Placement& placement) override;

 private:
  std::string path_;
  UniqueFd heap_;
};

class UdmabufBackend final : public Backend {
 public:
  // limit: bytes; nullopt reads the module parameter (read_udmabuf_limit()).
  explicit UdmabufBackend(std::string device_path = "/dev/udmabuf",
                          std::optional<size_t> limit = std::nullopt);
  BackendKind kind() const override { return BackendKind::Udmabuf; }
  bool is_dmabuf() const override { return true; }
  std::optional<size_t> size_limit() const override { return limit_; }
  Probe probe(std::string* why) override;
  AllocResult allocate(size_t size, const Placement& placement) override;

 private:
  std::string path_;
  size_t limit_;
  UniqueFd device_;
};

class MemfdBackend final : public Backend {
 public:
  BackendKind kind() const override { return BackendKind::Memfd; }
  bool is_dmabuf() const override { return false; }
  Probe probe(std::string* why) override;
  AllocResult allocate(size_t size, const Placement& placement) override;
};

// The udmabuf module's per-buffer limit: size_limit_mb from the given file
// (/sys/module/udmabuf/parameters/size_limit_mb), else the kernel's default 64 MiB.
size_t read_udmabuf_limit(const std::string& param_path = "/sys/module/udmabuf/parameters/size_limit_mb");

// The chain tried for each allocation: one backend when forced, else all three in order.
std::vector<std::unique_ptr<Backend>> make_backends(std::optional<BackendKind> forced);

// A sealed shmem memfd of `size` bytes (F_SEAL_SHRINK | F_SEAL_GROW; udmabuf needs
// SHRINK sealed and WRITE not). With a node, its pages are placed there through a
// shared mbind policy set before any page exists.
AllocResult make_sealed_memfd(size_t size, const Placement& placement);

// NUMA helpers; all degrade to "not possible" without libnuma.
int numa_node_count();        // configured nodes; 1 when unknown
int numa_local_node();        // node of the CPU this thread runs on; -1 when unknown

}  // namespace ccm::memory
