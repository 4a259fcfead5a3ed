// Benchmark for ccmdmabufpool (not a test; scripts/bench-pool runs it).
//
//   bench_pool acquire <format> <w> <h> <iterations>   acquire/release latency, ours vs GstVideoBufferPool
//   bench_pool alloc <w> <h> <iterations>              allocation cost per backend (those this machine has)
//   bench_pool pipeline <w> <h> <frames> <on|off> [alignment]
//                                                      videotestsrc ! ccmencbin (x264enc), one process per run
//
// Each prints one JSON object per line.
#include "memory/backends.h"
#include "memory/ccmdmabufallocator.h"
#include "memory/ccmdmabufpool.h"
#include "pipeline_util.h"

#include <sys/resource.h>

#include <gst/gst.h>
#include <gst/video/video.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double ns_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

struct Summary {
  double median = 0, p99 = 0, mean = 0;
};

Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v[v.size() / 2];
  s.p99 = v[std::min(v.size() - 1, size_t(double(v.size()) * 0.99))];
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / double(v.size());
  return s;
}

GstBufferPool* configured(GstBufferPool* pool, const char* format, int w, int h, guint min, guint max) {
  GstCaps* caps = gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, format, "width", G_TYPE_INT, w,
                                      "height", G_TYPE_INT, h, "framerate", GST_TYPE_FRACTION, 30, 1, nullptr);
  GstVideoInfo info;
  gst_video_info_from_caps(&info, caps);
  GstStructure* config = gst_buffer_pool_get_config(pool);
  gst_buffer_pool_config_set_params(config, caps, (guint)info.size, min, max);
  gst_buffer_pool_config_add_option(config, GST_BUFFER_POOL_OPTION_VIDEO_META);
  gst_caps_unref(caps);
  if (!gst_buffer_pool_set_config(pool, config) || !gst_buffer_pool_set_active(pool, TRUE)) {
    std::fprintf(stderr, "pool setup failed\n");
    std::exit(1);
  }
  return pool;
}

// Acquire one buffer, write its first byte (a producer touches what it gets), release.
Summary acquire_release(GstBufferPool* pool, int iterations) {
  std::vector<double> samples;
  samples.reserve(iterations);
  for (int i = 0; i < 1000; i++) {  // warm up
    GstBuffer* b = nullptr;
    gst_buffer_pool_acquire_buffer(pool, &b, nullptr);
    gst_buffer_unref(b);
  }
  for (int i = 0; i < iterations; i++) {
    const auto t0 = Clock::now();
    GstBuffer* b = nullptr;
    if (gst_buffer_pool_acquire_buffer(pool, &b, nullptr) != GST_FLOW_OK) std::exit(1);
    gst_buffer_unref(b);
    samples.push_back(ns_since(t0));
  }
  return summarize(samples);
}

int cmd_acquire(const char* format, int w, int h, int iterations) {
  struct Variant {
    const char* name;
    GstBufferPool* pool;
  } variants[] = {{"GstVideoBufferPool", configured(gst_video_buffer_pool_new(), format, w, h, 4, 4)},
                  {"ccmdmabufpool", configured(ccm_dmabuf_pool_new(), format, w, h, 4, 4)}};
  for (auto& v : variants) {
    const Summary s = acquire_release(v.pool, iterations);
    std::printf("{\"bench\":\"acquire\",\"pool\":\"%s\",\"format\":\"%s\",\"width\":%d,\"height\":%d,"
                "\"iterations\":%d,\"median_ns\":%.0f,\"p99_ns\":%.0f,\"mean_ns\":%.0f}\n",
                v.name, format, w, h, iterations, s.median, s.p99, s.mean);
    gst_buffer_pool_set_active(v.pool, FALSE);
    gst_object_unref(v.pool);
  }
  return 0;
}

// Cost of a new frame buffer: allocation alone, and allocation plus the first
// full write (where lazily allocated memory pays its page faults).
int cmd_alloc(int w, int h, int iterations) {
  GstVideoInfo info;
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_NV12, w, h);
  const gsize size = info.size;
  struct Variant {
    std::string name;
    GstAllocator* allocator;  // nullptr: system memory
  };
  std::vector<Variant> variants;
  variants.push_back({"sysmem", nullptr});
  for (auto kind : {ccm::memory::BackendKind::DmaHeap, ccm::memory::BackendKind::Udmabuf,
                    ccm::memory::BackendKind::Memfd}) {
    auto chain = ccm::memory::make_backends(kind);
    std::string why;
    if (chain.front()->probe(&why) != ccm::memory::Backend::Probe::Usable) {
      std::printf("{\"bench\":\"alloc\",\"backend\":\"%s\",\"available\":false,\"why\":\"%s\"}\n",
                  ccm::memory::to_string(kind), why.c_str());
      continue;
    }
    for (bool prefault : {true, false}) {
      ccm::memory::AllocatorOptions options;
      options.backend = kind;
      options.prefault = prefault;
      variants.push_back({std::string(ccm::memory::to_string(kind)) + (prefault ? "" : " (no prefault)"),
                          ccm::memory::new_allocator(options)});
    }
  }
  for (auto& v : variants) {
    std::vector<double> alloc_ns, alloc_write_ns, free_ns;
    for (int i = 0; i < iterations; i++) {
      auto t0 = Clock::now();
      GstMemory* mem = gst_allocator_alloc(v.allocator, size, nullptr);
      if (!mem) return 1;
      alloc_ns.push_back(ns_since(t0));
      GstMapInfo map;
      gst_memory_map(mem, &map, GST_MAP_WRITE);
      std::memset(map.data, i, map.size);
      gst_memory_unmap(mem, &map);
      alloc_write_ns.push_back(ns_since(t0));
      t0 = Clock::now();
      gst_memory_unref(mem);
      free_ns.push_back(ns_since(t0));
    }
    const Summary a = summarize(alloc_ns), aw = summarize(alloc_write_ns), f = summarize(free_ns);
    std::printf("{\"bench\":\"alloc\",\"backend\":\"%s\",\"available\":true,\"bytes\":%zu,\"iterations\":%d,"
                "\"alloc_median_us\":%.1f,\"alloc_p99_us\":%.1f,\"alloc_write_median_us\":%.1f,"
                "\"alloc_write_p99_us\":%.1f,\"free_median_us\":%.1f}\n",
                v.name.c_str(), size, iterations, a.median / 1e3, a.p99 / 1e3, aw.median / 1e3, aw.p99 / 1e3,
                f.median / 1e3);
    if (v.allocator) gst_object_unref(v.allocator);
  }
  return 0;
}

// Benchmark only: re-configures the ccmdmabufpool in an answered ALLOCATION
// query with another alignment (ccmencbin always offers 256).
GstPadProbeReturn realign_pool(GstPad*, GstPadProbeInfo* info, gpointer user) {
  GstQuery* query = GST_PAD_PROBE_INFO_QUERY(info);
  if (GST_QUERY_TYPE(query) != GST_QUERY_ALLOCATION || gst_query_get_n_allocation_pools(query) == 0)
    return GST_PAD_PROBE_OK;
  GstBufferPool* pool = nullptr;
  guint size = 0, min = 0, max = 0;
  gst_query_parse_nth_allocation_pool(query, 0, &pool, &size, &min, &max);
  if (pool && GST_IS_CCM_DMABUF_POOL(pool)) {
    GstStructure* config = gst_buffer_pool_get_config(pool);
    ccm_dmabuf_pool_config_set_alignment(config, GPOINTER_TO_UINT(user));
    gst_buffer_pool_set_config(pool, config);
    config = gst_buffer_pool_get_config(pool);
    gst_buffer_pool_config_get_params(config, nullptr, &size, nullptr, nullptr);
    gst_structure_free(config);
    gst_query_set_nth_allocation_pool(query, 0, pool, size, min, max);
  }
  if (pool) gst_object_unref(pool);
  return GST_PAD_PROBE_OK;
}

int cmd_pipeline(int w, int h, int frames, bool pool, guint alignment) {
  const std::string desc = "videotestsrc name=src num-buffers=" + std::to_string(frames) +
                           " ! video/x-raw,format=NV12,width=" + std::to_string(w) + ",height=" + std::to_string(h) +
                           ",framerate=30/1 ! ccmencbin name=enc codec=h264 candidates=x264enc dmabuf-pool=" +
                           (pool ? "true" : "false") + " ! fakesink";
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  const auto t0 = Clock::now();
  GstElement* pipeline = gst_parse_launch(desc.c_str(), nullptr);
  if (!pipeline) return 1;
  if (pool && alignment != 256) {
    GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
    GstPad* pad = gst_element_get_static_pad(src, "src");
    gst_pad_add_probe(pad, GstPadProbeType(GST_PAD_PROBE_TYPE_QUERY_DOWNSTREAM | GST_PAD_PROBE_TYPE_PULL),
                      realign_pool, GUINT_TO_POINTER(alignment), nullptr);
    gst_object_unref(pad);
    gst_object_unref(src);
  }
  GstBus* bus = gst_element_get_bus(pipeline);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, 600 * GST_SECOND,
                                               GstMessageType(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  const bool eos = msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS;
  if (msg) gst_message_unref(msg);
  const double seconds = ns_since(t0) / 1e9;
  getrusage(RUSAGE_SELF, &after);
  GstStructure* stats = nullptr;
  GstElement* enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc");
  g_object_get(enc, "stats", &stats, nullptr);
  gst_object_unref(enc);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  if (!eos) {
    std::fprintf(stderr, "pipeline failed: %s\n", desc.c_str());
    if (stats) gst_structure_free(stats);
    return 1;
  }
  const double cpu = double(after.ru_utime.tv_sec - before.ru_utime.tv_sec + after.ru_stime.tv_sec -
                            before.ru_stime.tv_sec) +
                     double(after.ru_utime.tv_usec - before.ru_utime.tv_usec + after.ru_stime.tv_usec -
                            before.ru_stime.tv_usec) / 1e6;
  // ccmencbin's own figure: output frames per second from the first input to
  // the last output, without pipeline start-up and encoder selection.
  double encbin_fps = 0;
  if (stats) gst_structure_get_double(stats, "mean-fps", &encbin_fps);
  if (stats) gst_structure_free(stats);
  std::printf("{\"bench\":\"pipeline\",\"pool\":%s,\"alignment\":%u,\"width\":%d,\"height\":%d,\"frames\":%d,\"seconds\":%.3f,"
              "\"fps\":%.2f,\"encbin_fps\":%.2f,\"cpu_seconds\":%.3f,\"minor_faults\":%ld,\"major_faults\":%ld,"
              "\"max_rss_kib\":%ld}\n",
              pool ? "true" : "false", pool ? alignment : 0, w, h, frames, seconds, frames / seconds, encbin_fps, cpu,
              after.ru_minflt - before.ru_minflt, after.ru_majflt - before.ru_majflt, after.ru_maxrss);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ccm::test::init_gstreamer(&argc, &argv);
  const std::string cmd = argc > 1 ? argv[1] : "";
  int rc = 2;
  if (cmd == "acquire" && argc == 6)
    rc = cmd_acquire(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]));
  else if (cmd == "alloc" && argc == 5)
    rc = cmd_alloc(std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]));
  else if (cmd == "pipeline" && (argc == 6 || argc == 7))
    rc = cmd_pipeline(std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]), std::string(argv[5]) == "on",
                      argc == 7 ? std::atoi(argv[6]) : 256);
  else
    std::fprintf(stderr,
                 "usage: bench_pool acquire FORMAT W H N | alloc W H N | pipeline W H FRAMES on|off [ALIGNMENT]\n");
  gst_deinit();
  return rc;
}
