// TEST DOUBLES ONLY. No hardware encoder runs on the machines that test gst-ccm,
// so hardware selection is tested with stand-in elements registered under the
// real element names (nvh265enc, vah265enc …). Each declares itself a hardware
// encoder (klass Codec/Encoder/Video/Hardware), wraps a real software encoder so
// its output is a real bitstream, and says in its description that it is a double.
//
// A double can be told to misbehave the way hardware encoders do, per factory
// name: refuse to open a session, hit a session limit, fail after N frames, stop
// producing output, hang inside a push, or be slow. Behaviours are read when an
// instance is created (so a running instance keeps its own), from
// set_double_behaviour() or from the environment variable CCM_TEST_DOUBLES,
// e.g. "nvh265enc:fail-after=50;vah265enc:refuse;nvh265device1enc:max-sessions=2,slow-ms=3".
// Registered under a name of its own ("ccmtestwedgeenc", a name no real element has)
// a double with wedge-after is the encoder that never comes back.
#pragma once

#include <gst/gst.h>

#include <string>
#include <string_view>

namespace ccm::test {

struct DoubleBehaviour {
  bool refuse_open = false;  // "refuse": an element error and a refused CAPS event (no session opens)
  int max_sessions = -1;     // "max-sessions=N": the (N+1)-th open session of this factory in the process is refused
  int fail_after = -1;       // "fail-after=N": frame N+1 posts an element error and returns GST_FLOW_ERROR
  int stall_after = -1;      // "stall-after=N": later frames are taken and never come out (a hung output thread)
  int hang_after = -1;       // "hang-after=N": frame N+1 blocks inside the push until the element is flushed
  int slow_ms = 0;           // "slow-ms=N": every frame takes N ms longer
  // "wedge-after=N": frame N+1 (counted per instance, a test encode's frame included)
  // blocks inside the push for ever, as a driver call that never returns: flushes are
  // swallowed (never reach the encoder inside), and every state change of the element
  // after that blocks too. Only release_wedged_doubles() (or the end of the process)
  // frees it, so a test can leave it behind and still exit.
  int wedge_after = -1;
  // "wedge-on-stop": going down from PAUSED blocks for ever (a device close that never
  // returns), whatever came before; freed as wedge-after is.
  bool wedge_on_stop = false;
  // Settings of the encoder inside, after the catalogue's ("speed-preset=slow"): a
  // double whose stream differs from the real encoder's (parameter sets, codec_data,
  // profile), as another vendor's would. Space-separated property=value.
  std::string inner_settings;
  // Settings of the encoder inside that change each time it starts, as a device whose
  // driver picks its stream configuration per session: "|"-separated sets of the
  // inner_settings syntax; the N-th start (READY to PAUSED) of this factory in the
  // process, a test encode's included, takes set N modulo their count. So a test
  // encode and the session after it, or a restart, emit other parameter sets,
  // codec_data and profile ("speed-preset=ultrafast|speed-preset=slower").
  std::string settings_per_start;
};

// Registers `factory_name` (e.g. "nvh265enc") as a test double wrapping
// `inner_factory` (e.g. "x265enc", whose bitrate is in kbit/s), with a `bitrate`
// property in kbit/s. Returns false if the inner encoder is missing.
// `plugin` may be nullptr (registered by the program itself).
bool register_hardware_double(const char* factory_name, const char* inner_factory, GstPlugin* plugin = nullptr);

void set_double_behaviour(const std::string& factory, const DoubleBehaviour& behaviour);
// Frees every wedged double (wedge-after, wedge-on-stop) of the process, for good; and
// how many have wedged so far.
void release_wedged_doubles();
int wedged_doubles();
void clear_double_behaviours();
// Parses the CCM_TEST_DOUBLES syntax and sets what it names; false on a syntax error.
bool parse_double_behaviours(std::string_view spec);

// Instances of the double created so far (test encodes included), and sessions open now.
int double_instances(const std::string& factory);
// Starts (READY to PAUSED) of the double so far, test encodes included.
int double_starts(const std::string& factory);
int double_open_sessions(const std::string& factory);

}  // namespace ccm::test
