#include "encbin/gpu_sessions.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <system_error>

namespace ccm::gst {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kSuffix = ".lock";

int open_cloexec(const fs::path& p, int flags) { return ::open(p.c_str(), flags | O_CLOEXEC, 0600); }

// flock that retries on EINTR.
int flock_retry(int fd, int op) {
  int rc;
  do rc = ::flock(fd, op);
  while (rc != 0 && errno == EINTR);
  return rc;
}

// "0000:01:00.0@1234.7.lock" -> "0000:01:00.0"; "" for other files.
std::string key_of(const std::string& name) {
  if (name.size() <= kSuffix.size() || !name.ends_with(kSuffix)) return {};
  const auto at = name.rfind('@');
  if (at == std::string::npos || at == 0) return {};
  return name.substr(0, at);
}

}  // namespace

GpuSessions::GpuSessions(fs::path dir) : dir_(std::move(dir)) {}

fs::path GpuSessions::default_dir() {
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime && *runtime) return fs::path(runtime) / "gst-ccm" / "gpu-sessions";
  std::error_code ec;
  fs::path tmp = fs::temp_directory_path(ec);
  if (ec) tmp = "/tmp";
  return tmp / ("gst-ccm-" + std::to_string(::getuid())) / "gpu-sessions";
}

GpuSessions::Guard GpuSessions::lock() const {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  const int fd = open_cloexec(dir_ / ".lock", O_RDWR | O_CREAT);
  if (fd >= 0 && flock_retry(fd, LOCK_EX) != 0) {
    ::close(fd);
    return Guard(this, -1);
  }
  return Guard(this, fd);
}

GpuSessions::Guard::Guard(Guard&& other) noexcept : owner_(other.owner_), fd_(other.fd_) { other.fd_ = -1; }

GpuSessions::Guard::~Guard() {
  if (fd_ >= 0) ::close(fd_);  // closing drops the flock
}

std::map<std::string, int> GpuSessions::Guard::counts() const {
  std::map<std::string, int> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(owner_->dir_, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string key = key_of(name);
    if (key.empty()) continue;
    const int fd = open_cloexec(entry.path(), O_RDONLY);
    if (fd < 0) continue;
    // A lock we can take has no owner left: a crashed or finished process.
    if (flock_retry(fd, LOCK_EX | LOCK_NB) == 0) {
      // Only removed under the folder lock, so no starter is between create and flock.
      if (fd_ >= 0) fs::remove(entry.path(), ec);
    } else if (errno == EWOULDBLOCK) {
      out[key]++;
    }
    ::close(fd);
  }
  return out;
}

int GpuSessions::Guard::count(std::string_view gpu) const {
  const auto all = counts();
  const auto it = all.find(std::string(gpu));
  return it == all.end() ? 0 : it->second;
}

std::optional<GpuSessions::Lease> GpuSessions::Guard::acquire(std::string_view gpu) const {
  static std::atomic<unsigned> serial{0};
  const std::string key(gpu);
  const fs::path file =
      owner_->dir_ / (key + "@" + std::to_string(::getpid()) + "." + std::to_string(serial++) + std::string(kSuffix));
  const int fd = open_cloexec(file, O_RDWR | O_CREAT | O_EXCL);
  if (fd < 0) return std::nullopt;
  if (flock_retry(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    std::error_code ec;
    fs::remove(file, ec);
    return std::nullopt;
  }
  return Lease(key, file, fd);
}

GpuSessions::Lease::Lease(Lease&& other) noexcept
    : gpu_(std::move(other.gpu_)), file_(std::move(other.file_)), fd_(other.fd_) {
  other.fd_ = -1;
}

GpuSessions::Lease& GpuSessions::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    gpu_ = std::move(other.gpu_);
    file_ = std::move(other.file_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

GpuSessions::Lease::~Lease() { release(); }

void GpuSessions::Lease::release() {
  if (fd_ < 0) return;
  // Remove first, then unlock: a counter that opens the file in between sees it
  // locked and counts a session that is about to end, which errs on the safe side.
  std::error_code ec;
  fs::remove(file_, ec);
  ::close(fd_);
  fd_ = -1;
}

}  // namespace ccm::gst
