// The C API's rows of docs/reliability.md's bad-input table: profiles out of
// range and truncated dynamic_params. A binary of its own, linked to libccm only
// (the element tests link a second copy of the plugin), as an application is.
#include "ccm/ccm.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace {

// ---- the C API -----------------------------------------------------------------

std::vector<uint8_t> valid_blob() {
  // "CCMP" v1, 3 entries: b_frames=0, max_quantizer=40, keyframe_interval=60.
  return {'C', 'C', 'M', 'P', 1, 0, 3, 0, 2, 1, 0, 3, 1, 40, 4, 4, 60, 0, 0, 0};
}

TEST(BadInput, TruncatedDynamicParamsAreRefusedAndChangeNothing) {
  CodecConfig* cfg = ccm_init(false);
  ASSERT_NE(cfg, nullptr) << ccm_last_error(nullptr);
  cfg->codec = CODEC_RAW;
  const EncodingProfile first{64, 48, 30, 500000, 0};
  ASSERT_EQ(ccm_configure_codec(cfg, &first, nullptr, 0), CCM_OK);
  const auto blob = valid_blob();
  ASSERT_EQ(ccm_configure_codec(cfg, &first, blob.data(), blob.size()), CCM_OK) << ccm_last_error(cfg);
  const EncodingProfile second{64, 48, 30, 900000, 0};
  for (size_t n = 1; n < blob.size(); ++n) {
    const int st = ccm_configure_codec(cfg, &second, blob.data(), n);
    EXPECT_EQ(st, CCM_ERROR_MALFORMED_PARAMS) << "prefix of " << n << " bytes";
    const std::string message = ccm_last_error(cfg);
    EXPECT_NE(message.find("byte "), std::string::npos) << message;
    if (n == 4 || n == 10) std::printf("ROW | dynamic_params cut to %zu of %zu bytes | %s: %s\n", n, blob.size(),
                                       ccm_status_name(st), message.c_str());
    EXPECT_EQ(ccm_get_current_profile(cfg).target_bitrate, 500000u) << "a refused call changed the profile";
    EXPECT_EQ(cfg->profile.target_bitrate, 500000u) << "a refused call changed config->profile";
  }
  ccm_destroy(cfg);
}

TEST(BadInput, CApiProfilesOutOfRange) {
  CodecConfig* cfg = ccm_init(false);
  ASSERT_NE(cfg, nullptr) << ccm_last_error(nullptr);
  cfg->codec = CODEC_RAW;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const EncodingProfile bad[] = {{0, 0, 30, 500000, 0},      {16385, 16, 30, 500000, 0}, {64, 48, 0, 500000, 0},
                                 {64, 48, 1001, 500000, 0},  {64, 48, 30, 999, 0},       {64, 48, 30, 0, 0},
                                 {64, 48, 30, 500000, -1},   {64, 48, 30, 500000, nan},  {64, 48, 30, 500000, 101}};
  for (const auto& p : bad) {
    const int st = ccm_configure_codec(cfg, &p, nullptr, 0);
    EXPECT_EQ(st, CCM_ERROR_INVALID_ARGUMENT);
    std::printf("ROW | C API profile %ux%u fps %u bitrate %u bit/s max_psnr %g | %s: %s\n", p.width, p.height,
                p.fps, p.target_bitrate, double(p.max_psnr), ccm_status_name(st), ccm_last_error(cfg));
  }
  EXPECT_EQ(ccm_get_current_profile(cfg).width, 0u) << "a refused profile was kept";
  const EncodingProfile max_rate{64, 48, 30, 0xFFFFFFFFu, 0};
  EXPECT_EQ(ccm_configure_codec(cfg, &max_rate, nullptr, 0), CCM_OK) << ccm_last_error(cfg);
  ccm_destroy(cfg);
}

}  // namespace

// Regression (scripts/memcheck found it): the session's bus handler dropped every
// message without unreffing it, so each session leaked its state-change and
// stream-status messages and every per-frame element message. 150 short streams
// must leave the heap where 50 left it.
#include <malloc.h>

namespace {

size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

void one_stream() {
  CodecConfig* cfg = ccm_init(false);
  ASSERT_NE(cfg, nullptr) << ccm_last_error(nullptr);
  cfg->codec = CODEC_RAW;
  const EncodingProfile p{16, 16, 30, 100000, 0};
  ASSERT_EQ(ccm_configure_codec(cfg, &p, nullptr, 0), CCM_OK) << ccm_last_error(cfg);
  std::vector<uint8_t> frame(16 * 16 * 3 / 2, 0x80);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(ccm_push_frame(cfg, frame.data(), frame.size(), -1), CCM_OK);
  ASSERT_EQ(ccm_finish(cfg), CCM_OK);
  ccm_packet packet{};
  int packets = 0;
  while (ccm_pull_packet(cfg, &packet, 5000) == CCM_OK) ++packets;
  EXPECT_EQ(packets, 3);
  ccm_destroy(cfg);
}

TEST(CApiLeaks, ShortStreamsDoNotGrowTheHeap) {
  for (int i = 0; i < 50; ++i) one_stream();  // one-time allocations (types, pools, caches) happen here
  malloc_trim(0);
  const size_t before = heap_in_use();
  for (int i = 0; i < 150; ++i) one_stream();
  malloc_trim(0);
  const size_t after = heap_in_use();
  std::printf("heap in use: %zu KiB after 50 streams, %zu KiB after 200\n", before / 1024, after / 1024);
  // Before the fix: about 4 KiB per stream (600 KiB here).
  EXPECT_LT(after, before + 100 * 1024) << "the heap grows with every stream";
}

}  // namespace
