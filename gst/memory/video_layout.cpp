#include "memory/video_layout.h"

#include "memory/backends.h"

#include <string>

namespace ccm::memory {

std::string alignment_problem(unsigned alignment) {
  const unsigned page = static_cast<unsigned>(page_size());
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    return "alignment " + std::to_string(alignment) + " is not a power of two (use 64, 128, 256 ... " +
           std::to_string(page) + ")";
  if (alignment < kMinAlignment)
    return "alignment " + std::to_string(alignment) + " is below the minimum of " + std::to_string(kMinAlignment) +
           " bytes (one cache line)";
  if (alignment > page)
    return "alignment " + std::to_string(alignment) + " is above the page size (" + std::to_string(page) +
           " bytes), the most a mapping guarantees";
  return {};
}

namespace {

std::string describe(const GstVideoInfo& in) {
  return std::string(gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&in))) + " " +
         std::to_string(GST_VIDEO_INFO_WIDTH(&in)) + "x" + std::to_string(GST_VIDEO_INFO_HEIGHT(&in));
}

// Planes whose stride does not follow the width: a palette (RGB8P's second
// plane) has a fixed stride no padding can align, and tiled formats encode tile
// counts in their strides.
bool stride_follows_width(const GstVideoFormatInfo* finfo, unsigned plane) {
  if (GST_VIDEO_FORMAT_INFO_IS_TILED(finfo)) return false;
  if (GST_VIDEO_FORMAT_INFO_HAS_PALETTE(finfo) && plane == 1) return false;
  return true;
}

}  // namespace

bool aligned_layout(const GstVideoInfo& in, unsigned alignment, const GstVideoAlignment* extra,
                    AlignedLayout* out, std::string* why) {
  if (std::string p = alignment_problem(alignment); !p.empty()) {
    *why = p;
    return false;
  }
  const GstVideoFormatInfo* finfo = in.finfo;
  if (!finfo || GST_VIDEO_INFO_FORMAT(&in) == GST_VIDEO_FORMAT_UNKNOWN ||
      GST_VIDEO_INFO_FORMAT(&in) == GST_VIDEO_FORMAT_ENCODED) {
    *why = "not a raw video format";
    return false;
  }
  const unsigned n_planes = GST_VIDEO_INFO_N_PLANES(&in);
  const guint64 mask = alignment - 1;

  GstVideoAlignment pad;
  gst_video_alignment_reset(&pad);
  if (extra) {
    pad.padding_top = extra->padding_top;
    pad.padding_bottom = extra->padding_bottom;
    pad.padding_left = extra->padding_left;
    pad.padding_right = extra->padding_right;
  }
  // Left padding shifts each plane's first pixel by its width in bytes; a
  // multiple of 4 x alignment pixels keeps it aligned on every plane, 4:1:0
  // chroma included.
  if (pad.padding_left % (4 * alignment) != 0)
    pad.padding_left = static_cast<guint>(round_up(pad.padding_left, 4 * alignment));

  unsigned want_stride[GST_VIDEO_MAX_PLANES] = {};
  for (unsigned i = 0; i < n_planes; i++)
    if (stride_follows_width(finfo, i)) want_stride[i] = (extra ? extra->stride_align[i] : 0) | unsigned(mask);

  // The narrowest padded picture whose strides are all aligned. GStreamer's own
  // search (gst_video_info_align) doubles the padding step and never gives up,
  // which hangs on formats whose stride is not a multiple of the width (the
  // 3-pixels-per-4-bytes NV16_10LE32, a palette); one pixel at a time always
  // lands within a few alignments' worth of pixels.
  const guint width = GST_VIDEO_INFO_WIDTH(&in), height = GST_VIDEO_INFO_HEIGHT(&in);
  const guint padded_height = height + pad.padding_top + pad.padding_bottom;
  const guint narrowest = width + pad.padding_left + pad.padding_right;
  const guint widest = narrowest + 64 * alignment;
  guint padded_width = narrowest;
  bool strides_aligned = false;
  for (; padded_width <= widest; padded_width++) {
    GstVideoInfo probe;
    if (!gst_video_info_set_interlaced_format(&probe, GST_VIDEO_INFO_FORMAT(&in), GST_VIDEO_INFO_INTERLACE_MODE(&in),
                                              padded_width, padded_height)) {
      *why = "GStreamer cannot lay out " + describe(in) + " padded to " + std::to_string(padded_width) + "x" +
             std::to_string(padded_height);
      return false;
    }
    strides_aligned = true;
    for (unsigned i = 0; i < n_planes; i++)
      if (guint64(probe.stride[i]) & want_stride[i]) strides_aligned = false;
    if (strides_aligned) break;
  }
  if (!strides_aligned) {
    *why = "no padding of " + describe(in) + " up to " + std::to_string(widest) + " pixels gives " +
           std::to_string(alignment) + "-byte aligned strides";
    return false;
  }
  pad.padding_right = padded_width - width - pad.padding_left;

  // The padded layout, with the picture's first pixel (after left/top padding)
  // in each plane's offset.
  GstVideoInfo full = in;
  gsize plane_size[GST_VIDEO_MAX_PLANES] = {};
  GstVideoAlignment used = pad;  // stride masks left at 0: strides are aligned already
  if (!gst_video_info_align_full(&full, &used, plane_size)) {
    *why = "GStreamer cannot lay out " + describe(in) + " with padding";
    return false;
  }
  // Where each plane itself starts: the same padded size with no left/top edge.
  GstVideoInfo starts = in;
  GstVideoAlignment no_edge = used;
  no_edge.padding_right += no_edge.padding_left;
  no_edge.padding_left = 0;
  no_edge.padding_bottom += no_edge.padding_top;
  no_edge.padding_top = 0;
  gsize unused[GST_VIDEO_MAX_PLANES] = {};
  if (!gst_video_info_align_full(&starts, &no_edge, unused)) {
    *why = "GStreamer cannot lay out " + describe(in) + " with padding";
    return false;
  }

  // Each plane starts on an alignment boundary, in plane order, and keeps at
  // least the room GStreamer's contiguous layout gives it (plane_size is not
  // filled for every format: a palette, some tiled formats).
  gsize end = 0;
  for (unsigned i = 0; i < n_planes; i++) {
    const gsize next = i + 1 < n_planes ? starts.offset[i + 1] : starts.size;
    const gsize extent = MAX(plane_size[i], next > starts.offset[i] ? next - starts.offset[i] : 0);
    const gsize start = round_up(end, alignment);
    const gsize edge = full.offset[i] - starts.offset[i];
    full.offset[i] = start + edge;
    end = start + extent;
    if (full.offset[i] & mask) {
      *why = "plane " + std::to_string(i) + " of " + describe(in) + " cannot start " + std::to_string(alignment) +
             "-aligned with padding-left " + std::to_string(pad.padding_left);
      return false;
    }
    if (want_stride[i] && (guint64(full.stride[i]) & mask)) {
      *why = "plane " + std::to_string(i) + " of " + describe(in) + " got an unaligned stride " +
             std::to_string(full.stride[i]);
      return false;
    }
  }
  full.size = round_up(end, alignment);

  out->info = full;
  out->padding = used;
  for (unsigned i = 0; i < GST_VIDEO_MAX_PLANES; i++) out->padding.stride_align[i] = want_stride[i];
  out->tiled = GST_VIDEO_FORMAT_INFO_IS_TILED(finfo);
  return true;
}

}  // namespace ccm::memory
