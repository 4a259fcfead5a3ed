// Test helper: luma planes of a clip in tests/media, decoded by ffmpeg into
// memory (8-bit gray, every frame: -fps_mode passthrough keeps variable-rate
// clips frame for frame).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace ccm::test {

struct GrayClip {
  int width = 0, height = 0;
  std::vector<std::vector<uint8_t>> frames;
};

inline std::string media_path(const std::string& name) {
  const char* dir = std::getenv("CCM_TEST_MEDIA");
  if (!dir) return {};
  std::string p = std::string(dir) + "/" + name;
  FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) return {};
  std::fclose(f);
  return p;
}

// Empty frames on failure (no ffmpeg, no clip).
inline GrayClip decode_gray(const std::string& path, int width, int height, int max_frames = 1 << 20) {
  GrayClip clip;
  clip.width = width;
  clip.height = height;
  if (path.empty()) return clip;
  const std::string cmd = "ffmpeg -nostdin -v error -i '" + path +
                          "' -fps_mode passthrough -f rawvideo -pix_fmt gray - 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return clip;
  const size_t size = static_cast<size_t>(width) * height;
  std::vector<uint8_t> frame(size);
  while (static_cast<int>(clip.frames.size()) < max_frames && std::fread(frame.data(), 1, size, pipe) == size)
    clip.frames.push_back(frame);
  // Drain what is left so ffmpeg exits cleanly when max_frames cut it short.
  char sink[4096];
  while (std::fread(sink, 1, sizeof sink, pipe) > 0) {
  }
  pclose(pipe);
  return clip;
}

}  // namespace ccm::test
