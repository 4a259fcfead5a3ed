// Keeping the stream going when an encoder does not: a session's health (errors,
// stalls), failing over to the next candidate with the frames not out yet, the
// standby candidate, switching when settings that choose the encoder change while
// PLAYING, and retiring sessions, including encoders that never return (left
// behind, bounded, said on the bus).
#pragma once

#include "encbin/encbin_private.h"

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace ccm::encbin {

// stall-timeout scaled to the frame size (us); 0 = never.
gint64 stall_bound_us(const Self::Private* p);
// Says on the bus that an encoder never returned, and counts it.
void ccm_enc_bin_left_behind(Self* self, const std::string& factory, const std::string& why,
                             bool finalizing = false);
// Takes a session out of the bin and out of service (lock not held).
void ccm_enc_bin_retire(Self* self, const std::shared_ptr<Session>& s);
// Waits until `done` (lock held through `lk`), failing over meanwhile; false
// when flushing or when nothing is left.
bool ccm_enc_bin_wait(Self* self, std::unique_lock<std::mutex>& lk, const std::function<bool()>& done);
// Prepares the next candidate in the background (standby=true).
void ccm_enc_bin_build_standby(Self* self);
// A switch requested by a setting: at this frame boundary.
void ccm_enc_bin_switch(Self* self);
// Everything back to before the first caps (PAUSED to READY, finalize).
void ccm_enc_bin_teardown(Self* self, bool finalizing = false);

}  // namespace ccm::encbin
