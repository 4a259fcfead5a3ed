/* libccm: the Codec Configuration Manager, a plain C API over gst-ccm.
 *
 * The contract (the design's C API): VideoCodec, EncodingProfile, HardwareContext,
 * CodecConfig, ccm_init, ccm_configure_codec, ccm_get_current_profile, ccm_destroy
 * and ccm_tuning_callback with FrameMetrics. Around it, under names of their own:
 * frame in / packet out (ccm_push_frame, ccm_finish, ccm_pull_packet), errors
 * (ccm_last_error, ccm_status_name), the encoder in use and the API version.
 *
 * Any language with a C FFI can call it (Python ctypes, Rust, Go, C#). No
 * GStreamer type appears here. Nothing here throws or aborts on bad input.
 * User guide: docs/c-api.md; the dynamic_params bytes: docs/dynamic-params.md.
 *
 * Threads: one thread may push while another pulls on the same handle, and any
 * thread (the tuning callback included) may call ccm_configure_codec. Write the
 * CodecConfig fields only on the thread that calls ccm_configure_codec, and not
 * while a tuning callback that configures may run. Do not pull from two threads
 * at once, nor destroy a handle in use.
 */
#ifndef CCM_CCM_H
#define CCM_CCM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* VkDevice: Vulkan's own type when its headers are present; otherwise the same
 * handle type, declared here (Vulkan's dispatchable handles are pointers to an
 * incomplete struct VkDevice_T on every platform, so both spellings agree). */
#if !defined(VK_VERSION_1_0) && defined(__has_include)
#if __has_include(<vulkan/vulkan_core.h>)
#include <vulkan/vulkan_core.h>
#endif
#endif
#if !defined(VK_VERSION_1_0)
typedef struct VkDevice_T* VkDevice;
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CCM_API __attribute__((visibility("default")))
#else
#define CCM_API
#endif

/* 2: the design's contract (CodecConfig* handle, negative error codes, fps and
 * bit/s as integers, the 3-byte dynamic_params). */
#define CCM_API_VERSION 2

/* ---- the contract --------------------------------------------------------------- */

typedef enum {
  CODEC_AV1 = 0,
  CODEC_HEVC = 1,
  CODEC_VP9 = 2,
  CODEC_RAW = 3,   /* no compression: packets are the pushed frames themselves */
  CODEC_H264 = 4,  /* beyond the design's four */
} VideoCodec;

/* What the stream looks like and what it may cost. */
typedef struct {
  uint32_t width;           /* pixels, 1..16384 */
  uint32_t height;          /* pixels, 1..16384 */
  uint32_t fps;             /* frames per second, 1..1000 */
  uint32_t target_bitrate;  /* bit/s (120 Mbit/s = 120000000), >= 1000 */
  float max_psnr;           /* dB, 0..100; 0 = no cap. Rate control stops spending bits on
                               frames estimated above it (where ccmratecontrol keeps the rate) */
} EncodingProfile;

/* The GPU backends libccm opened for this handle; NULL where none is open.
 * This release opens none itself (the encoder elements open their own device),
 * so all are NULL; a caller's own device is not taken yet: ccm_configure_codec
 * refuses a handle whose fields were changed (CCM_ERROR_UNSUPPORTED). */
typedef struct {
  VkDevice gpu_handle;
  void* nvenc_ctx;
  void* vaapi_ctx;
} HardwareContext;

/* The handle, a struct the caller reads and sets. codec, low_latency and hdr
 * take effect at the next ccm_configure_codec; profile is the current profile
 * (read it, or call ccm_get_current_profile; writing it changes nothing). */
typedef struct {
  VideoCodec codec;         /* ccm_init: CODEC_AV1 */
  EncodingProfile profile;  /* all zero until the first successful ccm_configure_codec */
  HardwareContext hw;
  bool low_latency;         /* ccm_init: true (no look-ahead, no B-frames) */
  bool hdr;                 /* 10-bit input and output, BT.2100 PQ signalling; ccm_init: false */
} CodecConfig;

/* Per encoded frame, handed to the tuning callback. */
typedef struct FrameMetrics {
  uint64_t frame_number;     /* 0-based, in output order */
  int64_t pts_ns;            /* presentation time of the frame */
  uint32_t size_bytes;       /* encoded size */
  bool key_frame;
  double encode_latency_ms;  /* push of the raw frame to arrival of its packet; -1 if unknown */
  double bitrate_kbps;       /* kbit/s, average over the last second of stream time (by pts) */
  double fps;                /* packets per wall-clock second over the last second */
  /* What ccmencbin's rate control (ccmratecontrol, see docs/ratecontrol.md) decided for this
   * frame; qp = -1 and zeros when the encoder keeps its own rate (rate_controlled false). */
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

/* Return codes: 0 on success, one of these (negative) otherwise. */
typedef enum {
  CCM_OK = 0,
  CCM_ERROR_INVALID_ARGUMENT = -1,  /* NULL pointer, value out of range (the message names the field) */
  CCM_ERROR_MALFORMED_PARAMS = -2,  /* dynamic_params is neither the 3-byte form nor a valid "CCMP" blob */
  CCM_ERROR_UNSUPPORTED = -3,       /* something this build cannot do (e.g. a caller's GPU handle) */
  CCM_ERROR_NO_ENCODER = -4,        /* no encoder element for the codec (the message names the package) */
  CCM_ERROR_NOT_CONFIGURED = -5,    /* push/pull/finish before ccm_configure_codec */
  CCM_ERROR_AGAIN = -6,             /* ccm_pull_packet: no packet ready within the timeout */
  CCM_ERROR_EOS = -7,               /* ccm_pull_packet: drained after ccm_finish */
  CCM_ERROR_ENCODER = -8,           /* the encoding pipeline reported an error (the message has it) */
  CCM_ERROR_INIT = -9,              /* GStreamer or the ccm elements could not be initialised */
  CCM_ERROR_INTERNAL = -10,         /* out of memory, or a bug in libccm (the message says which) */
  CCM_ERROR_NEEDS_RESTART = -11,    /* the change needs a new encoder, which a finished stream
                                       (ccm_finish) cannot start: destroy and init again */
} ccm_status;

typedef void (*ccm_tuning_callback)(CodecConfig* config, const FrameMetrics* metrics);

/* A new handle, or NULL with the reason in ccm_last_error(NULL). Initialises
 * GStreamer if the process has not and registers the ccm elements.
 * enable_hw_accel=false restricts every choice to software encoders; true lets
 * ccmencbin pick hardware encoders where it detects a usable GPU. */
CCM_API CodecConfig* ccm_init(bool enable_hw_accel);

/* Applies config->codec/low_latency/hdr, a profile and optional dynamic_params
 * (NULL/0 for none; the 3-byte form {ultra-low latency 0/1, B-frames 0..16,
 * max quantizer 0..63} or a "CCMP" blob, docs/dynamic-params.md; they merge with
 * those of earlier calls). The first call builds the encoder. Later calls apply
 * to the next frames pushed: live where the encoder takes the change in place
 * (bitrate, max_psnr), otherwise by a new encoder that starts at the next frame
 * with a key frame while the old one drains (no frame lost, packets in order).
 * Returns 0, or a negative ccm_status with the reason in ccm_last_error(config);
 * on any error nothing changes. */
CCM_API int ccm_configure_codec(CodecConfig* config, const EncodingProfile* profile,
                                const uint8_t* dynamic_params, size_t params_size);

/* The profile last accepted by ccm_configure_codec, in the same units; all zero
 * before the first one (or for a NULL config). */
CCM_API EncodingProfile ccm_get_current_profile(const CodecConfig* config);

/* Stops the encoder and frees the handle. NULL is accepted. */
CCM_API void ccm_destroy(CodecConfig* config);

/* ---- beyond the contract ---------------------------------------------------------- */

/* H.264/H.265: one Annex B access unit; AV1: one OBU-stream temporal unit;
 * VP9: one frame; RAW: the pushed frame. */
typedef struct ccm_packet {
  const uint8_t* data;       /* owned by libccm: valid until the next ccm_pull_packet or ccm_destroy */
  size_t size;
  int64_t pts_ns;            /* as pushed */
  int64_t dts_ns;            /* -1 when unknown; negative values are possible with B-frames */
  bool key_frame;
} ccm_packet;

/* Registers the tuning callback, called on the encoder's output thread once per
 * encoded frame, in output order. It may call ccm_configure_codec (validated at
 * once, applied by the next push, pull or finish), ccm_get_current_profile and
 * ccm_get_user_data; never push, pull, finish or destroy from it. NULL
 * unregisters. Returns 0 or a negative ccm_status. */
CCM_API int ccm_set_tuning_callback(CodecConfig* config, ccm_tuning_callback callback,
                                    void* user_data);
/* The user_data given to ccm_set_tuning_callback (NULL when none). */
CCM_API void* ccm_get_user_data(const CodecConfig* config);

/* Pushes one I420 frame: width*height luma, then (w+1)/2*(h+1)/2 U and V, tightly
 * packed (size must match; 16-bit little-endian samples when hdr is on). The data
 * is copied. pts_ns < 0: the previous frame's pts plus one frame at the profile's
 * fps. Blocks while a few frames already wait for the encoder. */
CCM_API int ccm_push_frame(CodecConfig* config, const uint8_t* data, size_t size, int64_t pts_ns);

/* Ends the stream: every pushed frame will come out of ccm_pull_packet, then CCM_ERROR_EOS. */
CCM_API int ccm_finish(CodecConfig* config);

/* Waits up to timeout_ms (0 = not at all, -1 = forever) for the next packet.
 * Packets wait for the caller without limit, so one thread may push a whole
 * stream, finish, and then pull. */
CCM_API int ccm_pull_packet(CodecConfig* config, ccm_packet* out_packet, int timeout_ms);

/* The element chosen ("x265enc", "ccmx265enc", "nvh265enc" ...), copied into buf
 * (NUL-terminated; truncated with CCM_ERROR_INVALID_ARGUMENT when too small).
 * "" until the first frame reached the encoder; "raw" for CODEC_RAW. */
CCM_API int ccm_get_encoder_name(const CodecConfig* config, char* buf, size_t buf_size);

/* Message of the last failure on this handle, or of this thread (any handle or
 * none, ccm_init included) when config is NULL. Never NULL; "" when nothing
 * failed yet. Valid until this thread's next failing call or next ccm_last_error. */
CCM_API const char* ccm_last_error(const CodecConfig* config);
/* "CCM_OK", "CCM_ERROR_EOS" ...; "CCM_ERROR_UNKNOWN" for anything else. */
CCM_API const char* ccm_status_name(int status);
CCM_API uint32_t ccm_api_version(void);

#ifdef __cplusplus
}
#endif

#endif /* CCM_CCM_H */
