# The native backend's addon (backends/native). Built by backends/native/build.mjs, which runs node-gyp
# offline against Node's local headers and keeps every build output under backends/native/build/.
# -O1 instead of node-gyp's -O3: addon.cc instantiates much of node-addon-api and -O3 doubles its
# compile time; the hot paths are libc's memcpy/memset and syscalls.
{
  "targets": [
    {
      "target_name": "kvmconf_native",
      "sources": [
        "backends/native/src/addon.cc",
        "backends/native/src/blocking-pool.cc",
        "backends/native/src/demand-paging-run.cc",
        "backends/native/src/fault-guard.cc",
        "backends/native/src/guest-memfd.cc",
        "backends/native/src/host-mapping.cc",
        "backends/native/src/kvm-system.cc",
        "backends/native/src/page-resolver.cc",
        "backends/native/src/uffd.cc",
        "backends/native/src/uffd-handler.cc",
        "backends/native/src/userfault-bitmap.cc",
        "backends/native/src/vcpu-exit.cc",
        "backends/native/src/vcpu-thread.cc",
        "backends/native/src/vm.cc"
      ],
      "include_dirs": [
        "<!(node -p \"process.env.KVMCONF_NODE_ADDON_API || require('path').dirname(require.resolve('node-addon-api/package.json'))\")"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions", "-O3"],
      "cflags": ["-O1"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["-lpthread"]
    }
  ]
}
