// How ccmratecontrol drives each encoder family, in one place.
//
//   family          encoders                               per frame                       on a rate change
//   QpMeta          ccmx265enc, ccmsvtav1enc               GstCcmQpMeta (rate-control=cqp) (nothing: QP is the rate)
//   Quantizer       vp9enc, vp8enc                         min-quantizer = max-quantizer   target-bitrate (their CBR stays sane
//                                                                                          if we stop pinning the quantizer)
//   Bitrate         x264enc                                bitrate = the frame budget's    bitrate
//                                                          rate (x264_encoder_reconfig)
//   BitrateOnChange every other encoder with a bitrate     nothing                         bitrate (rate-limited where a change
//                   property (nv*, va*, qsv*, x265enc, av1enc ...)                          reopens or drains the encoder)
//   EncoderRate     ccmx265enc, vp9enc, x264enc under      bitrate = the target x the      bitrate
//                   mode=encoder-rate (mode=auto where     rate correction (its own CBR,
//                   the catalogue's encoder_rate_first)    AQ and frame QPs stay)
//
// The speed knob (QoS: raise the preset while frames run late) is per element:
// ccmx265enc speed-preset down towards 0 (ultrafast), ccmsvtav1enc speed-preset up
// to 13, vp9enc/vp8enc/av1enc cpu-used up.
#pragma once

#include <gst/gst.h>

#include <memory>
#include <optional>
#include <string>

#include "catalog/catalog.h"
#include "common/encoder_properties.h"

namespace ccm::gst {

enum class EncoderFamily { QpMeta, Quantizer, Bitrate, EncoderRate, BitrateOnChange, None };
const char* to_string(EncoderFamily f);

using catalog::SpeedKnob;  // the catalogue's word: property, direction, fastest value

// What we learnt about one encoder element. Owns a ref on it.
class EncoderAdapter {
 public:
  EncoderAdapter(GstElement* encoder, std::string factory, catalog::Codec codec, EncoderFamily family,
                 const catalog::EncoderEntry* entry);
  ~EncoderAdapter();
  EncoderAdapter(const EncoderAdapter&) = delete;
  EncoderAdapter& operator=(const EncoderAdapter&) = delete;

  GstElement* encoder() const { return encoder_; }
  const std::string& factory() const { return factory_; }
  catalog::Codec codec() const { return codec_; }
  EncoderFamily family() const { return family_; }
  // Whether force-key-unit events make key frames (libaom's av1enc in 1.22 ignores them).
  bool honours_key_units() const;
  // Whether the encoder takes a QP for every frame (meta or min = max quantizer).
  bool per_frame_qp() const { return family_ == EncoderFamily::QpMeta || family_ == EncoderFamily::Quantizer; }
  // Mode encoder-rate: whether the key frames we force at scene cuts get our QP
  // (x265's own CBR gave a cut's key frame 6 frame shares; ours are sized at 3).
  // Only through the QP meta: pinning libvpx's quantizer range for one frame
  // threw its CBR off for the frames after (validation set: screen 7 dB lower).
  bool key_frame_qp() const {
    return family_ == EncoderFamily::EncoderRate && per_frame_family_ == EncoderFamily::QpMeta && !hands_off();
  }
  // Mode encoder-rate on an encoder whose own controller wants the target alone
  // (the catalogue's encoder_rate_hands_off: ccmsvtav1enc): no gain, no key-frame
  // QP, no key frames forced at cuts.
  bool hands_off() const {
    return family_ == EncoderFamily::EncoderRate && entry_ && entry_->encoder_rate_hands_off;
  }
  // Why per-frame control is not possible, for the warning ("" when it is).
  std::string limitation() const;

  // Whether the encoder can run its own CBR with its bitrate steered live
  // (a per-frame family with a bitrate property and a CBR mode).
  bool can_steer_rate() const;
  // The catalogue measured its own CBR, steered by our rate correction, to beat
  // our per-frame control (mode=auto then chooses encoder-rate).
  bool prefers_encoder_rate() const { return entry_ && entry_->encoder_rate_first && can_steer_rate(); }

  // Before the first frame (and when the mode changes): put the encoder where we
  // can steer it: per frame (cqp for QpMeta, pinned quantizers), or, with
  // encoder_rate where it can, in its own CBR. Remembers what it changes.
  void take_control(double bitrate_bps, bool encoder_rate);
  // mode=passthrough: give back what take_control changed.
  void release_control(double bitrate_bps);

  // Per frame: qp in the codec's scale (-1 = none; under encoder-rate only key
  // frames get one, see key_frame_qp()), frame_rate_bps the rate this
  // frame's budget stands for (x264enc follows it), rate_bps the rate in force
  // (property, bandwidth estimate, QoS). Must not be called with the element's
  // lock held: setting a property takes the encoder's own lock, which its
  // streaming thread holds while it pushes output into our probe.
  void apply_frame(GstBuffer* buffer, int qp, double frame_rate_bps, double rate_bps);
  // QoS: steps > 0 faster than the user's setting, 0 = back to it. Returns the steps applied.
  int set_speed_boost(int steps);

 private:
  void set_int_property(const char* name, long long value);
  void set_bitrate_property(double bps);
  void restore_user_settings();  // what take_control changed, back to the user's values
  const char* min_q_name() const;  // the quantizer range's properties (Quantizer family)
  const char* max_q_name() const;
  void pin_quantizer(int qp);      // min = max = qp (native scale), from the next frame

  GstElement* encoder_;
  std::string factory_;
  catalog::Codec codec_;
  EncoderFamily family_;           // the steering in force
  EncoderFamily per_frame_family_;  // the catalogue's per-frame steering
  const catalog::EncoderEntry* entry_;  // nullptr for elements the catalogue lacks
  BitrateProperty bitrate_;  // where its bitrate goes, and in which unit
  int native_qp_max_ = 51;  // the element's quantizer scale (255 for q-index elements)
  int last_qp_ = -1;
  double last_rate_bps_ = 0;
  gint64 last_rate_change_us_ = 0;
  SpeedKnob speed_;
  std::optional<int> user_speed_;
  std::optional<int> user_rate_control_;     // QpMeta: the mode before cqp
  std::optional<int> user_min_q_, user_max_q_;  // Quantizer: the range before pinning
  int boost_ = 0;
};

// The element at the other end of `pad`'s link, looking through bin boundaries
// (ghost pads and their internal proxy pads) in either direction; nullptr when
// the pad is not linked. A new reference.
GstElement* linked_element(GstPad* pad);

// The element's one pad of that direction (a new reference); nullptr when it has
// none or several (a tee, a muxer): where a walk along a chain stops.
GstPad* only_pad(GstElement* element, GstPadDirection direction);

// Walks downstream from `pad` (our source pad) through ghost pads, parsers,
// capsfilters, queues and converters (elements with one source pad) to the first
// element whose klass has "Encoder"; when that is a bin (ccmencbin), the one
// encoder element inside it. `seen` is the last element looked at (for the
// warning when there is no encoder). nullptr when none.
GstElement* find_downstream_encoder(GstPad* pad, std::string& seen);

// The adapter for an encoder element: the catalogue's entry where it has one,
// otherwise the codec from the source pad template and the family from the
// properties the element has.
std::unique_ptr<EncoderAdapter> make_adapter(GstElement* encoder);

}  // namespace ccm::gst
