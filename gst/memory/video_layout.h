// Plane layout for aligned video frames: every plane's offset and (for untiled
// formats) stride a multiple of a power-of-two alignment, for every GstVideoFormat.
#pragma once

#include <gst/video/video.h>

#include <string>

namespace ccm::memory {

constexpr unsigned kMinAlignment = 64;
constexpr unsigned kDefaultAlignment = 256;  // what 1.28's dmabuf pool calls "known to work across many vendors"

// Empty when `alignment` is a power of two in [kMinAlignment, page size]; else
// what is wrong with it, for an error message.
std::string alignment_problem(unsigned alignment);

struct AlignedLayout {
  GstVideoInfo info;           // offsets, strides, size of the aligned frame
  GstVideoAlignment padding;   // padding around the picture (for GstVideoMeta)
  bool tiled = false;          // strides are tile descriptors, left as the format wants
};

// Lays out `in` (format, width, height) with every plane offset, and every
// plane stride of an untiled format, a multiple of `alignment`, honouring
// `extra` (padding and stride masks asked for by upstream) when given. The
// size is a multiple of `alignment` too. False with `why` when impossible.
bool aligned_layout(const GstVideoInfo& in, unsigned alignment, const GstVideoAlignment* extra,
                    AlignedLayout* out, std::string* why);

}  // namespace ccm::memory
