// AV1 RTP payload format as pure functions: leb128, OBU parsing, packetization
// (aggregation header, fragmentation, marker, N bit, dropped OBU types) and the
// depacketizer's reassembly, loss handling and robustness against garbage.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "rtp/av1_rtp.h"

using namespace ccm::rtp::av1;

namespace {

// Appends an OBU in obu-stream form (obu_has_size_field = 1).
void add_obu(std::vector<uint8_t>& tu, ObuType type, std::span<const uint8_t> payload,
             int extension = -1) {
  uint8_t h = static_cast<uint8_t>(static_cast<uint8_t>(type) << 3) | 0x02;
  if (extension >= 0) h |= 0x04;
  tu.push_back(h);
  if (extension >= 0) tu.push_back(static_cast<uint8_t>(extension));
  uint8_t leb[8];
  const size_t n = write_leb128(payload.size(), leb);
  tu.insert(tu.end(), leb, leb + n);
  tu.insert(tu.end(), payload.begin(), payload.end());
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// A key temporal unit: TD, sequence header, a big frame OBU, padding, tile list.
std::vector<uint8_t> key_temporal_unit(size_t frame_size) {
  std::vector<uint8_t> tu;
  add_obu(tu, ObuType::TemporalDelimiter, {});
  const std::vector<uint8_t> seq = {0x00, 0x00, 0x00, 0x0a, 0x0b};  // profile 0, not reduced
  add_obu(tu, ObuType::SequenceHeader, seq);
  auto frame = random_bytes(frame_size, 7);
  frame[0] = 0x10;  // show_existing_frame=0, frame_type=KEY(0), show_frame=1
  add_obu(tu, ObuType::Frame, frame);
  const std::vector<uint8_t> pad(20, 0);
  add_obu(tu, ObuType::Padding, pad);
  const std::vector<uint8_t> tiles(30, 1);
  add_obu(tu, ObuType::TileList, tiles);
  return tu;
}

// The OBUs that should come back: everything but TD/padding/tile lists, with size fields.
std::vector<uint8_t> sent_obus(std::span<const uint8_t> tu) {
  std::vector<uint8_t> out;
  const auto obus = parse_obus(tu);
  for (const Obu& o : *obus) {
    if (o.type == ObuType::TemporalDelimiter || o.type == ObuType::Padding ||
        o.type == ObuType::TileList)
      continue;
    add_obu(out, o.type, o.payload, o.header.size() == 2 ? o.header[1] : -1);
  }
  return out;
}

std::vector<uint8_t> without_delimiter(const std::vector<uint8_t>& tu) {
  EXPECT_GE(tu.size(), 2u);
  EXPECT_EQ(tu[0], 0x12);
  EXPECT_EQ(tu[1], 0x00);
  return {tu.begin() + 2, tu.end()};
}

}  // namespace

TEST(Leb128, RoundTripAndLimits) {
  for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 16383ull, 16384ull, 0xffffffffull}) {
    uint8_t buf[8];
    const size_t n = write_leb128(v, buf);
    EXPECT_EQ(n, leb128_size(v));
    auto r = read_leb128(std::span<const uint8_t>(buf, n));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->value, v);
    EXPECT_EQ(r->size, n);
    EXPECT_FALSE(read_leb128(std::span<const uint8_t>(buf, n - 1)).has_value() && n > 1);
  }
  const uint8_t too_big[] = {0xff, 0xff, 0xff, 0xff, 0x7f};  // 2^35 - 1
  EXPECT_FALSE(read_leb128(too_big));
  const uint8_t endless[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  EXPECT_FALSE(read_leb128(endless));
}

TEST(ParseObus, SplitsAndRejectsMalformed) {
  auto tu = key_temporal_unit(100);
  auto obus = parse_obus(tu);
  ASSERT_TRUE(obus);
  ASSERT_EQ(obus->size(), 5u);
  EXPECT_EQ((*obus)[2].type, ObuType::Frame);
  EXPECT_EQ((*obus)[2].payload.size(), 100u);
  EXPECT_TRUE(starts_coded_video_sequence(*obus));

  auto truncated = tu;
  truncated.resize(tu.size() - 40);  // cuts into the padding's declared size
  EXPECT_FALSE(parse_obus(truncated));
  auto forbidden = tu;
  forbidden[0] |= 0x80;
  EXPECT_FALSE(parse_obus(forbidden));
}

TEST(Packetize, FragmentsLargeKeyFrameWithinMtuAndRoundTrips) {
  for (size_t mtu : {3u, 20u, 100u, 1188u, 1400u}) {
    for (size_t frame : {1u, 100u, 1186u, 1187u, 5000u, 70000u}) {
      auto tu = key_temporal_unit(frame);
      auto packets = packetize(tu, mtu);
      ASSERT_TRUE(packets) << mtu << " " << frame;
      ASSERT_FALSE(packets->empty());
      Depacketizer d;
      std::optional<Depacketizer::Output> out;
      for (size_t i = 0; i < packets->size(); ++i) {
        const Packet& p = (*packets)[i];
        EXPECT_LE(p.payload.size(), mtu);
        EXPECT_EQ(p.marker, i + 1 == packets->size());
        // N only on the first packet of a key frame with its sequence header.
        EXPECT_EQ((p.payload[0] & 0x08) != 0, i == 0);
        // Z of a packet is Y of the previous one.
        if (i > 0) {
          EXPECT_EQ((p.payload[0] & 0x80) != 0, ((*packets)[i - 1].payload[0] & 0x40) != 0);
        }
        EXPECT_FALSE(out);
        out = d.push(p.payload, p.marker, 1000, false);
      }
      ASSERT_TRUE(out) << mtu << " " << frame;
      EXPECT_FALSE(out->corrupt);
      EXPECT_TRUE(out->starts_sequence);
      EXPECT_EQ(without_delimiter(out->temporal_unit), sent_obus(tu)) << mtu << " " << frame;
    }
  }
}

TEST(Packetize, AggregatesSmallObusWithW) {
  std::vector<uint8_t> tu;
  add_obu(tu, ObuType::TemporalDelimiter, {});
  const std::vector<uint8_t> a(10, 0x20), b(20, 0x40);  // inter frames (frame_type 1)
  add_obu(tu, ObuType::FrameHeader, a);
  add_obu(tu, ObuType::TileGroup, b);
  auto packets = packetize(tu, 1200);
  ASSERT_TRUE(packets);
  ASSERT_EQ(packets->size(), 1u);
  const auto& p = (*packets)[0].payload;
  EXPECT_EQ(p[0], 0x20);  // Z=0 Y=0 W=2 N=0 (no sequence header)
  // Length of the first element only: header(1) + 10.
  EXPECT_EQ(p[1], 11);
  EXPECT_EQ(p[2], static_cast<uint8_t>(ObuType::FrameHeader) << 3);  // obu_has_size_field cleared
  EXPECT_EQ(p.size(), 1u + 1 + 11 + 21);
  EXPECT_TRUE((*packets)[0].marker);

  // Four OBUs: W=0 and every element carries its length.
  add_obu(tu, ObuType::Metadata, a);
  add_obu(tu, ObuType::Metadata, a);
  packets = packetize(tu, 1200);
  ASSERT_TRUE(packets);
  ASSERT_EQ(packets->size(), 1u);
  EXPECT_EQ((*packets)[0].payload[0] & 0x30, 0);
  auto parsed = parse_payload((*packets)[0].payload);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->elements.size(), 4u);
  Depacketizer d;
  auto out = d.push((*packets)[0].payload, true, 1, false);
  ASSERT_TRUE(out);
  EXPECT_EQ(without_delimiter(out->temporal_unit), sent_obus(tu));
  EXPECT_FALSE(out->starts_sequence);
}

TEST(Packetize, KeepsExtensionHeadersAndDropsDelimiterOnlyUnits) {
  std::vector<uint8_t> tu;
  const std::vector<uint8_t> frame(3000, 0x33);
  add_obu(tu, ObuType::Frame, frame, /*extension=*/0x28);  // temporal id 1, spatial id 1
  auto packets = packetize(tu, 500);
  ASSERT_TRUE(packets);
  Depacketizer d;
  std::optional<Depacketizer::Output> out;
  for (auto& p : *packets) out = d.push(p.payload, p.marker, 5, false);
  ASSERT_TRUE(out);
  EXPECT_EQ(without_delimiter(out->temporal_unit), tu);

  std::vector<uint8_t> only_td;
  add_obu(only_td, ObuType::TemporalDelimiter, {});
  packets = packetize(only_td, 1200);
  ASSERT_TRUE(packets);
  EXPECT_TRUE(packets->empty());
}

TEST(Depacketizer, LossMarksCorruptAndRecovers) {
  auto tu = key_temporal_unit(5000);
  auto packets = *packetize(tu, 1200);
  ASSERT_GE(packets.size(), 4u);
  Depacketizer d;
  std::optional<Depacketizer::Output> out;
  for (size_t i = 0; i < packets.size(); ++i) {
    if (i == 2) continue;  // lost
    out = d.push(packets[i].payload, packets[i].marker, 10, i == 3);
  }
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->corrupt);
  // The frame OBU's middle was lost: it must not come back as a whole OBU.
  EXPECT_NE(without_delimiter(out->temporal_unit), sent_obus(tu));
  EXPECT_TRUE(parse_obus(out->temporal_unit));

  // The next unit, complete, is clean again.
  out.reset();
  for (auto& p : packets) out = d.push(p.payload, p.marker, 20, false);
  ASSERT_TRUE(out);
  EXPECT_FALSE(out->corrupt);
  EXPECT_EQ(without_delimiter(out->temporal_unit), sent_obus(tu));

  // A unit that lost its marker packet is dropped when the next timestamp starts.
  for (size_t i = 0; i + 1 < packets.size(); ++i) d.push(packets[i].payload, false, 30, false);
  out.reset();
  for (auto& p : packets) out = d.push(p.payload, p.marker, 40, false);
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->corrupt);
  EXPECT_EQ(without_delimiter(out->temporal_unit), sent_obus(tu));
}

TEST(Depacketizer, AcceptsObusThatKeptTheirSizeField) {
  // Element = OBU with obu_has_size_field=1 (allowed for senders): size honoured.
  const uint8_t payload[] = {0x10, 0x32, 0x03, 0xaa, 0xbb, 0xcc};  // W=1, frame OBU, size 3
  Depacketizer d;
  auto out = d.push(payload, true, 0, false);
  ASSERT_TRUE(out);
  const std::vector<uint8_t> expect = {0x12, 0x00, 0x32, 0x03, 0xaa, 0xbb, 0xcc};
  EXPECT_EQ(out->temporal_unit, expect);
}

TEST(ParsePayload, RejectsMalformed) {
  EXPECT_FALSE(parse_payload({}));
  const uint8_t header_only[] = {0x10};
  EXPECT_FALSE(parse_payload(header_only));
  const uint8_t too_long[] = {0x00, 0x05, 0x30, 0x00};
  EXPECT_FALSE(parse_payload(too_long));
  const uint8_t w_missing[] = {0x30, 0x01, 0x30};  // W=3 but one element
  EXPECT_FALSE(parse_payload(w_missing));
  const uint8_t zero_length[] = {0x00, 0x00};
  EXPECT_FALSE(parse_payload(zero_length));
}

TEST(Depacketizer, SurvivesGarbage) {
  std::mt19937 rng(1234);
  size_t produced = 0;
  for (int round = 0; round < 3000; ++round) {
    auto data = random_bytes(rng() % 600, rng());
    produced += fuzz_depacketize(data);
  }
  // Random packets do make temporal units now and then (marker flags are random).
  EXPECT_GT(produced, 0u);
}
