// libFuzzer target: the dynamic_params parser (docs/dynamic-params.md).
// Any byte string either parses (a 3-byte form or a "CCMP" blob) or gives an
// error naming an offset inside the blob; whatever parses re-encodes to a canonical blob that parses to the same
// value, and merging it into itself changes nothing.
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <span>
#include <vector>

#include "params/dynamic_params.h"

namespace {
void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_dynamic_params: %s\n", what);
  std::abort();
}

// Header plus three one-byte entries of two bytes' framing each.
bool encode_dynamic_params_size_ok(const std::vector<uint8_t>& canonical) {
  return canonical.size() == ccm::kDynamicParamsHeaderSize + 3 * 3;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> blob(data, size);
  const ccm::DynamicParamsResult parsed = ccm::parse_dynamic_params(blob);
  if (!parsed) {
    const auto& error = parsed.error();
    // The offset points at the byte at fault, or one past the end for a blob cut short.
    check(error.offset <= size, "error offset beyond the blob");
    check(!error.message.empty(), "error without a message");
    return 0;
  }
  const ccm::DynamicParams& params = parsed.value();
  const auto canonical = ccm::encode_dynamic_params(params);
  const auto again = ccm::parse_dynamic_params(canonical);
  check(again.has_value(), "the canonical blob of a parsed value does not parse");
  check(again.value() == params, "the canonical blob parses to another value");
  if (size == ccm::kSeedParamsSize) {
    // The design's 3-byte form: its three fields, each as given.
    check(params.ultra_low_latency && params.b_frames && params.max_quantizer, "3-byte form lost a field");
    check(*params.ultra_low_latency == (data[0] != 0) && *params.b_frames == data[1] &&
              *params.max_quantizer == data[2],
          "3-byte form misread");
    check(encode_dynamic_params_size_ok(canonical), "canonical blob of a 3-byte form has a wrong size");
  } else {
    check(canonical.size() <= size, "the canonical blob is longer than the input it came from");
  }
  check(ccm::encode_dynamic_params(again.value()) == canonical, "encoding is not canonical");

  ccm::DynamicParams merged = params;
  merged.merge(params);
  check(merged == params, "merging a value into itself changed it");
  ccm::DynamicParams empty;
  empty.merge(params);
  check(empty == params, "merging into an empty value lost fields");
  check(params.empty() == (canonical.size() <= ccm::kDynamicParamsHeaderSize), "empty() disagrees with the blob");
  if (params.min_quantizer && params.max_quantizer)
    check(*params.min_quantizer <= *params.max_quantizer, "min_quantizer above max_quantizer accepted");
  for (int key = 0; key < 256; ++key) (void)ccm::param_key_name(static_cast<uint8_t>(key));
  return 0;
}
