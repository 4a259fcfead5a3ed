// ccmdmabuf allocator and ccmdmabufpool: plane layout for every raw format,
// config validation, backend fallback, mlock/NUMA fallbacks, fd exhaustion,
// leak-free cycling, and pipelines where videotestsrc writes straight into our
// memory and the encoder reads that very memory.
//
// `test_dmabufpool` runs everything but the Backend.* suite.
// `test_dmabufpool --backend=NAME` forces NAME (dma-heap, udmabuf, memfd) through
// CCM_DMABUF_BACKEND and runs Backend.*; it exits 77 (skipped) when the device
// node is missing.
#include "pipeline_util.h"

#include "memory/backends.h"
#include "memory/ccmdmabufallocator.h"
#include "memory/ccmdmabufpool.h"
#include "memory/video_layout.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gst/allocators/allocators.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace {

using ccm::memory::AllocatorOptions;
using ccm::memory::AllocResult;
using ccm::memory::Backend;
using ccm::memory::BackendKind;

std::string g_forced_backend;  // set by --backend=NAME

// ---- helpers -----------------------------------------------------------------------

int count_open_fds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n++;
  return n;
}

// Mappings of our memfds (named "ccmdmabuf"); other threads and the sanitizer
// runtime map memory of their own at any time.
int count_mappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find("/memfd:ccmdmabuf") != std::string::npos) n++;
  return n;
}

guint64 u64(const GstStructure* s, const char* field) {
  guint64 v = 0;
  if (s) gst_structure_get_uint64(s, field, &v);
  return v;
}

std::string str(const GstStructure* s, const char* field) {
  const gchar* v = s ? gst_structure_get_string(s, field) : nullptr;
  return v ? v : "";
}

// Owns a GstStructure.
struct Structure {
  GstStructure* s = nullptr;
  explicit Structure(GstStructure* take) : s(take) {}
  ~Structure() {
    if (s) gst_structure_free(s);
  }
  Structure(const Structure&) = delete;
  Structure& operator=(const Structure&) = delete;
  const GstStructure* get() const { return s; }
};

GstCaps* video_caps(const char* format, int width, int height) {
  return gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, format, "width", G_TYPE_INT, width, "height",
                             G_TYPE_INT, height, "framerate", GST_TYPE_FRACTION, 30, 1, nullptr);
}

// A configured (not yet active) ccmdmabufpool; `tweak` edits the config first.
GstBufferPool* make_pool(const char* format, int width, int height, guint min_buffers, guint max_buffers,
                         const std::function<void(GstStructure*)>& tweak = {}, bool* configured = nullptr) {
  GstBufferPool* pool = ccm_dmabuf_pool_new();
  GstStructure* config = gst_buffer_pool_get_config(pool);
  GstCaps* caps = video_caps(format, width, height);
  GstVideoInfo info;
  gst_video_info_from_caps(&info, caps);
  gst_buffer_pool_config_set_params(config, caps, (guint)info.size, min_buffers, max_buffers);
  gst_buffer_pool_config_add_option(config, GST_BUFFER_POOL_OPTION_VIDEO_META);
  gst_caps_unref(caps);
  if (tweak) tweak(config);
  const bool ok = gst_buffer_pool_set_config(pool, config);
  if (configured) *configured = ok;
  return pool;
}

// Collects log lines of one debug category at or above a level while alive.
class LogCapture {
 public:
  LogCapture(const char* category, GstDebugLevel level) : category_(category) {
    gst_debug_set_threshold_for_name(category, level);
    gst_debug_add_log_function(&LogCapture::on_log, this, nullptr);
  }
  ~LogCapture() {
    gst_debug_remove_log_function_by_data(this);
    gst_debug_unset_threshold_for_name(category_.c_str());
  }
  std::vector<std::string> lines() {
    std::lock_guard lock(mutex_);
    return lines_;
  }
  int count(const std::string& needle) {
    int n = 0;
    for (const auto& l : lines())
      if (l.find(needle) != std::string::npos) n++;
    return n;
  }
  bool has(const std::string& needle) { return count(needle) > 0; }

 private:
  static void on_log(GstDebugCategory* cat, GstDebugLevel level, const gchar*, const gchar*, gint, GObject*,
                     GstDebugMessage* message, gpointer user) {
    auto* self = static_cast<LogCapture*>(user);
    if (self->category_ != gst_debug_category_get_name(cat)) return;
    if (level > gst_debug_category_get_threshold(cat)) return;
    std::lock_guard lock(self->mutex_);
    self->lines_.push_back(std::string(gst_debug_level_get_name(level)) + " " + gst_debug_message_get(message));
  }
  std::string category_;
  std::mutex mutex_;
  std::vector<std::string> lines_;
};

// Runs `body` in a forked child and returns its exit status (-1: killed by a signal).
int in_child(const std::function<int()>& body) {
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

// Root has CAP_IPC_LOCK and ignores RLIMIT_MEMLOCK; a child that must feel the
// limit gives the capability up.
void drop_ipc_lock_capability() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return;
  const int word = CAP_IPC_LOCK / 32, bit = CAP_IPC_LOCK % 32;
  data[word].effective &= ~(1u << bit);
  data[word].permitted &= ~(1u << bit);
  syscall(SYS_capset, &header, data);
}

// A test backend: memfd underneath, with a name, a size limit, a failure switch,
// and (for the DMABuf wrapper test) the claim of being a DMABuf.
class FakeBackend final : public Backend {
 public:
  FakeBackend(std::string name, std::optional<size_t> limit, bool fail = false, bool claims_dmabuf = false)
      : name_(std::move(name)), limit_(limit), fail_(fail), dmabuf_(claims_dmabuf) {}
  BackendKind kind() const override { return BackendKind::Memfd; }
  std::string name() const override { return name_; }
  bool is_dmabuf() const override { return dmabuf_; }
  std::optional<size_t> size_limit() const override { return limit_; }
  Probe probe(std::string*) override { return Probe::Usable; }
  AllocResult allocate(size_t size, const ccm::memory::Placement& placement) override {
    if (fail_) {
      AllocResult r;
      r.error = EIO;
      r.why = "fake failure";
      return r;
    }
    return ccm::memory::make_sealed_memfd(size, placement);
  }

 private:
  std::string name_;
  std::optional<size_t> limit_;
  bool fail_, dmabuf_;
};

// Checks a buffer of ours: GstVideoMeta offsets/strides and the mapped plane
// addresses all `alignment`-aligned. Returns the problems found.
std::vector<std::string> alignment_problems(GstBuffer* buf, const GstVideoInfo& info, guint alignment) {
  std::vector<std::string> problems;
  GstMemory* mem = gst_buffer_peek_memory(buf, 0);
  if (!ccm_dmabuf_memory_is_ours(mem)) problems.push_back("memory is not from ccmdmabuf");
  GstVideoMeta* meta = gst_buffer_get_video_meta(buf);
  if (!meta) {
    problems.push_back("no GstVideoMeta");
    return problems;
  }
  // A palette (RGB8P's second plane) has a fixed 4-byte stride; it still starts aligned.
  auto stride_checked = [&](guint plane) { return !(GST_VIDEO_FORMAT_INFO_HAS_PALETTE(info.finfo) && plane == 1); };
  for (guint i = 0; i < meta->n_planes; i++) {
    if (meta->offset[i] % alignment) problems.push_back("meta offset " + std::to_string(i) + " = " + std::to_string(meta->offset[i]));
    if (stride_checked(i) && meta->stride[i] % alignment)
      problems.push_back("meta stride " + std::to_string(i) + " = " + std::to_string(meta->stride[i]));
  }
  GstVideoFrame frame;
  if (!gst_video_frame_map(&frame, &info, buf, GST_MAP_READ)) {
    problems.push_back("gst_video_frame_map failed");
    return problems;
  }
  for (guint i = 0; i < GST_VIDEO_FRAME_N_PLANES(&frame); i++) {
    if (reinterpret_cast<uintptr_t>(GST_VIDEO_FRAME_PLANE_DATA(&frame, i)) % alignment)
      problems.push_back("mapped plane " + std::to_string(i) + " at an unaligned address");
    if (stride_checked(i) && GST_VIDEO_FRAME_PLANE_STRIDE(&frame, i) % alignment)
      problems.push_back("mapped plane " + std::to_string(i) + " stride unaligned");
  }
  gst_video_frame_unmap(&frame);
  return problems;
}

// ---- layout --------------------------------------------------------------------------

TEST(Layout, AlignmentValidation) {
  EXPECT_NE(ccm::memory::alignment_problem(100).find("not a power of two"), std::string::npos);
  EXPECT_NE(ccm::memory::alignment_problem(0).find("not a power of two"), std::string::npos);
  EXPECT_NE(ccm::memory::alignment_problem(32).find("below the minimum"), std::string::npos);
  EXPECT_NE(ccm::memory::alignment_problem(1u << 20).find("page size"), std::string::npos);
  for (unsigned ok : {64u, 128u, 256u, 4096u}) EXPECT_EQ(ccm::memory::alignment_problem(ok), "") << ok;
}

// Every raw format GStreamer 1.22 knows, at tiny, odd, 1080p-ish and 8K sizes:
// offsets (and untiled strides) aligned, no plane overlapping the next, and
// never smaller than GStreamer's own layout.
TEST(Layout, EveryRawFormatEverySize) {
  guint n_formats = 0;
  const GstVideoFormat* formats = gst_video_formats_raw(&n_formats);
  ASSERT_GT(n_formats, 80u);
  const std::pair<int, int> sizes[] = {{1, 1}, {7, 3}, {1918, 1080}, {1921, 1081}, {7680, 4320}};
  int checked = 0;
  for (guint f = 0; f < n_formats; f++) {
    const GstVideoFormat format = formats[f];
    const GstVideoFormatInfo* finfo = gst_video_format_get_info(format);
    for (auto [w, h] : sizes) {
      for (unsigned alignment : {64u, 256u, 4096u}) {
        GstVideoInfo in;
        if (!gst_video_info_set_format(&in, format, w, h)) continue;  // sizes the format cannot take
        ccm::memory::AlignedLayout layout;
        std::string why;
        const std::string what = std::string(gst_video_format_to_string(format)) + " " + std::to_string(w) + "x" +
                                 std::to_string(h) + " @" + std::to_string(alignment);
        ASSERT_TRUE(ccm::memory::aligned_layout(in, alignment, nullptr, &layout, &why)) << what << ": " << why;
        const GstVideoInfo& out = layout.info;
        EXPECT_EQ(out.size % alignment, 0u) << what;
        EXPECT_GE(out.size, in.size) << what;
        const guint n = GST_VIDEO_INFO_N_PLANES(&out);
        for (guint i = 0; i < n; i++) {
          EXPECT_EQ(out.offset[i] % alignment, 0u) << what << " plane " << i;
          const bool palette = GST_VIDEO_FORMAT_INFO_HAS_PALETTE(finfo) && i == 1;
          if (layout.tiled || palette) continue;
          EXPECT_EQ(out.stride[i] % alignment, 0u) << what << " plane " << i;
          EXPECT_GE(out.stride[i], in.stride[i]) << what << " plane " << i;
          // The rows of this plane end before the next plane (or the buffer) begins.
          gint comps[GST_VIDEO_MAX_COMPONENTS];
          gst_video_format_info_component(finfo, i, comps);
          const gint rows = GST_VIDEO_FORMAT_INFO_SCALE_HEIGHT(finfo, comps[0], h);
          const gsize end = out.offset[i] + gsize(out.stride[i]) * rows;
          const gsize limit = i + 1 < n ? out.offset[i + 1] : out.size;
          EXPECT_LE(end, limit) << what << " plane " << i;
        }
        checked++;
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

// The figures docs/memory.md gives.
TEST(Layout, KnownFormatsAt256) {
  struct Case {
    GstVideoFormat format;
    int w, h;
    std::vector<gint> strides;
    std::vector<gsize> offsets;
    gsize size;
  };
  const Case cases[] = {
      {GST_VIDEO_FORMAT_NV12, 1918, 1080, {2048, 2048}, {0, 2211840}, 3317760},
      {GST_VIDEO_FORMAT_I420, 1918, 1080, {2048, 1024, 1024}, {0, 2211840, 2764800}, 3317760},
      {GST_VIDEO_FORMAT_P010_10LE, 1920, 1080, {3840, 3840}, {0, 4147200}, 6220800},
      {GST_VIDEO_FORMAT_I420_10LE, 1280, 720, {2560, 1280, 1280}, {0, 1843200, 2304000}, 2764800},
      {GST_VIDEO_FORMAT_NV12, 7680, 4320, {7680, 7680}, {0, 33177600}, 49766400},
  };
  for (const Case& c : cases) {
    GstVideoInfo in;
    ASSERT_TRUE(gst_video_info_set_format(&in, c.format, c.w, c.h));
    ccm::memory::AlignedLayout layout;
    std::string why;
    ASSERT_TRUE(ccm::memory::aligned_layout(in, 256, nullptr, &layout, &why)) << why;
    const char* name = gst_video_format_to_string(c.format);
    for (size_t i = 0; i < c.strides.size(); i++) {
      EXPECT_EQ(layout.info.stride[i], c.strides[i]) << name << " plane " << i;
      EXPECT_EQ(layout.info.offset[i], c.offsets[i]) << name << " plane " << i;
    }
    EXPECT_EQ(layout.info.size, c.size) << name;
  }
}

// Upstream padding (decoders drawing outside the picture) is kept, and planes
// still start aligned.
TEST(Layout, HonoursUpstreamPadding) {
  GstVideoInfo in;
  ASSERT_TRUE(gst_video_info_set_format(&in, GST_VIDEO_FORMAT_I420, 1280, 720));
  GstVideoAlignment extra;
  gst_video_alignment_reset(&extra);
  extra.padding_top = 16;
  extra.padding_bottom = 16;
  extra.padding_left = 32;
  extra.padding_right = 32;
  ccm::memory::AlignedLayout layout;
  std::string why;
  ASSERT_TRUE(ccm::memory::aligned_layout(in, 256, &extra, &layout, &why)) << why;
  EXPECT_GE(layout.padding.padding_left, 32u);
  EXPECT_GE(layout.padding.padding_right, 32u);
  EXPECT_EQ(layout.padding.padding_top, 16u);
  for (guint i = 0; i < 3; i++) {
    EXPECT_EQ(layout.info.offset[i] % 256, 0u) << i;
    EXPECT_EQ(layout.info.stride[i] % 256, 0u) << i;
  }
  // The picture starts below 16 padded rows of the luma plane.
  EXPECT_GE(layout.info.offset[0], gsize(16) * layout.info.stride[0]);
}

// ---- allocator ----------------------------------------------------------------------

TEST(Allocator, RegisteredAsCcmdmabuf) {
  GstAllocator* allocator = gst_allocator_find(CCM_DMABUF_ALLOCATOR_NAME);
  ASSERT_NE(allocator, nullptr);
  EXPECT_TRUE(GST_IS_CCM_DMABUF_ALLOCATOR(allocator));
  EXPECT_TRUE(GST_IS_DMABUF_ALLOCATOR(allocator));
  GstMemory* mem = gst_allocator_alloc(allocator, 1000, nullptr);
  ASSERT_NE(mem, nullptr);
  EXPECT_TRUE(ccm_dmabuf_memory_is_ours(mem));
  EXPECT_TRUE(gst_is_fd_memory(mem));
  EXPECT_GE(gst_fd_memory_get_fd(mem), 0);
  EXPECT_EQ(gst_memory_get_sizes(mem, nullptr, nullptr), 1000u);
  gst_memory_unref(mem);
  gst_object_unref(allocator);
}

// memfd memory is fd memory and says it is not a DMABuf; it is mapped once,
// writes through one map are seen through the fd.
TEST(Allocator, MemfdIsFdMemoryNotDmabuf) {
  AllocatorOptions options;
  options.backend = BackendKind::Memfd;
  GstAllocator* allocator = ccm::memory::new_allocator(options);
  GstMemory* mem = gst_allocator_alloc(allocator, 4096 * 3, nullptr);
  ASSERT_NE(mem, nullptr);
  EXPECT_STREQ(ccm_dmabuf_memory_get_backend(mem), "memfd");
  EXPECT_TRUE(gst_is_fd_memory(mem));
  EXPECT_FALSE(gst_is_dmabuf_memory(mem));
  GstMapInfo a, b;
  ASSERT_TRUE(gst_memory_map(mem, &a, GST_MAP_WRITE));
  memset(a.data, 0x5a, a.size);
  gst_memory_unmap(mem, &a);
  ASSERT_TRUE(gst_memory_map(mem, &b, GST_MAP_READ));
  EXPECT_EQ(a.data, b.data) << "mapped once, the same address every time";
  gst_memory_unmap(mem, &b);
  guint8 byte = 0;
  ASSERT_EQ(pread(gst_fd_memory_get_fd(mem), &byte, 1, 4096), 1);
  EXPECT_EQ(byte, 0x5a);
  // Sealed: nobody holding the fd can shrink it under our mapping.
  EXPECT_NE(ftruncate(gst_fd_memory_get_fd(mem), 0), 0);
  gst_memory_unref(mem);
  gst_object_unref(allocator);
}

// Memory of a DMABuf backend belongs to a GstDmaBufAllocator: every CPU map and
// unmap issues DMA_BUF_IOCTL_SYNC, and the mapping is made once. The fake
// backend hands out a memfd while claiming DMABuf, so the kernel refuses the
// SYNC and GstDmaBufAllocator says so once per attempt: that counts them.
TEST(Allocator, DmabufMemorySyncsEveryCpuAccessAndStaysMapped) {
  std::vector<std::unique_ptr<Backend>> chain;
  chain.push_back(std::make_unique<FakeBackend>("fake-dmabuf", std::nullopt, false, true));
  GstAllocator* allocator = ccm::memory::new_allocator(std::move(chain), AllocatorOptions{});
  GstMemory* mem = gst_allocator_alloc(allocator, 1 << 20, nullptr);
  ASSERT_NE(mem, nullptr);
  EXPECT_TRUE(gst_is_dmabuf_memory(mem));
  EXPECT_GE(gst_dmabuf_memory_get_fd(mem), 0);

  const int mappings_before = count_mappings();
  int syncs = 0;
  guint8* first = nullptr;
  {
    LogCapture log("dmabuf", GST_LEVEL_WARNING);
    for (int i = 0; i < 10; i++) {
      GstMapInfo map;
      ASSERT_TRUE(gst_memory_map(mem, &map, GST_MAP_READWRITE));
      if (!first) first = map.data;
      EXPECT_EQ(map.data, first);
      map.data[i] = guint8(i);
      gst_memory_unmap(mem, &map);
    }
    syncs = log.count("synchroniz");
  }
  EXPECT_EQ(syncs, 20) << "one SYNC_START and one SYNC_END per CPU access";
  EXPECT_EQ(mappings_before, 1);
  EXPECT_EQ(count_mappings(), mappings_before) << "no mmap per access";
  gst_memory_unref(mem);
  gst_object_unref(allocator);
}

TEST(Allocator, EnvironmentForcesBackend) {
  g_setenv(CCM_DMABUF_BACKEND_ENV, "memfd", TRUE);
  GstAllocator* forced = ccm::memory::new_allocator(AllocatorOptions{});
  g_setenv(CCM_DMABUF_BACKEND_ENV, "nonsense", TRUE);
  GstAllocator* bogus = ccm::memory::new_allocator(AllocatorOptions{});
  if (g_forced_backend.empty())
    g_unsetenv(CCM_DMABUF_BACKEND_ENV);
  else
    g_setenv(CCM_DMABUF_BACKEND_ENV, g_forced_backend.c_str(), TRUE);
  Structure a(ccm_dmabuf_allocator_get_stats(forced)), b(ccm_dmabuf_allocator_get_stats(bogus));
  EXPECT_EQ(str(a.get(), "chain"), "memfd");
  EXPECT_EQ(str(a.get(), "forced-by"), "env");
  EXPECT_EQ(str(b.get(), "chain"), "dma-heap, udmabuf, memfd");
  EXPECT_EQ(str(b.get(), "forced-by"), "auto");
  gst_object_unref(forced);
  gst_object_unref(bogus);
}

// Over a backend's size limit, the next backend serves; under it, the first.
TEST(Allocator, SizeOverLimitFallsToNextBackend) {
  std::vector<std::unique_ptr<Backend>> chain;
  chain.push_back(std::make_unique<FakeBackend>("small", size_t(1) << 20));
  chain.push_back(std::make_unique<ccm::memory::MemfdBackend>());
  GstAllocator* allocator = ccm::memory::new_allocator(std::move(chain), AllocatorOptions{});
  GstMemory* little = gst_allocator_alloc(allocator, 512 * 1024, nullptr);
  GstMemory* big = gst_allocator_alloc(allocator, 4 << 20, nullptr);
  ASSERT_NE(little, nullptr);
  ASSERT_NE(big, nullptr);
  EXPECT_STREQ(ccm_dmabuf_memory_get_backend(little), "small");
  EXPECT_STREQ(ccm_dmabuf_memory_get_backend(big), "memfd");
  Structure st(ccm_dmabuf_allocator_get_stats(allocator));
  EXPECT_EQ(u64(st.get(), "allocations-small"), 1u);
  EXPECT_EQ(u64(st.get(), "allocations-memfd"), 1u);
  EXPECT_EQ(u64(st.get(), "fallbacks"), 1u);
  EXPECT_EQ(str(st.get(), "backend"), "memfd");
  gst_memory_unref(little);
  gst_memory_unref(big);
  gst_object_unref(allocator);
}

// The real udmabuf backend: its limit from the module parameter (64 MiB when
// the file is missing), and a missing device node falls through to memfd.
TEST(Allocator, UdmabufLimitAndMissingDevice) {
  const std::string param = ccm::test::temp_path("size_limit_mb");
  {
    std::ofstream(param) << "16\n";
  }
  EXPECT_EQ(ccm::memory::read_udmabuf_limit(param), size_t(16) << 20);
  EXPECT_EQ(ccm::memory::read_udmabuf_limit("/nonexistent/size_limit_mb"), size_t(64) << 20);

  std::vector<std::unique_ptr<Backend>> chain;
  chain.push_back(std::make_unique<ccm::memory::UdmabufBackend>("/nonexistent/udmabuf", size_t(16) << 20));
  chain.push_back(std::make_unique<ccm::memory::MemfdBackend>());
  GstAllocator* allocator = ccm::memory::new_allocator(std::move(chain), AllocatorOptions{});
  GstMemory* mem = gst_allocator_alloc(allocator, 1 << 20, nullptr);
  ASSERT_NE(mem, nullptr);
  EXPECT_STREQ(ccm_dmabuf_memory_get_backend(mem), "memfd");
  Structure st(ccm_dmabuf_allocator_get_stats(allocator));
  EXPECT_NE(str(st.get(), "unavailable").find("udmabuf: /nonexistent/udmabuf does not exist"), std::string::npos)
      << str(st.get(), "unavailable");
  EXPECT_EQ(u64(st.get(), "fallbacks"), 0u) << "a missing device is not a fallback";
  gst_memory_unref(mem);
  gst_object_unref(allocator);
}

TEST(Allocator, FailingBackendFallsThroughAndAllFailingIsAnError) {
  std::vector<std::unique_ptr<Backend>> chain;
  chain.push_back(std::make_unique<FakeBackend>("broken", std::nullopt, true));
  chain.push_back(std::make_unique<ccm::memory::MemfdBackend>());
  GstAllocator* allocator = ccm::memory::new_allocator(std::move(chain), AllocatorOptions{});
  GstMemory* mem = gst_allocator_alloc(allocator, 1 << 16, nullptr);
  ASSERT_NE(mem, nullptr);
  EXPECT_STREQ(ccm_dmabuf_memory_get_backend(mem), "memfd");
  gst_memory_unref(mem);
  gst_object_unref(allocator);

  std::vector<std::unique_ptr<Backend>> only_broken;
  only_broken.push_back(std::make_unique<FakeBackend>("broken", std::nullopt, true));
  allocator = ccm::memory::new_allocator(std::move(only_broken), AllocatorOptions{});
  {
    LogCapture log("ccmdmabuf", GST_LEVEL_ERROR);
    EXPECT_EQ(gst_allocator_alloc(allocator, 1 << 16, nullptr), nullptr);
    EXPECT_TRUE(log.has("broken: fake failure")) << "the error names the backend and its reason";
  }
  Structure st(ccm_dmabuf_allocator_get_stats(allocator));
  EXPECT_EQ(u64(st.get(), "failures"), 1u);
  EXPECT_NE(str(st.get(), "last-error").find("fake failure"), std::string::npos);
  gst_object_unref(allocator);
}

// ---- pool ---------------------------------------------------------------------------

TEST(Pool, RefusesImpossibleAlignment) {
  LogCapture log("ccmdmabuf", GST_LEVEL_ERROR);
  bool configured = true;
  GstBufferPool* pool = make_pool("NV12", 320, 240, 0, 0,
                                  [](GstStructure* c) { ccm_dmabuf_pool_config_set_alignment(c, 100); }, &configured);
  EXPECT_FALSE(configured);
  EXPECT_TRUE(log.has("alignment 100 is not a power of two")) << (log.lines().empty() ? "" : log.lines()[0]);
  EXPECT_FALSE(gst_buffer_pool_set_active(pool, TRUE)) << "an unconfigured pool never hands out buffers";
  gst_object_unref(pool);

  pool = make_pool("NV12", 320, 240, 0, 0, [](GstStructure* c) { ccm_dmabuf_pool_config_set_alignment(c, 32); },
                   &configured);
  EXPECT_FALSE(configured);
  EXPECT_TRUE(log.has("below the minimum of 64"));
  gst_object_unref(pool);

  pool = make_pool("NV12", 320, 240, 0, 0, [](GstStructure* c) { ccm_dmabuf_pool_config_set_backend(c, "cuda"); },
                   &configured);
  EXPECT_FALSE(configured);
  EXPECT_TRUE(log.has("ccm-backend=cuda is not one of"));
  gst_object_unref(pool);
}

struct FormatCase {
  const char* format;
  int width, height;
};

class PoolFormats : public ::testing::TestWithParam<FormatCase> {};

TEST_P(PoolFormats, EveryBufferAlignedWithMeta) {
  const FormatCase& c = GetParam();
  for (guint alignment : {64u, 256u, 4096u}) {
    bool configured = false;
    GstBufferPool* pool = make_pool(c.format, c.width, c.height, 2, 2,
                                    [&](GstStructure* cfg) { ccm_dmabuf_pool_config_set_alignment(cfg, alignment); },
                                    &configured);
    ASSERT_TRUE(configured);
    ASSERT_TRUE(gst_buffer_pool_set_active(pool, TRUE));
    GstCaps* caps = video_caps(c.format, c.width, c.height);
    GstVideoInfo info;
    gst_video_info_from_caps(&info, caps);
    gst_caps_unref(caps);
    GstBuffer* bufs[2] = {};
    for (auto& b : bufs) {
      ASSERT_EQ(gst_buffer_pool_acquire_buffer(pool, &b, nullptr), GST_FLOW_OK);
      for (const auto& problem : alignment_problems(b, info, alignment)) ADD_FAILURE() << alignment << ": " << problem;
      // The whole frame can be written through the meta without leaving the memory.
      GstVideoFrame frame;
      ASSERT_TRUE(gst_video_frame_map(&frame, &info, b, GST_MAP_WRITE));
      for (guint i = 0; i < GST_VIDEO_FRAME_N_PLANES(&frame); i++) {
        gint comps[GST_VIDEO_MAX_COMPONENTS];
        gst_video_format_info_component(info.finfo, i, comps);
        const gint rows = GST_VIDEO_FRAME_COMP_HEIGHT(&frame, comps[0]);
        memset(GST_VIDEO_FRAME_PLANE_DATA(&frame, i), 0x40, gsize(GST_VIDEO_FRAME_PLANE_STRIDE(&frame, i)) * rows);
      }
      gst_video_frame_unmap(&frame);
    }
    Structure st(ccm_dmabuf_pool_get_stats(pool));
    EXPECT_EQ(u64(st.get(), "live-buffers"), 2u);
    EXPECT_EQ(u64(st.get(), "buffer-size") % alignment, 0u);
    for (auto& b : bufs) gst_buffer_unref(b);
    ASSERT_TRUE(gst_buffer_pool_set_active(pool, FALSE));
    gst_object_unref(pool);
  }
}

INSTANTIATE_TEST_SUITE_P(MustShow, PoolFormats,
                         ::testing::Values(FormatCase{"NV12", 1918, 1080}, FormatCase{"I420", 1918, 1080},
                                           FormatCase{"P010_10LE", 1920, 1080}, FormatCase{"I420_10LE", 1280, 720},
                                           FormatCase{"NV12", 7680, 4320}, FormatCase{"I420", 1, 1},
                                           FormatCase{"Y444", 1921, 1081}, FormatCase{"RGBA", 333, 17},
                                           FormatCase{"v210", 1918, 1080}, FormatCase{"RGB8P", 31, 9}),
                         [](const auto& info) {
                           return std::string(info.param.format) + "_" + std::to_string(info.param.width) + "x" +
                                  std::to_string(info.param.height);
                         });

// get_config / set_config round trips: our own padding is not mistaken for an
// upstream request, an upstream request survives, a new alignment takes effect.
TEST(Pool, ReconfigureKeepsRequestsNotOwnPadding) {
  GstBufferPool* pool = make_pool("NV12", 1920, 1080, 0, 0);
  auto strides = [&] {
    Structure st(ccm_dmabuf_pool_get_stats(pool));
    return str(st.get(), "strides");
  };
  EXPECT_EQ(strides(), "2048,2048");
  GstStructure* config = gst_buffer_pool_get_config(pool);
  ccm_dmabuf_pool_config_set_alignment(config, 128);
  ASSERT_TRUE(gst_buffer_pool_set_config(pool, config));
  EXPECT_EQ(strides(), "1920,1920") << "1920 is 128-aligned: no padding left over from the 256 layout";

  config = gst_buffer_pool_get_config(pool);
  GstVideoAlignment request;
  gst_video_alignment_reset(&request);
  request.padding_right = 200;
  gst_buffer_pool_config_add_option(config, GST_BUFFER_POOL_OPTION_VIDEO_ALIGNMENT);
  gst_buffer_pool_config_set_video_alignment(config, &request);
  ASSERT_TRUE(gst_buffer_pool_set_config(pool, config));
  EXPECT_EQ(strides(), "2176,2176") << "1920 + 200 padding, rounded up to 128";
  config = gst_buffer_pool_get_config(pool);  // unchanged round trip
  ASSERT_TRUE(gst_buffer_pool_set_config(pool, config));
  EXPECT_EQ(strides(), "2176,2176");
  gst_object_unref(pool);
}

TEST(Pool, MinAndMaxBuffersHonoured) {
  GstBufferPool* pool = make_pool("NV12", 640, 480, 2, 3);
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, TRUE));
  {
    Structure st(ccm_dmabuf_pool_get_stats(pool));
    EXPECT_EQ(u64(st.get(), "live-buffers"), 2u) << "min buffers made up front";
  }
  GstBuffer* held[3] = {};
  for (auto& b : held) ASSERT_EQ(gst_buffer_pool_acquire_buffer(pool, &b, nullptr), GST_FLOW_OK);
  GstBufferPoolAcquireParams dontwait{};
  dontwait.flags = GST_BUFFER_POOL_ACQUIRE_FLAG_DONTWAIT;
  GstBuffer* extra = nullptr;
  EXPECT_EQ(gst_buffer_pool_acquire_buffer(pool, &extra, &dontwait), GST_FLOW_EOS) << "max 3";
  {
    Structure st(ccm_dmabuf_pool_get_stats(pool));
    EXPECT_EQ(u64(st.get(), "live-buffers"), 3u);
  }
  gst_buffer_unref(held[0]);
  EXPECT_EQ(gst_buffer_pool_acquire_buffer(pool, &extra, &dontwait), GST_FLOW_OK);
  gst_buffer_unref(extra);
  gst_buffer_unref(held[1]);
  gst_buffer_unref(held[2]);
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, FALSE));
  gst_object_unref(pool);
}

// 10 000 acquire/release cycles and 2 000 allocator round trips: nothing left
// behind (ASan/LSan in the sanitizer build; fds and mappings counted here).
TEST(Pool, TenThousandCyclesLeakNothing) {
  const int fds_before = count_open_fds();
  const int maps_before = count_mappings();
  GstBufferPool* pool = make_pool("I420", 1918, 1080, 0, 4);
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, TRUE));
  for (int i = 0; i < 10000; i++) {
    GstBuffer* a = nullptr;
    GstBuffer* b = nullptr;
    ASSERT_EQ(gst_buffer_pool_acquire_buffer(pool, &a, nullptr), GST_FLOW_OK);
    if (i % 3 == 0) {
      ASSERT_EQ(gst_buffer_pool_acquire_buffer(pool, &b, nullptr), GST_FLOW_OK);
    }
    gst_buffer_unref(a);
    if (b) gst_buffer_unref(b);
  }
  {
    Structure st(ccm_dmabuf_pool_get_stats(pool));
    EXPECT_LE(u64(st.get(), "allocations"), 4u) << "buffers are reused, not reallocated";
  }
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, FALSE));
  {
    Structure st(ccm_dmabuf_pool_get_stats(pool));
    EXPECT_EQ(u64(st.get(), "live-buffers"), 0u);
    EXPECT_EQ(u64(st.get(), "live-bytes"), 0u);
  }
  gst_object_unref(pool);

  GstAllocator* allocator = ccm::memory::new_allocator(AllocatorOptions{});
  for (int i = 0; i < 2000; i++) {
    GstMemory* mem = gst_allocator_alloc(allocator, 64 * 1024 + i, nullptr);
    ASSERT_NE(mem, nullptr);
    gst_memory_unref(mem);
  }
  {
    Structure st(ccm_dmabuf_allocator_get_stats(allocator));
    EXPECT_EQ(u64(st.get(), "allocations"), 2000u);
    EXPECT_EQ(u64(st.get(), "live-buffers"), 0u);
  }
  gst_object_unref(allocator);
  EXPECT_EQ(count_open_fds(), fds_before);
  EXPECT_EQ(count_mappings(), maps_before);
}

TEST(Pool, StatsNameTheBackendAndWhyOthersAreMissing) {
  GstBufferPool* pool = make_pool("NV12", 320, 240, 1, 0);
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, TRUE));
  GstStructure* from_property = nullptr;
  g_object_get(pool, "stats", &from_property, nullptr);
  Structure st(from_property);
  ASSERT_NE(st.get(), nullptr);
  const std::string backend = str(st.get(), "backend");
  EXPECT_FALSE(backend.empty());
  EXPECT_EQ(u64(st.get(), ("allocations-" + backend).c_str()), 1u);
  gboolean dmabuf = TRUE;
  EXPECT_TRUE(gst_structure_get_boolean(st.get(), "dmabuf", &dmabuf));
  EXPECT_EQ(bool(dmabuf), backend != "memfd");
  if (!g_file_test("/dev/dma_heap/system", G_FILE_TEST_EXISTS) && g_forced_backend.empty()) {
    EXPECT_NE(str(st.get(), "unavailable").find("/dev/dma_heap/system does not exist"), std::string::npos);
  }
  EXPECT_EQ(str(st.get(), "strides"), "512,512");
  EXPECT_EQ(str(st.get(), "offsets"), "0,122880");
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, FALSE));
  gst_object_unref(pool);
}

// A forced backend that this machine lacks is a clear failure, not a silent fallback.
TEST(Pool, ForcedMissingBackendFailsClearly) {
  if (g_file_test("/dev/dma_heap/system", G_FILE_TEST_EXISTS)) GTEST_SKIP() << "this machine has a dma heap";
  LogCapture log("ccmdmabuf", GST_LEVEL_ERROR);
  bool configured = false;
  GstBufferPool* pool = make_pool("NV12", 320, 240, 0, 0,
                                  [](GstStructure* c) { ccm_dmabuf_pool_config_set_backend(c, "dma-heap"); }, &configured);
  ASSERT_TRUE(configured);
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, TRUE));
  GstBuffer* buf = nullptr;
  EXPECT_EQ(gst_buffer_pool_acquire_buffer(pool, &buf, nullptr), GST_FLOW_ERROR);
  EXPECT_EQ(buf, nullptr);
  EXPECT_TRUE(log.has("cannot allocate a NV12 320x240 frame"));
  Structure st(ccm_dmabuf_pool_get_stats(pool));
  EXPECT_EQ(u64(st.get(), "failures"), 1u);
  EXPECT_NE(str(st.get(), "unavailable").find("/dev/dma_heap/system"), std::string::npos);
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, FALSE));
  gst_object_unref(pool);
}

// Out of file descriptors: acquiring fails with GST_FLOW_ERROR and a message
// naming the cause, no crash; freeing a buffer makes room again.
TEST(Pool, FdExhaustionFailsCleanly) {
  const int rc = in_child([] {
    GstBufferPool* pool = make_pool("NV12", 320, 240, 0, 0);
    if (!gst_buffer_pool_set_active(pool, TRUE)) return 10;
    // Room for a handful of buffers beyond what is open now.
    const int open_now = count_open_fds();
    rlimit lim{rlim_t(open_now + 8), rlim_t(open_now + 8)};
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return 11;
    std::vector<GstBuffer*> held;
    GstFlowReturn ret = GST_FLOW_OK;
    for (int i = 0; i < 64 && ret == GST_FLOW_OK; i++) {
      GstBuffer* b = nullptr;
      ret = gst_buffer_pool_acquire_buffer(pool, &b, nullptr);
      if (ret == GST_FLOW_OK) held.push_back(b);
      else if (b) return 12;  // a failure must not hand out a buffer
    }
    if (ret != GST_FLOW_ERROR) return 13;
    if (held.size() < 3) return 14;
    GstStructure* st = ccm_dmabuf_pool_get_stats(pool);
    const std::string error = str(st, "last-error");
    gst_structure_free(st);
    if (error.find("Too many open files") == std::string::npos) return 15;
    // Space again once a buffer goes away.
    gst_buffer_unref(held.back());
    held.pop_back();
    GstBuffer* again = nullptr;
    if (gst_buffer_pool_acquire_buffer(pool, &again, nullptr) != GST_FLOW_OK) return 16;
    gst_buffer_unref(again);
    for (GstBuffer* b : held) gst_buffer_unref(b);
    gst_buffer_pool_set_active(pool, FALSE);
    gst_object_unref(pool);
    return 0;
  });
  EXPECT_EQ(rc, 0) << "10+: which check failed in the child; negative: killed by that signal";
}

// mlock where RLIMIT_MEMLOCK refuses: a warning, and the frames are still made.
TEST(Pool, MlockRefusedFallsBackWithWarning) {
  const int rc = in_child([] {
    drop_ipc_lock_capability();
    rlimit lim{0, 0};
    if (setrlimit(RLIMIT_MEMLOCK, &lim) != 0) return 10;
    LogCapture log("ccmdmabuf", GST_LEVEL_WARNING);
    bool configured = false;
    GstBufferPool* pool = make_pool("NV12", 640, 480, 2, 0,
                                    [](GstStructure* c) {
                                      ccm_dmabuf_pool_config_set_mlock(c, TRUE);
                                      ccm_dmabuf_pool_config_set_backend(c, "memfd");
                                    },
                                    &configured);
    if (!configured || !gst_buffer_pool_set_active(pool, TRUE)) return 11;
    GstStructure* st = ccm_dmabuf_pool_get_stats(pool);
    const guint64 failures = u64(st, "mlock-failures"), locked = u64(st, "mlocked-bytes"),
                  live = u64(st, "live-buffers");
    gst_structure_free(st);
    gst_buffer_pool_set_active(pool, FALSE);
    gst_object_unref(pool);
    if (live != 2) return 12;
    if (failures != 2 || locked != 0) return 13;
    if (log.count("mlock of") != 1) return 14;  // warned once, not per buffer
    return 0;
  });
  EXPECT_EQ(rc, 0);

  // Where locking is allowed, it happens.
  GstBufferPool* pool = make_pool("NV12", 320, 240, 1, 0, [](GstStructure* c) {
    ccm_dmabuf_pool_config_set_mlock(c, TRUE);
    ccm_dmabuf_pool_config_set_backend(c, "memfd");
  });
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, TRUE));
  Structure st(ccm_dmabuf_pool_get_stats(pool));
  EXPECT_GT(u64(st.get(), "mlocked-bytes"), 0u);
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, FALSE));
  gst_object_unref(pool);
}

TEST(Pool, NumaNodeBoundOrRefusedWithFallback) {
  if (ccm::memory::numa_local_node() < 0) GTEST_SKIP() << "no NUMA support here (or built without libnuma)";
  GstBufferPool* pool = make_pool("NV12", 320, 240, 1, 0, [](GstStructure* c) {
    ccm_dmabuf_pool_config_set_numa_node(c, 0);
    ccm_dmabuf_pool_config_set_backend(c, "memfd");
  });
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, TRUE));
  {
    Structure st(ccm_dmabuf_pool_get_stats(pool));
    EXPECT_EQ(u64(st.get(), "numa-bound"), 1u) << str(st.get(), "numa-note");
    EXPECT_EQ(u64(st.get(), "numa-failures"), 0u);
  }
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, FALSE));
  gst_object_unref(pool);

  LogCapture log("ccmdmabuf", GST_LEVEL_WARNING);
  pool = make_pool("NV12", 320, 240, 2, 0, [](GstStructure* c) {
    ccm_dmabuf_pool_config_set_numa_node(c, 900);  // no such node
    ccm_dmabuf_pool_config_set_backend(c, "memfd");
  });
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, TRUE)) << "a refused node is not a failed allocation";
  {
    Structure st(ccm_dmabuf_pool_get_stats(pool));
    EXPECT_EQ(u64(st.get(), "live-buffers"), 2u);
    EXPECT_EQ(u64(st.get(), "numa-failures"), 2u);
    EXPECT_NE(str(st.get(), "numa-note").find("mbind"), std::string::npos) << str(st.get(), "numa-note");
  }
  EXPECT_EQ(log.count("NUMA node 900 refused"), 1);
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, FALSE));
  gst_object_unref(pool);
}

// ---- proposing the pool ---------------------------------------------------------------

// A pool type standing for an encoder's own (VA surfaces, CUDA memory).
struct DevicePool {
  GstBufferPool parent;
};
struct DevicePoolClass {
  GstBufferPoolClass parent_class;
};
G_DEFINE_TYPE(DevicePool, device_pool, GST_TYPE_BUFFER_POOL)
void device_pool_class_init(DevicePoolClass*) {}
void device_pool_init(DevicePool*) {}

GstQuery* allocation_query(GstBufferPool* answer, gboolean need_pool = TRUE) {
  GstCaps* caps = video_caps("NV12", 1918, 1080);
  GstQuery* q = gst_query_new_allocation(caps, need_pool);
  if (answer) gst_query_add_allocation_pool(q, answer, 1918 * 1080 * 3 / 2, 3, 7);
  gst_caps_unref(caps);
  return q;
}

GstBufferPool* first_pool(GstQuery* q, guint* size = nullptr, guint* min = nullptr, guint* max = nullptr) {
  if (gst_query_get_n_allocation_pools(q) == 0) return nullptr;
  GstBufferPool* pool = nullptr;
  gst_query_parse_nth_allocation_pool(q, 0, &pool, size, min, max);
  if (pool) gst_object_unref(pool);  // the query still holds it
  return pool;
}

TEST(Propose, AddsPoolWhenDownstreamHasNone) {
  GstQuery* q = allocation_query(nullptr);
  EXPECT_TRUE(ccm_propose_dmabuf_pool(nullptr, q, -1));
  guint size = 0;
  GstBufferPool* pool = first_pool(q, &size);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(GST_IS_CCM_DMABUF_POOL(pool));
  EXPECT_EQ(size, 2048u * 1080 + 2048u * 540) << "sized for 256-aligned NV12 1918x1080";
  EXPECT_TRUE(gst_query_find_allocation_meta(q, GST_VIDEO_META_API_TYPE, nullptr));
  gst_query_unref(q);
}

TEST(Propose, ReplacesGenericSystemMemoryPoolKeepingCounts) {
  GstBufferPool* generic = gst_video_buffer_pool_new();
  GstQuery* q = allocation_query(generic);
  EXPECT_TRUE(ccm_propose_dmabuf_pool(nullptr, q, -1));
  guint min = 0, max = 0;
  GstBufferPool* pool = first_pool(q, nullptr, &min, &max);
  EXPECT_TRUE(GST_IS_CCM_DMABUF_POOL(pool));
  EXPECT_EQ(gst_query_get_n_allocation_pools(q), 1u);
  EXPECT_EQ(min, 3u);
  EXPECT_EQ(max, 7u);
  gst_query_unref(q);
  gst_object_unref(generic);
}

TEST(Propose, PassesEncodersOwnPoolThrough) {
  GstBufferPool* device = GST_BUFFER_POOL(g_object_new(device_pool_get_type(), nullptr));
  gst_object_ref_sink(device);
  GstQuery* q = allocation_query(device);
  EXPECT_FALSE(ccm_propose_dmabuf_pool(nullptr, q, -1));
  EXPECT_EQ(first_pool(q), device);
  gst_query_unref(q);

  // A generic pool type carrying a device allocator is the device's too.
  GstBufferPool* generic = gst_video_buffer_pool_new();
  GstStructure* config = gst_buffer_pool_get_config(generic);
  GstAllocator* special = ccm_dmabuf_allocator_new();
  gst_buffer_pool_config_set_allocator(config, special, nullptr);
  gst_buffer_pool_set_config(generic, config);
  q = allocation_query(generic);
  EXPECT_FALSE(ccm_propose_dmabuf_pool(nullptr, q, -1));
  EXPECT_EQ(first_pool(q), generic);
  gst_query_unref(q);
  gst_object_unref(special);
  gst_object_unref(generic);
  gst_object_unref(device);

  q = allocation_query(nullptr, FALSE);
  EXPECT_FALSE(ccm_propose_dmabuf_pool(nullptr, q, -1)) << "upstream asked for no pool";
  gst_query_unref(q);
}

// ---- pipelines -------------------------------------------------------------------------

struct Seen {
  const GstMemory* mem;
  int fd;
};

// What the probes saw: at ccmencbin's sink (what the source wrote) and at the
// encoder's sink (what it reads).
struct Observation {
  std::mutex lock;
  GstVideoInfo info{};
  std::vector<gint> meta_strides;  // of the last buffer the source wrote
  int at_bin = 0, ours = 0;
  std::vector<std::string> problems;
  std::map<GstClockTime, Seen> written;
  std::string backend;
  bool dmabuf = false;
  int at_encoder = 0, same_memory = 0, encoder_ours = 0;
  std::string encoder_factory;
};

GstPadProbeReturn at_bin_sink(GstPad* pad, GstPadProbeInfo* info, gpointer user) {
  auto* obs = static_cast<Observation*>(user);
  GstBuffer* buf = GST_PAD_PROBE_INFO_BUFFER(info);
  GstCaps* caps = gst_pad_get_current_caps(pad);
  GstVideoInfo vinfo;
  const bool have_info = caps && gst_video_info_from_caps(&vinfo, caps);
  if (caps) gst_caps_unref(caps);
  GstMemory* mem = gst_buffer_peek_memory(buf, 0);
  std::lock_guard lock(obs->lock);
  obs->at_bin++;
  if (ccm_dmabuf_memory_is_ours(mem)) {
    obs->ours++;
    obs->backend = ccm_dmabuf_memory_get_backend(mem);
    obs->dmabuf = gst_is_dmabuf_memory(mem);
  }
  if (have_info) {
    obs->info = vinfo;
    for (auto& p : alignment_problems(buf, vinfo, 256)) obs->problems.push_back(p);
  }
  if (GstVideoMeta* meta = gst_buffer_get_video_meta(buf)) obs->meta_strides.assign(meta->stride, meta->stride + meta->n_planes);
  obs->written[GST_BUFFER_PTS(buf)] = Seen{mem, gst_is_fd_memory(mem) ? gst_fd_memory_get_fd(mem) : -1};
  return GST_PAD_PROBE_OK;
}

GstPadProbeReturn at_encoder_sink(GstPad*, GstPadProbeInfo* info, gpointer user) {
  auto* obs = static_cast<Observation*>(user);
  GstBuffer* buf = GST_PAD_PROBE_INFO_BUFFER(info);
  GstMemory* mem = gst_buffer_peek_memory(buf, 0);
  std::lock_guard lock(obs->lock);
  obs->at_encoder++;
  if (ccm_dmabuf_memory_is_ours(mem)) obs->encoder_ours++;
  auto it = obs->written.find(GST_BUFFER_PTS(buf));
  if (it != obs->written.end() && it->second.mem == mem && gst_is_fd_memory(mem) &&
      gst_fd_memory_get_fd(mem) == it->second.fd)
    obs->same_memory++;
  return GST_PAD_PROBE_OK;
}

// Encoders are the elements of ccmencbin whose factory is a Codec/Encoder.
void on_element_added(GstBin*, GstElement* element, gpointer user) {
  GstElementFactory* factory = gst_element_get_factory(element);
  if (!factory) return;
  const gchar* klass = gst_element_factory_get_metadata(factory, GST_ELEMENT_METADATA_KLASS);
  if (!klass || !strstr(klass, "Encoder")) return;
  auto* obs = static_cast<Observation*>(user);
  {
    std::lock_guard lock(obs->lock);
    obs->encoder_factory = GST_OBJECT_NAME(factory);
  }
  GstPad* sink = gst_element_get_static_pad(element, "sink");
  gst_pad_add_probe(sink, GST_PAD_PROBE_TYPE_BUFFER, at_encoder_sink, obs, nullptr);
  gst_object_unref(sink);
}

struct PipelineResult {
  bool eos = false;
  std::string error;
};

PipelineResult run_observed(const std::string& description, Observation* obs, int timeout_s = 300) {
  PipelineResult result;
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(description.c_str(), &err);
  if (err) {
    result.error = err->message;
    g_error_free(err);
    if (pipeline) gst_object_unref(pipeline);
    return result;
  }
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  GstPad* sink = gst_element_get_static_pad(enc, "sink");
  gst_pad_add_probe(sink, GST_PAD_PROBE_TYPE_BUFFER, at_bin_sink, obs, nullptr);
  gst_object_unref(sink);
  if (GST_IS_BIN(enc)) {
    g_signal_connect(enc, "element-added", G_CALLBACK(on_element_added), obs);
  } else if (GstElement* encoder = gst_bin_get_by_name(GST_BIN(pipeline), "encoder")) {
    on_element_added(nullptr, encoder, obs);  // a standalone element before a named encoder
    gst_object_unref(encoder);
  }
  gst_object_unref(enc);

  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, GstClockTime(timeout_s) * GST_SECOND,
                                               GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  if (!msg) {
    result.error = "timeout";
  } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
    result.eos = true;
  } else {
    GError* e = nullptr;
    gchar* dbg = nullptr;
    gst_message_parse_error(msg, &e, &dbg);
    result.error = std::string(e->message) + " | " + (dbg ? dbg : "");
    g_error_free(e);
    g_free(dbg);
  }
  if (msg) gst_message_unref(msg);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  return result;
}

struct PipelineCase {
  const char* format;
  int width, height;
  const char* encoder_args;  // ccmencbin properties choosing a fast encoder that takes this input
  bool encoder_takes_format;  // videoconvert in passthrough: the encoder must read our memory
};

class SourceWritesIntoPool : public ::testing::TestWithParam<PipelineCase> {};

TEST_P(SourceWritesIntoPool, AlignedFromSourceToEncoder) {
  const PipelineCase& c = GetParam();
  constexpr int kFrames = 3;
  Observation obs;
  const std::string desc = "videotestsrc num-buffers=" + std::to_string(kFrames) +
                           " ! video/x-raw,format=" + c.format + ",width=" + std::to_string(c.width) +
                           ",height=" + std::to_string(c.height) + ",framerate=30/1 ! ccmencbin name=enc " +
                           c.encoder_args + " ! fakesink";
  auto r = run_observed(desc, &obs);
  ASSERT_TRUE(r.eos) << r.error;
  std::lock_guard lock(obs.lock);
  EXPECT_EQ(obs.at_bin, kFrames);
  EXPECT_EQ(obs.ours, kFrames) << "videotestsrc wrote into ccmdmabuf memory";
  for (const auto& p : obs.problems) ADD_FAILURE() << p;
  EXPECT_EQ(obs.at_encoder, kFrames) << obs.encoder_factory;
  if (c.encoder_takes_format) {
    EXPECT_EQ(obs.same_memory, kFrames) << obs.encoder_factory << " reads the very memory the source wrote";
  } else {
    EXPECT_EQ(obs.encoder_ours, 0) << "converted frames come from videoconvert's own buffers";
  }
  if (!g_forced_backend.empty()) {
    EXPECT_EQ(obs.backend, g_forced_backend);
  }
  std::printf("[ %s %dx%d ] %s, backend %s, strides", c.format, c.width, c.height, obs.encoder_factory.c_str(),
              obs.backend.c_str());
  for (gint stride : obs.meta_strides) std::printf(" %d", stride);
  std::printf("\n");
}

INSTANTIATE_TEST_SUITE_P(
    MustShow, SourceWritesIntoPool,
    ::testing::Values(
        PipelineCase{"NV12", 1918, 1080, "codec=h264 candidates=x264enc", true},
        PipelineCase{"I420", 1918, 1080, "codec=h265 candidates=ccmx265enc", true},
        PipelineCase{"P010_10LE", 1920, 1080, "codec=h264 candidates=x264enc", false},
        PipelineCase{"I420_10LE", 1280, 720, "codec=h265 candidates=ccmx265enc hdr=true", true},
        PipelineCase{"NV12", 7680, 4320, "codec=h264 candidates=x264enc", true}),
    [](const auto& info) {
      return std::string(info.param.format) + "_" + std::to_string(info.param.width) + "x" +
             std::to_string(info.param.height);
    });

TEST(Pipeline, DmabufPoolPropertyOff) {
  Observation obs;
  auto r = run_observed(
      "videotestsrc num-buffers=2 ! video/x-raw,format=NV12,width=320,height=240,framerate=30/1 ! "
      "ccmencbin name=enc dmabuf-pool=false codec=h264 candidates=x264enc ! fakesink",
      &obs);
  ASSERT_TRUE(r.eos) << r.error;
  std::lock_guard lock(obs.lock);
  EXPECT_EQ(obs.at_bin, 2);
  EXPECT_EQ(obs.ours, 0);
}

// ccmratecontrol standalone offers the pool too: the source writes into it and our
// x265 (which takes I420 as it is) reads the very same memory.
TEST(Pipeline, RateControlStandaloneOffersPool) {
  constexpr int kFrames = 3;
  Observation obs;
  auto r = run_observed("videotestsrc num-buffers=3 ! video/x-raw,format=I420,width=638,height=360,framerate=30/1 ! "
                        "ccmratecontrol name=enc target-bitrate=500 ! ccmx265enc name=encoder ! fakesink",
                        &obs);
  ASSERT_TRUE(r.eos) << r.error;
  std::lock_guard lock(obs.lock);
  EXPECT_EQ(obs.ours, kFrames) << "videotestsrc wrote into ccmdmabuf memory";
  for (const auto& p : obs.problems) ADD_FAILURE() << p;
  EXPECT_EQ(obs.at_encoder, kFrames);
  EXPECT_EQ(obs.same_memory, kFrames) << "ccmx265enc reads the very memory the source wrote";
}

TEST(Pipeline, RateControlPoolPropertyOff) {
  Observation obs;
  auto r = run_observed("videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! "
                        "ccmratecontrol name=enc dmabuf-pool=false ! ccmx265enc name=encoder ! fakesink",
                        &obs);
  ASSERT_TRUE(r.eos) << r.error;
  std::lock_guard lock(obs.lock);
  EXPECT_EQ(obs.at_bin, 2);
  EXPECT_EQ(obs.ours, 0);
}

// ---- per backend (test_dmabufpool --backend=NAME) ---------------------------------------

TEST(Backend, PoolAllocatesFromForcedBackend) {
  ASSERT_FALSE(g_forced_backend.empty()) << "run with --backend=NAME";
  GstBufferPool* pool = make_pool("NV12", 1920, 1080, 2, 0);
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, TRUE));
  GstBuffer* buf = nullptr;
  ASSERT_EQ(gst_buffer_pool_acquire_buffer(pool, &buf, nullptr), GST_FLOW_OK);
  GstMemory* mem = gst_buffer_peek_memory(buf, 0);
  EXPECT_STREQ(ccm_dmabuf_memory_get_backend(mem), g_forced_backend.c_str());
  EXPECT_EQ(gst_is_dmabuf_memory(mem), g_forced_backend != "memfd");
  EXPECT_TRUE(gst_is_fd_memory(mem));
  GstVideoInfo info;
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_NV12, 1920, 1080);
  for (const auto& p : alignment_problems(buf, info, 256)) ADD_FAILURE() << p;
  // CPU access on a real DMABuf: the SYNC ioctls succeed (no warnings from GStreamer).
  {
    LogCapture log("dmabuf", GST_LEVEL_WARNING);
    GstMapInfo map;
    ASSERT_TRUE(gst_buffer_map(buf, &map, GST_MAP_READWRITE));
    memset(map.data, 0x10, map.size);
    gst_buffer_unmap(buf, &map);
    EXPECT_EQ(log.count("synchroniz"), 0);
  }
  Structure st(ccm_dmabuf_pool_get_stats(pool));
  EXPECT_EQ(str(st.get(), "forced-by"), "env");
  EXPECT_EQ(str(st.get(), "chain"), g_forced_backend);
  gst_buffer_unref(buf);
  ASSERT_TRUE(gst_buffer_pool_set_active(pool, FALSE));
  gst_object_unref(pool);
}

TEST(Backend, PipelineReadsForcedBackendMemory) {
  Observation obs;
  auto r = run_observed(
      "videotestsrc num-buffers=3 ! video/x-raw,format=NV12,width=1918,height=1080,framerate=30/1 ! "
      "ccmencbin name=enc codec=h264 candidates=x264enc ! fakesink",
      &obs);
  ASSERT_TRUE(r.eos) << r.error;
  std::lock_guard lock(obs.lock);
  EXPECT_EQ(obs.ours, 3);
  EXPECT_EQ(obs.backend, g_forced_backend);
  EXPECT_EQ(obs.dmabuf, g_forced_backend != "memfd");
  EXPECT_EQ(obs.same_memory, 3);
  for (const auto& p : obs.problems) ADD_FAILURE() << p;
}

// A real udmabuf over its limit falls to memfd.
TEST(Backend, UdmabufOverLimitFallsToMemfd) {
  if (g_forced_backend != "udmabuf") GTEST_SKIP() << "udmabuf only";
  std::vector<std::unique_ptr<Backend>> chain;
  chain.push_back(std::make_unique<ccm::memory::UdmabufBackend>("/dev/udmabuf", size_t(2) << 20));
  chain.push_back(std::make_unique<ccm::memory::MemfdBackend>());
  GstAllocator* allocator = ccm::memory::new_allocator(std::move(chain), AllocatorOptions{});
  GstMemory* small = gst_allocator_alloc(allocator, 1 << 20, nullptr);
  GstMemory* big = gst_allocator_alloc(allocator, 8 << 20, nullptr);
  ASSERT_TRUE(small && big);
  EXPECT_STREQ(ccm_dmabuf_memory_get_backend(small), "udmabuf");
  EXPECT_TRUE(gst_is_dmabuf_memory(small));
  EXPECT_STREQ(ccm_dmabuf_memory_get_backend(big), "memfd");
  EXPECT_FALSE(gst_is_dmabuf_memory(big));
  gst_memory_unref(small);
  gst_memory_unref(big);
  gst_object_unref(allocator);
}

}  // namespace

int main(int argc, char** argv) {
  const char* device = nullptr;
  std::vector<char*> args;
  for (int i = 0; i < argc; i++) {
    std::string_view a = argv[i];
    if (a.starts_with("--backend=")) {
      g_forced_backend = std::string(a.substr(10));
      continue;
    }
    args.push_back(argv[i]);
  }
  std::string filter;
  if (!g_forced_backend.empty()) {
    if (g_forced_backend == "dma-heap") device = "/dev/dma_heap/system";
    else if (g_forced_backend == "udmabuf") device = "/dev/udmabuf";
    else if (g_forced_backend != "memfd") {
      std::fprintf(stderr, "unknown backend %s\n", g_forced_backend.c_str());
      return 2;
    }
    if (device && access(device, R_OK) != 0) {
      std::printf("SKIP: %s: %s\n", device, std::strerror(errno));
      return 77;  // meson: skipped
    }
    g_setenv(CCM_DMABUF_BACKEND_ENV, g_forced_backend.c_str(), TRUE);
    filter = "--gtest_filter=Backend.*";
  } else {
    g_unsetenv(CCM_DMABUF_BACKEND_ENV);
    filter = "--gtest_filter=-Backend.*";
  }
  bool has_filter = false;
  for (char* a : args) has_filter |= std::string_view(a).starts_with("--gtest_filter");
  if (!has_filter) args.push_back(filter.data());
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  char** av = args.data();
  ::testing::InitGoogleTest(&n, av);
  ccm::test::init_gstreamer(&n, &av);
  const int rc = RUN_ALL_TESTS();
  gst_deinit();
  return rc;
}
