// A ccm_status with its message: what every internal step of libccm returns,
// so the C entry points only have to record it.
#pragma once

#include <string>

#include "ccm/ccm.h"

namespace ccm::api {

struct Status {
  ccm_status code = CCM_OK;
  std::string message;

  static Status ok() { return {}; }
  bool is_ok() const { return code == CCM_OK; }
};

inline Status fail(ccm_status code, std::string message) { return {code, std::move(message)}; }

}  // namespace ccm::api
