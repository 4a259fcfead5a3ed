// Small non-throwing readers for sysfs/procfs-style trees, shared by the CPU and
// GPU detectors. Every failure comes back as an empty optional so callers can
// treat missing files as facts.
#pragma once

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace ccm::hw::detail {

inline std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(kSpace);
  return s.substr(first, last - first + 1);
}

// Whole file, or nullopt when it cannot be opened. sysfs attributes are at most
// a page, procfs files here a few hundred bytes, so a bounded read is enough.
std::optional<std::string> read_file(const std::filesystem::path& path, std::size_t max_bytes = 65536);

// First line of the file, whitespace-trimmed.
std::optional<std::string> read_line(const std::filesystem::path& path);

// "0x10de" or "10de" as hex; the whole (trimmed) text must be a number.
std::optional<uint32_t> parse_hex(std::string_view text);

// Decimal, optionally negative ("-1" in numa_node).
std::optional<long> parse_decimal(std::string_view text);

// Names in a directory (not recursive); empty when it cannot be listed.
// Never throws: sysfs directories can vanish while we look (hot unplug).
std::vector<std::string> list_directory(const std::filesystem::path& dir);

// "cpu12" with prefix "cpu" -> 12; nullopt unless the rest is all digits.
std::optional<unsigned> numbered_suffix(std::string_view name, std::string_view prefix);

}  // namespace ccm::hw::detail
