// TEST DOUBLES ONLY. No hardware encoder runs on the machines that test gst-ccm,
// so hardware selection is tested with stand-in elements registered under the
// real element names (nvh265enc, vah265enc …). Each declares itself a hardware
// encoder (klass Codec/Encoder/Video/Hardware), wraps a real software encoder so
// its output is a real bitstream, and says in its description that it is a double.
#pragma once

#include <gst/gst.h>

namespace ccm::test {

// Registers `factory_name` (e.g. "nvh265enc") as a test double wrapping
// `inner_factory` (e.g. "x265enc", whose bitrate is in kbit/s), with a `bitrate`
// property in kbit/s. Returns false if the inner encoder is missing.
bool register_hardware_double(const char* factory_name, const char* inner_factory);

}  // namespace ccm::test
