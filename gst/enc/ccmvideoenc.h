// GstCcmVideoEnc: the small encoder base that ccmx265enc and ccmsvtav1enc share.
//
// It owns what is the same for every library: the unified properties (the names
// ccmencbin uses), the per-frame QP meta, key-unit requests, live reconfiguration
// at a frame boundary, latency reporting and HDR metadata parsed from caps. A
// subclass only talks to its library through the few virtuals below, as
// gst-plugins-bad's nvcodec encoders do.
//
// Contract details (settled with the first implementation, ccmvideoenc.cpp):
// - The base installs bitrate, rate-control, keyframe-interval, threads and
//   low-latency. A subclass installs speed-preset AND quantizer from class_init
//   with its native ranges (gst_ccm_video_enc_class_install_speed_preset and
//   gst_ccm_video_enc_class_install_quantizer, added here).
// - The install functions point the subclass's GObject set/get_property at the
//   base's (GObject does not inherit them). A subclass with properties of its own
//   sets its functions BEFORE calling them and chains up (the parent class's
//   set_property) for ids below GST_CCM_VIDEO_ENC_PROP_LAST, where its ids start.
// - open() also sets the output state (gst_video_encoder_set_output_state) and
//   may call gst_video_encoder_negotiate. The info it gets never has a framerate of
//   0/1: variable-rate input gets a nominal rate (caps' max-framerate, else 30/1),
//   and frames without a timestamp get one at that rate before encode().
// - encode() owns `frame` (transfer full, as GstVideoEncoderClass.handle_frame):
//   unref it after handing the picture to the library, fetch it again with
//   gst_video_encoder_get_frame() when the library returns the packet.
// - Latency: the base reports delay_frames() x the (nominal) frame duration after
//   every open and reconfigure. A subclass whose delay changes while it runs (more
//   pictures in flight to keep up with a live source) calls
//   gst_ccm_video_enc_delay_changed() from encode(): the base reports it again and
//   posts a latency message, so the pipeline recomputes its latency.
// - reconfigure() may be called with settings equal to the open ones except for
//   fields that changed; compare against what you opened with.
#pragma once

#include <gst/gst.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_TYPE_CCM_VIDEO_ENC (gst_ccm_video_enc_get_type())
G_DECLARE_DERIVABLE_TYPE(GstCcmVideoEnc, gst_ccm_video_enc, GST, CCM_VIDEO_ENC, GstVideoEncoder)

typedef enum {
  GST_CCM_RATE_CONTROL_CBR = 0,
  GST_CCM_RATE_CONTROL_VBR = 1,
  GST_CCM_RATE_CONTROL_CQP = 2,
} GstCcmRateControl;

// Settings as the user set them (the base owns the properties). Units: kbit/s, frames.
typedef struct {
  guint bitrate;               // kbit/s
  GstCcmRateControl rate_control;
  guint quantizer;             // codec scale, for CQP
  guint keyframe_interval;     // frames; 0 = library default
  gint speed_preset;           // library's native scale (x265 0-9 ultrafast..placebo, SVT-AV1 0-13)
  guint threads;               // 0 = library default
  gboolean low_latency;
} GstCcmEncSettings;

// HDR10 static metadata from caps (mastering-display-info, content-light-level).
typedef struct {
  gboolean has_mastering_display;
  GstVideoMasteringDisplayInfo mastering_display;
  gboolean has_content_light_level;
  GstVideoContentLightLevel content_light_level;
} GstCcmHdrInfo;

// What the base decided for one frame.
typedef struct {
  gboolean force_key_frame;    // a key unit was requested for this frame (or the interval is due)
  gint qp;                     // from GstCcmQpMeta, -1 = none
  const gfloat* qp_offsets;    // per-block offsets from the meta, or NULL
  guint qp_block_size, qp_blocks_x, qp_blocks_y;
} GstCcmFrameParams;

struct _GstCcmVideoEncClass {
  GstVideoEncoderClass parent_class;

  // Opens the library encoder for `info`; on failure posts an element error that
  // names the parameter at fault and returns FALSE.
  gboolean (*open)(GstCcmVideoEnc* enc, const GstVideoInfo* info, const GstCcmEncSettings* settings,
                   const GstCcmHdrInfo* hdr);
  void (*close)(GstCcmVideoEnc* enc);
  // Submits one frame; finished frames go out through gst_video_encoder_finish_frame
  // (the subclass matches library output to frames, by pts or system_frame_number).
  GstFlowReturn (*encode)(GstCcmVideoEnc* enc, GstVideoCodecFrame* frame, const GstCcmFrameParams* params);
  // Sends EOS to the library and finishes every frame still inside.
  GstFlowReturn (*drain)(GstCcmVideoEnc* enc);
  // Applies changed settings in place (called between frames, from the streaming
  // thread). Return FALSE when the library cannot: the base then drains, closes
  // and reopens at this frame boundary.
  gboolean (*reconfigure)(GstCcmVideoEnc* enc, const GstCcmEncSettings* settings);
  // Frames the library holds before the first output (for the latency query).
  guint (*delay_frames)(GstCcmVideoEnc* enc);
};

// For subclasses: a consistent copy of the current settings.
void gst_ccm_video_enc_get_settings(GstCcmVideoEnc* enc, GstCcmEncSettings* out);
// delay_frames() changed (streaming thread): report the latency again.
void gst_ccm_video_enc_delay_changed(GstCcmVideoEnc* enc);

// Installs the unified properties on a subclass with its own speed-preset range
// and defaults (call from class_init).
void gst_ccm_video_enc_class_install_speed_preset(GstCcmVideoEncClass* klass, gint min, gint max, gint def,
                                                  const gchar* blurb);
// The same with the library's named presets as an enum (values = its native
// scale), as upstream elements have them: `speed-preset=ultrafast`.
void gst_ccm_video_enc_class_install_speed_preset_enum(GstCcmVideoEncClass* klass, GType type, gint def,
                                                       const gchar* blurb);
// Installs `quantizer` (0..max, the codec's scale: 51 for H.265, 63 for AV1).
void gst_ccm_video_enc_class_install_quantizer(GstCcmVideoEncClass* klass, guint max, guint def);

// First property id free for a subclass's own properties.
#define GST_CCM_VIDEO_ENC_PROP_LAST 64

G_END_DECLS
