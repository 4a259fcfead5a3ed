#include "ratecontrol/encoder_adapters.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "common/qp_meta.h"

GST_DEBUG_CATEGORY_EXTERN(ccm_rate_control_debug);
#define GST_CAT_DEFAULT ccm_rate_control_debug

namespace ccm::gst {
namespace {

// A bitrate change that reopens or drains the encoder costs a key frame or a
// stall: at most one per second, the latest rate wins.
constexpr gint64 kSlowChangeIntervalUs = 1000000;
constexpr double kRateTolerance = 0.05;  // changes smaller than 5% are not worth a reconfigure

bool has_property(GstElement* e, const char* name) {
  return !!g_object_class_find_property(G_OBJECT_GET_CLASS(e), name);
}

std::optional<int> get_int_property(GstElement* e, const char* name) {
  GParamSpec* spec = g_object_class_find_property(G_OBJECT_GET_CLASS(e), name);
  if (!spec) return std::nullopt;
  GValue v = G_VALUE_INIT;
  g_value_init(&v, spec->value_type);
  g_object_get_property(G_OBJECT(e), name, &v);
  std::optional<int> out;
  if (G_VALUE_HOLDS_INT(&v)) out = g_value_get_int(&v);
  else if (G_VALUE_HOLDS_UINT(&v)) out = static_cast<int>(g_value_get_uint(&v));
  else if (G_VALUE_HOLDS_ENUM(&v)) out = g_value_get_enum(&v);
  else if (G_VALUE_HOLDS_INT64(&v)) out = static_cast<int>(g_value_get_int64(&v));
  g_value_unset(&v);
  return out;
}

// How the catalogue says each encoder is steered and sped up (EncoderEntry's
// steering and speed); vp8enc is outside it (ccmencbin makes no VP8) and gets
// libvpx's rules here, as vp9enc has them there.
SpeedKnob speed_knob_for(const catalog::EncoderEntry* entry, std::string_view factory) {
  if (entry) return entry->speed;
  if (factory == "vp8enc") return {"cpu-used", +1, 9};
  return {};
}

std::optional<catalog::Codec> codec_from_templates(GstElement* e) {
  GstElementFactory* f = gst_element_get_factory(e);
  if (!f) return std::nullopt;
  for (const GList* l = gst_element_factory_get_static_pad_templates(f); l; l = l->next) {
    auto* t = static_cast<GstStaticPadTemplate*>(l->data);
    if (t->direction != GST_PAD_SRC) continue;
    GstCaps* caps = gst_static_caps_get(&t->static_caps);
    std::optional<catalog::Codec> c;
    for (guint i = 0; !c && i < gst_caps_get_size(caps); ++i) {
      const char* name = gst_structure_get_name(gst_caps_get_structure(caps, i));
      for (catalog::Codec k : catalog::kAllCodecs)
        if (std::strcmp(name, catalog::caps_name(k)) == 0) c = k;
      if (!c && std::strcmp(name, "video/x-vp8") == 0) c = catalog::Codec::VP9;  // same quantizer scale
    }
    gst_caps_unref(caps);
    if (c) return c;
  }
  return std::nullopt;
}

}  // namespace

const char* to_string(EncoderFamily f) {
  switch (f) {
    case EncoderFamily::QpMeta: return "qp-meta";
    case EncoderFamily::Quantizer: return "quantizer";
    case EncoderFamily::Bitrate: return "bitrate";
    case EncoderFamily::EncoderRate: return "encoder-rate";
    case EncoderFamily::BitrateOnChange: return "bitrate-on-change";
    case EncoderFamily::None: return "none";
  }
  return "?";
}

EncoderAdapter::EncoderAdapter(GstElement* encoder, std::string factory, catalog::Codec codec, EncoderFamily family,
                               const catalog::EncoderEntry* entry)
    : encoder_(GST_ELEMENT(gst_object_ref(encoder))),
      factory_(std::move(factory)),
      codec_(codec),
      family_(family),
      per_frame_family_(family),
      entry_(entry),
      speed_(speed_knob_for(entry, factory_)) {
  // The bitrate's property and unit as ccmencbin sets them (common/encoder_properties.h):
  // vp8enc's "Target bitrate (in bits/sec)" reads as bit/s there.
  bitrate_ = find_bitrate_property(encoder_, entry_);
  if (entry_) native_qp_max_ = entry_->qp_max;
  if (factory_ == "vp8enc") native_qp_max_ = 63;
  if (!speed_.property.empty() && !has_property(encoder_, std::string(speed_.property).c_str())) speed_ = {};
}

EncoderAdapter::~EncoderAdapter() { gst_object_unref(encoder_); }

bool EncoderAdapter::honours_key_units() const {
  return !entry_ || entry_->key_unit == catalog::KeyUnit::Event;
}

std::string EncoderAdapter::limitation() const {
  switch (family_) {
    case EncoderFamily::QpMeta:
    case EncoderFamily::Quantizer:
    case EncoderFamily::EncoderRate: return {};
    case EncoderFamily::Bitrate:
      return factory_ + " takes no per-frame QP: ccmratecontrol steers its bitrate property frame by frame "
                        "(its own rate control places the bits inside each frame)";
    case EncoderFamily::BitrateOnChange: {
      std::string s = factory_ + " takes no per-frame QP (no GstCcmQpMeta, no live quantizer): ccmratecontrol "
                                 "only changes its " + bitrate_.name + " property when the target rate changes";
      if (entry_ && (entry_->bitrate_change == catalog::BitrateChange::Reopen ||
                     entry_->bitrate_change == catalog::BitrateChange::Drain))
        s += std::string(", at most once a second because each change ") +
             (entry_->bitrate_change == catalog::BitrateChange::Reopen ? "reopens the encoder (an IDR)"
                                                                       : "drains the encoder");
      if (factory_ == "x265enc") s += "; ccmx265enc takes per-frame QP";
      return s;
    }
    case EncoderFamily::None:
      return factory_ + " has no bitrate or quantizer property ccmratecontrol knows: analysis and messages only";
  }
  return {};
}

void EncoderAdapter::set_int_property(const char* name, long long value) {
  gst_util_set_object_arg(G_OBJECT(encoder_), name, std::to_string(value).c_str());
}

void EncoderAdapter::set_bitrate_property(double bps) { set_bitrate(encoder_, bitrate_, bps / 1000.0); }

bool EncoderAdapter::can_steer_rate() const {
  if (per_frame_family_ != EncoderFamily::QpMeta && per_frame_family_ != EncoderFamily::Quantizer &&
      per_frame_family_ != EncoderFamily::Bitrate)
    return false;
  if (bitrate_.name.empty()) return false;
  // An element with a rate-control property must offer CBR; one without runs its
  // bitrate mode whenever it is not pinned to a quantizer.
  return !entry_ || entry_->rc_property.empty() || !entry_->rc_cbr.empty();
}

void EncoderAdapter::take_control(double bitrate_bps, bool encoder_rate) {
  const EncoderFamily wanted = encoder_rate && can_steer_rate() ? EncoderFamily::EncoderRate : per_frame_family_;
  // From encoder-rate to a QP per frame while the encoder runs (max-psnr set live
  // under mode auto): the encoder stays on its own CBR and takes each frame's QP as
  // a forced QP (x265's forceqp), as our key frames there do; switching it to cqp
  // would reopen it (a key frame).
  const bool live_from_own_cbr = family_ == EncoderFamily::EncoderRate && wanted == EncoderFamily::QpMeta;
  if (wanted != family_) restore_user_settings();
  family_ = wanted;
  if (family_ == EncoderFamily::EncoderRate) {
    if (entry_ && !entry_->rc_property.empty() && has_property(encoder_, std::string(entry_->rc_property).c_str())) {
      const std::string rc_property(entry_->rc_property);
      if (!user_rate_control_) user_rate_control_ = get_int_property(encoder_, rc_property.c_str());
      gst_util_set_object_arg(G_OBJECT(encoder_), rc_property.c_str(), std::string(entry_->rc_cbr).c_str());
    }
  }
  if (family_ == EncoderFamily::QpMeta && !live_from_own_cbr && has_property(encoder_, "rate-control")) {
    if (!user_rate_control_) user_rate_control_ = get_int_property(encoder_, "rate-control");
    // Our encoders honour a frame QP only as their whole rate control: SVT-AV1
    // takes per-picture QP in CQP mode only, and x265's VBV would fight it.
    gst_util_set_object_arg(G_OBJECT(encoder_), "rate-control", "cqp");
  }
  if (per_frame_family_ == EncoderFamily::Quantizer) {
    if (!user_min_q_) user_min_q_ = get_int_property(encoder_, min_q_name());
    if (!user_max_q_) user_max_q_ = get_int_property(encoder_, max_q_name());
  }
  last_qp_ = -1;
  last_rate_bps_ = 0;
  if (family_ != EncoderFamily::QpMeta) apply_frame(nullptr, -1, bitrate_bps, bitrate_bps);
}

void EncoderAdapter::restore_user_settings() {
  if (user_rate_control_) {
    const std::string rc_property =
        entry_ && !entry_->rc_property.empty() ? std::string(entry_->rc_property) : "rate-control";
    set_int_property(rc_property.c_str(), *user_rate_control_);
    user_rate_control_.reset();
  }
  if (user_max_q_) set_int_property(max_q_name(), *user_max_q_);
  if (user_min_q_) set_int_property(min_q_name(), *user_min_q_);
  user_min_q_.reset();
  user_max_q_.reset();
}

void EncoderAdapter::release_control(double bitrate_bps) {
  restore_user_settings();
  if (family_ != EncoderFamily::None) set_bitrate_property(bitrate_bps);
  set_speed_boost(0);
  last_qp_ = -1;
  last_rate_bps_ = bitrate_bps;
}

const char* EncoderAdapter::min_q_name() const {
  // The catalogue's strings are NUL-terminated literals, so data() is a C string.
  return entry_ && !entry_->min_qp_property.empty() ? entry_->min_qp_property.data() : "min-quantizer";
}

const char* EncoderAdapter::max_q_name() const {
  return entry_ && !entry_->max_qp_property.empty() ? entry_->max_qp_property.data() : "max-quantizer";
}

void EncoderAdapter::pin_quantizer(int qp) {
  if (qp < 0 || qp == last_qp_) return;
  // Hardware elements of this family take the 8-bit q-index (0-255).
  const int native = native_qp_max_ > 63 ? std::min(native_qp_max_, qp * 4) : std::min(native_qp_max_, qp);
  // libvpx checks min <= max on every config change: move the bound on the side
  // we are going first.
  if (last_qp_ < 0 || qp > last_qp_) {
    set_int_property(max_q_name(), native);
    set_int_property(min_q_name(), native);
  } else {
    set_int_property(min_q_name(), native);
    set_int_property(max_q_name(), native);
  }
  last_qp_ = qp;
}

void EncoderAdapter::apply_frame(GstBuffer* buffer, int qp, double frame_rate_bps, double rate_bps) {
  switch (family_) {
    case EncoderFamily::QpMeta:
      if (buffer && qp >= 0) gst_buffer_add_ccm_qp_meta(buffer, qp);
      return;
    case EncoderFamily::Quantizer:
      pin_quantizer(qp);
      if (last_rate_bps_ <= 0 || std::fabs(rate_bps / last_rate_bps_ - 1.0) > kRateTolerance) {
        set_bitrate_property(rate_bps);
        last_rate_bps_ = rate_bps;
      }
      return;
    case EncoderFamily::EncoderRate:
      // A cut's key frame at our QP (key_frame_qp()), the rest at the encoder's.
      if (per_frame_family_ == EncoderFamily::QpMeta && buffer && qp >= 0) gst_buffer_add_ccm_qp_meta(buffer, qp);
      if (last_rate_bps_ <= 0 || std::fabs(frame_rate_bps / last_rate_bps_ - 1.0) > kRateTolerance) {
        set_bitrate_property(frame_rate_bps);
        last_rate_bps_ = frame_rate_bps;
      }
      return;
    case EncoderFamily::Bitrate:
      if (last_rate_bps_ <= 0 || std::fabs(frame_rate_bps / last_rate_bps_ - 1.0) > kRateTolerance) {
        set_bitrate_property(frame_rate_bps);
        last_rate_bps_ = frame_rate_bps;
      }
      return;
    case EncoderFamily::BitrateOnChange: {
      if (last_rate_bps_ > 0 && std::fabs(rate_bps / last_rate_bps_ - 1.0) <= kRateTolerance) return;
      const bool slow = entry_ && (entry_->bitrate_change == catalog::BitrateChange::Reopen ||
                                   entry_->bitrate_change == catalog::BitrateChange::Drain);
      const gint64 now = g_get_monotonic_time();
      if (slow && last_rate_bps_ > 0 && now - last_rate_change_us_ < kSlowChangeIntervalUs) return;
      set_bitrate_property(rate_bps);
      last_rate_bps_ = rate_bps;
      last_rate_change_us_ = now;
      return;
    }
    case EncoderFamily::None: return;
  }
}

int EncoderAdapter::set_speed_boost(int steps) {
  if (speed_.property.empty()) return 0;
  steps = std::max(0, steps);
  if (steps == boost_) return boost_;
  const std::string speed_property(speed_.property);
  if (!user_speed_) user_speed_ = get_int_property(encoder_, speed_property.c_str());
  if (!user_speed_) return 0;
  int value = *user_speed_ + speed_.direction * steps;
  value = speed_.direction > 0 ? std::min(value, std::max(speed_.fastest, *user_speed_))
                               : std::max(value, std::min(speed_.fastest, *user_speed_));
  set_int_property(speed_property.c_str(), value);
  boost_ = std::abs(value - *user_speed_);
  if (boost_ == 0) user_speed_.reset();
  return boost_;
}

namespace {

bool is_encoder(GstElement* e) {
  const char* klass = gst_element_get_metadata(e, GST_ELEMENT_METADATA_KLASS);
  return klass && std::strstr(klass, "Encoder");
}

// An encoder bin (ccmencbin, encodebin) whose sink pad is not a plain ghost pad:
// the one encoder element inside it, if there is exactly one.
GstElement* encoder_inside(GstBin* bin) {
  GstElement* found = nullptr;
  int count = 0;
  GstIterator* it = gst_bin_iterate_recurse(bin);
  GValue item = G_VALUE_INIT;
  while (gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
    auto* e = GST_ELEMENT(g_value_get_object(&item));
    if (!GST_IS_BIN(e) && is_encoder(e)) {
      ++count;
      if (!found) found = GST_ELEMENT(gst_object_ref(e));
    }
    g_value_reset(&item);
  }
  g_value_unset(&item);
  gst_iterator_free(it);
  if (count != 1 && found) {
    gst_object_unref(found);
    found = nullptr;
  }
  return found;
}

}  // namespace

GstElement* linked_element(GstPad* pad) {
  GstPad* peer = gst_pad_get_peer(pad);
  for (int hops = 0; peer && hops < 16; ++hops) {
    // Into a bin: follow the ghost pad to the element inside.
    if (GST_IS_GHOST_PAD(peer)) {
      GstPad* target = gst_ghost_pad_get_target(GST_GHOST_PAD(peer));
      gst_object_unref(peer);
      peer = target;
      continue;
    }
    // Out of a bin: the internal pad of a ghost pad; go on from the ghost pad's peer.
    if (GST_IS_PROXY_PAD(peer)) {
      GstProxyPad* ghost = gst_proxy_pad_get_internal(GST_PROXY_PAD(peer));
      gst_object_unref(peer);
      peer = ghost ? gst_pad_get_peer(GST_PAD(ghost)) : nullptr;
      if (ghost) gst_object_unref(ghost);
      continue;
    }
    GstElement* element = gst_pad_get_parent_element(peer);
    gst_object_unref(peer);
    return element;
  }
  if (peer) gst_object_unref(peer);
  return nullptr;
}

GstPad* only_pad(GstElement* element, GstPadDirection direction) {
  GstPad* pad = nullptr;
  GST_OBJECT_LOCK(element);
  if (direction == GST_PAD_SRC && element->numsrcpads == 1) pad = GST_PAD(gst_object_ref(element->srcpads->data));
  if (direction == GST_PAD_SINK && element->numsinkpads == 1) pad = GST_PAD(gst_object_ref(element->sinkpads->data));
  GST_OBJECT_UNLOCK(element);
  return pad;
}

GstElement* find_downstream_encoder(GstPad* pad, std::string& seen) {
  GstElement* element = linked_element(pad);
  for (int hops = 0; element && hops < 64; ++hops) {
    seen = GST_OBJECT_NAME(element);
    if (GstElementFactory* f = gst_element_get_factory(element))
      seen += std::string(" (") + GST_OBJECT_NAME(f) + ")";
    if (is_encoder(element)) {
      if (GST_IS_BIN(element)) {
        if (GstElement* inner = encoder_inside(GST_BIN(element))) {
          gst_object_unref(element);
          return inner;
        }
      }
      return element;
    }
    // Parsers, capsfilters, queues, converters: one way on.
    GstPad* src = only_pad(element, GST_PAD_SRC);
    gst_object_unref(element);
    element = nullptr;
    if (!src) break;
    element = linked_element(src);
    gst_object_unref(src);
  }
  if (element) gst_object_unref(element);
  return nullptr;
}

std::unique_ptr<EncoderAdapter> make_adapter(GstElement* encoder) {
  GstElementFactory* f = gst_element_get_factory(encoder);
  const std::string factory = f ? GST_OBJECT_NAME(f) : GST_OBJECT_NAME(encoder);
  const catalog::EncoderEntry* entry = catalog::find(factory);
  std::optional<catalog::Codec> codec = entry ? std::optional(entry->codec) : codec_from_templates(encoder);
  EncoderFamily family = EncoderFamily::None;
  const bool has_bitrate = (entry && !entry->bitrate_property.empty()) || has_property(encoder, "bitrate") ||
                           has_property(encoder, "target-bitrate");
  switch (entry ? entry->steering : catalog::Steering::BitrateOnChange) {
    case catalog::Steering::QpMeta: family = EncoderFamily::QpMeta; break;
    case catalog::Steering::Quantizer: family = EncoderFamily::Quantizer; break;
    case catalog::Steering::Bitrate: family = EncoderFamily::Bitrate; break;
    case catalog::Steering::BitrateOnChange:
      if (has_bitrate) family = EncoderFamily::BitrateOnChange;
      break;
  }
  // vp8enc (outside the catalogue): libvpx's quantizer steering, as vp9enc's entry says.
  if (!entry && factory == "vp8enc") family = EncoderFamily::Quantizer;
  if (!codec) {
    codec = catalog::Codec::H264;  // QP scale only matters for per-frame families
    if (family == EncoderFamily::QpMeta || family == EncoderFamily::Quantizer) family = EncoderFamily::BitrateOnChange;
  }
  GST_DEBUG("encoder %s: codec %s, family %s", factory.c_str(), catalog::to_string(*codec), to_string(family));
  return std::make_unique<EncoderAdapter>(encoder, factory, *codec, family, entry);
}

}  // namespace ccm::gst
