/* What the two design examples share: the suite's overrides (few frames, a
 * small size), a synthetic capture source and a send function that writes the
 * packets to a file. A real program puts its camera and its network here.
 *
 *   CCM_EXAMPLE_FRAMES=N      frames to encode (default: 10 seconds' worth)
 *   CCM_EXAMPLE_SIZE=WxH      encode this size instead of the use case's own
 */
#ifndef CCM_EXAMPLE_ENV_H
#define CCM_EXAMPLE_ENV_H

#include <ccm/ccm.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned example_frames(unsigned fallback) {
  const char* v = getenv("CCM_EXAMPLE_FRAMES");
  return v && atoi(v) > 0 ? (unsigned)atoi(v) : fallback;
}

/* Sets the width and height from CCM_EXAMPLE_SIZE; returns 1 when it did. */
static int example_size(uint32_t* width, uint32_t* height) {
  const char* v = getenv("CCM_EXAMPLE_SIZE");
  unsigned w = 0, h = 0;
  if (!v || sscanf(v, "%ux%u", &w, &h) != 2 || w == 0 || h == 0) return 0;
  *width = w;
  *height = h;
  return 1;
}

/* 0..255 from a position: texture that a camera's sensor noise resembles. */
static unsigned grain(size_t x, size_t y, unsigned salt) {
  uint32_t v = (uint32_t)(x * 73856093u) ^ (uint32_t)(y * 19349663u) ^ (salt * 83492791u);
  v ^= v >> 13;
  v *= 0x5bd1e995u;
  v ^= v >> 15;
  return v & 0xFF;
}

/* The capture source: one packed I420 frame (16-bit samples when hdr): a ramp
 * and a texture moving 4 pixels a frame, plus fresh grain in every frame, so
 * the encoder has real work at any rate. Returns the frame's size in bytes. */
static size_t capture_frame(uint8_t* buf, uint32_t w, uint32_t h, int hdr, unsigned index) {
  const size_t cw = (w + 1) / 2, ch = (h + 1) / 2;
  const size_t samples = (size_t)w * h + 2 * cw * ch;
  for (size_t y = 0; y < h; ++y)
    for (size_t x = 0; x < w; ++x) {
      const unsigned luma = (unsigned)((x + y + 4 * index) % 256) / 2 + grain(x + 4 * index, y, 0) * 7 / 16 +
                            grain(x, y, index + 1) / 16;
      if (hdr) {
        const unsigned v = 64 + luma * 3; /* 10-bit, within video range */
        buf[2 * (y * w + x)] = (uint8_t)v;
        buf[2 * (y * w + x) + 1] = (uint8_t)(v >> 8);
      } else {
        buf[y * w + x] = (uint8_t)(16 + luma * 7 / 8);
      }
    }
  for (size_t k = (size_t)w * h; k < samples; ++k) {
    const unsigned v = (unsigned)(k % cw) / 4 + (hdr ? 480 : 120);
    if (hdr) {
      buf[2 * k] = (uint8_t)v;
      buf[2 * k + 1] = (uint8_t)(v >> 8);
    } else {
      buf[k] = (uint8_t)v;
    }
  }
  return hdr ? 2 * samples : samples;
}

/* The send function: here, appends to a file (NULL: drops the packet). */
static void send_packet(FILE* out, const ccm_packet* packet) {
  if (out) fwrite(packet->data, 1, packet->size, out);
}

/* What went out, for the summary line the suite reads. */
typedef struct {
  unsigned long long bytes;
  unsigned packets;
  unsigned out_of_order; /* packets with a pts below the one before */
  int64_t last_pts;
} stream_stats;

/* Pulls and sends packets, waiting up to timeout_ms for each, until none is
 * ready (returns 0) or the stream ended (0 after CCM_ERROR_EOS when `drain`)
 * or failed (the negative code). */
static int send_ready_packets(CodecConfig* config, FILE* out, stream_stats* stats, int timeout_ms, int drain) {
  ccm_packet packet;
  int rc;
  while ((rc = ccm_pull_packet(config, &packet, timeout_ms)) == 0) {
    stats->out_of_order += stats->packets > 0 && packet.pts_ns < stats->last_pts;
    stats->last_pts = packet.pts_ns;
    send_packet(out, &packet);
    stats->bytes += packet.size;
    ++stats->packets;
  }
  if (rc == CCM_ERROR_AGAIN && !drain) return 0;
  if (rc == CCM_ERROR_EOS && drain) return 0;
  return rc;
}

static const char* codec_name(VideoCodec codec) {
  switch (codec) {
    case CODEC_AV1: return "av1";
    case CODEC_HEVC: return "hevc";
    case CODEC_VP9: return "vp9";
    case CODEC_RAW: return "raw";
    case CODEC_H264: return "h264";
  }
  return "?";
}

#endif
