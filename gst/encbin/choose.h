// Choosing the encoder: the codec downstream takes, the catalogue's ranking of
// the candidates, and the walk that tries them in order (test encode, cached;
// then a session on this input); at the first caps, the first that works, or
// an error that names the fix.
#pragma once

#include "encbin/encbin_private.h"

#include <memory>
#include <string>
#include <vector>

namespace ccm::encbin {

// The catalogue's candidates for `codec` under the settings (hardware, gpu, candidates).
ccm::catalog::Ranking rank_for(Codec codec, const Settings& s);
// The first candidate that passes its test encode and takes this input, as a
// running session; every one not taken is added to `passed` with its reason.
std::shared_ptr<Session> ccm_enc_bin_walk(Self* self, std::vector<ccm::catalog::Candidate> cands, Codec codec,
                                          const Settings& s, GstCaps* caps, std::vector<std::string>& passed);
// At the first caps: codec, encoder and the session in use; false after posting the error.
bool ccm_enc_bin_start(Self* self, GstCaps* input_caps);

}  // namespace ccm::encbin
