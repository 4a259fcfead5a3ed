// What downstream takes: the codecs it accepts, what lies past its parsers and
// queues (a muxer that took a stream, the in-band stream format of H.264/H.265),
// and whether another encoder's caps continue the same stream for it.
#pragma once

#include "encbin/encbin_private.h"

#include <string>
#include <vector>

namespace ccm::encbin {

// The codecs downstream takes, in our preference order.
std::vector<Codec> codecs_downstream_accepts(GstPad* srcpad);
// Downstream's caps as text, for messages.
std::string downstream_caps_string(GstPad* srcpad);
// The muxer downstream that already took a stream, by name, or "".
std::string muxer_downstream(GstPad* srcpad);
// avc3/hev1 when downstream takes them but no byte-stream; nullptr otherwise.
const char* in_band_stream_format(GstPad* srcpad, Codec codec);
// Whether `next` continues the stream downstream has under `current`.
bool same_stream_in_band(GstCaps* next, GstCaps* current);

}  // namespace ccm::encbin
