// Ranking: joins the catalogue, the detected hardware and what the GStreamer
// registry really has into an ordered list of candidates for one codec, with the
// reason for every element passed over. Pure function; the registry is a callback.
#pragma once

#include "catalog/catalog.h"
#include "hw/gpu.h"

#include <functional>
#include <span>
#include <string>
#include <vector>

namespace ccm::catalog {

enum class HardwarePolicy { Auto, HardwareOnly, SoftwareOnly };

struct RankRequest {
  Codec codec = Codec::H264;
  HardwarePolicy policy = HardwarePolicy::Auto;
  int gpu = -1;                              // -1 = choose; else index into `gpus`
  std::span<const hw::GpuInfo> gpus;
  GstVersion gst_version{1, 22};
  // True when the registry has an element factory of this name.
  std::function<bool(std::string_view factory)> has_factory;
  // User override of the order (factory names). Unknown names are kept (configured
  // through the properties they do have); names for another codec are passed over.
  std::span<const std::string> candidates;
};

struct Candidate {
  std::string factory;                 // the element to create ("nvh265device1enc")
  const EncoderEntry* entry = nullptr; // catalogue entry (nullptr for unknown user candidates)
  int gpu = -1;                        // index into RankRequest::gpus, -1 for software
  bool hardware = false;
};

struct PassedOver {
  std::string factory;
  std::string reason;                  // "not in this GStreamer's registry (needs 1.24)", ...
};

struct Ranking {
  std::vector<Candidate> candidates;   // best first
  std::vector<PassedOver> passed_over; // better-ranked entries that were not taken, with why
};

Ranking rank(const RankRequest& request);

}  // namespace ccm::catalog
