// addon.cc: the only file that speaks Node-API. It checks every argument (wrong type -> TypeError,
// wrong range -> RangeError, never a crash), looks handles up (a closed or unknown handle -> EBADF),
// calls the plain C++ classes beside it, and turns their SysError into a JS error carrying the numeric
// `errno` and the `op` name (native.ts makes a KvmError of it).
//
// Threads: every exported function runs on the main (JavaScript) thread. Work that may block without
// bound runs elsewhere and comes back through one thread-safe function (`Poster`): host memory accesses
// on BlockingPool threads, KVM_RUN on each vCPU's own thread.

#include <napi.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "blocking-pool.h"
#include "demand-paging-run.h"
#include "fault-guard.h"
#include "guest-memfd.h"
#include "handle-table.h"
#include "host-mapping.h"
#include "kvm-system.h"
#include "kvm-uapi.h"
#include "signal.h"
#include "sys-error.h"
#include "uffd.h"
#include "unique-fd.h"
#include "userfault-bitmap.h"
#include "vcpu-thread.h"
#include "vm.h"

namespace {

// ---------------------------------------------------------------------------------------------------
// Completions: closures that other threads hand to the main thread.

using Completion = std::function<void(Napi::Env)>;

// Main thread (called by Node for each queued completion); env is null when the TSFN is torn down.
void runCompletion(Napi::Env env, Napi::Function, void*, Completion* c) {
  try {
    if (env != nullptr && c != nullptr) (*c)(env);
  } catch (const Napi::Error&) {
    // Only an allocation failure inside V8 gets here; there is no caller to tell, and an exception
    // must not leave this C callback.
  }
  delete c;
}

using Tsfn = Napi::TypedThreadSafeFunction<void, Completion, runCompletion>;

/** The thread-safe function, shared with the threads that post to it; closed at env teardown. */
struct Poster {
  std::mutex mu;
  bool open = true;
  Tsfn tsfn;

  // Any thread.
  void post(Completion c) {
    std::lock_guard<std::mutex> lock(mu);
    if (!open) return;
    auto* data = new Completion(std::move(c));
    if (tsfn.NonBlockingCall(data) != napi_ok) delete data;
  }
};

constexpr uint64_t kMaxIo = 1ull << 30;  // largest single read/write buffer the addon allocates

struct AddonState {
  HandleTable<KvmSystem> systems{1};
  HandleTable<Vm> vms{2};
  HandleTable<GuestMemfd> gmems{3};
  HandleTable<HostMapping> mappings{4};
  HandleTable<UserfaultBitmap> bitmaps{5};
  HandleTable<Uffd> uffds{6};
  HandleTable<VcpuThread> vcpus{7};
  BlockingPool pool;
  std::shared_ptr<Poster> poster = std::make_shared<Poster>();
  /** Promises waiting on another thread; while > 0 the TSFN keeps the event loop alive. */
  int inflight = 0;
  /** Demand-paging runs started, so that teardown can stop the ones still going. */
  std::vector<std::weak_ptr<DemandPagingRun>> runs;

  void beginAsync(Napi::Env env) {
    if (inflight++ == 0) poster->tsfn.Ref(env);
  }
  void endAsync(Napi::Env env) {
    if (--inflight == 0) poster->tsfn.Unref(env);
  }
};

AddonState& state(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }

// Main thread, at env teardown (worker exit or process exit): stop the threads from posting, close
// every object (vCPUs get kicked; nothing waits for them).
void teardown(AddonState* st) {
  {
    std::lock_guard<std::mutex> lock(st->poster->mu);
    st->poster->open = false;
    st->poster->tsfn.Abort();
  }
  st->pool.shutdown();
  for (auto& weak : st->runs) {
    if (auto run = weak.lock()) run->abort();
  }
  st->runs.clear();
  for (auto& v : st->vcpus.takeAll()) v->close();
  for (auto& vm : st->vms.takeAll()) vm->close();
  for (auto& g : st->gmems.takeAll()) g->close();
  for (auto& m : st->mappings.takeAll()) m->close();
  for (auto& b : st->bitmaps.takeAll()) b->close();
  for (auto& u : st->uffds.takeAll()) u->close();
  for (auto& s : st->systems.takeAll()) s->close();
}

// ---------------------------------------------------------------------------------------------------
// Errors

Napi::Error errnoError(Napi::Env env, int err, const char* op) {
  Napi::Error e = Napi::Error::New(env, std::string(op) + ": errno " + std::to_string(err));
  e.Set("name", Napi::String::New(env, "NativeErrnoError"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("op", Napi::String::New(env, op));
  return e;
}

Napi::Error hostFaultError(Napi::Env env, const HostFaultInfo& f, const char* op) {
  const char* sig = f.signo == SIGBUS ? "SIGBUS" : "SIGSEGV";
  Napi::Error e = Napi::Error::New(env, std::string(op) + ": " + sig);
  e.Set("name", Napi::String::New(env, "NativeHostFault"));
  e.Set("signal", Napi::String::New(env, sig));
  e.Set("address", Napi::BigInt::New(env, static_cast<uint64_t>(f.addr)));
  e.Set("op", Napi::String::New(env, op));
  return e;
}

[[noreturn]] void typeError(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
[[noreturn]] void rangeError(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

/** Wraps an export: SysError and bad_alloc become JS errors; TypeError/RangeError pass through. */
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const SysError& e) {
    throw errnoError(info.Env(), e.err(), e.op());
  } catch (const std::bad_alloc&) {
    throw errnoError(info.Env(), ENOMEM, "malloc");
  } catch (const std::length_error&) {
    throw errnoError(info.Env(), ENOMEM, "malloc");
  }
}

// ---------------------------------------------------------------------------------------------------
// Arguments

Napi::Value arg(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() ? info[i] : info.Env().Undefined();
}

double argNumber(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = arg(info, i);
  if (!v.IsNumber()) typeError(info.Env(), std::string(name) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

/** An integer Number in [min, max] (both within ±2^53). */
double argInteger(const Napi::CallbackInfo& info, size_t i, const char* name, double min, double max) {
  double d = argNumber(info, i, name);
  if (!std::isfinite(d) || std::trunc(d) != d || d < min || d > max) {
    rangeError(info.Env(), std::string(name) + " must be an integer in [" + std::to_string(static_cast<int64_t>(min)) +
                               ", " + std::to_string(static_cast<uint64_t>(max)) + "]");
  }
  return d;
}

uint32_t argU32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return static_cast<uint32_t>(argInteger(info, i, name, 0, 4294967295.0));
}

int32_t argI32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return static_cast<int32_t>(argInteger(info, i, name, -2147483648.0, 2147483647.0));
}

/** A handle id: any integer Number (unknown ones fail with EBADF at lookup). */
double argHandle(const Napi::CallbackInfo& info, size_t i) {
  return argInteger(info, i, "handle", -9007199254740991.0, 9007199254740991.0);
}

uint64_t argU64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = arg(info, i);
  if (!v.IsBigInt()) typeError(info.Env(), std::string(name) + " must be a bigint");
  bool lossless = false;
  uint64_t u = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) rangeError(info.Env(), std::string(name) + " must be a bigint in [0, 2^64 - 1]");
  return u;
}

bool argBool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = arg(info, i);
  if (!v.IsBoolean()) typeError(info.Env(), std::string(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string argString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = arg(info, i);
  if (!v.IsString()) typeError(info.Env(), std::string(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Uint8Array argBytes(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = arg(info, i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    typeError(info.Env(), std::string(name) + " must be a Uint8Array");
  }
  return v.As<Napi::Uint8Array>();
}

// A kernel struct passed as its raw bytes (struct kvm_regs, struct kvm_sregs): exactly sizeof(T) bytes.
template <typename T>
T argStruct(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Uint8Array d = argBytes(info, i, name);
  if (d.ByteLength() != sizeof(T)) rangeError(info.Env(), std::string(name) + " must be " + std::to_string(sizeof(T)) + " bytes");
  T t;
  memcpy(&t, d.Data(), sizeof t);
  return t;
}

bool isAbsent(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = arg(info, i);
  return v.IsUndefined() || v.IsNull();
}

/** A BigUint64Array of exactly n elements. */
std::vector<uint64_t> argU64Array(const Napi::CallbackInfo& info, size_t i, const char* name, size_t n) {
  Napi::Value v = arg(info, i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array) {
    typeError(info.Env(), std::string(name) + " must be a BigUint64Array");
  }
  Napi::TypedArrayOf<uint64_t> a = v.As<Napi::TypedArrayOf<uint64_t>>();
  if (a.ElementLength() != n) rangeError(info.Env(), std::string(name) + " must have " + std::to_string(n) + " elements");
  std::vector<uint64_t> out(n);
  if (n > 0) memcpy(out.data(), a.Data(), n * sizeof(uint64_t));
  return out;
}

/** [off, off + len) must lie inside a mapping of `size` bytes. */
void checkRange(Napi::Env env, uint64_t size, uint64_t off, uint64_t len) {
  if (off > size || len > size - off) rangeError(env, "offset and length must lie inside the mapping");
}

Napi::Uint8Array bytes(Napi::Env env, const void* data, size_t n) {
  Napi::Uint8Array a = Napi::Uint8Array::New(env, n);
  if (n > 0) memcpy(a.Data(), data, n);
  return a;
}

Napi::Value big(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }

// ---------------------------------------------------------------------------------------------------
// Running work on a pool thread

/**
 * Runs `work` on a BlockingPool thread and settles the returned promise on the main thread with
 * `finish(env, result)` (a thrown Napi::Error rejects).
 */
template <class R>
Napi::Value onPool(Napi::Env env, std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> finish) {
  AddonState& st = state(env);
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  st.beginAsync(env);
  std::shared_ptr<Poster> poster = st.poster;
  st.pool.submit([work = std::move(work), finish = std::move(finish), deferred, poster]() {
    // Pool thread.
    auto result = std::make_shared<R>(work());
    poster->post([finish, deferred, result](Napi::Env env) {
      // Main thread.
      state(env).endAsync(env);
      try {
        deferred.Resolve(finish(env, *result));
      } catch (const Napi::Error& e) {
        deferred.Reject(e.Value());
      }
    });
  });
  return deferred.Promise();
}

// ---------------------------------------------------------------------------------------------------
// Process-wide facts

Napi::Value PageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(sysconf(_SC_PAGESIZE)));
}

/** Live objects per kind (for leak tests and Backend.close diagnostics). */
Napi::Value Counts(const Napi::CallbackInfo& info) {
  AddonState& st = state(info.Env());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("systems", static_cast<double>(st.systems.size()));
  o.Set("vms", static_cast<double>(st.vms.size()));
  o.Set("vcpus", static_cast<double>(st.vcpus.size()));
  o.Set("guestMemfds", static_cast<double>(st.gmems.size()));
  o.Set("mappings", static_cast<double>(st.mappings.size()));
  o.Set("bitmaps", static_cast<double>(st.bitmaps.size()));
  o.Set("uffds", static_cast<double>(st.uffds.size()));
  o.Set("inflight", static_cast<double>(st.inflight));
  return o;
}

// ---------------------------------------------------------------------------------------------------
// /dev/kvm

Napi::Value SystemOpen(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), state(info.Env()).systems.add(std::make_shared<KvmSystem>()));
}

Napi::Value SystemFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), state(info.Env()).systems.get(argHandle(info, 0), "fd")->fd());
}

Napi::Value GetApiVersion(const Napi::CallbackInfo& info) {
  auto sys = state(info.Env()).systems.get(argHandle(info, 0), "KVM_GET_API_VERSION");
  return Napi::Number::New(info.Env(), sys->apiVersion());
}

Napi::Value CheckExtension(const Napi::CallbackInfo& info) {
  auto sys = state(info.Env()).systems.get(argHandle(info, 0), "KVM_CHECK_EXTENSION");
  return Napi::Number::New(info.Env(), sys->checkExtension(argU32(info, 1, "cap")));
}

Napi::Value GetVcpuMmapSize(const Napi::CallbackInfo& info) {
  auto sys = state(info.Env()).systems.get(argHandle(info, 0), "KVM_GET_VCPU_MMAP_SIZE");
  return Napi::Number::New(info.Env(), sys->vcpuMmapSize());
}

Napi::Value CreateVm(const Napi::CallbackInfo& info) {
  AddonState& st = state(info.Env());
  auto sys = st.systems.get(argHandle(info, 0), "KVM_CREATE_VM");
  uint32_t type = argU32(info, 1, "type");
  int mmapSize = sys->vcpuMmapSize();
  UniqueFd fd(sys->createVm(type));
  return Napi::Number::New(info.Env(), st.vms.add(std::make_shared<Vm>(std::move(fd), type, mmapSize)));
}

Napi::Value SystemClose(const Napi::CallbackInfo& info) {
  state(info.Env()).systems.take(argHandle(info, 0), "close")->close();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------------
// VM

Napi::Value VmFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), state(info.Env()).vms.get(argHandle(info, 0), "fd")->fd());
}

Napi::Value VmCheckExtension(const Napi::CallbackInfo& info) {
  auto vm = state(info.Env()).vms.get(argHandle(info, 0), "KVM_CHECK_EXTENSION");
  return Napi::Number::New(info.Env(), vm->checkExtension(argU32(info, 1, "cap")));
}

// (vm, cap, flags, args: BigUint64Array(4))
Napi::Value VmEnableCap(const Napi::CallbackInfo& info) {
  auto vm = state(info.Env()).vms.get(argHandle(info, 0), "KVM_ENABLE_CAP");
  uint32_t cap = argU32(info, 1, "cap");
  uint32_t flags = argU32(info, 2, "flags");
  std::vector<uint64_t> args = argU64Array(info, 3, "args", 4);
  return Napi::Number::New(info.Env(), vm->enableCap(cap, flags, args.data()));
}

// (vm, slot, flags, guestPhysAddr, memorySize, userspaceAddr)
Napi::Value VmSetUserMemoryRegion(const Napi::CallbackInfo& info) {
  auto vm = state(info.Env()).vms.get(argHandle(info, 0), "KVM_SET_USER_MEMORY_REGION");
  struct kvm_userspace_memory_region r;
  memset(&r, 0, sizeof r);
  r.slot = argU32(info, 1, "slot");
  r.flags = argU32(info, 2, "flags");
  r.guest_phys_addr = argU64(info, 3, "guestPhysAddr");
  r.memory_size = argU64(info, 4, "memorySize");
  r.userspace_addr = argU64(info, 5, "userspaceAddr");
  vm->setUserMemoryRegion(r);
  return info.Env().Undefined();
}

// (vm, slot, flags, guestPhysAddr, memorySize, userspaceAddr, guestMemfdOffset, guestMemfd, pad1,
//  userfaultBitmap, pad2: BigUint64Array(13))
Napi::Value VmSetUserMemoryRegion2(const Napi::CallbackInfo& info) {
  auto vm = state(info.Env()).vms.get(argHandle(info, 0), "KVM_SET_USER_MEMORY_REGION2");
  kvmuapi::UserspaceMemoryRegion2 r;
  memset(&r, 0, sizeof r);
  r.slot = argU32(info, 1, "slot");
  r.flags = argU32(info, 2, "flags");
  r.guest_phys_addr = argU64(info, 3, "guestPhysAddr");
  r.memory_size = argU64(info, 4, "memorySize");
  r.userspace_addr = argU64(info, 5, "userspaceAddr");
  r.guest_memfd_offset = argU64(info, 6, "guestMemfdOffset");
  r.guest_memfd = argU32(info, 7, "guestMemfd");
  r.pad1 = argU32(info, 8, "pad1");
  r.userfault_bitmap = argU64(info, 9, "userfaultBitmap");
  std::vector<uint64_t> pad2 = argU64Array(info, 10, "pad2", 13);
  memcpy(r.pad2, pad2.data(), sizeof r.pad2);
  vm->setUserMemoryRegion2(r);
  return info.Env().Undefined();
}

// (vm, size, flags, reserved: BigUint64Array(6)) -> guest_memfd handle
Napi::Value VmCreateGuestMemfd(const Napi::CallbackInfo& info) {
  AddonState& st = state(info.Env());
  auto vm = st.vms.get(argHandle(info, 0), "KVM_CREATE_GUEST_MEMFD");
  kvmuapi::CreateGuestMemfd a;
  memset(&a, 0, sizeof a);
  a.size = argU64(info, 1, "size");
  a.flags = argU64(info, 2, "flags");
  std::vector<uint64_t> reserved = argU64Array(info, 3, "reserved", 6);
  memcpy(a.reserved, reserved.data(), sizeof a.reserved);
  UniqueFd fd(vm->createGuestMemfd(a));  // owned at once: a failure below closes it
  auto g = std::make_shared<GuestMemfd>(std::move(fd), a.flags);
  return Napi::Number::New(info.Env(), st.gmems.add(g));
}

// (vm, address, size, attributes, flags)
Napi::Value VmSetMemoryAttributes(const Napi::CallbackInfo& info) {
  auto vm = state(info.Env()).vms.get(argHandle(info, 0), "KVM_SET_MEMORY_ATTRIBUTES");
  kvmuapi::MemoryAttributes a;
  a.address = argU64(info, 1, "address");
  a.size = argU64(info, 2, "size");
  a.attributes = argU64(info, 3, "attributes");
  a.flags = argU64(info, 4, "flags");
  vm->setMemoryAttributes(a);
  return info.Env().Undefined();
}

// (vm, slot, npages) -> Uint8Array of ceil(npages/64) little-endian u64 words
Napi::Value VmGetDirtyLog(const Napi::CallbackInfo& info) {
  auto vm = state(info.Env()).vms.get(argHandle(info, 0), "KVM_GET_DIRTY_LOG");
  uint32_t slot = argU32(info, 1, "slot");
  uint64_t npages = static_cast<uint64_t>(argInteger(info, 2, "npages", 0, 2147483647.0));
  std::vector<uint64_t> words = vm->getDirtyLog(slot, npages);
  return bytes(info.Env(), words.data(), words.size() * sizeof(uint64_t));
}

Napi::Value VmSetNrMmuPages(const Napi::CallbackInfo& info) {
  auto vm = state(info.Env()).vms.get(argHandle(info, 0), "KVM_SET_NR_MMU_PAGES");
  vm->setNrMmuPages(argU64(info, 1, "pages"));
  return info.Env().Undefined();
}

Napi::Value VmCreateVcpu(const Napi::CallbackInfo& info) {
  AddonState& st = state(info.Env());
  auto vm = st.vms.get(argHandle(info, 0), "KVM_CREATE_VCPU");
  uint32_t id = argU32(info, 1, "id");
  return Napi::Number::New(info.Env(), st.vcpus.add(vm->createVcpu(id)));
}

Napi::Value VmClose(const Napi::CallbackInfo& info) {
  state(info.Env()).vms.take(argHandle(info, 0), "close")->close();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------------
// guest_memfd

Napi::Value GmemFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), state(info.Env()).gmems.get(argHandle(info, 0), "fd")->fd());
}

Napi::Value GmemStat(const Napi::CallbackInfo& info) {
  auto g = state(info.Env()).gmems.get(argHandle(info, 0), "fstat");
  GuestMemfd::Stat s = g->stat();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("size", big(info.Env(), s.size));
  o.Set("blockSize", Napi::Number::New(info.Env(), static_cast<double>(s.blockSize)));
  o.Set("ino", big(info.Env(), s.ino));
  return o;
}

std::unique_ptr<uint8_t[]> ioBuffer(size_t len) { return std::unique_ptr<uint8_t[]>(new uint8_t[len ? len : 1]); }

Napi::Value GmemRead(const Napi::CallbackInfo& info) {
  auto g = state(info.Env()).gmems.get(argHandle(info, 0), "read");
  size_t len = static_cast<size_t>(argInteger(info, 1, "length", 0, static_cast<double>(kMaxIo)));
  auto buf = ioBuffer(len);
  ssize_t n = g->read(buf.get(), len);
  return bytes(info.Env(), buf.get(), static_cast<size_t>(n));
}

Napi::Value GmemWrite(const Napi::CallbackInfo& info) {
  auto g = state(info.Env()).gmems.get(argHandle(info, 0), "write");
  Napi::Uint8Array data = argBytes(info, 1, "data");
  return Napi::Number::New(info.Env(), static_cast<double>(g->write(data.Data(), data.ByteLength())));
}

Napi::Value GmemPread(const Napi::CallbackInfo& info) {
  auto g = state(info.Env()).gmems.get(argHandle(info, 0), "pread");
  size_t len = static_cast<size_t>(argInteger(info, 1, "length", 0, static_cast<double>(kMaxIo)));
  uint64_t off = argU64(info, 2, "offset");
  auto buf = ioBuffer(len);
  ssize_t n = g->pread(buf.get(), len, off);
  return bytes(info.Env(), buf.get(), static_cast<size_t>(n));
}

Napi::Value GmemPwrite(const Napi::CallbackInfo& info) {
  auto g = state(info.Env()).gmems.get(argHandle(info, 0), "pwrite");
  Napi::Uint8Array data = argBytes(info, 1, "data");
  uint64_t off = argU64(info, 2, "offset");
  return Napi::Number::New(info.Env(), static_cast<double>(g->pwrite(data.Data(), data.ByteLength(), off)));
}

// (gmem, mode, offset, length)
Napi::Value GmemFallocate(const Napi::CallbackInfo& info) {
  auto g = state(info.Env()).gmems.get(argHandle(info, 0), "fallocate");
  int mode = argI32(info, 1, "mode");
  uint64_t off = argU64(info, 2, "offset");
  uint64_t len = argU64(info, 3, "length");
  g->fallocate(mode, off, len);
  return info.Env().Undefined();
}

// (gmem, length, offset, shared, align) -> mapping handle; align is 0 or a power of two
Napi::Value GmemMmap(const Napi::CallbackInfo& info) {
  AddonState& st = state(info.Env());
  auto g = st.gmems.get(argHandle(info, 0), "mmap");
  uint64_t length = argU64(info, 1, "length");
  uint64_t offset = argU64(info, 2, "offset");
  bool shared = argBool(info, 3, "shared");
  uint64_t align = argU64(info, 4, "align");
  if ((align & (align - 1)) != 0 || align > (1ull << 40)) rangeError(info.Env(), "align must be 0 or a power of two up to 2^40");
  return Napi::Number::New(info.Env(), st.mappings.add(g->mmap(length, offset, shared, align)));
}

Napi::Value GmemClose(const Napi::CallbackInfo& info) {
  state(info.Env()).gmems.take(argHandle(info, 0), "close")->close();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------------
// Host mappings

// (size, backing, noreserve) -> mapping handle
Napi::Value MappingCreate(const Napi::CallbackInfo& info) {
  uint64_t size = argU64(info, 0, "size");
  std::string backing = argString(info, 1, "backing");
  bool noreserve = argBool(info, 2, "noreserve");
  if (backing != "anonymous" && backing != "anonymous_thp" && backing != "anonymous_hugetlb" && backing != "shmem" &&
      backing != "shared_hugetlb") {
    rangeError(info.Env(), "backing must be one of anonymous, anonymous_thp, anonymous_hugetlb, shmem, shared_hugetlb");
  }
  return Napi::Number::New(info.Env(), state(info.Env()).mappings.add(HostMapping::create(size, backing, noreserve)));
}

/** { addr: bigint, size: bigint, backing: string, fd: number | null } */
Napi::Value MappingInfo(const Napi::CallbackInfo& info) {
  auto m = state(info.Env()).mappings.get(argHandle(info, 0), "mmap");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("addr", big(info.Env(), m->addr()));
  o.Set("size", big(info.Env(), m->size()));
  o.Set("backing", Napi::String::New(info.Env(), m->backing()));
  o.Set("fd", m->fd() >= 0 ? Napi::Number::New(info.Env(), m->fd()) : info.Env().Null());
  return o;
}

Napi::Value MappingAlias(const Napi::CallbackInfo& info) {
  AddonState& st = state(info.Env());
  auto m = st.mappings.get(argHandle(info, 0), "mmap");
  return Napi::Number::New(info.Env(), st.mappings.add(m->alias()));
}

struct ReadResult {
  std::unique_ptr<uint8_t[]> buf;
  size_t len = 0;
  HostFaultInfo fault{0, 0};
};

// (mapping, offset, length) -> Promise<Uint8Array>
Napi::Value MappingRead(const Napi::CallbackInfo& info) {
  auto m = state(info.Env()).mappings.get(argHandle(info, 0), "read");
  uint64_t off = argU64(info, 1, "offset");
  size_t len = static_cast<size_t>(argInteger(info, 2, "length", 0, static_cast<double>(kMaxIo)));
  checkRange(info.Env(), m->size(), off, len);
  // Allocated here so that a failed allocation is an ENOMEM error, not an exception on a pool thread.
  auto buf = std::make_shared<std::unique_ptr<uint8_t[]>>(ioBuffer(len));
  return onPool<ReadResult>(
      info.Env(),
      [m, off, len, buf]() {
        ReadResult r;
        r.buf = std::move(*buf);
        r.len = len;
        r.fault = m->read(off, r.buf.get(), len);
        return r;
      },
      [](Napi::Env env, ReadResult& r) -> Napi::Value {
        if (r.fault.signo != 0) throw hostFaultError(env, r.fault, "read");
        return bytes(env, r.buf.get(), r.len);
      });
}

// (mapping, offset, data) -> Promise<void>
Napi::Value MappingWrite(const Napi::CallbackInfo& info) {
  auto m = state(info.Env()).mappings.get(argHandle(info, 0), "write");
  uint64_t off = argU64(info, 1, "offset");
  Napi::Uint8Array data = argBytes(info, 2, "data");
  checkRange(info.Env(), m->size(), off, data.ByteLength());
  auto copy = std::make_shared<std::vector<uint8_t>>(data.Data(), data.Data() + data.ByteLength());
  return onPool<HostFaultInfo>(
      info.Env(), [m, off, copy]() { return m->write(off, copy->data(), copy->size()); },
      [](Napi::Env env, HostFaultInfo& f) -> Napi::Value {
        if (f.signo != 0) throw hostFaultError(env, f, "write");
        return env.Undefined();
      });
}

// (mapping, offset, length, byte) -> Promise<void>
Napi::Value MappingFill(const Napi::CallbackInfo& info) {
  auto m = state(info.Env()).mappings.get(argHandle(info, 0), "fill");
  uint64_t off = argU64(info, 1, "offset");
  uint64_t len = argU64(info, 2, "length");
  uint8_t b = static_cast<uint8_t>(argInteger(info, 3, "byte", 0, 255));
  checkRange(info.Env(), m->size(), off, len);
  return onPool<HostFaultInfo>(
      info.Env(), [m, off, len, b]() { return m->fill(off, static_cast<size_t>(len), b); },
      [](Napi::Env env, HostFaultInfo& f) -> Napi::Value {
        if (f.signo != 0) throw hostFaultError(env, f, "fill");
        return env.Undefined();
      });
}

struct MismatchResult {
  HostFaultInfo fault{0, 0};
  int64_t at = -1;
};

// (mapping, offset, length, byte) -> Promise<bigint> (offset relative to `offset`'s mapping start, or -1n)
Napi::Value MappingFindMismatch(const Napi::CallbackInfo& info) {
  auto m = state(info.Env()).mappings.get(argHandle(info, 0), "findMismatch");
  uint64_t off = argU64(info, 1, "offset");
  uint64_t len = argU64(info, 2, "length");
  uint8_t b = static_cast<uint8_t>(argInteger(info, 3, "byte", 0, 255));
  checkRange(info.Env(), m->size(), off, len);
  return onPool<MismatchResult>(
      info.Env(),
      [m, off, len, b]() {
        MismatchResult r;
        r.fault = m->findMismatch(off, static_cast<size_t>(len), b, &r.at);
        return r;
      },
      [off](Napi::Env env, MismatchResult& r) -> Napi::Value {
        if (r.fault.signo != 0) throw hostFaultError(env, r.fault, "findMismatch");
        if (r.at < 0) return Napi::BigInt::New(env, static_cast<int64_t>(-1));
        return Napi::BigInt::New(env, off + static_cast<uint64_t>(r.at));
      });
}

// (mapping, advice, offset, length) -> Promise<void>
Napi::Value MappingMadvise(const Napi::CallbackInfo& info) {
  auto m = state(info.Env()).mappings.get(argHandle(info, 0), "madvise");
  int advice = argI32(info, 1, "advice");
  uint64_t off = argU64(info, 2, "offset");
  uint64_t len = argU64(info, 3, "length");
  checkRange(info.Env(), m->size(), off, len);
  return onPool<int>(
      info.Env(), [m, off, len, advice]() { return m->madvise(off, len, advice); },
      [](Napi::Env env, int& err) -> Napi::Value {
        if (err != 0) throw errnoError(env, err, "madvise");
        return env.Undefined();
      });
}

Napi::Value MappingClose(const Napi::CallbackInfo& info) {
  state(info.Env()).mappings.take(argHandle(info, 0), "munmap")->close();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------------
// Userfault bitmap

Napi::Value BitmapCreate(const Napi::CallbackInfo& info) {
  uint64_t npages = static_cast<uint64_t>(argInteger(info, 0, "npages", 0, 2147483647.0));
  return Napi::Number::New(info.Env(), state(info.Env()).bitmaps.add(std::make_shared<UserfaultBitmap>(npages)));
}

Napi::Value BitmapAddr(const Napi::CallbackInfo& info) {
  auto b = state(info.Env()).bitmaps.get(argHandle(info, 0), "addr");
  return big(info.Env(), b->addr());
}

/** Bit index argument: an integer in [0, npages). */
uint64_t argBit(const Napi::CallbackInfo& info, size_t i, const UserfaultBitmap& b) {
  double n = argInteger(info, i, "n", 0, 9007199254740991.0);
  if (n >= static_cast<double>(b.npages())) rangeError(info.Env(), "n must be below npages");
  return static_cast<uint64_t>(n);
}

Napi::Value BitmapSet(const Napi::CallbackInfo& info) {
  auto b = state(info.Env()).bitmaps.get(argHandle(info, 0), "set");
  b->set(argBit(info, 1, *b));
  return info.Env().Undefined();
}

Napi::Value BitmapClear(const Napi::CallbackInfo& info) {
  auto b = state(info.Env()).bitmaps.get(argHandle(info, 0), "clear");
  b->clear(argBit(info, 1, *b));
  return info.Env().Undefined();
}

Napi::Value BitmapTest(const Napi::CallbackInfo& info) {
  auto b = state(info.Env()).bitmaps.get(argHandle(info, 0), "test");
  return Napi::Boolean::New(info.Env(), b->test(argBit(info, 1, *b)));
}

Napi::Value BitmapFill(const Napi::CallbackInfo& info) {
  auto b = state(info.Env()).bitmaps.get(argHandle(info, 0), "fill");
  b->fill(argBool(info, 1, "value"));
  return info.Env().Undefined();
}

Napi::Value BitmapWords(const Napi::CallbackInfo& info) {
  auto b = state(info.Env()).bitmaps.get(argHandle(info, 0), "words");
  std::vector<uint64_t> w = b->words();
  Napi::TypedArrayOf<uint64_t> out = Napi::TypedArrayOf<uint64_t>::New(info.Env(), w.size(), napi_biguint64_array);
  if (!w.empty()) memcpy(out.Data(), w.data(), w.size() * sizeof(uint64_t));
  return out;
}

Napi::Value BitmapClose(const Napi::CallbackInfo& info) {
  state(info.Env()).bitmaps.take(argHandle(info, 0), "close")->close();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------------
// userfaultfd

// (via: 'syscall' | 'dev', flags) -> uffd handle
Napi::Value UffdOpen(const Napi::CallbackInfo& info) {
  std::string via = argString(info, 0, "via");
  if (via != "syscall" && via != "dev") rangeError(info.Env(), "via must be 'syscall' or 'dev'");
  int flags = argI32(info, 1, "flags");
  return Napi::Number::New(info.Env(), state(info.Env()).uffds.add(std::make_shared<Uffd>(via == "dev", flags)));
}

Napi::Value UffdFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), state(info.Env()).uffds.get(argHandle(info, 0), "fd")->fd());
}

Napi::Value UffdApi(const Napi::CallbackInfo& info) {
  auto u = state(info.Env()).uffds.get(argHandle(info, 0), "UFFDIO_API");
  Uffd::ApiResult r = u->api(argU64(info, 1, "features"));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("api", big(info.Env(), r.api));
  o.Set("features", big(info.Env(), r.features));
  o.Set("ioctls", big(info.Env(), r.ioctls));
  return o;
}

Napi::Value UffdRegister(const Napi::CallbackInfo& info) {
  auto u = state(info.Env()).uffds.get(argHandle(info, 0), "UFFDIO_REGISTER");
  uint64_t start = argU64(info, 1, "start");
  uint64_t len = argU64(info, 2, "len");
  uint64_t mode = argU64(info, 3, "mode");
  return big(info.Env(), u->registerRange(start, len, mode));
}

Napi::Value UffdUnregister(const Napi::CallbackInfo& info) {
  auto u = state(info.Env()).uffds.get(argHandle(info, 0), "UFFDIO_UNREGISTER");
  u->unregisterRange(argU64(info, 1, "start"), argU64(info, 2, "len"));
  return info.Env().Undefined();
}

// (uffd, dst, data, mode) -> bigint bytes copied
Napi::Value UffdCopy(const Napi::CallbackInfo& info) {
  auto u = state(info.Env()).uffds.get(argHandle(info, 0), "UFFDIO_COPY");
  uint64_t dst = argU64(info, 1, "dst");
  Napi::Uint8Array data = argBytes(info, 2, "data");
  uint64_t mode = argU64(info, 3, "mode");
  return Napi::BigInt::New(info.Env(), u->copy(dst, data.Data(), data.ByteLength(), mode));
}

Napi::Value UffdZeropage(const Napi::CallbackInfo& info) {
  auto u = state(info.Env()).uffds.get(argHandle(info, 0), "UFFDIO_ZEROPAGE");
  uint64_t start = argU64(info, 1, "start");
  uint64_t len = argU64(info, 2, "len");
  uint64_t mode = argU64(info, 3, "mode");
  return Napi::BigInt::New(info.Env(), u->zeropage(start, len, mode));
}

Napi::Value UffdContinue(const Napi::CallbackInfo& info) {
  auto u = state(info.Env()).uffds.get(argHandle(info, 0), "UFFDIO_CONTINUE");
  uint64_t start = argU64(info, 1, "start");
  uint64_t len = argU64(info, 2, "len");
  uint64_t mode = argU64(info, 3, "mode");
  return Napi::BigInt::New(info.Env(), u->continueRange(start, len, mode));
}

Napi::Value UffdWake(const Napi::CallbackInfo& info) {
  auto u = state(info.Env()).uffds.get(argHandle(info, 0), "UFFDIO_WAKE");
  u->wake(argU64(info, 1, "start"), argU64(info, 2, "len"));
  return info.Env().Undefined();
}

// (uffd, max) -> [{ event, address, flags }]
Napi::Value UffdReadEvents(const Napi::CallbackInfo& info) {
  auto u = state(info.Env()).uffds.get(argHandle(info, 0), "read");
  size_t max = static_cast<size_t>(argInteger(info, 1, "max", 0, 4096));
  std::vector<Uffd::Event> events = u->readEvents(max);
  Napi::Array out = Napi::Array::New(info.Env(), events.size());
  for (size_t i = 0; i < events.size(); i++) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("event", Napi::Number::New(info.Env(), events[i].event));
    o.Set("address", big(info.Env(), events[i].address));
    o.Set("flags", big(info.Env(), events[i].flags));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Value UffdClose(const Napi::CallbackInfo& info) {
  state(info.Env()).uffds.take(argHandle(info, 0), "close")->close();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------------
// vCPU

Napi::Value VcpuFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), state(info.Env()).vcpus.get(argHandle(info, 0), "fd")->fd());
}

/** The raw exit object; native.ts shapes it into harness/backend.ts's VcpuExit. */
Napi::Value exitToJs(Napi::Env env, const VcpuExit& e) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("exitReason", Napi::Number::New(env, e.exitReason));
  switch (e.kind) {
    case VcpuExit::Kind::Io:
      o.Set("kind", "io");
      o.Set("port", Napi::Number::New(env, e.port));
      o.Set("size", Napi::Number::New(env, e.size));
      o.Set("direction", Napi::String::New(env, e.direction == KVM_EXIT_IO_OUT ? "out" : "in"));
      o.Set("count", Napi::Number::New(env, e.count));
      o.Set("data", bytes(env, e.data.data(), e.data.size()));
      break;
    case VcpuExit::Kind::Mmio:
      o.Set("kind", "mmio");
      o.Set("physAddr", big(env, e.physAddr));
      o.Set("len", Napi::Number::New(env, e.len));
      o.Set("isWrite", Napi::Boolean::New(env, e.isWrite));
      o.Set("data", bytes(env, e.data.data(), e.data.size()));
      break;
    case VcpuExit::Kind::Hlt:
      o.Set("kind", "hlt");
      break;
    case VcpuExit::Kind::Shutdown:
      o.Set("kind", "shutdown");
      break;
    case VcpuExit::Kind::InternalError: {
      o.Set("kind", "internal_error");
      o.Set("suberror", Napi::Number::New(env, e.suberror));
      Napi::Array d = Napi::Array::New(env, e.internalData.size());
      for (size_t i = 0; i < e.internalData.size(); i++) d.Set(static_cast<uint32_t>(i), big(env, e.internalData[i]));
      o.Set("data", d);
      break;
    }
    case VcpuExit::Kind::MemoryFault:
      o.Set("kind", "memory_fault");
      o.Set("errno", Napi::Number::New(env, e.err));
      o.Set("flags", big(env, e.flags));
      o.Set("gpa", big(env, e.gpa));
      o.Set("size", big(env, e.faultSize));
      break;
    case VcpuExit::Kind::Intr:
      o.Set("kind", "intr");
      break;
    case VcpuExit::Kind::FailEntry:
      o.Set("kind", "fail_entry");
      o.Set("reason", big(env, e.failReason));
      break;
    case VcpuExit::Kind::Other:
    case VcpuExit::Kind::Error:
      o.Set("kind", "other");
      break;
  }
  return o;
}

// (vcpu, mmioData?: Uint8Array, ioData?: Uint8Array) -> Promise<raw exit>
Napi::Value VcpuRun(const Napi::CallbackInfo& info) {
  AddonState& st = state(info.Env());
  auto v = st.vcpus.get(argHandle(info, 0), "KVM_RUN");
  VcpuThread::RunInput in;
  if (!isAbsent(info, 1)) {
    Napi::Uint8Array d = argBytes(info, 1, "mmioData");
    if (d.ByteLength() > 8) rangeError(info.Env(), "mmioData must be at most 8 bytes");
    in.hasMmioData = true;
    in.mmioData.assign(d.Data(), d.Data() + d.ByteLength());
  }
  if (!isAbsent(info, 2)) {
    Napi::Uint8Array d = argBytes(info, 2, "ioData");
    in.hasIoData = true;
    in.ioData.assign(d.Data(), d.Data() + d.ByteLength());
  }
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(info.Env());
  std::shared_ptr<Poster> poster = st.poster;
  st.beginAsync(info.Env());
  try {
    v->run(std::move(in), [poster, deferred](const VcpuExit& exit) {
      // The vCPU thread (or the main thread when a queued run is closed).
      auto e = std::make_shared<VcpuExit>(exit);
      poster->post([deferred, e](Napi::Env env) {
        // Main thread.
        state(env).endAsync(env);
        if (e->kind == VcpuExit::Kind::Error) {
          deferred.Reject(errnoError(env, e->err, "KVM_RUN").Value());
        } else {
          deferred.Resolve(exitToJs(env, *e));
        }
      });
    });
  } catch (...) {
    st.endAsync(info.Env());
    throw;
  }
  return deferred.Promise();
}

// (vcpu, gpa, size, flags) -> Promise<{ ret, errno, gpa, size }>
Napi::Value VcpuPreFaultMemory(const Napi::CallbackInfo& info) {
  AddonState& st = state(info.Env());
  auto v = st.vcpus.get(argHandle(info, 0), "KVM_PRE_FAULT_MEMORY");
  uint64_t gpa = argU64(info, 1, "gpa");
  uint64_t size = argU64(info, 2, "size");
  uint64_t flags = argU64(info, 3, "flags");
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(info.Env());
  std::shared_ptr<Poster> poster = st.poster;
  st.beginAsync(info.Env());
  try {
    v->preFault(gpa, size, flags, [poster, deferred](const VcpuThread::PreFaultResult& r) {
      // The vCPU thread (or the main thread when a queued call is closed).
      poster->post([deferred, r](Napi::Env env) {
        // Main thread.
        state(env).endAsync(env);
        Napi::Object o = Napi::Object::New(env);
        o.Set("ret", Napi::Number::New(env, r.ret));
        o.Set("errno", Napi::Number::New(env, r.err));
        o.Set("gpa", big(env, r.gpa));
        o.Set("size", big(env, r.size));
        deferred.Resolve(o);
      });
    });
  } catch (...) {
    st.endAsync(info.Env());
    throw;
  }
  return deferred.Promise();
}

Napi::Value VcpuKick(const Napi::CallbackInfo& info) {
  state(info.Env()).vcpus.get(argHandle(info, 0), "kick")->kick();
  return info.Env().Undefined();
}

Napi::Value VcpuGetRegs(const Napi::CallbackInfo& info) {
  struct kvm_regs r = state(info.Env()).vcpus.get(argHandle(info, 0), "KVM_GET_REGS")->getRegs();
  return bytes(info.Env(), &r, sizeof r);
}

Napi::Value VcpuSetRegs(const Napi::CallbackInfo& info) {
  auto v = state(info.Env()).vcpus.get(argHandle(info, 0), "KVM_SET_REGS");
  v->setRegs(argStruct<struct kvm_regs>(info, 1, "regs"));
  return info.Env().Undefined();
}

Napi::Value VcpuGetSregs(const Napi::CallbackInfo& info) {
  struct kvm_sregs s = state(info.Env()).vcpus.get(argHandle(info, 0), "KVM_GET_SREGS")->getSregs();
  return bytes(info.Env(), &s, sizeof s);
}

Napi::Value VcpuSetSregs(const Napi::CallbackInfo& info) {
  auto v = state(info.Env()).vcpus.get(argHandle(info, 0), "KVM_SET_SREGS");
  v->setSregs(argStruct<struct kvm_sregs>(info, 1, "sregs"));
  return info.Env().Undefined();
}

Napi::Value VcpuClose(const Napi::CallbackInfo& info) {
  state(info.Env()).vcpus.take(argHandle(info, 0), "close")->close();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------------
// Demand paging (demand-paging-run.h): the spec object's fields are checked like arguments.

Napi::Value prop(const Napi::Object& o, const char* name) { return o.Get(name); }

double propInteger(Napi::Env env, const Napi::Object& o, const char* name, double min, double max) {
  Napi::Value v = prop(o, name);
  if (!v.IsNumber()) typeError(env, std::string("spec.") + name + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < min || d > max) {
    rangeError(env, std::string("spec.") + name + " must be an integer in [" + std::to_string(static_cast<int64_t>(min)) +
                        ", " + std::to_string(static_cast<uint64_t>(max)) + "]");
  }
  return d;
}

uint64_t propU64(Napi::Env env, const Napi::Object& o, const char* name) {
  Napi::Value v = prop(o, name);
  if (!v.IsBigInt()) typeError(env, std::string("spec.") + name + " must be a bigint");
  bool lossless = false;
  uint64_t u = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) rangeError(env, std::string("spec.") + name + " must be a bigint in [0, 2^64 - 1]");
  return u;
}

Napi::Array propArray(Napi::Env env, const Napi::Object& o, const char* name, uint32_t maxLength) {
  Napi::Value v = prop(o, name);
  if (!v.IsArray()) typeError(env, std::string("spec.") + name + " must be an array");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > maxLength) rangeError(env, std::string("spec.") + name + " has more than " + std::to_string(maxLength) + " entries");
  return a;
}

Napi::Object elementObject(Napi::Env env, const Napi::Array& a, uint32_t i, const char* name) {
  Napi::Value v = a.Get(i);
  if (!v.IsObject() || v.IsArray()) typeError(env, std::string("spec.") + name + "[" + std::to_string(i) + "] must be an object");
  return v.As<Napi::Object>();
}

void propStruct(Napi::Env env, const Napi::Object& o, const char* name, void* out, size_t size) {
  Napi::Value v = prop(o, name);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    typeError(env, std::string("spec.") + name + " must be a Uint8Array");
  }
  Napi::Uint8Array b = v.As<Napi::Uint8Array>();
  if (b.ByteLength() != size) rangeError(env, std::string("spec.") + name + " must be " + std::to_string(size) + " bytes");
  memcpy(out, b.Data(), size);
}

bool isPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

/** The outcome as the raw object native/demand-paging.ts shapes into a DemandPagingResult. */
Napi::Value outcomeToJs(Napi::Env env, const DemandPagingRun::Outcome& out) {
  auto num = [&](uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  Napi::Object o = Napi::Object::New(env);
  if (out.err != 0) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("errno", Napi::Number::New(env, out.err));
    e.Set("op", Napi::String::New(env, out.op != nullptr ? out.op : "demand paging"));
    o.Set("error", e);
  } else {
    o.Set("error", env.Null());
  }
  o.Set("timedOut", Napi::Boolean::New(env, out.timedOut));
  o.Set("elapsedNs", big(env, out.elapsedNs));
  Napi::Array vcpus = Napi::Array::New(env, out.vcpus.size());
  for (size_t i = 0; i < out.vcpus.size(); i++) {
    const DemandPagingRun::VcpuOutcome& v = out.vcpus[i];
    Napi::Object vo = Napi::Object::New(env);
    vo.Set("synced", Napi::Boolean::New(env, v.synced));
    vo.Set("elapsedNs", big(env, v.elapsedNs));
    vo.Set("exit", v.synced ? env.Null() : exitToJs(env, v.exit));
    vo.Set("userfaultExits", num(v.userfaultExits));
    vcpus.Set(static_cast<uint32_t>(i), vo);
  }
  o.Set("vcpus", vcpus);
  Napi::Object u = Napi::Object::New(env);
  u.Set("uffds", num(out.uffds));
  u.Set("faults", num(out.faults));
  u.Set("resolved", num(out.resolved));
  u.Set("eexist", num(out.eexist));
  u.Set("wakes", num(out.wakes));
  u.Set("units", num(out.units));
  u.Set("unitsOnce", num(out.unitsOnce));
  u.Set("unitsMore", num(out.unitsMore));
  u.Set("unitsNever", num(out.unitsNever));
  o.Set("uffd", u);
  Napi::Object k = Napi::Object::New(env);
  k.Set("exits", num(out.userfaultExits));
  k.Set("pagesWithExit", num(out.pagesWithExit));
  k.Set("pagesWithMoreExits", num(out.pagesWithMoreExits));
  k.Set("violationCount", num(out.violationCount));
  Napi::Array viol = Napi::Array::New(env, out.violations.size());
  for (size_t i = 0; i < out.violations.size(); i++) {
    const DemandPagingRun::Violation& v = out.violations[i];
    Napi::Object vo = Napi::Object::New(env);
    vo.Set("vcpu", Napi::Number::New(env, v.vcpu));
    vo.Set("gpa", big(env, v.gpa));
    vo.Set("size", big(env, v.size));
    vo.Set("flags", big(env, v.flags));
    vo.Set("why", Napi::String::New(env, v.why));
    viol.Set(static_cast<uint32_t>(i), vo);
  }
  k.Set("violations", viol);
  o.Set("kvmUserfault", k);
  o.Set("pagesWithoutWrite", out.pagesWithoutWrite < 0 ? env.Null() : num(static_cast<uint64_t>(out.pagesWithoutWrite)));
  return o;
}

constexpr uint32_t kMaxRunVcpus = 1024;
constexpr uint32_t kMaxUffds = 1024;

// (vm, region mapping, bitmap | null, spec) -> Promise<raw outcome>. The spec's fields: see
// native/addon.ts (RawDemandPagingSpec). The promise settles when every thread of the run has joined.
Napi::Value DemandPagingRunStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& st = state(env);
  DemandPagingRun::Spec spec;
  spec.vm = st.vms.get(argHandle(info, 0), "KVM_CREATE_VCPU");
  spec.region = st.mappings.get(argHandle(info, 1), "mmap");
  if (!isAbsent(info, 2)) spec.bitmap = st.bitmaps.get(argHandle(info, 2), "KVM_SET_USER_MEMORY_REGION2");
  Napi::Value specValue = arg(info, 3);
  if (!specValue.IsObject() || specValue.IsArray()) typeError(env, "spec must be an object");
  Napi::Object o = specValue.As<Napi::Object>();

  const uint64_t regionSize = spec.region->size();
  const uintptr_t regionHva = spec.region->addr();
  spec.hostPageSize = static_cast<uint64_t>(propInteger(env, o, "hostPageSize", 1, 1073741824.0));
  if (spec.hostPageSize != static_cast<uint64_t>(sysconf(_SC_PAGESIZE))) rangeError(env, "spec.hostPageSize must be the host's page size");
  spec.unitBytes = static_cast<uint64_t>(propInteger(env, o, "unitBytes", 1, 1073741824.0));
  spec.guestPageSize = static_cast<uint64_t>(propInteger(env, o, "guestPageSize", 8, 1073741824.0));
  if (!isPowerOfTwo(spec.unitBytes) || spec.unitBytes < spec.hostPageSize || !isPowerOfTwo(spec.guestPageSize)) {
    rangeError(env, "spec.unitBytes and spec.guestPageSize must be powers of two, unitBytes at least a host page");
  }
  if (regionSize == 0 || regionSize % spec.unitBytes != 0 || regionSize % spec.guestPageSize != 0 ||
      regionHva % spec.unitBytes != 0) {
    rangeError(env, "the region mapping must be a non-empty multiple of spec.unitBytes and spec.guestPageSize, aligned to unitBytes");
  }
  spec.regionGpa = propU64(env, o, "regionGpa");
  if (spec.regionGpa % spec.hostPageSize != 0 || spec.regionGpa > UINT64_MAX - regionSize) {
    rangeError(env, "spec.regionGpa must be page aligned and leave room for the region");
  }
  spec.syncPort = static_cast<uint16_t>(propInteger(env, o, "syncPort", 0, 65535));

  Napi::Array vcpus = propArray(env, o, "vcpus", kMaxRunVcpus);
  if (vcpus.Length() == 0) rangeError(env, "spec.vcpus must not be empty");
  for (uint32_t i = 0; i < vcpus.Length(); i++) {
    Napi::Object v = elementObject(env, vcpus, i, "vcpus");
    DemandPagingRun::VcpuSpec vs;
    vs.id = static_cast<uint32_t>(propInteger(env, v, "id", 0, 4294967295.0));
    propStruct(env, v, "regs", &vs.regs, sizeof vs.regs);
    propStruct(env, v, "sregs", &vs.sregs, sizeof vs.sregs);
    vs.cpu = static_cast<int>(propInteger(env, v, "cpu", -1, CPU_SETSIZE - 1));
    spec.vcpus.push_back(vs);
  }
  spec.mainCpu = static_cast<int>(propInteger(env, o, "mainCpu", -1, CPU_SETSIZE - 1));

  Napi::Value mode = prop(o, "uffdMode");
  if (mode.IsNull()) {
    spec.uffdMode = PageResolver::Mode::None;
  } else if (mode.IsString() && mode.As<Napi::String>().Utf8Value() == "MISSING") {
    spec.uffdMode = PageResolver::Mode::Missing;
  } else if (mode.IsString() && mode.As<Napi::String>().Utf8Value() == "MINOR") {
    spec.uffdMode = PageResolver::Mode::Minor;
  } else {
    typeError(env, "spec.uffdMode must be 'MISSING', 'MINOR' or null");
  }
  Napi::Array ranges = propArray(env, o, "uffdRanges", kMaxUffds);
  if ((spec.uffdMode == PageResolver::Mode::None) != (ranges.Length() == 0)) {
    rangeError(env, "spec.uffdRanges must be empty exactly when spec.uffdMode is null");
  }
  for (uint32_t i = 0; i < ranges.Length(); i++) {
    Napi::Object r = elementObject(env, ranges, i, "uffdRanges");
    DemandPagingRun::UffdRange range{propU64(env, r, "gpa"), propU64(env, r, "len")};
    if (range.gpa < spec.regionGpa || range.len == 0 || range.gpa - spec.regionGpa > regionSize ||
        range.len > regionSize - (range.gpa - spec.regionGpa) || (range.gpa - spec.regionGpa) % spec.unitBytes != 0 ||
        range.len % spec.unitBytes != 0) {
      rangeError(env, "spec.uffdRanges[" + std::to_string(i) + "] must be a unit-aligned part of the region");
    }
    spec.uffdRanges.push_back(range);
  }
  spec.registerMode = propU64(env, o, "registerMode");
  spec.expectedIoctl = propU64(env, o, "expectedIoctl");
  spec.readersPerUffd = static_cast<uint32_t>(propInteger(env, o, "readersPerUffd", 1, 1024));
  spec.delayUs = static_cast<uint32_t>(propInteger(env, o, "delayUs", 0, 4294967295.0));
  if (spec.bitmap && spec.bitmap->npages() < regionSize / spec.hostPageSize) {
    rangeError(env, "the userfault bitmap must have a bit per host page of the region");
  }
  Napi::Value wv = prop(o, "writeValue");
  if (!wv.IsNull()) {
    spec.checkWrites = true;
    spec.writeValue = propU64(env, o, "writeValue");
  }
  spec.timeoutMs = static_cast<uint32_t>(propInteger(env, o, "timeoutMs", 1, 2147483647.0));

  auto run = std::make_shared<DemandPagingRun>(std::move(spec));
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  std::shared_ptr<Poster> poster = st.poster;
  st.beginAsync(env);
  try {
    std::weak_ptr<DemandPagingRun> weak = run;
    run->start([poster, deferred, weak](DemandPagingRun::Outcome& out) {
      // The run's coordinator thread (it holds the run, so `weak` locks).
      auto shared = std::make_shared<DemandPagingRun::Outcome>(std::move(out));
      std::shared_ptr<DemandPagingRun> run = weak.lock();
      poster->post([deferred, shared, run](Napi::Env env) {
        // Main thread: the coordinator only returns after posting; join it before settling.
        run->join();
        state(env).endAsync(env);
        deferred.Resolve(outcomeToJs(env, *shared));
      });
    });
  } catch (...) {
    st.endAsync(env);
    throw;
  }
  auto& runs = st.runs;
  runs.erase(std::remove_if(runs.begin(), runs.end(), [](const std::weak_ptr<DemandPagingRun>& w) { return w.expired(); }),
             runs.end());
  runs.push_back(run);
  return deferred.Promise();
}

// ---------------------------------------------------------------------------------------------------
// Module

#define EXPORT(name, fn) exports.Set(name, Napi::Function::New(env, guarded<fn>, name))

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  if (int err = FaultGuard::install()) throw errnoError(env, err, "sigaction");
  if (int err = kick_signal::install()) throw errnoError(env, err, "sigaction");

  auto* st = new AddonState();
  st->poster->tsfn = Tsfn::New(env, "kvmconf-native", 0, 1);
  st->poster->tsfn.Unref(env);
  env.SetInstanceData<AddonState>(st);  // deleted by Node after the cleanup hook below
  env.AddCleanupHook([st]() { teardown(st); });

  EXPORT("pageSize", PageSize);
  EXPORT("counts", Counts);

  EXPORT("systemOpen", SystemOpen);
  EXPORT("systemFd", SystemFd);
  EXPORT("getApiVersion", GetApiVersion);
  EXPORT("checkExtension", CheckExtension);
  EXPORT("getVcpuMmapSize", GetVcpuMmapSize);
  EXPORT("createVm", CreateVm);
  EXPORT("systemClose", SystemClose);

  EXPORT("vmFd", VmFd);
  EXPORT("vmCheckExtension", VmCheckExtension);
  EXPORT("vmEnableCap", VmEnableCap);
  EXPORT("vmSetUserMemoryRegion", VmSetUserMemoryRegion);
  EXPORT("vmSetUserMemoryRegion2", VmSetUserMemoryRegion2);
  EXPORT("vmCreateGuestMemfd", VmCreateGuestMemfd);
  EXPORT("vmSetMemoryAttributes", VmSetMemoryAttributes);
  EXPORT("vmGetDirtyLog", VmGetDirtyLog);
  EXPORT("vmSetNrMmuPages", VmSetNrMmuPages);
  EXPORT("vmCreateVcpu", VmCreateVcpu);
  EXPORT("vmClose", VmClose);

  EXPORT("gmemFd", GmemFd);
  EXPORT("gmemStat", GmemStat);
  EXPORT("gmemRead", GmemRead);
  EXPORT("gmemWrite", GmemWrite);
  EXPORT("gmemPread", GmemPread);
  EXPORT("gmemPwrite", GmemPwrite);
  EXPORT("gmemFallocate", GmemFallocate);
  EXPORT("gmemMmap", GmemMmap);
  EXPORT("gmemClose", GmemClose);

  EXPORT("mappingCreate", MappingCreate);
  EXPORT("mappingInfo", MappingInfo);
  EXPORT("mappingAlias", MappingAlias);
  EXPORT("mappingRead", MappingRead);
  EXPORT("mappingWrite", MappingWrite);
  EXPORT("mappingFill", MappingFill);
  EXPORT("mappingFindMismatch", MappingFindMismatch);
  EXPORT("mappingMadvise", MappingMadvise);
  EXPORT("mappingClose", MappingClose);

  EXPORT("bitmapCreate", BitmapCreate);
  EXPORT("bitmapAddr", BitmapAddr);
  EXPORT("bitmapSet", BitmapSet);
  EXPORT("bitmapClear", BitmapClear);
  EXPORT("bitmapTest", BitmapTest);
  EXPORT("bitmapFill", BitmapFill);
  EXPORT("bitmapWords", BitmapWords);
  EXPORT("bitmapClose", BitmapClose);

  EXPORT("uffdOpen", UffdOpen);
  EXPORT("uffdFd", UffdFd);
  EXPORT("uffdApi", UffdApi);
  EXPORT("uffdRegister", UffdRegister);
  EXPORT("uffdUnregister", UffdUnregister);
  EXPORT("uffdCopy", UffdCopy);
  EXPORT("uffdZeropage", UffdZeropage);
  EXPORT("uffdContinue", UffdContinue);
  EXPORT("uffdWake", UffdWake);
  EXPORT("uffdReadEvents", UffdReadEvents);
  EXPORT("uffdClose", UffdClose);

  EXPORT("vcpuFd", VcpuFd);
  EXPORT("vcpuRun", VcpuRun);
  EXPORT("vcpuKick", VcpuKick);
  EXPORT("vcpuPreFaultMemory", VcpuPreFaultMemory);
  EXPORT("vcpuGetRegs", VcpuGetRegs);
  EXPORT("vcpuSetRegs", VcpuSetRegs);
  EXPORT("vcpuGetSregs", VcpuGetSregs);
  EXPORT("vcpuSetSregs", VcpuSetSregs);
  EXPORT("vcpuClose", VcpuClose);

  EXPORT("demandPagingRun", DemandPagingRunStart);
  return exports;
}

}  // namespace

NODE_API_MODULE(kvmconf_native, Init)
