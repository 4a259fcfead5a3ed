#include "common/qp_meta.h"

#include <gst/video/video.h>

#include <cstring>

namespace {

// A QP map is laid out on the picture: it survives colour conversion but not
// scaling (the "size" tag makes videoscale drop it).
constexpr guint kMaxBlocks = 1u << 22;  // 8K at 4x4 blocks; anything above is a caller bug

gboolean qp_meta_init(GstMeta* meta, gpointer, GstBuffer*) {
  auto* m = reinterpret_cast<GstCcmQpMeta*>(meta);
  m->frame_qp = -1;
  m->block_size = 0;
  m->blocks_x = 0;
  m->blocks_y = 0;
  m->offsets = nullptr;
  return TRUE;
}

void qp_meta_free(GstMeta* meta, GstBuffer*) {
  auto* m = reinterpret_cast<GstCcmQpMeta*>(meta);
  g_free(m->offsets);
  m->offsets = nullptr;
}

gboolean qp_meta_transform(GstBuffer* dest, GstMeta* meta, GstBuffer*, GQuark type, gpointer data) {
  // Only plain copies keep the map valid; regions or scaled frames would need a
  // resampled map, which no producer asks for yet.
  if (!GST_META_TRANSFORM_IS_COPY(type)) return FALSE;
  auto* copy_data = static_cast<GstMetaTransformCopy*>(data);
  if (copy_data->region) return FALSE;
  const auto* src = reinterpret_cast<const GstCcmQpMeta*>(meta);
  GstCcmQpMeta* dst = gst_buffer_add_ccm_qp_meta(dest, src->frame_qp);
  if (!dst) return FALSE;
  if (src->offsets) gst_ccm_qp_meta_set_offsets(dst, src->block_size, src->blocks_x, src->blocks_y, src->offsets);
  return TRUE;
}

}  // namespace

GType gst_ccm_qp_meta_api_get_type(void) {
  static GType type = 0;
  static const gchar* tags[] = {GST_META_TAG_VIDEO_STR, GST_META_TAG_VIDEO_SIZE_STR, nullptr};
  if (g_once_init_enter(&type)) {
    GType t = gst_meta_api_type_register("GstCcmQpMetaAPI", tags);
    g_once_init_leave(&type, t);
  }
  return type;
}

const GstMetaInfo* gst_ccm_qp_meta_get_info(void) {
  static const GstMetaInfo* info = nullptr;
  if (g_once_init_enter(&info)) {
    const GstMetaInfo* i = gst_meta_register(GST_CCM_QP_META_API_TYPE, "GstCcmQpMeta", sizeof(GstCcmQpMeta),
                                             qp_meta_init, qp_meta_free, qp_meta_transform);
    g_once_init_leave(&info, i);
  }
  return info;
}

GstCcmQpMeta* gst_buffer_add_ccm_qp_meta(GstBuffer* buffer, gint frame_qp) {
  g_return_val_if_fail(GST_IS_BUFFER(buffer), nullptr);
  GstCcmQpMeta* meta = gst_buffer_get_ccm_qp_meta(buffer);
  if (!meta)
    meta = reinterpret_cast<GstCcmQpMeta*>(gst_buffer_add_meta(buffer, GST_CCM_QP_META_INFO, nullptr));
  if (meta) meta->frame_qp = frame_qp < 0 ? -1 : frame_qp;
  return meta;
}

gboolean gst_ccm_qp_meta_set_offsets(GstCcmQpMeta* meta, guint block_size, guint blocks_x, guint blocks_y,
                                     const gfloat* offsets) {
  g_return_val_if_fail(meta != nullptr, FALSE);
  if (!offsets || block_size < 4 || block_size > 256 || blocks_x == 0 || blocks_y == 0 ||
      blocks_x > kMaxBlocks / blocks_y)
    return FALSE;
  const gsize count = gsize(blocks_x) * blocks_y;
  auto* copy = static_cast<gfloat*>(g_memdup2(offsets, count * sizeof(gfloat)));
  g_free(meta->offsets);
  meta->offsets = copy;
  meta->block_size = block_size;
  meta->blocks_x = blocks_x;
  meta->blocks_y = blocks_y;
  return TRUE;
}
