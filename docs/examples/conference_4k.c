/* The design's "4K low-latency conference" use case: 3840x2160 at 30 fps,
 * with the design's 3-byte dynamic_params (ultra-low latency on, no B-frames,
 * max quantizer 50). Packets come out in presentation order, one per frame.
 *
 *   cc conference_4k.c $(pkg-config --cflags --libs ccm) -o conference_4k
 *   ./conference_4k out.obu
 *
 * The suite runs it small (tests/capi): CCM_EXAMPLE_SIZE=WxH scales the rate
 * with the area, CCM_EXAMPLE_FRAMES=N stops early.
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

  EncodingProfile profile = {0};
  profile.width = 3840;
  profile.height = 2160;
  profile.fps = 30;
  profile.target_bitrate = 16000000; /* 16 Mbit/s */
  profile.max_psnr = 0.0f;           /* no cap */
  if (example_size(&profile.width, &profile.height))
    profile.target_bitrate =
        (uint32_t)((double)profile.target_bitrate * profile.width * profile.height / (3840.0 * 2160.0));

  uint8_t low_latency_params[] = {0x01 /* ultra-low latency on */, 0x00 /* no B-frames */,
                                  0x32 /* max quantizer */};
  int rc = ccm_configure_codec(config, &profile, low_latency_params, sizeof low_latency_params);
  if (rc != 0) {
    fprintf(stderr, "ccm_configure_codec: %s: %s\n", ccm_status_name(rc), ccm_last_error(config));
    ccm_destroy(config);
    return 1;
  }

  const unsigned frames = example_frames(10 * profile.fps);
  uint8_t* frame = malloc((size_t)profile.width * profile.height +
                          2 * (size_t)((profile.width + 1) / 2) * ((profile.height + 1) / 2));
  stream_stats stats = {0, 0, 0, -1};
  for (unsigned i = 0; rc == 0 && frame && i < frames; ++i) {
    const size_t size = capture_frame(frame, profile.width, profile.height, 0, i);
    rc = ccm_push_frame(config, frame, size, -1);
    if (rc == 0) rc = send_ready_packets(config, out, &stats, 0, 0);
  }
  free(frame);
  if (rc == 0) rc = ccm_finish(config);
  if (rc == 0) rc = send_ready_packets(config, out, &stats, 60000, 1);
  if (rc != 0) fprintf(stderr, "encoding: %s: %s\n", ccm_status_name(rc), ccm_last_error(config));

  char encoder[64] = "";
  ccm_get_encoder_name(config, encoder, sizeof encoder);
  const double seconds = (double)stats.packets / profile.fps;
  printf("conference_4k: codec=%s encoder=%s size=%ux%u frames=%u packets=%u bytes=%llu "
         "target_bps=%u actual_bps=%.0f out_of_order=%u\n",
         codec_name(config->codec), encoder, profile.width, profile.height, frames, stats.packets, stats.bytes,
         profile.target_bitrate, seconds > 0 ? (double)stats.bytes * 8 / seconds : 0.0, stats.out_of_order);
  ccm_destroy(config);
  if (out) fclose(out);
  return rc == 0 && stats.packets == frames && stats.out_of_order == 0 ? 0 : 1;
}
