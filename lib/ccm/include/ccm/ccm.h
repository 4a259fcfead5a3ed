/* libccm: the Codec Configuration Manager, a plain C API over gst-ccm.
 *
 * Any language with a C FFI can call it (Python ctypes, Rust, Go, C#).
 * No GStreamer type appears here. Every call returns a ccm_status; the
 * message of the last failure is kept per handle (ccm_last_error) or per
 * thread for calls without a handle (ccm_last_error(NULL)).
 * Nothing here throws; nothing here aborts on bad input.
 * User guide: docs/c-api.md; the dynamic_params blob: docs/dynamic-params.md.
 *
 * Threads: one thread may push while another pulls on the same handle, and
 * any thread (the tuning callback included) may call ccm_configure_codec.
 * Do not pull from two threads at once, nor destroy a handle in use.
 *
 * Versioning: CCM_API_VERSION grows with every addition; structs passed in
 * carry their own size (struct_size) so old callers keep working.
 */
#ifndef CCM_CCM_H
#define CCM_CCM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CCM_API __attribute__((visibility("default")))
#else
#define CCM_API
#endif

#define CCM_API_VERSION 1

typedef enum ccm_status {
  CCM_OK = 0,
  CCM_ERROR_INVALID_ARGUMENT = 1,  /* NULL pointer, out-of-range value, wrong struct_size */
  CCM_ERROR_MALFORMED_PARAMS = 2,  /* dynamic_params blob is truncated or malformed */
  CCM_ERROR_UNSUPPORTED = 3,       /* codec/format/parameter this build cannot do */
  CCM_ERROR_NO_ENCODER = 4,        /* no encoder element for the codec (message names the package) */
  CCM_ERROR_NOT_CONFIGURED = 5,    /* push/pull before ccm_configure_codec */
  CCM_ERROR_AGAIN = 6,             /* ccm_pull_packet: no packet ready within the timeout */
  CCM_ERROR_EOS = 7,               /* ccm_pull_packet: drained after ccm_finish */
  CCM_ERROR_ENCODER = 8,           /* the pipeline reported an error (message has it) */
  CCM_ERROR_INIT = 9,              /* GStreamer or the ccm plugin could not be initialised */
  CCM_ERROR_INTERNAL = 10,         /* out of memory, or a bug in libccm (message says which) */
} ccm_status;

typedef enum ccm_codec {
  CCM_CODEC_AV1 = 0,
  CCM_CODEC_HEVC = 1,
  CCM_CODEC_VP9 = 2,
  CCM_CODEC_RAW = 3,   /* no compression: packets are the I420 frames themselves */
  CCM_CODEC_H264 = 4,
} ccm_codec;

typedef enum ccm_rate_control {
  CCM_RC_CBR = 0,
  CCM_RC_VBR = 1,
  CCM_RC_CQP = 2,
} ccm_rate_control;

/* What the stream looks like and what it may cost. */
typedef struct EncodingProfile {
  uint32_t width;            /* pixels, 1..16384 */
  uint32_t height;           /* pixels, 1..16384 */
  double fps;                /* frames per second, > 0 */
  uint32_t target_bitrate;   /* kbit/s, >= 1 */
  double max_psnr;           /* dB; 0 = no cap (used by rate control when present) */
} EncodingProfile;

/* How to encode. Set with ccm_set_codec_config before ccm_configure_codec. */
typedef struct ccm_codec_config {
  uint32_t struct_size;      /* sizeof(ccm_codec_config) */
  ccm_codec codec;           /* default CCM_CODEC_H264 */
  bool low_latency;          /* default true */
  bool hdr;                  /* 10-bit, BT.2100 PQ signalling where the encoder can */
} ccm_codec_config;

/* Per encoded frame, handed to the tuning callback. */
typedef struct FrameMetrics {
  uint64_t frame_number;     /* 0-based, in output order */
  int64_t pts_ns;            /* presentation time of the frame */
  uint32_t size_bytes;       /* encoded size */
  bool key_frame;
  double encode_latency_ms;  /* push of the raw frame to arrival of its packet; -1 if unknown */
  double bitrate_kbps;       /* average over the last second of stream time (by pts) */
  double fps;                /* packets per wall-clock second over the last second */
  /* What ccmencbin's rate control (ccmratecontrol, see docs/ratecontrol.md) decided for this
   * frame; qp = -1 and zeros when the encoder keeps its own rate (rate_controlled false).
   * Appended in 0.1: code built against the fields above reads them as before. */
  bool rate_controlled;
  int32_t qp;                /* in the codec's scale (H.26x 0-51, AV1/VP9 0-63); -1 = none */
  double lambda;             /* R-lambda model's lambda; 0 = none */
  double target_bits;        /* the frame's budget */
  double buffer_bits;        /* leaky-bucket level after the frame */
  double complexity;         /* mean absolute luma difference to the previous frame, per pixel */
  uint32_t skip_blocks;      /* 64x64 blocks classed skip / fast / full */
  uint32_t fast_blocks;
  uint32_t full_blocks;
  bool scene_cut;
} FrameMetrics;

/* H.264/H.265: one Annex B access unit; AV1: one OBU-stream temporal unit;
 * VP9: one frame; RAW: the pushed frame. */
typedef struct ccm_packet {
  const uint8_t* data;       /* owned by libccm: valid until the next ccm_pull_packet or ccm_destroy */
  size_t size;
  int64_t pts_ns;            /* as pushed */
  int64_t dts_ns;            /* -1 when unknown; negative values are possible with B-frames */
  bool key_frame;
} ccm_packet;

typedef struct ccm_config ccm_config;  /* opaque handle */

typedef void (*ccm_tuning_callback)(ccm_config* config, const FrameMetrics* metrics, void* user_data);

/* Creates a handle. enable_hw_accel=false restricts every choice to software encoders. */
CCM_API ccm_status ccm_init(bool enable_hw_accel, ccm_config** out_config);

/* Codec, low_latency, hdr. Takes effect at the next ccm_configure_codec. */
CCM_API ccm_status ccm_set_codec_config(ccm_config* config, const ccm_codec_config* codec_config);

/* Applies a profile and optional dynamic parameters (see docs/dynamic-params.md;
 * NULL/0 for none; they merge with those of earlier calls). The first call builds
 * the encoder; later calls while encoding change the bitrate and quantizers live,
 * or, for anything else (size, fps, codec, GOP shape), start a new encoder at the
 * next frame while the old one drains. On any error nothing changes. */
CCM_API ccm_status ccm_configure_codec(ccm_config* config, const EncodingProfile* profile,
                                       const uint8_t* dynamic_params, size_t params_size);

CCM_API ccm_status ccm_get_current_profile(const ccm_config* config, EncodingProfile* out_profile);

/* The element chosen ("x265enc", "ccmx265enc", "nvh265enc" ...), copied into buf
 * (NUL-terminated; truncated with CCM_ERROR_INVALID_ARGUMENT when too small).
 * "" until the first frame reached the encoder; "raw" for CCM_CODEC_RAW. */
CCM_API ccm_status ccm_get_encoder_name(const ccm_config* config, char* buf, size_t buf_size);

/* Called on the encoder's output thread once per encoded frame, in output order.
 * It may call ccm_configure_codec to steer the rate (validated at once, applied
 * by the next push, pull or finish) and the ccm_get_* calls; never push, pull,
 * finish or destroy from it. NULL unregisters. */
CCM_API ccm_status ccm_set_tuning_callback(ccm_config* config, ccm_tuning_callback callback,
                                           void* user_data);

/* Pushes one I420 frame: width*height luma, then (w+1)/2*(h+1)/2 U and V, tightly
 * packed (size must match; 16-bit little-endian samples when hdr is on). The data
 * is copied. pts_ns < 0: the previous frame's pts plus one frame at the profile's
 * fps. Blocks while a few frames already wait for the encoder. */
CCM_API ccm_status ccm_push_frame(ccm_config* config, const uint8_t* data, size_t size,
                                  int64_t pts_ns);

/* Ends the stream: every pushed frame will come out of ccm_pull_packet, then CCM_ERROR_EOS. */
CCM_API ccm_status ccm_finish(ccm_config* config);

/* Waits up to timeout_ms (0 = not at all, -1 = forever) for the next packet.
 * Packets wait for the caller without limit, so one thread may push a whole
 * stream, finish, and then pull. */
CCM_API ccm_status ccm_pull_packet(ccm_config* config, ccm_packet* out_packet, int timeout_ms);

CCM_API ccm_status ccm_destroy(ccm_config* config);

/* Message of the last failure on this handle, or of this thread (any handle or
 * none) when config is NULL. Never NULL; "" when nothing failed yet. Valid until
 * this thread's next failing call or next ccm_last_error. */
CCM_API const char* ccm_last_error(const ccm_config* config);
CCM_API const char* ccm_status_name(ccm_status status);
CCM_API uint32_t ccm_api_version(void);

#ifdef __cplusplus
}
#endif

#endif /* CCM_CCM_H */
