// Owning pointers for the GStreamer and GLib objects libccm holds, so every
// early return releases what it took.
#pragma once

#include <gst/gst.h>

#include <memory>

namespace ccm::api {

struct GstObjectUnref {
  void operator()(gpointer p) const { if (p) gst_object_unref(p); }
};
struct GstSampleUnref {
  void operator()(GstSample* s) const { if (s) gst_sample_unref(s); }
};
struct GstCapsUnref {
  void operator()(GstCaps* c) const { if (c) gst_caps_unref(c); }
};
struct GErrorFree {
  void operator()(GError* e) const { if (e) g_error_free(e); }
};
struct GFree {
  void operator()(gpointer p) const { g_free(p); }
};

using ElementPtr = std::unique_ptr<GstElement, GstObjectUnref>;
using PadPtr = std::unique_ptr<GstPad, GstObjectUnref>;
using BusPtr = std::unique_ptr<GstBus, GstObjectUnref>;
using SamplePtr = std::unique_ptr<GstSample, GstSampleUnref>;
using CapsPtr = std::unique_ptr<GstCaps, GstCapsUnref>;
using GErrorPtr = std::unique_ptr<GError, GErrorFree>;
using GCharPtr = std::unique_ptr<gchar, GFree>;

}  // namespace ccm::api
