// Ranking: catalogue order x detected GPUs x registry, with a reason for every
// element passed over.
//
// Per-GPU element names follow what the plugins do when they register:
// - old NVENC (gstnvbaseenc): the first GPU with NVENC gets the plain name, every
//   other one "<codec>device<CUDA ordinal>enc";
// - new NVENC API and Quick Sync: the k-th GPU that registered the element
//   (k from 0) gets the plain name for k = 0, "...device<k>enc" otherwise, so a GPU
//   without an encoder shifts the numbers of the ones after it;
// - VA: the first render node that VA can open gets the plain name, the others
//   "varenderD<minor>...". We take the lowest Intel/AMD render node as the first;
//   where another driver (nvidia-vaapi-driver) opens a lower node, the plain name is
//   missing and the render-node form is tried instead.

#include "catalog/rank.h"

#include <algorithm>
#include <optional>
#include <set>

namespace ccm::catalog {

namespace {

using hw::GpuInfo;
using hw::GpuVendor;

const char* vendor_name(GpuVendor v) {
  switch (v) {
    case GpuVendor::Nvidia: return "NVIDIA";
    case GpuVendor::Intel: return "Intel";
    case GpuVendor::Amd: return "AMD";
  }
  return "?";
}

unsigned vendor_bit(GpuVendor v) {
  switch (v) {
    case GpuVendor::Nvidia: return kVendorNvidia;
    case GpuVendor::Intel: return kVendorIntel;
    case GpuVendor::Amd: return kVendorAmd;
  }
  return kVendorNone;
}

std::string vendors_text(unsigned vendors) {
  std::string out;
  for (GpuVendor v : {GpuVendor::Nvidia, GpuVendor::Intel, GpuVendor::Amd}) {
    if (!(vendors & vendor_bit(v))) continue;
    if (!out.empty()) out += " or ";
    out += vendor_name(v);
  }
  return out;
}

std::string gpu_label(const GpuInfo& gpu) {
  if (!gpu.name.empty()) return gpu.name;
  return std::string(vendor_name(gpu.vendor)) + " GPU " + gpu.pci_address;
}

bool can_encode(const GpuInfo& gpu) { return gpu.has_encoder.value_or(true); }

std::string no_encoder_reason(const GpuInfo& gpu) {
  return gpu_label(gpu) + " has no hardware encoder" +
         (gpu.vendor == GpuVendor::Nvidia ? " (NVENC)" : "");
}

std::string version_reason(const EncoderEntry& e, GstVersion v) {
  if (v < e.since) return "not in this GStreamer (needs " + to_string(e.since) + ")";
  return "not in this GStreamer (last in " + to_string(*e.until) + ")";
}

std::string registry_reason(const EncoderEntry& e) {
  std::string why = "element not in the registry";
  if (e.factory.starts_with("ccm")) return why + " (gst-ccm was built without it)";
  if (e.debian_package.empty()) return why + " (not packaged in Debian 12)";
  if (!e.hardware()) return why + " (install " + std::string(e.debian_package) + ")";
  return why + " (needs " + std::string(e.debian_package) + " and a working " + vendors_text(e.vendors) +
         " driver)";
}

std::string gpu_requested(int k) { return "gpu=" + std::to_string(k) + " requested"; }

// One element an entry offers for one GPU.
struct DeviceSlot {
  int gpu = -1;                  // index into the request's GPUs, -1 for nvautogpu
  std::string name;              // the name the plugin should have given it
  std::string other_name;        // the name it has if our guess of the order is off
  std::string skip;              // non-empty: passed over with this reason
};

// GPU indices of the entry's vendors, sorted by key(gpu).
template <typename Key>
std::vector<int> vendor_gpus(const RankRequest& req, unsigned vendors, Key key) {
  std::vector<int> out;
  for (int i = 0; i < static_cast<int>(req.gpus.size()); ++i)
    if (vendors & vendor_bit(req.gpus[i].vendor)) out.push_back(i);
  std::stable_sort(out.begin(), out.end(),
                   [&](int a, int b) { return key(req.gpus[a]) < key(req.gpus[b]); });
  return out;
}

std::vector<DeviceSlot> device_slots(const EncoderEntry& e, const RankRequest& req) {
  std::vector<DeviceSlot> slots;
  switch (e.api) {
    case Api::NvencLegacy:
    case Api::NvencCuda: {
      bool first = true;
      int registered = 0;
      for (int i : vendor_gpus(req, e.vendors, [](const GpuInfo& g) { return g.vendor_index; })) {
        const GpuInfo& gpu = req.gpus[i];
        DeviceSlot s{.gpu = i};
        if (!can_encode(gpu)) {
          s.name = std::string(e.factory);  // the plugin registers nothing for it
          s.skip = no_encoder_reason(gpu);
        } else if (first) {
          s.name = std::string(e.factory);
          first = false;
        } else {
          s.name = device_factory_name(e, e.api == Api::NvencLegacy ? gpu.vendor_index : registered);
        }
        if (can_encode(gpu)) ++registered;
        slots.push_back(std::move(s));
      }
      break;
    }
    case Api::NvencAutoGpu: {
      std::string reasons;
      bool any = false;
      const auto nvidia = vendor_gpus(req, e.vendors, [](const GpuInfo& g) { return g.vendor_index; });
      if (nvidia.empty()) break;
      for (int i : nvidia) {
        if (can_encode(req.gpus[i])) {
          any = true;
        } else {
          reasons += (reasons.empty() ? "" : "; ") + no_encoder_reason(req.gpus[i]);
        }
      }
      slots.push_back(DeviceSlot{.gpu = -1, .name = std::string(e.factory), .skip = any ? "" : reasons});
      break;
    }
    case Api::Va:
    case Api::VaLowPower: {
      // Without a render node VA cannot open the device; such GPUs sort last.
      auto order = vendor_gpus(req, e.vendors, [](const GpuInfo& g) {
        return g.render_minor >= 0 ? g.render_minor : 1 << 30;
      });
      bool first = true;
      for (int i : order) {
        const GpuInfo& gpu = req.gpus[i];
        DeviceSlot s{.gpu = i};
        const std::string per_device = device_factory_name(e, gpu.render_minor);
        if (gpu.render_minor < 0) {
          s.name = std::string(e.factory);
          s.skip = gpu_label(gpu) + " has no DRM render node";
        } else {
          s.name = first ? std::string(e.factory) : per_device;
          // Only this direction can be told from the registry alone: when another
          // driver owns VA device 0 the plain name does not exist at all.
          if (first) s.other_name = per_device;
          first = false;
          if (!can_encode(gpu)) s.skip = no_encoder_reason(gpu);
        }
        slots.push_back(std::move(s));
      }
      break;
    }
    case Api::Qsv: {
      // oneVPL sessions come from VA displays, so devices follow render node order.
      auto order = vendor_gpus(req, e.vendors, [](const GpuInfo& g) {
        return std::pair(g.render_minor >= 0 ? g.render_minor : 1 << 30, g.vendor_index);
      });
      int registered = 0;
      for (int i : order) {
        const GpuInfo& gpu = req.gpus[i];
        DeviceSlot s{.gpu = i};
        if (gpu.render_minor < 0) {
          s.name = std::string(e.factory);
          s.skip = gpu_label(gpu) + " has no DRM render node";
        } else if (!can_encode(gpu)) {
          s.name = std::string(e.factory);
          s.skip = no_encoder_reason(gpu);
        } else {
          s.name = registered == 0 ? std::string(e.factory) : device_factory_name(e, registered);
          ++registered;
        }
        slots.push_back(std::move(s));
      }
      break;
    }
    case Api::Software:
      break;
  }
  // Within an entry, candidates follow the order of the detected GPUs.
  std::stable_sort(slots.begin(), slots.end(),
                   [](const DeviceSlot& a, const DeviceSlot& b) { return a.gpu < b.gpu; });
  return slots;
}

class Walk {
 public:
  explicit Walk(const RankRequest& req) : req_(req) {}

  void take(std::string factory, const EncoderEntry* entry, int gpu, bool hardware) {
    if (!taken_.insert(factory).second) return;
    steps_.push_back(Step{Candidate{std::move(factory), entry, gpu, hardware}, {}});
  }
  void pass(std::string factory, std::string reason) {
    steps_.push_back(Step{std::nullopt, PassedOver{std::move(factory), std::move(reason)}});
  }
  bool has(std::string_view factory) const { return req_.has_factory && req_.has_factory(factory); }
  bool taken(const std::string& factory) const { return taken_.contains(factory); }

  void hardware_entry(const EncoderEntry& e);
  void software_entry(const EncoderEntry& e);
  void user_candidate(const std::string& name);

  // Passed-over entries of the catalogue order count only while they rank above the
  // last candidate kept; every name of a user's list is accounted for.
  Ranking finish(bool keep_all_passed) && {
    Ranking out;
    std::size_t end = steps_.size();
    for (std::size_t i = steps_.size(); !keep_all_passed && i-- > 0;)
      if (steps_[i].candidate) {
        end = i;
        break;
      }
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      if (steps_[i].candidate)
        out.candidates.push_back(std::move(*steps_[i].candidate));
      else if (i < end)
        out.passed_over.push_back(std::move(steps_[i].passed));
    }
    return out;
  }

 private:
  struct Step {
    std::optional<Candidate> candidate;
    PassedOver passed;
  };

  // Another entry of the same name is valid in this version (nvh265enc changed API
  // in 1.26): then the out-of-range one is no news to anybody.
  bool name_served_elsewhere(const EncoderEntry& e) const {
    for (const auto& other : entries())
      if (&other != &e && other.factory == e.factory && other.available_in(req_.gst_version)) return true;
    return false;
  }
  // Common gates; false when the entry was passed over as a whole.
  bool entry_usable(const EncoderEntry& e) {
    if (!e.available_in(req_.gst_version)) {
      if (!name_served_elsewhere(e)) pass(std::string(e.factory), version_reason(e, req_.gst_version));
      return false;
    }
    if (e.hardware() && req_.policy == HardwarePolicy::SoftwareOnly) {
      pass(std::string(e.factory), "hardware=software-only");
      return false;
    }
    if (!e.hardware() && req_.policy == HardwarePolicy::HardwareOnly) {
      pass(std::string(e.factory), "hardware=hardware-only");
      return false;
    }
    return true;
  }

  const RankRequest& req_;
  std::vector<Step> steps_;
  std::set<std::string, std::less<>> taken_;
};

void Walk::hardware_entry(const EncoderEntry& e) {
  if (!entry_usable(e)) return;
  const int k = req_.gpu;
  if (k >= static_cast<int>(req_.gpus.size())) {
    pass(std::string(e.factory),
         gpu_requested(k) + " but " + std::to_string(req_.gpus.size()) + " GPU(s) detected");
    return;
  }
  std::vector<DeviceSlot> slots = device_slots(e, req_);
  if (slots.empty()) {
    pass(std::string(e.factory), "no " + vendors_text(e.vendors) + " GPU detected");
    return;
  }
  if (k >= 0 && !(e.vendors & vendor_bit(req_.gpus[k].vendor))) {
    pass(std::string(e.factory), gpu_requested(k) + " (" + gpu_label(req_.gpus[k]) + ")");
    return;
  }
  for (const DeviceSlot& s : slots) {
    if (k >= 0 && s.gpu != k) {
      pass(s.name, s.gpu < 0 ? gpu_requested(k) + " (" + std::string(e.factory) + " picks its own GPU)"
                             : gpu_requested(k));
      continue;
    }
    if (!s.skip.empty()) {
      pass(s.name, s.skip);
      continue;
    }
    if (has(s.name) && !taken(s.name)) {
      take(s.name, &e, s.gpu, true);
    } else if (!s.other_name.empty() && has(s.other_name) && !taken(s.other_name)) {
      take(s.other_name, &e, s.gpu, true);
    } else {
      pass(s.name, registry_reason(e));
    }
  }
}

void Walk::software_entry(const EncoderEntry& e) {
  if (!entry_usable(e)) return;
  if (has(e.factory))
    take(std::string(e.factory), &e, -1, false);
  else
    pass(std::string(e.factory), registry_reason(e));
}

// The GPU a known hardware element name stands for, -1 when it cannot be told.
int gpu_of(const EncoderEntry& e, const RankRequest& req, std::string_view name) {
  for (const DeviceSlot& s : device_slots(e, req))
    if (s.skip.empty() && (s.name == name || s.other_name == name)) return s.gpu;
  return -1;
}

void Walk::user_candidate(const std::string& name) {
  const EncoderEntry* e = find(name, req_.gst_version);
  if (e && e->codec != req_.codec) {
    pass(name, std::string("encodes ") + to_string(e->codec) + ", not " + to_string(req_.codec));
    return;
  }
  if (!has(name)) {
    pass(name, "no such element in the registry");
    return;
  }
  if (e && e->hardware() && req_.policy == HardwarePolicy::SoftwareOnly) {
    pass(name, "hardware=software-only");
    return;
  }
  if (e && !e->hardware() && req_.policy == HardwarePolicy::HardwareOnly) {
    pass(name, "hardware=hardware-only");
    return;
  }
  const bool hardware = e && e->hardware();
  take(name, e, hardware ? gpu_of(*e, req_, name) : -1, hardware);
}

}  // namespace

Ranking rank(const RankRequest& request) {
  Walk walk(request);
  if (!request.candidates.empty()) {
    for (const std::string& name : request.candidates) walk.user_candidate(name);
    return std::move(walk).finish(true);
  }
  for (const EncoderEntry& e : entries())
    if (e.codec == request.codec && e.hardware()) walk.hardware_entry(e);
  for (const EncoderEntry& e : entries())
    if (e.codec == request.codec && !e.hardware()) walk.software_entry(e);
  return std::move(walk).finish(false);
}

}  // namespace ccm::catalog
