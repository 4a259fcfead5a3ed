#include "hw/sysfs_read.h"

#include <algorithm>
#include <cerrno>

#include <fcntl.h>
#include <unistd.h>

namespace ccm::hw::detail {

std::optional<std::string> read_file(const std::filesystem::path& path, std::size_t max_bytes) {
  // POSIX I/O rather than ifstream: a read error (EISDIR, EIO from a sysfs
  // attribute whose device went away) comes back as -1, not as an exception
  // caught inside the stream.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text(max_bytes, '\0');
  std::size_t used = 0;
  bool failed = false;
  while (used < max_bytes) {
    const ssize_t n = ::read(fd, text.data() + used, max_bytes - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) failed = true;
    if (n <= 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (failed) return std::nullopt;
  text.resize(used);
  return text;
}

std::optional<std::string> read_line(const std::filesystem::path& path) {
  auto text = read_file(path, 4096);
  if (!text) return std::nullopt;
  std::string_view view = *text;
  view = view.substr(0, view.find('\n'));
  return std::string(trim(view));
}

std::optional<uint32_t> parse_hex(std::string_view text) {
  text = trim(text);
  if (text.starts_with("0x") || text.starts_with("0X")) text.remove_prefix(2);
  if (text.empty()) return std::nullopt;
  uint32_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<long> parse_decimal(std::string_view text) {
  text = trim(text);
  if (text.empty()) return std::nullopt;
  long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 10);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::vector<std::string> list_directory(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::optional<unsigned> numbered_suffix(std::string_view name, std::string_view prefix) {
  if (!name.starts_with(prefix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  if (name.empty() || name.front() == '+' || name.front() == '-') return std::nullopt;
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), value, 10);
  if (ec != std::errc{} || end != name.data() + name.size()) return std::nullopt;
  return value;
}

}  // namespace ccm::hw::detail
