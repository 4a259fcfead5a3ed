// libFuzzer target: the AV1 RTP depacketizer (lib/ccm/rtp/av1_rtp.h).
//   1. The input as a stream of hostile RTP payloads (lib's fuzz_depacketize
//      framing: 2-byte length, flags byte), each temporal unit that comes out
//      must parse as an OBU stream.
//   2. The input as a temporal unit: when it parses, packetizing it at a random
//      MTU and depacketizing the packets must give back the same OBUs (those
//      the format sends), uncorrupted, in one temporal unit, with the N bit
//      where the unit starts a coded video sequence.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "rtp/av1_rtp.h"

namespace av1 = ccm::rtp::av1;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_av1_rtp_depay: %s\n", what);
  std::abort();
}

bool sent(av1::ObuType t) {
  return t != av1::ObuType::TemporalDelimiter && t != av1::ObuType::TileList && t != av1::ObuType::Padding;
}

// What identifies an OBU apart from its size field: type, extension byte, payload.
bool same_obu(const av1::Obu& a, const av1::Obu& b) {
  if (a.type != b.type || a.header.size() != b.header.size()) return false;
  if (a.header.size() == 2 && a.header[1] != b.header[1]) return false;
  return std::equal(a.payload.begin(), a.payload.end(), b.payload.begin(), b.payload.end());
}

void round_trip(std::span<const uint8_t> unit, size_t mtu) {
  const auto obus = av1::parse_obus(unit);
  if (!obus) return;
  const auto packets = av1::packetize(unit, mtu);
  if (!packets) fail("packetize refused a temporal unit that parse_obus took");
  std::vector<av1::Obu> expected;
  for (const auto& o : *obus)
    if (sent(o.type)) expected.push_back(o);
  if (packets->empty()) {
    if (!expected.empty()) fail("no packets for a unit with OBUs to send");
    return;
  }
  av1::Depacketizer depacketizer;
  std::optional<av1::Depacketizer::Output> out;
  for (size_t i = 0; i < packets->size(); ++i) {
    const auto& p = (*packets)[i];
    if (p.payload.size() > mtu) fail("a packet is larger than the MTU");
    if (p.marker != (i + 1 == packets->size())) fail("marker not on the last packet only");
    auto got = depacketizer.push(p.payload, p.marker, 90000, false);
    if (got && i + 1 != packets->size()) fail("a temporal unit came out before the marker");
    if (got) out = std::move(got);
  }
  if (!out) fail("no temporal unit after the marker");
  if (out->corrupt) fail("a clean round trip came out corrupt");
  if (out->starts_sequence != av1::starts_coded_video_sequence(*obus)) fail("N bit lost or invented");
  const auto back = av1::parse_obus(out->temporal_unit);
  if (!back) fail("the reassembled temporal unit does not parse");
  std::vector<av1::Obu> got;
  for (const auto& o : *back)
    if (sent(o.type)) got.push_back(o);
  if (got.size() != expected.size()) fail("OBU count changed in the round trip");
  for (size_t i = 0; i < got.size(); ++i)
    if (!same_obu(got[i], expected[i])) fail("an OBU changed in the round trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  (void)av1::fuzz_depacketize(input);
  if (size >= 2) round_trip(input.subspan(1), 3 + data[0] % 1500);
  return 0;
}
