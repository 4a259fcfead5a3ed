// Encode sessions per GPU, counted across processes: a small registry of lock
// files under $XDG_RUNTIME_DIR/gst-ccm/gpu-sessions. Every session holds an
// flock on a file of its own; a file whose lock can be taken has no live owner
// (the kernel drops flocks of processes that died, crashed ones included), so it
// is not counted and is removed. A lock on the folder's ".lock" file makes
// "count, choose, take" one step for concurrent starters.
// No GStreamer here: plain POSIX, so it is usable and testable on its own.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace ccm::gst {

class GpuSessions {
 public:
  // One live session on one GPU; the lock file goes when the lease does.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();
    const std::string& gpu() const { return gpu_; }
    bool held() const { return fd_ >= 0; }

   private:
    friend class GpuSessions;
    Lease(std::string gpu, std::filesystem::path file, int fd) : gpu_(std::move(gpu)), file_(std::move(file)), fd_(fd) {}
    void release();
    std::string gpu_;
    std::filesystem::path file_;
    int fd_ = -1;
  };

  // The folder lock, held while it lives: counts taken under it stay true until
  // it goes, and leases taken under it are counted by the next chooser.
  class Guard {
   public:
    Guard(Guard&& other) noexcept;
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard();
    // Live sessions per GPU key; stale files (dead owners) are removed.
    std::map<std::string, int> counts() const;
    int count(std::string_view gpu) const;
    // nullopt when the folder cannot be written (the session then goes uncounted).
    std::optional<Lease> acquire(std::string_view gpu) const;

   private:
    friend class GpuSessions;
    Guard(const GpuSessions* owner, int fd) : owner_(owner), fd_(fd) {}
    const GpuSessions* owner_;
    int fd_ = -1;
  };

  explicit GpuSessions(std::filesystem::path dir);
  // $XDG_RUNTIME_DIR/gst-ccm/gpu-sessions (read each time, so tests can move it),
  // else <tmp>/gst-ccm-<uid>/gpu-sessions.
  static std::filesystem::path default_dir();

  Guard lock() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

// GPU keys are PCI addresses ("0000:01:00.0"); file names are "<key>@<pid>.<n>.lock".

}  // namespace ccm::gst
