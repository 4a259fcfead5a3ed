/* Encodes ten synthetic 320x240 frames to H.264 with libccm and prints each
 * packet's size. Built and run as a test (tests/python/meson.build), so it
 * stays correct.
 *
 *   cc encode.c $(pkg-config --cflags --libs ccm) -o encode && ./encode out.h264
 *
 * With a file name, the Annex B stream is written there (play it with
 * `ffplay out.h264`).
 */
#include <ccm/ccm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WIDTH = 320, HEIGHT = 240, FRAMES = 10 };

static int check(ccm_config* config, ccm_status status, const char* what) {
  if (status == CCM_OK) return 1;
  fprintf(stderr, "%s: %s: %s\n", what, ccm_status_name(status), ccm_last_error(config));
  return 0;
}

/* A diagonal ramp that moves every frame, so the encoder has motion to code. */
static void fill_frame(uint8_t* frame, int index) {
  uint8_t* y = frame;
  uint8_t* u = y + WIDTH * HEIGHT;
  uint8_t* v = u + (WIDTH / 2) * (HEIGHT / 2);
  for (int row = 0; row < HEIGHT; ++row)
    for (int col = 0; col < WIDTH; ++col) y[row * WIDTH + col] = (uint8_t)(row + col + 4 * index);
  memset(u, 128, (WIDTH / 2) * (HEIGHT / 2));
  memset(v, 128, (WIDTH / 2) * (HEIGHT / 2));
}

int main(int argc, char** argv) {
  FILE* out = argc > 1 ? fopen(argv[1], "wb") : NULL;
  if (argc > 1 && !out) {
    perror(argv[1]);
    return 1;
  }

  ccm_config* config = NULL;
  if (!check(NULL, ccm_init(false, &config), "ccm_init")) return 1;  /* software encoders only */

  ccm_codec_config codec = {sizeof(ccm_codec_config), CCM_CODEC_H264, true, false};
  EncodingProfile profile = {WIDTH, HEIGHT, 30.0, 500 /* kbit/s */, 0.0};
  /* dynamic_params (docs/dynamic-params.md): keyframe every 30 frames. */
  const uint8_t params[] = {'C', 'C', 'M', 'P', 1, 0, 1, 0, /* header, 1 entry */
                            4, 4, 30, 0, 0, 0};             /* keyframe_interval = 30 */
  int ok = check(config, ccm_set_codec_config(config, &codec), "ccm_set_codec_config") &&
           check(config, ccm_configure_codec(config, &profile, params, sizeof params),
                 "ccm_configure_codec");

  const size_t frame_size = WIDTH * HEIGHT * 3 / 2;
  uint8_t* frame = malloc(frame_size);
  for (int i = 0; ok && i < FRAMES; ++i) {
    fill_frame(frame, i);
    ok = check(config, ccm_push_frame(config, frame, frame_size, (int64_t)i * 1000000000 / 30),
               "ccm_push_frame");
  }
  free(frame);
  ok = ok && check(config, ccm_finish(config), "ccm_finish");

  int packets = 0;
  while (ok) {
    ccm_packet packet;
    ccm_status status = ccm_pull_packet(config, &packet, 5000);
    if (status == CCM_ERROR_EOS) break;
    ok = check(config, status, "ccm_pull_packet");
    if (!ok) break;
    printf("packet %2d: %6zu bytes, pts %8.3f ms%s\n", packets++, packet.size,
           packet.pts_ns / 1e6, packet.key_frame ? ", key frame" : "");
    if (out) fwrite(packet.data, 1, packet.size, out);  /* packet.data is ours until the next pull */
  }

  char encoder[64] = "";
  if (ok && ccm_get_encoder_name(config, encoder, sizeof encoder) == CCM_OK)
    printf("encoder: %s\n", encoder);
  ccm_destroy(config);
  if (out) fclose(out);
  if (ok && packets != FRAMES) {
    fprintf(stderr, "expected %d packets, got %d\n", FRAMES, packets);
    ok = 0;
  }
  return ok ? 0 : 1;
}
