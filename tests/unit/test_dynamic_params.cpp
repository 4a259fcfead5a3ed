// The dynamic_params blob: round trips, every rejection, and no out-of-bounds
// read on any truncation.
#include "params/dynamic_params.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

using ccm::DynamicParams;
using ccm::encode_dynamic_params;
using ccm::parse_dynamic_params;
using Bytes = std::vector<uint8_t>;

Bytes header(uint16_t count, uint8_t version = 1, uint8_t flags = 0) {
  return {'C', 'C', 'M', 'P', version, flags, uint8_t(count), uint8_t(count >> 8)};
}

Bytes with(Bytes blob, std::initializer_list<uint8_t> entry) {
  blob.insert(blob.end(), entry);
  return blob;
}

DynamicParams every_field() {
  DynamicParams p;
  p.ultra_low_latency = true;
  p.b_frames = 3;
  p.max_quantizer = 51;
  p.keyframe_interval = 0x01020304;
  p.rate_control = ccm::RateControlMode::Vbr;
  p.quantizer = 30;
  p.min_quantizer = 10;
  p.hardware_policy = ccm::HardwarePolicy::SoftwareOnly;
  p.gpu_index = 2;
  return p;
}

// Runs the parser and expects a failure at `offset` whose text contains `needle`.
void expect_error(const Bytes& blob, std::size_t offset, const std::string& needle) {
  auto r = parse_dynamic_params(blob);
  ASSERT_FALSE(r.has_value()) << "accepted a blob that should fail with: " << needle;
  EXPECT_EQ(r.error().offset, offset) << r.error().message;
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.rfind("byte " + std::to_string(offset) + ":", 0), 0u)
      << r.error().message;
}

TEST(DynamicParams, EmptyParamsEncodeToHeaderOnly) {
  Bytes blob = encode_dynamic_params({});
  EXPECT_EQ(blob, header(0));
  auto r = parse_dynamic_params(blob);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r.value().empty());
}

TEST(DynamicParams, RoundTripEveryField) {
  const DynamicParams p = every_field();
  Bytes blob = encode_dynamic_params(p);
  EXPECT_EQ(blob.size(), 8u + 9 * 2 + 8 * 1 + 4);
  auto r = parse_dynamic_params(blob);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r.value(), p);
}

TEST(DynamicParams, RoundTripEachFieldAlone) {
  const DynamicParams all = every_field();
  // Copy one field at a time to catch a field that encode or parse drops.
  std::vector<DynamicParams> singles(9);
  singles[0].ultra_low_latency = all.ultra_low_latency;
  singles[1].b_frames = all.b_frames;
  singles[2].max_quantizer = all.max_quantizer;
  singles[3].keyframe_interval = all.keyframe_interval;
  singles[4].rate_control = all.rate_control;
  singles[5].quantizer = all.quantizer;
  singles[6].min_quantizer = all.min_quantizer;
  singles[7].hardware_policy = all.hardware_policy;
  singles[8].gpu_index = all.gpu_index;
  for (const auto& p : singles) {
    auto r = parse_dynamic_params(encode_dynamic_params(p));
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r.value(), p);
  }
}

TEST(DynamicParams, ExactBytesOfTheDocumentedExample) {
  // The example in docs/dynamic-params.md: ultra low latency, 0 B-frames,
  // keyframe every 60 frames, CBR.
  DynamicParams p;
  p.ultra_low_latency = true;
  p.b_frames = 0;
  p.keyframe_interval = 60;
  p.rate_control = ccm::RateControlMode::Cbr;
  const Bytes expected = {'C', 'C', 'M', 'P', 1, 0, 4, 0,  //
                          1, 1, 1,                         //
                          2, 1, 0,                         //
                          4, 4, 60, 0, 0, 0,               //
                          5, 1, 0};
  EXPECT_EQ(encode_dynamic_params(p), expected);
}

TEST(DynamicParams, LittleEndianKeyframeInterval) {
  auto r = parse_dynamic_params(with(header(1), {4, 4, 0x78, 0x56, 0x34, 0x12}));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r.value().keyframe_interval, 0x12345678u);
}

TEST(DynamicParams, EntryOrderDoesNotMatter) {
  auto r = parse_dynamic_params(with(with(header(2), {6, 1, 40}), {2, 1, 4}));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r.value().quantizer, 40);
  EXPECT_EQ(r.value().b_frames, 4);
}

TEST(DynamicParams, UnknownKeysAreSkipped) {
  Bytes blob = header(3);
  blob.insert(blob.end(), {200, 3, 0xAA, 0xBB, 0xCC});  // a key from the future
  blob.insert(blob.end(), {2, 1, 7});
  blob.insert(blob.end(), {201, 0});  // zero-length future key
  auto r = parse_dynamic_params(blob);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  DynamicParams expected;
  expected.b_frames = 7;
  EXPECT_EQ(r.value(), expected);
}

TEST(DynamicParams, BoundaryValuesAreAccepted) {
  for (Bytes entry : {Bytes{1, 1, 0}, Bytes{1, 1, 1}, Bytes{2, 1, 16}, Bytes{3, 1, 63},
                      Bytes{4, 4, 0xFF, 0xFF, 0xFF, 0x7F}, Bytes{5, 1, 2}, Bytes{6, 1, 63},
                      Bytes{7, 1, 0}, Bytes{8, 1, 2}, Bytes{9, 1, 63}}) {
    Bytes blob = header(1);
    blob.insert(blob.end(), entry.begin(), entry.end());
    auto r = parse_dynamic_params(blob);
    EXPECT_TRUE(r.has_value()) << "key " << int(entry[0]) << ": " << r.error().message;
  }
}

TEST(DynamicParams, ErrorTruncatedHeader) {
  expect_error({'C', 'C', 'M'}, 3, "truncated header");
  expect_error({}, 0, "truncated header");
}

TEST(DynamicParams, ErrorBadMagic) { expect_error({'C', 'C', 'M', 'Q', 1, 0, 0, 0}, 0, "bad magic"); }

TEST(DynamicParams, ErrorNewerVersion) { expect_error(header(0, 2), 4, "unsupported format version 2"); }

TEST(DynamicParams, ErrorVersionZero) { expect_error(header(0, 0), 4, "unsupported format version 0"); }

TEST(DynamicParams, ErrorNonZeroFlags) { expect_error(header(0, 1, 0x80), 5, "reserved flags"); }

TEST(DynamicParams, ErrorWrongLengthForKnownKey) {
  expect_error(with(header(1), {2, 2, 1, 0}), 9, "b_frames (key 2) has length 2, expected 1");
  expect_error(with(header(1), {4, 1, 60}), 9, "keyframe_interval (key 4) has length 1, expected 4");
}

TEST(DynamicParams, ErrorOutOfRangeValues) {
  expect_error(with(header(1), {1, 1, 2}), 10, "ultra_low_latency (key 1) value 2 out of range 0..1");
  expect_error(with(header(1), {2, 1, 17}), 10, "b_frames (key 2) value 17 out of range 0..16");
  expect_error(with(header(1), {3, 1, 64}), 10, "max_quantizer (key 3) value 64");
  expect_error(with(header(1), {5, 1, 3}), 10, "rate_control (key 5) value 3");
  expect_error(with(header(1), {6, 1, 64}), 10, "quantizer (key 6) value 64");
  expect_error(with(header(1), {7, 1, 200}), 10, "min_quantizer (key 7) value 200");
  expect_error(with(header(1), {8, 1, 3}), 10, "hardware_policy (key 8) value 3");
  expect_error(with(header(1), {9, 1, 64}), 10, "gpu_index (key 9) value 64");
  expect_error(with(header(1), {4, 4, 0, 0, 0, 0x80}), 10,
               "keyframe_interval (key 4) value 2147483648 out of range 0..2147483647");
}

TEST(DynamicParams, ErrorMinAboveMaxQuantizer) {
  expect_error(with(with(header(2), {7, 1, 40}), {3, 1, 30}), 13,
               "min_quantizer 40 is greater than max_quantizer 30");
}

TEST(DynamicParams, ErrorCountOverrunsBlob) {
  expect_error(with(header(2), {2, 1, 1}), 11, "entry 1 of 2 truncated");
  expect_error(header(1), 8, "entry 0 of 1 truncated");
  expect_error(with(header(65535), {2, 1, 1}), 11, "entry 1 of 65535 truncated");
}

TEST(DynamicParams, ErrorValueRunsPastEnd) {
  expect_error(with(header(1), {200, 10, 1, 2}), 10, "length 10 but only 2 bytes left");
}

TEST(DynamicParams, ErrorTrailingGarbage) {
  expect_error(with(header(1), {2, 1, 1, 0xEE}), 11, "1 trailing bytes");
  expect_error(with(header(0), {0}), 8, "1 trailing bytes");
}

TEST(DynamicParams, ErrorDuplicateKey) {
  expect_error(with(with(header(2), {2, 1, 1}), {2, 1, 1}), 11, "duplicate key 2");
  // Unknown keys may not repeat either: a reader that later learns the key
  // would otherwise see two values.
  expect_error(with(with(header(2), {150, 0}), {150, 0}), 10, "duplicate key 150");
}

TEST(DynamicParams, ErrorReservedKeyZero) { expect_error(with(header(1), {0, 0}), 8, "key 0 is reserved"); }

TEST(DynamicParams, EveryTruncationOfAValidBlobIsAnError) {
  Bytes full = encode_dynamic_params(every_field());
  full.insert(full.end(), {210, 3, 1, 2, 3});  // plus an unknown key
  full[6] = uint8_t(full[6] + 1);
  ASSERT_TRUE(parse_dynamic_params(full).has_value());
  for (std::size_t n = 0; n < full.size(); ++n) {
    // A fresh heap copy of exactly n bytes, so ASan catches any read past the end.
    Bytes cut(full.begin(), full.begin() + std::ptrdiff_t(n));
    auto r = parse_dynamic_params(cut);
    ASSERT_FALSE(r.has_value()) << "prefix of " << n << " bytes accepted";
    EXPECT_LE(r.error().offset, n);
    EXPECT_FALSE(r.error().message.empty());
  }
}

TEST(DynamicParams, EveryByteFlipNeverCrashes) {
  const Bytes full = encode_dynamic_params(every_field());
  for (std::size_t i = 0; i < full.size(); ++i) {
    for (int v : {0x00, 0x01, 0x7F, 0x80, 0xFF}) {
      Bytes b = full;
      b[i] = uint8_t(v);
      auto r = parse_dynamic_params(b);
      if (!r.has_value()) {
        EXPECT_LE(r.error().offset, b.size());
      }
    }
  }
}

TEST(DynamicParams, MergeKeepsAbsentFields) {
  DynamicParams base;
  base.b_frames = 2;
  base.quantizer = 20;
  DynamicParams newer;
  newer.quantizer = 35;
  newer.rate_control = ccm::RateControlMode::Cqp;
  base.merge(newer);
  EXPECT_EQ(base.b_frames, 2);
  EXPECT_EQ(base.quantizer, 35);
  EXPECT_EQ(base.rate_control, ccm::RateControlMode::Cqp);
}

TEST(DynamicParams, KeyNames) {
  EXPECT_STREQ(ccm::param_key_name(4), "keyframe_interval");
  EXPECT_EQ(ccm::param_key_name(0), nullptr);
  EXPECT_EQ(ccm::param_key_name(99), nullptr);
}

// ---- the design's 3-byte form ---------------------------------------------------

TEST(DynamicParams, DesignThreeByteFormIsRead) {
  // The design's conference example: ultra-low latency on, no B-frames, max quantizer 0x32.
  auto r = parse_dynamic_params(Bytes{0x01, 0x00, 0x32});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  DynamicParams want;
  want.ultra_low_latency = true;
  want.b_frames = 0;
  want.max_quantizer = 50;
  EXPECT_EQ(r.value(), want);
  auto off = parse_dynamic_params(Bytes{0x00, 0x10, 0x3F});  // the top of each range
  ASSERT_TRUE(off.has_value()) << off.error().message;
  EXPECT_EQ(off.value().ultra_low_latency, false);
  EXPECT_EQ(off.value().b_frames, 16);
  EXPECT_EQ(off.value().max_quantizer, 63);
}

TEST(DynamicParams, DesignThreeByteFormOutOfRangeIsRefusedNotMisread) {
  expect_error({0x02, 0x00, 0x32}, 0, "ultra_low_latency value 2 out of range 0..1");
  expect_error({0x01, 0x11, 0x32}, 1, "b_frames value 17 out of range 0..16");
  expect_error({0x01, 0x00, 0x40}, 2, "max_quantizer value 64 out of range 0..63");
  // A cut "CCMP" blob stays a truncated blob, never a 3-byte form.
  expect_error({'C', 'C', 'M'}, 3, "truncated header");
}

TEST(DynamicParams, NeitherFormIsRefused) {
  expect_error({0x01}, 0, "bad magic");
  expect_error({0x01, 0x00}, 0, "bad magic");
  expect_error({0x01, 0x00, 0x32, 0x00}, 0, "or exactly 3 bytes");
  expect_error({0x01, 0x00, 0x32, 0x00, 0x00, 0x00, 0x00, 0x00}, 0, "bad magic");
}

}  // namespace
