/* The design's "live 8K HDR" use case: 7680x4320 at 60 fps, 10-bit HDR,
 * 120 Mbit/s, a PSNR cap of 42 dB, hardware encoders where the machine has
 * them; frame in, packet out until the capture ends.
 *
 *   cc live_8k_hdr.c $(pkg-config --cflags --libs ccm) -o live_8k_hdr
 *   ./live_8k_hdr out.obu        # then: ffprobe -f obu out.obu (or -f hevc)
 *
 * The suite runs it small (tests/capi): CCM_EXAMPLE_SIZE=WxH keeps the bits
 * per pixel of 120 Mbit/s at 8K by scaling the rate with the area, and
 * CCM_EXAMPLE_FRAMES=N stops early.
 */
#include "example_env.h"

int main(int argc, char** argv) {
  FILE* out = argc > 1 ? fopen(argv[1], "wb") : NULL;
  if (argc > 1 && !out) {
    perror(argv[1]);
    return 1;
  }

  CodecConfig* config = ccm_init(true);
  if (!config) {
    fprintf(stderr, "ccm_init: %s\n", ccm_last_error(NULL));
    return 1;
  }
  config->hdr = true; /* 10-bit in and out, BT.2100 PQ signalled in the stream */

  EncodingProfile profile = {0};
  profile.width = 7680;
  profile.height = 4320;
  profile.fps = 60;
  profile.target_bitrate = 120000000; /* 120 Mbit/s */
  profile.max_psnr = 42.0f;
  if (example_size(&profile.width, &profile.height))
    profile.target_bitrate = (uint32_t)((double)profile.target_bitrate * profile.width * profile.height /
                                        (7680.0 * 4320.0));

  int rc = ccm_configure_codec(config, &profile, NULL, 0);
  if (rc != 0) {
    fprintf(stderr, "ccm_configure_codec: %s: %s\n", ccm_status_name(rc), ccm_last_error(config));
    ccm_destroy(config);
    return 1;
  }

  const unsigned frames = example_frames(10 * profile.fps);
  uint8_t* frame = malloc(2 * ((size_t)profile.width * profile.height + 2 * (size_t)((profile.width + 1) / 2) *
                                                                          ((profile.height + 1) / 2)));
  stream_stats stats = {0, 0, 0, -1};
  for (unsigned i = 0; rc == 0 && frame && i < frames; ++i) {
    const size_t size = capture_frame(frame, profile.width, profile.height, 1, i);
    rc = ccm_push_frame(config, frame, size, -1); /* -1: pts follows from fps */
    if (rc == 0) rc = send_ready_packets(config, out, &stats, 0, 0); /* what is ready, no waiting */
  }
  free(frame);
  if (rc == 0) rc = ccm_finish(config);
  if (rc == 0) rc = send_ready_packets(config, out, &stats, 60000, 1);
  if (rc != 0) fprintf(stderr, "encoding: %s: %s\n", ccm_status_name(rc), ccm_last_error(config));

  char encoder[64] = "";
  ccm_get_encoder_name(config, encoder, sizeof encoder);
  const double seconds = (double)stats.packets / profile.fps;
  printf("live_8k_hdr: codec=%s encoder=%s size=%ux%u frames=%u packets=%u bytes=%llu "
         "target_bps=%u actual_bps=%.0f\n",
         codec_name(config->codec), encoder, profile.width, profile.height, frames, stats.packets, stats.bytes,
         profile.target_bitrate, seconds > 0 ? (double)stats.bytes * 8 / seconds : 0.0);
  ccm_destroy(config);
  if (out) fclose(out);
  return rc == 0 && stats.packets == frames ? 0 : 1;
}
