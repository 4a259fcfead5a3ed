// main() of the element tests that need nothing of their own: GoogleTest, then
// GStreamer with the ccm plugin registered statically, and GStreamer shut down
// after the run (so sanitizers see only what the tests leaked).
#include <gtest/gtest.h>

#include "pipeline_util.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ccm::test::init_gstreamer(&argc, &argv);
  const int rc = RUN_ALL_TESTS();
  gst_deinit();
  return rc;
}
