// The encoder catalogue as one static table.
//
// Where the names come from: software elements were checked against this
// machine's registry (gst-inspect-1.0 of Debian 12's GStreamer 1.22.0, and
// tests/element/test_catalog_registry.cpp keeps checking them); the 1.22 nvcodec,
// va and qsv elements against the property names and enum nicks in Debian's
// libgstnvcodec.so / libgstva.so / libgstqsv.so (they register nothing without a
// GPU, but their strings are there); 1.24+ elements against upstream source
// (gstnvav1encoder.cpp, gstvaav1enc.c, gstvavp9enc.c, ext/svtav1/gstsvtav1enc.c).
// Names marked "unverified" are educated guesses: read them again when a machine
// with that element is at hand.

#include "catalog/catalog.h"

#include <array>
#include <cctype>
#include <utility>

namespace ccm::catalog {

namespace {

constexpr GstVersion k122{1, 22};
constexpr GstVersion k124{1, 24};
constexpr GstVersion k126{1, 26};

// ---- low-latency settings and trap fixes -------------------------------------

// x264's zerolatency tune already drops B-frames and lookahead; the explicit values
// keep them off when a preset or option-string would bring them back.
constexpr Setting kX264LowLatency[] = {
    {"tune", "zerolatency"}, {"speed-preset", "ultrafast"}, {"bframes", "0"},
    {"b-adapt", "false"},    {"rc-lookahead", "0"},         {"sync-lookahead", "0"},
    {"sliced-threads", "true"},
};

// tune=zerolatency sets bframes=0, lookahead 0, scenecut 0, cutree 0 inside x265.
constexpr Setting kX265LowLatency[] = {
    {"tune", "zerolatency"},
    {"speed-preset", "ultrafast"},
};

// deadline=1 is libvpx's realtime mode; the default (1 s per frame, "good") is far
// too slow for live input. Small client buffers keep the rate controller reacting
// within a second, max-intra-bitrate caps key frames at 3x a normal frame.
constexpr Setting kVp9LowLatency[] = {
    {"deadline", "1"},
    {"cpu-used", "8"},
    {"lag-in-frames", "0"},
    {"row-mt", "true"},
    {"auto-alt-ref", "false"},
    {"error-resilient", "default"},
    {"buffer-initial-size", "500"},
    {"buffer-optimal-size", "600"},
    {"buffer-size", "1000"},
    {"max-intra-bitrate", "300"},
};

// Live pictures from 720p30 up, on a machine of several cores: vp9enc asks libvpx
// for 8 threads whatever the machine (its default), and with row-mt its tiles and
// rows share as many as it is given (vp9enc's tile-columns default, 6, is clamped by libvpx to the width:
// 4 tile columns at 1080p, 8 at 4K). Measured on 16 cores (docs/benchmarks.md,
// scripts/gpu-bench --live-settings).
constexpr Setting kVp9ManyCores[] = {
    {"threads", "{cpus}"},
};
constexpr uint64_t k720p30 = 1280ull * 720 * 30;

// x264 with sliced threads and threads=0 picks its own count:
// fed live at 4K60 on 16 cores that left 45% of the frames late (p95 219 ms);
// one thread per core: 98.7% within the 16.7 ms slot, p95 13 ms, 3.8 cores
// (x264enc alone, scripts/gpu-bench --live-settings, docs/benchmarks.md).
constexpr Setting kX264ManyCores[] = {
    {"threads", "{cpus}"},
};

constexpr Setting kAomLowLatency[] = {
    {"usage-profile", "realtime"},
    {"cpu-used", "9"},
    {"lag-in-frames", "0"},
    {"row-mt", "true"},
    {"buf-initial-sz", "500"},
    {"buf-optimal-sz", "600"},
    {"buf-sz", "1000"},
};

// Debian's av1enc defaults to min-quantizer=0 max-quantizer=0: near-lossless output
// whatever the bitrate, and with end-usage=cbr libaom 3.6 aborts on its first
// frames ("rc_pick_q_and_bounds_no_stats_cbr: Assertion `q <= rc->worst_quality &&
// q >= rc->best_quality' failed", seen here with max-quantizer 0 and 1). A real
// range fixes both.
constexpr Setting kAomAlways[] = {
    {"min-quantizer", "4"},
    {"max-quantizer", "56"},
};

// openh264 has no B-frames and no lookahead; low complexity is its fast mode.
constexpr Setting kOpenH264LowLatency[] = {
    {"complexity", "low"},
};

// Old NVENC API (gstnvbaseenc). bframes and rc-lookahead exist only where the
// device supports them. Note: upstream maps low-latency-hp to the LOW_LATENCY_HQ
// preset GUID; it is still the low-latency family.
constexpr Setting kNvLegacyLowLatency[] = {
    {"preset", "low-latency-hp"},
    {"zerolatency", "true"},
    {"bframes", "0"},
    {"rc-lookahead", "0"},
};

// New NVENC API as GStreamer 1.22 and 1.24 name it (nvcuda*, nvautogpu*).
// low-latency-hp exists in both (1.24 maps it to P1 + low-latency tune).
constexpr Setting kNvCudaLowLatency[] = {
    {"preset", "low-latency-hp"},
    {"zero-reorder-delay", "true"},
    {"b-frames", "0"},
    {"rc-lookahead", "0"},
};

// nvav1enc (1.24, gstnvav1encoder.cpp) and, unverified, the 1.26 new-API elements
// that took over the nvh26xenc names with the old elements' property names.
constexpr Setting kNvNewLowLatency[] = {
    {"preset", "p1"},
    {"tune", "ultra-low-latency"},
    {"zerolatency", "true"},
    {"bframes", "0"},
    {"rc-lookahead", "0"},
};

constexpr Setting kVaH26xLowLatency[] = {
    {"b-frames", "0"},
    {"ref-frames", "1"},
};

// hierarchical-level=1 "disables all future reference" in vaav1enc / vavp9enc.
constexpr Setting kVaGfLowLatency[] = {
    {"hierarchical-level", "1"},
    {"ref-frames", "1"},
};

constexpr Setting kQsvH26xLowLatency[] = {
    {"low-latency", "true"},
    {"b-frames", "0"},
    {"ref-frames", "1"},
};

constexpr Setting kQsvLowLatency[] = {
    {"low-latency", "true"},
    {"ref-frames", "1"},
};

// svtav1enc in random access with the shortest mini-GOP (4) and no look-ahead, not
// low delay: on Debian 13 (GStreamer 1.26.2, SVT-AV1 2.3.0) pred-struct=1 stalls it
// after its first picture (SVT 2.x's svt_av1_enc_get_packet blocks in low delay, and
// the element asks for packets until none is left), which it cannot recover from.
// Random access takes VBR only (SVT 2.3 refuses CBR there).
constexpr Setting kSvtLowLatency[] = {
    {"preset", "12"},
    {"parameters-string", "lookahead=0:hierarchical-levels=2"},
};

constexpr Setting kCcmLowLatency[] = {
    {"low-latency", "true"},
};

// libaom's av1enc, as GStreamer 1.22 has it; 1.26 (Debian 13) honours force-key-unit
// events (tests/element/test_catalog_registry.cpp, run there): the same entry, but that.
constexpr EncoderEntry kAv1Enc122 = {
    .factory = "av1enc",
    .codec = Codec::AV1,
    .api = Api::Software,
    .vendors = kVendorNone,
    .since = k122,
    .until = k124,
    .device_pattern = "",
    .bitrate_property = "target-bitrate",
    .bitrate_units_per_kbps = 1,
    .bitrate_change = BitrateChange::Live,
    .rc_property = "end-usage",
    .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "q",
    .qp_property = "",
    .min_qp_property = "min-quantizer",
    .max_qp_property = "max-quantizer",
    .qp_max = 63,
    .keyframe_interval_property = "keyframe-max-dist",
    .bframes_property = "",
    .threads_property = "threads",
    .key_unit = KeyUnit::Unsupported,
    // Not Quantizer: libaom 3.6 (Debian 12) aborts the process in CBR
    // (rc_pick_q_and_bounds_no_stats_cbr: "q <= worst_quality && q >= best_quality")
    // once min = max quantizer moves while it encodes small frames; it gets its
    // target-bitrate instead, which it takes live.
    .steering = Steering::BitrateOnChange,
    .speed = {"cpu-used", +1, 10},
    .low_latency = kAomLowLatency,
    .always = kAomAlways,
    .traps = "libaom. Debian's defaults min-quantizer=max-quantizer=0 give near-lossless output; "
             "with end-usage=cbr a max-quantizer of 0 or 1 trips an assertion in libaom 3.6 "
             "(rc_pick_q_and_bounds_no_stats_cbr) and aborts the process: we always set 4..56. "
             "1.22 ignores force-key-unit events (only keyframe-max-dist places key frames; 1.24 not checked, "
             "counted with 1.22); 1.26 honours them (kAv1Enc126). "
             "CQP is a one-value quantizer range. Slow: only cpu-used>=8 realtime keeps up.",
    .debian_package = "gstreamer1.0-plugins-bad",
};

constexpr EncoderEntry from_126(EncoderEntry e, KeyUnit key_unit) {
  e.since = k126;
  e.until = std::nullopt;
  e.key_unit = key_unit;
  return e;
}
constexpr EncoderEntry kAv1Enc126 = from_126(kAv1Enc122, KeyUnit::Event);

// ---- the table --------------------------------------------------------------------
//
// Order = preference within a codec: hardware first, then software. For NVIDIA the
// new API (nvcuda*) ranks above the old nvh26xenc on 1.22/1.24 because it changes
// bitrate in place without an IDR, which live rate control does many times a second.

constexpr EncoderEntry kEntries[] = {
    // ================================ AV1 ================================
    {
        .factory = "nvav1enc",
        .codec = Codec::AV1,
        .api = Api::NvencCuda,
        .vendors = kVendorNvidia,
        .since = k124,
        .device_pattern = "nvav1device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rc-mode",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-const-i,qp-const-p,qp-const-b",
        .min_qp_property = "qp-min-i,qp-min-p,qp-min-b",
        .max_qp_property = "qp-max-i,qp-max-p,qp-max-b",
        .qp_max = 255,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "bframes",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvNewLowLatency,
        .always = {},
        .traps = "Needs an Ada (RTX 40) or newer GPU. QPs are AV1 q-index (0-255). bframes and "
                 "rc-lookahead exist only where the device supports them.",
        .debian_package = "",
    },
    {
        .factory = "vaav1enc",
        .codec = Codec::AV1,
        .api = Api::Va,
        .vendors = kVendorIntel | kVendorAmd,
        .since = k124,
        .device_pattern = "varenderD{render}av1enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Drain,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp",
        .min_qp_property = "min-qp",
        .max_qp_property = "max-qp",
        .qp_max = 255,
        .keyframe_interval_property = "key-int-max",
        .bframes_property = "",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kVaGfLowLatency,
        .always = {},
        .traps = "rate-control lists only the modes the VA driver reports (and is missing when it "
                 "reports none). QPs are AV1 q-index (0-255). Rank NONE: encodebin never picks it. "
                 "A bitrate change drains and reconfigures. Needs Intel Arc/Meteor Lake or AMD RDNA3.",
        .debian_package = "",
    },
    {
        .factory = "qsvav1enc",
        .codec = Codec::AV1,
        .api = Api::Qsv,
        .vendors = kVendorIntel,
        .since = k122,
        .device_pattern = "qsvav1device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-i,qp-p",
        .min_qp_property = "",
        .max_qp_property = "",
        .qp_max = 255,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kQsvLowLatency,
        .always = {},
        .traps = "bitrate and max-bitrate stop at 65535 kbit/s. qp-i/qp-p are AV1 q-index, 0 means "
                 "driver default. A bitrate change resets the session in place (MFXVideoENCODE_Reset). "
                 "Needs oneVPL (libvpl) and the Intel media driver.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "ccmsvtav1enc",
        .codec = Codec::AV1,
        .api = Api::Software,
        .vendors = kVendorNone,
        .since = k122,
        .device_pattern = "",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "quantizer",
        .min_qp_property = "",
        .max_qp_property = "",
        .qp_max = 63,
        .keyframe_interval_property = "keyframe-interval",
        .bframes_property = "",
        .threads_property = "threads",
        .key_unit = KeyUnit::Event,
        .steering = Steering::QpMeta,
        // Its own controller (slow base QP, layer offsets) measured -5% to +6% in
        // BD-rate against SvtAv1EncApp's CBR on five of the six calibration clips,
        // -30% to +28% on the validation set; per-frame QPs from ccmratecontrol +4% to
        // +141%. ccmratecontrol's gain, key-frame QPs or cut key frames on top (each a
        // library restart in low delay) made it +1% to +208% (docs/benchmarks.md).
        .encoder_rate_first = true,
        .encoder_rate_hands_off = true,
        .speed = {"speed-preset", +1, 13},
        .even_sizes_only = true,
        .low_latency = kCcmLowLatency,
        .always = {},
        .traps = "gst-ccm's own SVT-AV1 1.4 element (docs/encoders.md). With low-latency (default) the "
                 "library runs in constant-QP mode with a QP per picture from the element's own rate "
                 "controller, so bitrate, rate-control and quantizer change on the next picture without a "
                 "key frame; GstCcmQpMeta overrides the QP (per-block offsets are ignored: SVT 1.4 takes no "
                 "QP map). A requested key frame restarts the library at that picture (SVT refuses forced "
                 "key pictures in low delay): 20-60 ms at 1080p. Odd sizes and sizes below 64x64 are "
                 "refused (4:2:0 in SVT needs even sizes). On SVT-AV1 2.x library-rate-control=true is the "
                 "default: SVT's own low-delay CBR, a bitrate change on a key picture (2.x takes it on no "
                 "other), requested key frames without a restart. low-latency=false: random access with SVT's own "
                 "rate control, where a bitrate change reopens. speed-preset 0-13 (default 12).",
        .debian_package = "",
        .ranked_above = "svtav1enc",
        .ranked_above_why =
            "measured on Debian 13 (GStreamer 1.26.2, SVT-AV1 2.3.0, docs/benchmarks.md): a bitrate change "
            "applies while running, on a key picture of SVT's own low-delay CBR (svtav1enc ignores it once "
            "running), 1 picture of latency (svtav1enc "
            "reports 1.23 s: it stalls after its first picture in low delay, and CBR needs low delay), and "
            "1.1-1.5x its frame rate at 1280x720 preset 12",
    },
    {
        .factory = "svtav1enc",
        .codec = Codec::AV1,
        .api = Api::Software,
        .vendors = kVendorNone,
        .since = k124,
        .device_pattern = "",
        .bitrate_property = "target-bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Ignored,
        .rc_property = "",
        .rc_cbr = "", .rc_vbr = "", .rc_cqp = "",
        .qp_property = "cqp",
        .min_qp_property = "min-qp-allowed",
        .max_qp_property = "max-qp-allowed",
        .qp_max = 63,
        .keyframe_interval_property = "intra-period-length",
        .bframes_property = "",
        .threads_property = "logical-processors",
        .key_unit = KeyUnit::Event,
        .even_sizes_only = true,
        .low_latency = kSvtLowLatency,
        .always = {},
        .traps = "Upstream element (gst-plugins-bad 1.24+), not in Debian 12. The mode follows from "
                 "what is set: target-bitrate with max-bitrate equal = CBR, a different (or no) "
                 "max-bitrate = VBR, cqp >= 0 = CQP. On Debian 13 (1.26.2, SVT-AV1 2.3) CBR needs low "
                 "delay (pred-struct=1 in parameters-string), where the element stalls after its first "
                 "picture: gst-ccm runs it in random access (VBR, mini-GOP 4, no look-ahead). It refuses "
                 "every property change once the encoder runs. intra-period-length is the key-frame "
                 "distance minus one.",
        .debian_package = "",
    },
    kAv1Enc122,
    kAv1Enc126,

    // ================================ H.265 ================================
    {
        .factory = "nvcudah265enc",
        .codec = Codec::H265,
        .api = Api::NvencCuda,
        .vendors = kVendorNvidia,
        .since = k122,
        .until = k124,
        .device_pattern = "nvcudah265device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-i,qp-p,qp-b",
        .min_qp_property = "min-qp-i",
        .max_qp_property = "max-qp-i",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "b-frames",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvCudaLowLatency,
        .always = {},
        .traps = "New NVENC API; rank NONE in 1.22 (PRIMARY+1 in 1.24). Bitrate changes apply in "
                 "place without an IDR where the device reports dynamic bitrate change. min/max-qp-i "
                 "also bound P and B frames while their own values stay -1. b-frames and rc-lookahead "
                 "exist only where the device supports them. Per-device copies are numbered among "
                 "GPUs with NVENC, not by CUDA ordinal.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "nvh265enc",
        .codec = Codec::H265,
        .api = Api::NvencLegacy,
        .vendors = kVendorNvidia,
        .since = k122,
        .until = k124,
        .device_pattern = "nvh265device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::LiveWithIdr,
        .rc_property = "rc-mode",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "constqp",
        .qp_property = "qp-const",
        .min_qp_property = "qp-min",
        .max_qp_property = "qp-max",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "bframes",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvLegacyLowLatency,
        .always = {},
        .traps = "Old NVENC API (gstnvbaseenc), rank PRIMARY*2. Every bitrate change calls "
                 "NvEncReconfigureEncoder with a forced IDR: frequent changes cost a key frame each. "
                 "bframes and rc-lookahead exist only where the device supports them. The first "
                 "GPU with NVENC gets the plain name, the others nvh265device<CUDA ordinal>enc.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        // 1.26 reuses the old name for the new API. Unverified: the property names
        // (assumed the old element's, as nvav1enc 1.24 has them) and the device pattern.
        .factory = "nvh265enc",
        .codec = Codec::H265,
        .api = Api::NvencCuda,
        .vendors = kVendorNvidia,
        .since = k126,
        .device_pattern = "nvh265device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rc-mode",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-const-i,qp-const-p,qp-const-b",
        .min_qp_property = "qp-min-i,qp-min-p,qp-min-b",
        .max_qp_property = "qp-max-i,qp-max-p,qp-max-b",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "bframes",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvNewLowLatency,
        .always = {},
        .traps = "GStreamer 1.26: the new NVENC API under the old name (rank PRIMARY+1); bitrate "
                 "changes apply in place. Property names not checked on a 1.26 system.",
        .debian_package = "",
    },
    {
        .factory = "nvautogpuh265enc",
        .codec = Codec::H265,
        .api = Api::NvencAutoGpu,
        .vendors = kVendorNvidia,
        .since = k122,
        .until = k124,
        .device_pattern = "",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-i,qp-p,qp-b",
        .min_qp_property = "min-qp-i",
        .max_qp_property = "max-qp-i",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "b-frames",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvCudaLowLatency,
        .always = {},
        .traps = "New NVENC API, rank NONE; picks the GPU of upstream CUDA memory, else the first "
                 "one, so it cannot be pinned to a GPU by name.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        // Unverified on 1.26: property names as for the 1.26 nvh265enc.
        .factory = "nvautogpuh265enc",
        .codec = Codec::H265,
        .api = Api::NvencAutoGpu,
        .vendors = kVendorNvidia,
        .since = k126,
        .device_pattern = "",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rc-mode",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-const-i,qp-const-p,qp-const-b",
        .min_qp_property = "qp-min-i,qp-min-p,qp-min-b",
        .max_qp_property = "qp-max-i,qp-max-p,qp-max-b",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "bframes",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvNewLowLatency,
        .always = {},
        .traps = "Picks its GPU itself. Property names not checked on a 1.26 system.",
        .debian_package = "",
    },
    {
        .factory = "vah265enc",
        .codec = Codec::H265,
        .api = Api::Va,
        .vendors = kVendorIntel | kVendorAmd,
        .since = k122,
        .device_pattern = "varenderD{render}h265enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Drain,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qpi,qpp,qpb",
        .min_qp_property = "min-qp",
        .max_qp_property = "max-qp",
        .qp_max = 51,
        .keyframe_interval_property = "key-int-max",
        .bframes_property = "b-frames",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kVaH26xLowLatency,
        .always = {},
        .traps = "Rank NONE: encodebin and webrtcsink never pick it. rate-control lists only the "
                 "modes the driver reports. A bitrate change drains and fully reconfigures. Foreign "
                 "DMABuf input is copied (zero-copy only through its own pool or vapostproc). The "
                 "plain name belongs to the first render node VA can open.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "vah265lpenc",
        .codec = Codec::H265,
        .api = Api::VaLowPower,
        .vendors = kVendorIntel | kVendorAmd,
        .since = k122,
        .device_pattern = "varenderD{render}h265lpenc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Drain,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qpi,qpp,qpb",
        .min_qp_property = "min-qp",
        .max_qp_property = "max-qp",
        .qp_max = 51,
        .keyframe_interval_property = "key-int-max",
        .bframes_property = "b-frames",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kVaH26xLowLatency,
        .always = {},
        .traps = "Intel low-power (VDEnc) entry point: fixed-function, fast, fewer rate-control "
                 "modes (often CBR/VBR/CQP only, no B-frames on older parts). Same traps as vah265enc.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "qsvh265enc",
        .codec = Codec::H265,
        .api = Api::Qsv,
        .vendors = kVendorIntel,
        .since = k122,
        .device_pattern = "qsvh265device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-i,qp-p,qp-b",
        .min_qp_property = "min-qp-i,min-qp-p,min-qp-b",
        .max_qp_property = "max-qp-i,max-qp-p,max-qp-b",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "b-frames",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kQsvH26xLowLatency,
        .always = {},
        .traps = "Needs oneVPL (libvpl) and the Intel media driver. QP 0 means driver default. A "
                 "bitrate change resets the session in place (MFXVideoENCODE_Reset), a full "
                 "reinit when the driver refuses.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "ccmx265enc",
        .codec = Codec::H265,
        .api = Api::Software,
        .vendors = kVendorNone,
        .since = k122,
        .device_pattern = "",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "quantizer",
        .min_qp_property = "",
        .max_qp_property = "",
        .qp_max = 51,
        .keyframe_interval_property = "keyframe-interval",
        .bframes_property = "",
        .threads_property = "threads",
        .key_unit = KeyUnit::Event,
        .steering = Steering::QpMeta,
        .encoder_rate_first = true,
        .speed = {"speed-preset", -1, 0},
        .low_latency = kCcmLowLatency,
        .always = {},
        .traps = "gst-ccm's own x265 element (docs/encoders.md): bitrate changes in place on the next "
                 "frame (no new headers, no IDR) while the bitrate stays within the HEVC level pinned at start "
                 "(4x the opening rate, at least 20 Mbit/s), and for sizes that are multiples of 8; otherwise a "
                 "change reopens the encoder. Per-frame QP and per-block offsets from GstCcmQpMeta; offsets need "
                 "cbr/vbr (x265 turns AQ off in cqp). No B-frames or QP-limit properties; speed-preset 0-9 = "
                 "ultrafast..placebo.",
        .debian_package = "",
    },
    {
        .factory = "x265enc",
        .codec = Codec::H265,
        .api = Api::Software,
        .vendors = kVendorNone,
        .since = k122,
        .device_pattern = "",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Reopen,
        .rc_property = "",
        .rc_cbr = "", .rc_vbr = "", .rc_cqp = "",
        .qp_property = "qp",
        .min_qp_property = "",
        .max_qp_property = "",
        .qp_max = 51,
        .keyframe_interval_property = "key-int-max",
        .bframes_property = "",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kX265LowLatency,
        .always = {},
        .traps = "Every bitrate change closes and reopens the whole x265 encoder: new VPS/SPS/PPS "
                 "and an IDR each time, so live rate control costs a key frame per step. One mode "
                 "only: ABR on bitrate (no VBV, so not a strict CBR); qp >= 0 switches to CQP, -1 "
                 "back. B-frames, threads and QP limits only through option-string.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },

    // ================================ VP9 ================================
    {
        // Upstream documents it "Since: 1.24" (gstvavp9enc.c).
        .factory = "vavp9enc",
        .codec = Codec::VP9,
        .api = Api::Va,
        .vendors = kVendorIntel | kVendorAmd,
        .since = k124,
        .device_pattern = "varenderD{render}vp9enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Drain,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp",
        .min_qp_property = "min-qp",
        .max_qp_property = "max-qp",
        .qp_max = 255,
        .keyframe_interval_property = "key-int-max",
        .bframes_property = "",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kVaGfLowLatency,
        .always = {},
        .traps = "QPs are VP9 q-index (0-255). rate-control lists only the driver's modes. A bitrate "
                 "change drains and reconfigures. Intel only in practice (AMD has no VP9 encode).",
        .debian_package = "",
    },
    {
        .factory = "qsvvp9enc",
        .codec = Codec::VP9,
        .api = Api::Qsv,
        .vendors = kVendorIntel,
        .since = k122,
        .device_pattern = "qsvvp9device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-i,qp-p",
        .min_qp_property = "",
        .max_qp_property = "",
        .qp_max = 255,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kQsvLowLatency,
        .always = {},
        .traps = "bitrate and max-bitrate stop at 65535 kbit/s. qp-i/qp-p are VP9 q-index, 0 means "
                 "driver default. Needs oneVPL and the Intel media driver.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "vp9enc",
        .codec = Codec::VP9,
        .api = Api::Software,
        .vendors = kVendorNone,
        .since = k122,
        .device_pattern = "",
        .bitrate_property = "target-bitrate",
        .bitrate_units_per_kbps = 1000,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "end-usage",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cq",
        .qp_property = "",
        .min_qp_property = "min-quantizer",
        .max_qp_property = "max-quantizer",
        .qp_max = 63,
        .keyframe_interval_property = "keyframe-max-dist",
        .bframes_property = "",
        .threads_property = "threads",
        .key_unit = KeyUnit::Event,
        // libvpx applies min/max-quantizer through its config-set call on the next frame.
        .steering = Steering::Quantizer,
        .encoder_rate_first = true,
        .speed = {"cpu-used", +1, 9},
        .low_latency = kVp9LowLatency,
        .always = {},
        .many_cores = kVp9ManyCores,
        .many_cores_from = k720p30,
        .traps = "target-bitrate is in bit/s (0 = derived from bits-per-pixel). Defaults are for "
                 "files: deadline 1 s per frame and lag-in-frames 25; live input needs deadline=1. "
                 "No per-frame QP: CQP is a one-value min/max-quantizer range, which libvpx takes "
                 "live like the bitrate.",
        .debian_package = "gstreamer1.0-plugins-good",
    },

    // ================================ H.264 ================================
    {
        .factory = "nvcudah264enc",
        .codec = Codec::H264,
        .api = Api::NvencCuda,
        .vendors = kVendorNvidia,
        .since = k122,
        .until = k124,
        .device_pattern = "nvcudah264device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-i,qp-p,qp-b",
        .min_qp_property = "min-qp-i",
        .max_qp_property = "max-qp-i",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "b-frames",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvCudaLowLatency,
        .always = {},
        .traps = "New NVENC API; rank NONE in 1.22 (PRIMARY+1 in 1.24). Bitrate changes apply in "
                 "place without an IDR where the device reports dynamic bitrate change. b-frames "
                 "and rc-lookahead exist only where the device supports them. Per-device copies are "
                 "numbered among GPUs with NVENC.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "nvh264enc",
        .codec = Codec::H264,
        .api = Api::NvencLegacy,
        .vendors = kVendorNvidia,
        .since = k122,
        .until = k124,
        .device_pattern = "nvh264device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::LiveWithIdr,
        .rc_property = "rc-mode",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "constqp",
        .qp_property = "qp-const",
        .min_qp_property = "qp-min",
        .max_qp_property = "qp-max",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "bframes",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvLegacyLowLatency,
        .always = {},
        .traps = "Old NVENC API (gstnvbaseenc), rank PRIMARY*2. Every bitrate change forces an IDR "
                 "(NvEncReconfigureEncoder). bframes and rc-lookahead exist only where the device "
                 "supports them. Extra GPUs: nvh264device<CUDA ordinal>enc.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        // 1.26: see the H.265 twin. Unverified property names and device pattern.
        .factory = "nvh264enc",
        .codec = Codec::H264,
        .api = Api::NvencCuda,
        .vendors = kVendorNvidia,
        .since = k126,
        .device_pattern = "nvh264device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rc-mode",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-const-i,qp-const-p,qp-const-b",
        .min_qp_property = "qp-min-i,qp-min-p,qp-min-b",
        .max_qp_property = "qp-max-i,qp-max-p,qp-max-b",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "bframes",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvNewLowLatency,
        .always = {},
        .traps = "GStreamer 1.26: the new NVENC API under the old name; bitrate changes apply in "
                 "place. Property names not checked on a 1.26 system.",
        .debian_package = "",
    },
    {
        .factory = "nvautogpuh264enc",
        .codec = Codec::H264,
        .api = Api::NvencAutoGpu,
        .vendors = kVendorNvidia,
        .since = k122,
        .until = k124,
        .device_pattern = "",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-i,qp-p,qp-b",
        .min_qp_property = "min-qp-i",
        .max_qp_property = "max-qp-i",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "b-frames",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvCudaLowLatency,
        .always = {},
        .traps = "New NVENC API, rank NONE; picks its GPU itself (upstream CUDA memory, else the "
                 "first), so it cannot be pinned to a GPU by name.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "nvautogpuh264enc",
        .codec = Codec::H264,
        .api = Api::NvencAutoGpu,
        .vendors = kVendorNvidia,
        .since = k126,
        .device_pattern = "",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rc-mode",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-const-i,qp-const-p,qp-const-b",
        .min_qp_property = "qp-min-i,qp-min-p,qp-min-b",
        .max_qp_property = "qp-max-i,qp-max-p,qp-max-b",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "bframes",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kNvNewLowLatency,
        .always = {},
        .traps = "Picks its GPU itself. Property names not checked on a 1.26 system.",
        .debian_package = "",
    },
    {
        .factory = "vah264enc",
        .codec = Codec::H264,
        .api = Api::Va,
        .vendors = kVendorIntel | kVendorAmd,
        .since = k122,
        .device_pattern = "varenderD{render}h264enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Drain,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qpi,qpp,qpb",
        .min_qp_property = "min-qp",
        .max_qp_property = "max-qp",
        .qp_max = 51,
        .keyframe_interval_property = "key-int-max",
        .bframes_property = "b-frames",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kVaH26xLowLatency,
        .always = {},
        .traps = "Rank NONE: encodebin and webrtcsink never pick it. rate-control lists only the "
                 "modes the driver reports. A bitrate change drains and fully reconfigures. Foreign "
                 "DMABuf input is copied.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "vah264lpenc",
        .codec = Codec::H264,
        .api = Api::VaLowPower,
        .vendors = kVendorIntel | kVendorAmd,
        .since = k122,
        .device_pattern = "varenderD{render}h264lpenc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Drain,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qpi,qpp,qpb",
        .min_qp_property = "min-qp",
        .max_qp_property = "max-qp",
        .qp_max = 51,
        .keyframe_interval_property = "key-int-max",
        .bframes_property = "b-frames",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kVaH26xLowLatency,
        .always = {},
        .traps = "Intel low-power (VDEnc) entry point; fewer rate-control modes. Same traps as "
                 "vah264enc.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "qsvh264enc",
        .codec = Codec::H264,
        .api = Api::Qsv,
        .vendors = kVendorIntel,
        .since = k122,
        .device_pattern = "qsvh264device{n}enc",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "cbr", .rc_vbr = "vbr", .rc_cqp = "cqp",
        .qp_property = "qp-i,qp-p,qp-b",
        .min_qp_property = "min-qp-i,min-qp-p,min-qp-b",
        .max_qp_property = "max-qp-i,max-qp-p,max-qp-b",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "b-frames",
        .threads_property = "",
        .key_unit = KeyUnit::Event,
        .low_latency = kQsvH26xLowLatency,
        .always = {},
        .traps = "Needs oneVPL (libvpl) and the Intel media driver. QP 0 means driver default. A "
                 "bitrate change resets the session in place (MFXVideoENCODE_Reset).",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
    {
        .factory = "x264enc",
        .codec = Codec::H264,
        .api = Api::Software,
        .vendors = kVendorNone,
        .since = k122,
        .device_pattern = "",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "pass",
        .rc_cbr = "cbr", .rc_vbr = "qual", .rc_cqp = "quant",
        .qp_property = "quantizer",
        .min_qp_property = "qp-min",
        .max_qp_property = "qp-max",
        .qp_max = 50,
        .keyframe_interval_property = "key-int-max",
        .bframes_property = "bframes",
        .threads_property = "threads",
        .key_unit = KeyUnit::Event,
        .steering = Steering::Bitrate,
        .low_latency = kX264LowLatency,
        .always = {},
        .many_cores = kX264ManyCores,
        .many_cores_from = k720p30,
        .traps = "pass=cbr is ABR with a VBV of vbv-buf-capacity ms. There is no one-pass VBR: "
                 "pass=qual is CRF (quantizer = CRF value) capped at bitrate; pass1..3 write a stats "
                 "file. quantizer stops at 50. Bitrate changes apply on the next frame "
                 "(x264_encoder_reconfig).",
        .debian_package = "gstreamer1.0-plugins-ugly",
    },
    {
        .factory = "openh264enc",
        .codec = Codec::H264,
        .api = Api::Software,
        .vendors = kVendorNone,
        .since = k122,
        .device_pattern = "",
        .bitrate_property = "bitrate",
        .bitrate_units_per_kbps = 1000,
        .bitrate_change = BitrateChange::Live,
        .rc_property = "rate-control",
        .rc_cbr = "bitrate", .rc_vbr = "quality", .rc_cqp = "quality",
        .qp_property = "",
        .min_qp_property = "qp-min",
        .max_qp_property = "qp-max",
        .qp_max = 51,
        .keyframe_interval_property = "gop-size",
        .bframes_property = "",
        .threads_property = "multi-thread",
        .key_unit = KeyUnit::Event,
        .low_latency = kOpenH264LowLatency,
        .always = {},
        .traps = "bitrate is in bit/s. Constrained baseline only, no B-frames. CQP is a one-value "
                 "qp-min/qp-max range in quality mode. Lower quality per bit than x264.",
        .debian_package = "gstreamer1.0-plugins-bad",
    },
};

}  // namespace

const char* to_string(Codec c) {
  switch (c) {
    case Codec::AV1: return "av1";
    case Codec::H265: return "h265";
    case Codec::VP9: return "vp9";
    case Codec::H264: return "h264";
  }
  return "?";
}

std::optional<Codec> codec_from_string(std::string_view s) {
  std::string lower(s);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (lower == "av1") return Codec::AV1;
  if (lower == "h265" || lower == "hevc" || lower == "h.265") return Codec::H265;
  if (lower == "vp9") return Codec::VP9;
  if (lower == "h264" || lower == "avc" || lower == "h.264") return Codec::H264;
  return std::nullopt;
}

const char* caps_name(Codec c) {
  switch (c) {
    case Codec::AV1: return "video/x-av1";
    case Codec::H265: return "video/x-h265";
    case Codec::VP9: return "video/x-vp9";
    case Codec::H264: return "video/x-h264";
  }
  return "?";
}

const char* parser_factory(Codec c) {
  switch (c) {
    case Codec::AV1: return "av1parse";
    case Codec::H265: return "h265parse";
    case Codec::VP9: return "vp9parse";
    case Codec::H264: return "h264parse";
  }
  return "?";
}

const char* to_string(Api a) {
  switch (a) {
    case Api::Software: return "software";
    case Api::NvencLegacy: return "nvenc-legacy";
    case Api::NvencCuda: return "nvenc";
    case Api::NvencAutoGpu: return "nvenc-autogpu";
    case Api::Va: return "va";
    case Api::VaLowPower: return "va-lowpower";
    case Api::Qsv: return "qsv";
  }
  return "?";
}

const char* to_string(RateControl rc) {
  switch (rc) {
    case RateControl::Cbr: return "cbr";
    case RateControl::Vbr: return "vbr";
    case RateControl::Cqp: return "cqp";
  }
  return "?";
}

const char* to_string(Steering s) {
  switch (s) {
    case Steering::BitrateOnChange: return "bitrate-on-change";
    case Steering::QpMeta: return "qp-meta";
    case Steering::Quantizer: return "quantizer";
    case Steering::Bitrate: return "bitrate";
  }
  return "?";
}

const char* to_string(BitrateChange b) {
  switch (b) {
    case BitrateChange::Live: return "live";
    case BitrateChange::LiveWithIdr: return "live-with-idr";
    case BitrateChange::Reopen: return "reopen";
    case BitrateChange::Drain: return "drain";
    case BitrateChange::Ignored: return "ignored";
  }
  return "?";
}

std::string to_string(GstVersion v) {
  return std::to_string(v.major) + "." + std::to_string(v.minor);
}

std::span<const EncoderEntry> entries() { return kEntries; }

namespace {

// Whether name is a per-device copy of pattern: the text around the placeholder
// matches and the placeholder stands for a non-empty run of digits.
bool matches_pattern(std::string_view pattern, std::string_view name) {
  for (std::string_view placeholder : {std::string_view("{n}"), std::string_view("{render}")}) {
    const auto at = pattern.find(placeholder);
    if (at == std::string_view::npos) continue;
    const std::string_view prefix = pattern.substr(0, at);
    const std::string_view suffix = pattern.substr(at + placeholder.size());
    if (name.size() <= prefix.size() + suffix.size()) return false;
    if (!name.starts_with(prefix) || !name.ends_with(suffix)) return false;
    const std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    for (char ch : digits)
      if (ch < '0' || ch > '9') return false;
    return true;
  }
  return false;
}

template <typename Accept>
const EncoderEntry* find_if_accepted(std::string_view factory, Accept accept) {
  if (factory.empty()) return nullptr;
  for (const auto& e : kEntries)
    if (e.factory == factory && accept(e)) return &e;
  for (const auto& e : kEntries)
    if (!e.device_pattern.empty() && matches_pattern(e.device_pattern, factory) && accept(e)) return &e;
  return nullptr;
}

}  // namespace

const EncoderEntry* find(std::string_view factory) {
  return find_if_accepted(factory, [](const EncoderEntry&) { return true; });
}

const EncoderEntry* find(std::string_view factory, GstVersion version) {
  return find_if_accepted(factory, [&](const EncoderEntry& e) { return e.available_in(version); });
}

std::string device_factory_name(const EncoderEntry& entry, int number) {
  std::string name(entry.device_pattern);
  if (name.empty()) return std::string(entry.factory);
  for (std::string_view placeholder : {std::string_view("{n}"), std::string_view("{render}")}) {
    const auto at = name.find(placeholder);
    if (at != std::string::npos) name.replace(at, placeholder.size(), std::to_string(number));
  }
  return name;
}

std::string_view rc_value(const EncoderEntry& entry, RateControl rc) {
  switch (rc) {
    case RateControl::Cbr: return entry.rc_cbr;
    case RateControl::Vbr: return entry.rc_vbr;
    case RateControl::Cqp: return entry.rc_cqp;
  }
  return {};
}

bool supports(const EncoderEntry& entry, RateControl rc) {
  const bool can_cqp = !entry.qp_property.empty() ||
                       (!entry.min_qp_property.empty() && !entry.max_qp_property.empty());
  if (entry.rc_property.empty())
    return rc == RateControl::Cqp ? can_cqp : !entry.bitrate_property.empty();
  if (rc_value(entry, rc).empty()) return false;
  return rc != RateControl::Cqp || can_cqp;
}

namespace {

// Debian 12 package of the other elements our pipelines use (the encoders are in
// kEntries above), for "install X" messages when one is missing. One entry per line:
// tests/deps/check_deps.py reads this table, checks it against dpkg -S and that it
// covers every element tools/ names.
constexpr std::pair<std::string_view, std::string_view> kElementPackages[] = {
    {"capsfilter", "libgstreamer1.0-0"},
    {"clocksync", "libgstreamer1.0-0"},
    {"fakesink", "libgstreamer1.0-0"},
    {"filesink", "libgstreamer1.0-0"},
    {"filesrc", "libgstreamer1.0-0"},
    {"identity", "libgstreamer1.0-0"},
    {"queue", "libgstreamer1.0-0"},
    {"tee", "libgstreamer1.0-0"},
    {"appsink", "gstreamer1.0-plugins-base"},
    {"appsrc", "gstreamer1.0-plugins-base"},
    {"decodebin", "gstreamer1.0-plugins-base"},
    {"rawvideoparse", "gstreamer1.0-plugins-base"},
    {"videoconvert", "gstreamer1.0-plugins-base"},
    {"videorate", "gstreamer1.0-plugins-base"},
    {"videoscale", "gstreamer1.0-plugins-base"},
    {"videotestsrc", "gstreamer1.0-plugins-base"},
    {"clockoverlay", "gstreamer1.0-x"},
    {"textoverlay", "gstreamer1.0-x"},
    {"timeoverlay", "gstreamer1.0-x"},
    {"autovideosink", "gstreamer1.0-plugins-good"},
    {"matroskamux", "gstreamer1.0-plugins-good"},
    {"rtpbin", "gstreamer1.0-plugins-good"},
    {"rtph264pay", "gstreamer1.0-plugins-good"},
    {"rtph265pay", "gstreamer1.0-plugins-good"},
    {"rtpjitterbuffer", "gstreamer1.0-plugins-good"},
    {"rtpvp9pay", "gstreamer1.0-plugins-good"},
    {"udpsink", "gstreamer1.0-plugins-good"},
    {"udpsrc", "gstreamer1.0-plugins-good"},
    {"v4l2src", "gstreamer1.0-plugins-good"},
    {"webmmux", "gstreamer1.0-plugins-good"},
    {"av1dec", "gstreamer1.0-plugins-bad"},
    {"av1parse", "gstreamer1.0-plugins-bad"},
    {"dtlssrtpenc", "gstreamer1.0-plugins-bad"},
    {"h264parse", "gstreamer1.0-plugins-bad"},
    {"h265parse", "gstreamer1.0-plugins-bad"},
    {"vp9parse", "gstreamer1.0-plugins-bad"},
    {"webrtcbin", "gstreamer1.0-plugins-bad"},
    {"y4mdec", "gstreamer1.0-plugins-bad"},
    {"nicesink", "gstreamer1.0-nice"},
    {"nicesrc", "gstreamer1.0-nice"},
    {"avdec_h264", "gstreamer1.0-libav"},
};

}  // namespace

std::string_view debian_package_for_element(std::string_view factory) {
  for (const auto& [element, package] : kElementPackages)
    if (element == factory) return package;
  if (const EncoderEntry* e = find(factory)) return e->debian_package;
  return {};
}

std::string missing_element_advice(std::string_view factory) {
  const std::string name(factory);
  const std::string_view package = debian_package_for_element(factory);
  if (package.empty()) return "element " + name + " is missing: no Debian package known for it (gst-inspect-1.0 " + name + ")";
  const std::string pkg(package);
  return "element " + name + " is missing: install the Debian package " + pkg + " (apt-get install " + pkg +
         ", or scripts/install-deps)";
}

std::string_view debian_package_for(Codec c) {
  switch (c) {
    case Codec::AV1: return "gstreamer1.0-plugins-bad";    // av1enc
    case Codec::H265: return "gstreamer1.0-plugins-bad";   // x265enc
    case Codec::VP9: return "gstreamer1.0-plugins-good";   // vp9enc
    case Codec::H264: return "gstreamer1.0-plugins-ugly";  // x264enc
  }
  return {};
}

}  // namespace ccm::catalog
