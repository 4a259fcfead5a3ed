// One session: an encoder in use (or ready to be) with the elements around it
// in the bin, our pads on both ends and a thread that pushes into it. Building
// one is a chain of steps (session.cpp): the encoder, the elements around it,
// our pads, into the bin and linked, the stream so far pushed in, the pusher.
#pragma once

#include "encbin/encbin_private.h"
#include "encbin/encoder_setup.h"

#include <memory>
#include <string>

namespace ccm::encbin {

// The candidate's element with every unified setting applied (floating).
GstElement* create_encoder(const ccm::catalog::Candidate& cand, Codec codec, const Settings& s, GstCaps* caps,
                           ccm::gst::SetupReport* report);
// A running session on this input; nullptr and the reason when the candidate cannot take it.
std::shared_ptr<Session> ccm_enc_bin_make_session(Self* self, const ccm::catalog::Candidate& cand, Codec codec,
                                                  const Settings& s, GstCaps* input_caps, std::string* why);

}  // namespace ccm::encbin
