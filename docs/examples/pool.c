/* Frames in ccmdmabufpool memory from an application, through GStreamer and
 * GObject only: the ccm plugin exports no symbol but its entry points, so the
 * pool is found by its type name and configured through its documented config
 * fields. Writes one NV12 frame through the frame's strides and prints the
 * layout. Built and run as a test (tests/python/meson.build), so it stays
 * correct (docs/memory.md).
 *
 *   cc pool.c $(pkg-config --cflags --libs gstreamer-video-1.0 gstreamer-allocators-1.0) -o pool
 *   GST_PLUGIN_PATH=<the folder of libgstccm.so> ./pool
 */
#include <gst/allocators/allocators.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  /* Loading the plugin registers GstCcmDmaBufPool. */
  GstPlugin* plugin = gst_plugin_load_by_name("ccm");
  GType pool_type = g_type_from_name("GstCcmDmaBufPool");
  if (!plugin || !pool_type) {
    fprintf(stderr, "the ccm plugin is not installed (or GST_PLUGIN_PATH does not name its folder)\n");
    return 1;
  }
  gst_object_unref(plugin);

  GstVideoInfo info;
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_NV12, 1918, 1080);
  GstCaps* caps = gst_video_info_to_caps(&info);

  GstBufferPool* pool = GST_BUFFER_POOL(gst_object_ref_sink(g_object_new(pool_type, NULL)));
  GstStructure* config = gst_buffer_pool_get_config(pool);
  gst_buffer_pool_config_set_params(config, caps, (guint)info.size, 4, 8);
  gst_structure_set(config, "ccm-alignment", G_TYPE_UINT, 256, /* bytes, for strides and planes */
                    "ccm-mlock", G_TYPE_BOOLEAN, FALSE,      /* TRUE: pin the pages */
                    NULL);
  if (!gst_buffer_pool_set_config(pool, config)) { /* FALSE: the log says why */
    fprintf(stderr, "the pool refused its configuration\n");
    return 1;
  }
  gst_buffer_pool_set_active(pool, TRUE);

  GstBuffer* buffer = NULL;
  if (gst_buffer_pool_acquire_buffer(pool, &buffer, NULL) != GST_FLOW_OK) {
    fprintf(stderr, "no buffer from the pool\n");
    return 1;
  }
  /* Write through the frame's strides: the pool pads rows to the alignment. */
  GstVideoFrame frame;
  gint aligned = 1;
  gst_video_frame_map(&frame, &info, buffer, GST_MAP_WRITE);
  for (guint plane = 0; plane < GST_VIDEO_FRAME_N_PLANES(&frame); plane++) {
    guint8* data = GST_VIDEO_FRAME_PLANE_DATA(&frame, plane);
    const gint stride = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, plane);
    const gint rows = GST_VIDEO_FRAME_COMP_HEIGHT(&frame, plane);
    for (gint row = 0; row < rows; row++) memset(data + row * stride, 128, GST_VIDEO_FRAME_COMP_WIDTH(&frame, 0));
    printf("plane %u: stride %d\n", plane, stride);
    aligned &= stride % 256 == 0;
  }
  gst_video_frame_unmap(&frame);
  GstMemory* memory = gst_buffer_peek_memory(buffer, 0);
  printf("fd memory: %s, DMABuf: %s\n", gst_is_fd_memory(memory) ? "yes" : "no",
         gst_is_dmabuf_memory(memory) ? "yes" : "no");
  const gboolean ok = gst_is_fd_memory(memory) && aligned;

  gst_buffer_unref(buffer);
  gst_buffer_pool_set_active(pool, FALSE);
  gst_object_unref(pool);
  gst_caps_unref(caps);
  gst_deinit();
  return ok ? 0 : 1;
}
