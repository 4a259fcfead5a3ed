/* The design's C API contract, used as the design writes it: init, set
 * config->codec, configure with NULL and with the 3-byte dynamic_params,
 * ccm_get_current_profile in the same units, a malformed blob and width 0
 * refused (nothing changed), a few frames through, ccm_destroy.
 *
 * Compiled twice by the suite: by meson (C11 and C++17, -Wall -Werror) and by
 * tests/capi/check_pkgconfig.sh against the build tree's pkg-config file, as a
 * user's program would be. Exit status 0 when every check holds.
 */
#include <ccm/ccm.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond, ...)                                  \
  do {                                                    \
    if (!(cond)) {                                        \
      fprintf(stderr, "FAIL line %d: %s: ", __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                       \
      fprintf(stderr, "\n");                              \
      ++failures;                                         \
    }                                                     \
  } while (0)

static int same_profile(EncodingProfile a, EncodingProfile b) {
  return a.width == b.width && a.height == b.height && a.fps == b.fps &&
         a.target_bitrate == b.target_bitrate && a.max_psnr == b.max_psnr;
}

int main(void) {
  CodecConfig* config = ccm_init(false);
  if (!config) {
    fprintf(stderr, "ccm_init: %s\n", ccm_last_error(NULL));
    return 1;
  }
  CHECK(config->hw.gpu_handle == NULL && config->hw.nvenc_ctx == NULL && config->hw.vaapi_ctx == NULL,
        "ccm_init opened no backend, so every handle is NULL");
  CHECK(config->profile.width == 0, "no profile before ccm_configure_codec");
  CHECK(config->codec != CODEC_HEVC, "the default codec is %d: HEVC below would prove nothing", (int)config->codec);
  config->codec = CODEC_HEVC;

  EncodingProfile profile;
  profile.width = 160;
  profile.height = 96;
  profile.fps = 30;
  profile.target_bitrate = 400000; /* 400 kbit/s */
  profile.max_psnr = 42.0f;
  int rc = ccm_configure_codec(config, &profile, NULL, 0);
  CHECK(rc == 0, "configure with NULL params: %s: %s", ccm_status_name(rc), ccm_last_error(config));

  EncodingProfile now = ccm_get_current_profile(config);
  CHECK(same_profile(now, profile), "current profile %ux%u@%u %u bit/s %.1f dB", now.width, now.height, now.fps,
        now.target_bitrate, now.max_psnr);
  CHECK(same_profile(config->profile, profile), "config->profile mirrors the current profile");

  /* The design's conference parameters: ultra-low latency on, no B-frames, max quantizer 50. */
  const uint8_t low_latency_params[] = {0x01, 0x00, 0x32};
  profile.target_bitrate = 300000;
  rc = ccm_configure_codec(config, &profile, low_latency_params, sizeof low_latency_params);
  CHECK(rc == 0, "configure with the 3-byte params: %s: %s", ccm_status_name(rc), ccm_last_error(config));
  now = ccm_get_current_profile(config);
  CHECK(now.target_bitrate == 300000, "target_bitrate %u, set 300000 bit/s", now.target_bitrate);
  CHECK(now.fps == 30 && fabsf(now.max_psnr - 42.0f) < 1e-6f, "fps %u max_psnr %.2f", now.fps, now.max_psnr);

  /* Refused, and nothing changes. */
  const uint8_t malformed[] = {0x01, 0x00, 0x32, 0x00}; /* neither 3 bytes nor "CCMP" */
  EncodingProfile other = profile;
  other.target_bitrate = 999000;
  rc = ccm_configure_codec(config, &other, malformed, sizeof malformed);
  CHECK(rc == CCM_ERROR_MALFORMED_PARAMS, "malformed blob: %s", ccm_status_name(rc));
  CHECK(strstr(ccm_last_error(config), "CCMP") != NULL, "message names the forms: %s", ccm_last_error(config));
  const uint8_t out_of_range[] = {0x02, 0x00, 0x32}; /* byte 0 is 0 or 1 */
  rc = ccm_configure_codec(config, &other, out_of_range, sizeof out_of_range);
  CHECK(rc == CCM_ERROR_MALFORMED_PARAMS, "3 bytes out of range: %s", ccm_status_name(rc));
  other.width = 0;
  rc = ccm_configure_codec(config, &other, NULL, 0);
  CHECK(rc == CCM_ERROR_INVALID_ARGUMENT, "width 0: %s", ccm_status_name(rc));
  CHECK(strstr(ccm_last_error(config), "width") != NULL, "message names the field: %s", ccm_last_error(config));
  CHECK(rc < 0, "errors are negative");
  CHECK(same_profile(ccm_get_current_profile(config), profile), "a refused call changed the profile");
  CHECK(same_profile(config->profile, profile), "a refused call changed config->profile");

  /* Frames in, packets out: the codec set above is the one encoding. */
  const size_t frame_size = (size_t)profile.width * profile.height * 3 / 2;
  uint8_t* frame = (uint8_t*)malloc(frame_size);
  const int frames = 5;
  for (int i = 0; frame && i < frames; ++i) {
    for (size_t k = 0; k < frame_size; ++k) frame[k] = (uint8_t)(k * 7 + (size_t)i * 13);
    rc = ccm_push_frame(config, frame, frame_size, -1);
    CHECK(rc == 0, "push %d: %s: %s", i, ccm_status_name(rc), ccm_last_error(config));
  }
  free(frame);
  CHECK(ccm_finish(config) == 0, "finish: %s", ccm_last_error(config));
  int packets = 0;
  ccm_packet packet;
  const uint8_t start_code[] = {0, 0, 0, 1};
  while ((rc = ccm_pull_packet(config, &packet, 30000)) == 0) {
    if (packets == 0)
      CHECK(packet.size > 4 && memcmp(packet.data, start_code, 4) == 0, "an Annex B access unit");
    ++packets;
  }
  CHECK(rc == CCM_ERROR_EOS, "pull ended with %s: %s", ccm_status_name(rc), ccm_last_error(config));
  CHECK(packets == frames, "%d packets for %d frames", packets, frames);
  char encoder[64] = "";
  CHECK(ccm_get_encoder_name(config, encoder, sizeof encoder) == 0, "%s", ccm_last_error(config));
  CHECK(strstr(encoder, "265") != NULL, "config->codec = CODEC_HEVC took effect: encoder %s", encoder);

  ccm_destroy(config);
  ccm_destroy(NULL);
  CHECK(ccm_get_current_profile(NULL).width == 0, "a NULL config has no profile");
  if (failures) return 1;
  printf("contract: HEVC through %s, %d packets; refusals left the profile as it was\n", encoder, packets);
  return 0;
}
