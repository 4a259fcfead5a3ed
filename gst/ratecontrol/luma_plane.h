// The luma plane of a mapped video frame as libccm's analysis takes it: the same
// for frames in system memory and in CUDA memory (mapped with GST_MAP_CUDA, where
// the data pointer is a device pointer).
#pragma once
#include <gst/video/video.h>

#include "analysis/analysis.h"

namespace ccm::gst {

inline analysis::LumaPlane luma_plane_of(const GstVideoFrame& f) {
  analysis::LumaPlane l;
  l.data = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&f, 0));
  l.stride = GST_VIDEO_FRAME_PLANE_STRIDE(&f, 0);
  l.width = GST_VIDEO_FRAME_WIDTH(&f);
  l.height = GST_VIDEO_FRAME_HEIGHT(&f);
  const GstVideoFormatInfo* fi = f.info.finfo;
  if (GST_VIDEO_FORMAT_INFO_DEPTH(fi, 0) > 8) {
    l.bytes_per_sample = 2;
    l.bit_depth = static_cast<int>(GST_VIDEO_FORMAT_INFO_DEPTH(fi, 0));
    l.shift = static_cast<int>(GST_VIDEO_FORMAT_INFO_SHIFT(fi, 0));  // P010: 6 (10 bits in the top of 16)
  }
  return l;
}

}  // namespace ccm::gst
