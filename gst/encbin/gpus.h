// Where on the machine a session goes: the GPUs as ccmencbin names them, their
// load (live sessions in every process, then NVML's encoder utilisation) and the
// order of hardware candidates by it; and what nvcodec registered, to explain
// an NVIDIA GPU without NVIDIA encoders.
#pragma once

#include "encbin/encbin_private.h"

#include <map>
#include <string>
#include <vector>

namespace ccm::encbin {

// "cpu" or the GPU as ccm::hw describes it, for messages.
std::string gpu_description(int gpu);
// The candidate's device as the probe cache keys it: "<pci address> <name>", "cpu".
std::string device_of(const ccm::catalog::Candidate& c);
// The GPU's key in the session registry (its PCI address); "" for none.
std::string gpu_key(int gpu);
bool any_hardware(const std::vector<ccm::catalog::Candidate>& cands);
// Hardware candidates first, least loaded GPU first; see gpus.cpp.
void order_by_load(std::vector<ccm::catalog::Candidate>& cands, const std::map<std::string, int>& sessions);
// nvcodec's elements when it has no encoder on an NVIDIA machine; "" otherwise.
std::string ccm_enc_bin_nvcodec_note();

}  // namespace ccm::encbin
