// GstCcmQpMeta: a per-frame quantizer decision travelling with a raw frame, from
// the rate controller (ccmratecontrol) to an encoder that honours it (ccmx265enc,
// ccmsvtav1enc). Optional per-block QP offsets for encoders that take them.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

typedef struct _GstCcmQpMeta {
  GstMeta meta;
  // Frame quantizer in the codec's own scale (H.265 0-51, AV1 0-63 as SVT-AV1
  // takes it); -1 = let the encoder's own rate control decide.
  gint frame_qp;
  // Per-block QP offsets, row-major, blocks_x * blocks_y values, each added to the
  // frame QP for that block; NULL when absent. block_size in luma pixels (16, 32, 64).
  guint block_size;
  guint blocks_x;
  guint blocks_y;
  gfloat* offsets;
} GstCcmQpMeta;

GType gst_ccm_qp_meta_api_get_type(void);
#define GST_CCM_QP_META_API_TYPE (gst_ccm_qp_meta_api_get_type())
const GstMetaInfo* gst_ccm_qp_meta_get_info(void);
#define GST_CCM_QP_META_INFO (gst_ccm_qp_meta_get_info())

// Adds (or returns the existing) meta with frame_qp set.
GstCcmQpMeta* gst_buffer_add_ccm_qp_meta(GstBuffer* buffer, gint frame_qp);
#define gst_buffer_get_ccm_qp_meta(b) \
  ((GstCcmQpMeta*)gst_buffer_get_meta((b), GST_CCM_QP_META_API_TYPE))

// Copies blocks_x * blocks_y offsets into the meta (replacing any). FALSE on bad sizes.
gboolean gst_ccm_qp_meta_set_offsets(GstCcmQpMeta* meta, guint block_size, guint blocks_x, guint blocks_y,
                                     const gfloat* offsets);

G_END_DECLS
