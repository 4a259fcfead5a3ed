#include "rtp/av1_rtp.h"

#include <algorithm>

namespace ccm::rtp::av1 {
namespace {

constexpr uint8_t kForbiddenBit = 0x80;
constexpr uint8_t kExtensionFlag = 0x04;
constexpr uint8_t kHasSizeField = 0x02;
constexpr size_t kMaxLeb128Bytes = 8;
// A temporal unit larger than this is garbage, not video: bounds what a stream
// of hostile packets can make the depacketizer hold.
constexpr size_t kMaxTemporalUnitBytes = 32u << 20;
// A packet with less room left than this is closed rather than given a sliver of an OBU.
constexpr size_t kMinFragmentRoom = 8;

ObuType type_of(uint8_t header) { return static_cast<ObuType>((header >> 3) & 0x0f); }

bool is_sent(ObuType type) {
  return type != ObuType::TemporalDelimiter && type != ObuType::TileList &&
         type != ObuType::Padding;
}

// An OBU as it travels in RTP: header without obu_size, then the payload.
struct Element {
  uint8_t header[2] = {};
  size_t header_size = 0;
  std::span<const uint8_t> payload;

  size_t size() const { return header_size + payload.size(); }
  void copy(size_t offset, size_t length, std::vector<uint8_t>& out) const {
    while (length > 0 && offset < header_size) {
      out.push_back(header[offset++]);
      --length;
    }
    const size_t from = offset - header_size;
    out.insert(out.end(), payload.begin() + static_cast<ptrdiff_t>(from),
               payload.begin() + static_cast<ptrdiff_t>(from + length));
  }
};

struct Piece {
  size_t element = 0;
  size_t offset = 0;
  size_t length = 0;
};

}  // namespace

size_t leb128_size(uint64_t value) {
  size_t n = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++n;
  }
  return n;
}

size_t write_leb128(uint64_t value, uint8_t* out) {
  size_t n = 0;
  do {
    uint8_t byte = value & 0x7f;
    value >>= 7;
    if (value != 0) byte |= 0x80;
    out[n++] = byte;
  } while (value != 0);
  return n;
}

std::optional<Leb128> read_leb128(std::span<const uint8_t> in) {
  uint64_t value = 0;
  for (size_t i = 0; i < std::min(in.size(), kMaxLeb128Bytes); ++i) {
    value |= static_cast<uint64_t>(in[i] & 0x7f) << (7 * i);
    if ((in[i] & 0x80) == 0) {
      if (value > 0xffffffffu) return std::nullopt;
      return Leb128{value, i + 1};
    }
  }
  return std::nullopt;
}

std::optional<std::vector<Obu>> parse_obus(std::span<const uint8_t> tu) {
  std::vector<Obu> obus;
  size_t pos = 0;
  while (pos < tu.size()) {
    const uint8_t h = tu[pos];
    if (h & kForbiddenBit) return std::nullopt;
    const size_t header_size = (h & kExtensionFlag) ? 2 : 1;
    if (tu.size() - pos < header_size) return std::nullopt;
    Obu obu;
    obu.type = type_of(h);
    obu.header = tu.subspan(pos, header_size);
    size_t start = pos + header_size;
    size_t length = tu.size() - start;  // no size field: the OBU runs to the end
    if (h & kHasSizeField) {
      auto leb = read_leb128(tu.subspan(start));
      if (!leb) return std::nullopt;
      start += leb->size;
      if (leb->value > tu.size() - start) return std::nullopt;
      length = static_cast<size_t>(leb->value);
    }
    obu.payload = tu.subspan(start, length);
    obus.push_back(obu);
    pos = start + length;
  }
  return obus;
}

bool starts_coded_video_sequence(std::span<const Obu> obus) {
  bool reduced_still_picture_header = false;
  bool have_sequence_header = false;
  for (const Obu& obu : obus) {
    if (obu.type == ObuType::SequenceHeader && !obu.payload.empty()) {
      have_sequence_header = true;
      // seq_profile(3) still_picture(1) reduced_still_picture_header(1)
      reduced_still_picture_header = (obu.payload[0] >> 3) & 1;
    } else if ((obu.type == ObuType::Frame || obu.type == ObuType::FrameHeader) &&
               !obu.payload.empty()) {
      if (!have_sequence_header) return false;
      if (reduced_still_picture_header) return true;  // every frame is a key frame
      const bool show_existing_frame = obu.payload[0] & 0x80;
      const int frame_type = (obu.payload[0] >> 5) & 0x03;
      return !show_existing_frame && frame_type == 0;
    }
  }
  return false;
}

std::optional<std::vector<Packet>> packetize(std::span<const uint8_t> temporal_unit,
                                             size_t max_payload_size) {
  if (max_payload_size < 3) return std::nullopt;
  auto obus = parse_obus(temporal_unit);
  if (!obus) return std::nullopt;

  std::vector<Element> elements;
  for (const Obu& obu : *obus) {
    if (!is_sent(obu.type)) continue;
    Element e;
    e.header_size = obu.header.size();
    std::copy(obu.header.begin(), obu.header.end(), e.header);
    e.header[0] &= static_cast<uint8_t>(~kHasSizeField);
    e.payload = obu.payload;
    elements.push_back(e);
  }
  std::vector<Packet> packets;
  if (elements.empty()) return packets;

  // Pack greedily, counting a length field for every element; the last element of
  // a packet with W != 0 then drops its field, so a packet never exceeds the limit.
  std::vector<std::vector<Piece>> layout(1);
  size_t room = max_payload_size - 1;
  auto close_packet = [&] {
    layout.emplace_back();
    room = max_payload_size - 1;
  };
  for (size_t i = 0; i < elements.size(); ++i) {
    size_t offset = 0;
    size_t remaining = elements[i].size();
    while (remaining > 0) {
      const size_t whole = leb128_size(remaining) + remaining;
      if (whole <= room) {
        layout.back().push_back({i, offset, remaining});
        room -= whole;
        break;
      }
      if (room >= kMinFragmentRoom || layout.back().empty()) {
        size_t part = room - leb128_size(room);
        while (part > 0 && leb128_size(part) + part > room) --part;
        if (part > 0) {
          layout.back().push_back({i, offset, part});
          offset += part;
          remaining -= part;
        }
      }
      close_packet();
    }
  }
  if (layout.back().empty()) layout.pop_back();

  const uint8_t n_bit = starts_coded_video_sequence(*obus) ? 0x08 : 0x00;
  for (size_t p = 0; p < layout.size(); ++p) {
    const auto& pieces = layout[p];
    const Piece& first = pieces.front();
    const Piece& last = pieces.back();
    const bool z = first.offset > 0;
    const bool y = last.offset + last.length < elements[last.element].size();
    const uint8_t w = pieces.size() <= 3 ? static_cast<uint8_t>(pieces.size()) : 0;
    Packet packet;
    packet.payload.reserve(max_payload_size);
    packet.payload.push_back(static_cast<uint8_t>((z ? 0x80 : 0) | (y ? 0x40 : 0) | (w << 4) |
                                                  (p == 0 ? n_bit : 0)));
    for (size_t k = 0; k < pieces.size(); ++k) {
      if (w == 0 || k + 1 < pieces.size()) {
        uint8_t leb[kMaxLeb128Bytes];
        const size_t n = write_leb128(pieces[k].length, leb);
        packet.payload.insert(packet.payload.end(), leb, leb + n);
      }
      elements[pieces[k].element].copy(pieces[k].offset, pieces[k].length, packet.payload);
    }
    packet.marker = p + 1 == layout.size();
    packets.push_back(std::move(packet));
  }
  return packets;
}

std::optional<AggregationPayload> parse_payload(std::span<const uint8_t> payload) {
  if (payload.empty()) return std::nullopt;
  AggregationPayload out;
  const uint8_t h = payload[0];
  out.z = h & 0x80;
  out.y = h & 0x40;
  out.w = (h >> 4) & 0x03;
  out.n = h & 0x08;
  size_t pos = 1;
  while (pos < payload.size()) {
    if (out.w != 0 && out.elements.size() + 1 == out.w) {
      out.elements.push_back(payload.subspan(pos));
      pos = payload.size();
      break;
    }
    auto leb = read_leb128(payload.subspan(pos));
    if (!leb) return std::nullopt;
    pos += leb->size;
    if (leb->value == 0 || leb->value > payload.size() - pos) return std::nullopt;
    out.elements.push_back(payload.subspan(pos, static_cast<size_t>(leb->value)));
    pos += static_cast<size_t>(leb->value);
  }
  if (out.elements.empty()) return std::nullopt;
  if (out.w != 0 && out.elements.size() != out.w) return std::nullopt;
  return out;
}

void Depacketizer::reset() {
  obus_.clear();
  fragment_.clear();
  in_fragment_ = false;
  corrupt_ = false;
  starts_sequence_ = false;
  have_timestamp_ = false;
}

void Depacketizer::append_obu(std::span<const uint8_t> element) {
  if (element.empty() || (element[0] & kForbiddenBit)) {
    corrupt_ = true;
    return;
  }
  const uint8_t h = element[0];
  const size_t header_size = (h & kExtensionFlag) ? 2 : 1;
  if (element.size() < header_size) {
    corrupt_ = true;
    return;
  }
  auto payload = element.subspan(header_size);
  if (h & kHasSizeField) {  // a sender that kept obu_size: trust it if it fits
    auto leb = read_leb128(payload);
    if (!leb || leb->value > payload.size() - leb->size) {
      corrupt_ = true;
      return;
    }
    payload = payload.subspan(leb->size, static_cast<size_t>(leb->value));
  }
  if (!is_sent(type_of(h))) return;
  if (obus_.size() + element.size() + kMaxLeb128Bytes > kMaxTemporalUnitBytes) {
    corrupt_ = true;
    return;
  }
  obus_.push_back(h | kHasSizeField);
  if (header_size == 2) obus_.push_back(element[1]);
  uint8_t leb[kMaxLeb128Bytes];
  const size_t n = write_leb128(payload.size(), leb);
  obus_.insert(obus_.end(), leb, leb + n);
  obus_.insert(obus_.end(), payload.begin(), payload.end());
}

std::optional<Depacketizer::Output> Depacketizer::take() {
  std::optional<Output> out;
  if (in_fragment_) corrupt_ = true;  // the marker packet said "continues": nothing will
  if (!obus_.empty()) {
    out.emplace();
    // A temporal delimiter with obu_size = 0, then the OBUs. Sized, then copied: insert()
    // after push_back() draws a false -Wstringop-overflow from GCC 14.
    std::vector<uint8_t>& tu = out->temporal_unit;
    tu.resize(2 + obus_.size());
    tu[0] = 0x12;
    tu[1] = 0x00;
    std::copy(obus_.begin(), obus_.end(), tu.begin() + 2);
    out->starts_sequence = starts_sequence_;
    out->corrupt = corrupt_;
    corrupt_ = false;
  }
  obus_.clear();
  fragment_.clear();
  in_fragment_ = false;
  starts_sequence_ = false;
  return out;
}

std::optional<Depacketizer::Output> Depacketizer::push(std::span<const uint8_t> payload, bool marker,
                                                       uint32_t rtp_timestamp, bool discontinuity) {
  if (have_timestamp_ && rtp_timestamp != timestamp_ && (!obus_.empty() || in_fragment_)) {
    // The previous temporal unit lost its last packet: it is not worth decoding.
    obus_.clear();
    fragment_.clear();
    in_fragment_ = false;
    starts_sequence_ = false;
    corrupt_ = true;
  }
  // The first packet of a stream is always flagged discontinuous: nothing was lost.
  if (discontinuity && have_timestamp_) {
    if (in_fragment_) {
      fragment_.clear();
      in_fragment_ = false;
    }
    corrupt_ = true;
  }
  have_timestamp_ = true;
  timestamp_ = rtp_timestamp;

  auto parsed = parse_payload(payload);
  if (!parsed) {
    corrupt_ = true;
    fragment_.clear();
    in_fragment_ = false;
    return marker ? take() : std::nullopt;
  }
  if (parsed->n) starts_sequence_ = true;

  const size_t count = parsed->elements.size();
  for (size_t i = 0; i < count; ++i) {
    const auto element = parsed->elements[i];
    if (i == 0 && parsed->z) {
      if (!in_fragment_) {  // its start was lost
        corrupt_ = true;
        continue;
      }
      if (fragment_.size() + element.size() > kMaxTemporalUnitBytes) {
        corrupt_ = true;
        fragment_.clear();
        in_fragment_ = false;
        continue;
      }
      fragment_.insert(fragment_.end(), element.begin(), element.end());
    } else {
      if (in_fragment_) corrupt_ = true;  // an OBU whose end never came
      fragment_.assign(element.begin(), element.end());
    }
    in_fragment_ = true;
    if (i + 1 == count && parsed->y) break;
    append_obu(fragment_);
    fragment_.clear();
    in_fragment_ = false;
  }
  if (marker) return take();
  return std::nullopt;
}

size_t fuzz_depacketize(std::span<const uint8_t> data) {
  Depacketizer depacketizer;
  size_t temporal_units = 0;
  size_t pos = 0;
  while (data.size() - pos >= 3) {
    const size_t length = (static_cast<size_t>(data[pos]) << 8) | data[pos + 1];
    const uint8_t flags = data[pos + 2];
    pos += 3;
    const auto payload = data.subspan(pos, std::min(length, data.size() - pos));
    pos += payload.size();
    auto out = depacketizer.push(payload, flags & 1, flags >> 2, flags & 2);
    if (out) {
      ++temporal_units;
      // What the depacketizer produces must always parse as an OBU stream.
      if (!parse_obus(out->temporal_unit)) __builtin_trap();
    }
    (void)packetize(payload, 3 + (flags >> 2));
  }
  return temporal_units;
}

}  // namespace ccm::rtp::av1
