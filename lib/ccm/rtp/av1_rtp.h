// AV1 RTP payload format (AOMedia "RTP Payload Format For AV1", v1.0) as pure
// functions: no GStreamer, no allocation beyond the returned vectors. The
// payloader and depayloader elements (gst/rtp/) and the fuzz target call these.
//
// Payload = aggregation header (1 byte) + OBU elements:
//   Z: the first element continues an OBU fragment from the previous packet
//   Y: the last element continues in the next packet
//   W: number of elements (1..3; the last one has no length field), 0 = every
//      element carries a leb128 length
//   N: first packet of a coded video sequence (a key frame with its sequence header)
// OBUs travel without their obu_size field (obu_has_size_field = 0, as the format
// recommends); temporal delimiters, tile lists and padding are not sent.
//
// Our own OBU header and leb128 reading, not GstAV1Parser: this needs only
// those, and stays free of GStreamer for libccm and the fuzz target
// (docs/architecture.md, "Libraries we use").
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace ccm::rtp::av1 {

enum class ObuType : uint8_t {
  SequenceHeader = 1,
  TemporalDelimiter = 2,
  FrameHeader = 3,
  TileGroup = 4,
  Metadata = 5,
  Frame = 6,
  RedundantFrameHeader = 7,
  TileList = 8,
  Padding = 15,
};

// leb128 as AV1 uses it: at most 8 bytes, value < 2^32.
size_t leb128_size(uint64_t value);
size_t write_leb128(uint64_t value, uint8_t* out);  // returns bytes written
// Reads a leb128 at the start of `in`: {value, bytes used}, nullopt when truncated or too big.
struct Leb128 {
  uint64_t value = 0;
  size_t size = 0;
};
std::optional<Leb128> read_leb128(std::span<const uint8_t> in);

// One OBU of a low-overhead (obu-stream) temporal unit. `header` is 1 or 2 bytes
// as in the stream (obu_has_size_field may be set); `payload` excludes the size field.
struct Obu {
  ObuType type{};
  std::span<const uint8_t> header;
  std::span<const uint8_t> payload;
};

// Splits a temporal unit in obu-stream format into OBUs. nullopt on a malformed
// stream (forbidden bit, size beyond the end, an OBU without size that is not last).
std::optional<std::vector<Obu>> parse_obus(std::span<const uint8_t> temporal_unit);

// True when the temporal unit starts a coded video sequence: a sequence header and
// a key frame shown or decoded in it (what the N bit says).
bool starts_coded_video_sequence(std::span<const Obu> obus);

struct Packet {
  std::vector<uint8_t> payload;  // aggregation header + OBU elements
  bool marker = false;           // last packet of the temporal unit
};

// Packs one temporal unit (obu-stream) into RTP payloads of at most
// `max_payload_size` bytes (>= 3). Returns nullopt on a malformed temporal unit;
// an empty vector when nothing is left to send (only delimiters/padding/tile lists).
std::optional<std::vector<Packet>> packetize(std::span<const uint8_t> temporal_unit,
                                             size_t max_payload_size);

// One RTP payload taken apart. Elements point into the payload passed in.
struct AggregationPayload {
  bool z = false;
  bool y = false;
  uint8_t w = 0;
  bool n = false;
  std::vector<std::span<const uint8_t>> elements;
};

// Never crashes on garbage: nullopt when the payload is not a valid AV1 payload
// (empty, element lengths beyond the end, W elements missing, an empty element).
std::optional<AggregationPayload> parse_payload(std::span<const uint8_t> payload);

// Reassembles temporal units from RTP payloads in sequence order.
class Depacketizer {
 public:
  struct Output {
    // A temporal unit in obu-stream format, starting with a temporal delimiter,
    // every OBU with its obu_size field.
    std::vector<uint8_t> temporal_unit;
    bool starts_sequence = false;  // an N bit was seen in it
    bool corrupt = false;          // a packet or fragment of it was lost or malformed
  };

  // `discontinuity`: packets were lost before this one. Returns a temporal unit
  // when `marker` ends one (or when a new timestamp starts without a marker seen).
  std::optional<Output> push(std::span<const uint8_t> payload, bool marker, uint32_t rtp_timestamp,
                             bool discontinuity);
  void reset();

 private:
  void append_obu(std::span<const uint8_t> element);
  std::optional<Output> take();

  std::vector<uint8_t> obus_;      // OBUs of the temporal unit so far, with size fields
  std::vector<uint8_t> fragment_;  // an OBU element cut at the end of the last packet
  bool in_fragment_ = false;
  bool corrupt_ = false;
  bool starts_sequence_ = false;
  bool have_timestamp_ = false;
  uint32_t timestamp_ = 0;
};

// Fuzzing entry point: parses `data` as a sequence of RTP payloads (each prefixed
// by a 2-byte big-endian length and a flags byte) through a Depacketizer, and each
// produced temporal unit back through parse_obus. Returns the number of temporal units.
size_t fuzz_depacketize(std::span<const uint8_t> data);

}  // namespace ccm::rtp::av1
