// The Backend contract: the one interface every backend (emulator, native, remote) implements.
//
// It is shaped after what the kernel selftests do through kvm_util, with handles instead of pointers so
// that it can cross a process or a network. Every method is asynchronous for the same reason.
//
// Rules every implementation keeps:
// - A failing kernel call rejects with a KvmError carrying the kernel's errno name and the operation
//   (harness/errors.ts). Never a quiet success, never a string.
// - What a backend cannot do is declared in `info().features` (and KVM's own capabilities through
//   checkExtension); tests gate on those and skip with the reason. A method whose feature is absent
//   rejects with ENOSYS naming the feature, so a test that forgot to gate fails loudly instead of passing.
// - u64 fields are bigints on the way out; inputs accept number or bigint (U64In) so tests can write
//   plain literals where they fit.

import type { DemandPagingConfig, DemandPagingResult } from './demand-paging-types.ts'
import type { GuestProgram } from './guest-program.ts'

/** A u64 as given by a test: a number where it fits, a bigint where it must be exact. */
export type U64In = bigint | number

/** How a host mapping is backed (upstream `enum vm_mem_backing_src_type`, test_util.c). */
export type Backing = 'anonymous' | 'anonymous_thp' | 'anonymous_hugetlb' | 'shmem' | 'shared_hugetlb'

/** Abilities of a backend beyond KVM's capabilities: what the harness can drive through it. */
export type Feature =
  /** vCPUs run guest programs (KVM_RUN). */
  | 'vcpu'
  /** userfaultfd through the syscall and /dev/userfaultfd. */
  | 'userfaultfd'
  /** Host accesses that raise SIGBUS/SIGSEGV are caught and reported as HostFault. */
  | 'host-faults'
  /** runDemandPaging(): the demand-paging workload runs inside the backend. */
  | 'demand-paging'

export interface BackendInfo {
  /** `uname -r` of the kernel under test, or the emulator's profile name for the emulator. */
  kernelRelease: string
  /** `uname -m` of the machine under test. */
  arch: string
  /** The host page size in bytes. */
  pageSize: number
  /** The emulator's kernel profile, `null` for a real kernel. */
  profile: string | null
  /** Host backings that mmap() can create on this machine. */
  backings: Backing[]
  features: Feature[]
  /** Host name of the machine under test (the agent's for the remote backend). */
  host: string
}

// ---------------------------------------------------------------------------------------------------
// Backend: the system fd (/dev/kvm) plus the host process's memory.

export interface Backend {
  /** 'emulator', 'native' or 'remote'. */
  readonly name: string
  info(): Promise<BackendInfo>
  /** The /dev/kvm fd number in the backend's process (tests pass it where a wrong kind of fd is wanted). */
  readonly systemFd: number
  /** KVM_GET_API_VERSION on /dev/kvm: 12 on every kernel since 2.6.22. */
  getApiVersion(): Promise<number>
  /** KVM_CHECK_EXTENSION on /dev/kvm. */
  checkExtension(cap: number): Promise<number>
  /** KVM_CREATE_VM with the machine type (x86: `KVM_X86_*_VM`). */
  createVm(opts?: { type?: number }): Promise<Vm>
  /**
   * mmap(2) host memory of the given backing. Shared backings carry the memfd behind them.
   * `noreserve` adds MAP_NORESERVE: upstream maps KVM_CAP_NR_MEMSLOTS × 2 MiB (64 GiB) that way, which
   * the kernel's overcommit heuristic refuses otherwise.
   */
  mmap(opts: { size: U64In; backing: Backing; noreserve?: boolean }): Promise<HostMapping>
  /**
   * A userfault bitmap for a memslot of `npages` pages (KVM Userfault series, §F.3): an array of 64-bit
   * words in host memory that KVM reads and the test writes.
   */
  createUserfaultBitmap(npages: number): Promise<UserfaultBitmap>
  /** userfaultfd(2) (`via: 'syscall'`) or USERFAULTFD_IOC_NEW on /dev/userfaultfd (`via: 'dev'`). */
  openUffd(opts: { via: 'syscall' | 'dev'; flags?: number }): Promise<Uffd>
  /**
   * demand_paging_test's run_test() inside the backend (upstream-selftests.md §A, -k from §A.3): a VM
   * with memstress's region as memslot 1 (harness/kvm-util/memstress.ts), one thread per vCPU running
   * KVM_RUN until the guest's GUEST_SYNC after one pass over its pages, and with `uffdMode` the region
   * registered with userfaultfds (harness/kvm-util/userfaultfd-util.ts) whose reader threads resolve each
   * fault with UFFDIO_COPY of 0xAB pages (MISSING) or UFFDIO_CONTINUE over a page cache filled through an
   * alias mapping (MINOR), EEXIST tolerated. With `kvmUserfault`, KVM_MEM_USERFAULT with every bit set,
   * and each KVM_EXIT_MEMORY_FAULT with exactly KVM_MEMORY_EXIT_FLAG_USERFAULT resolved, its bit cleared
   * with release ordering and the vCPU re-entered. Everything per page stays inside the backend; the
   * VM, memory and fds it made are freed before the promise settles.
   *
   * Resolves with the timings (CLOCK_MONOTONIC from releasing the vCPUs until the last one joined),
   * each vCPU's outcome (a vCPU that exits other than by GUEST_SYNC is reported, not thrown), what the
   * resolvers and the KVM Userfault exits did, and `samplePages` pages read back after the run.
   * Rejects with TypeError/RangeError for a bad config (harness/kvm-util/demand-paging.ts), a KvmError
   * for a failing kernel call, KvmUserfaultUnsupported for `kvmUserfault` on a kernel that refuses
   * KVM_MEM_USERFAULT, and DemandPagingTimeout when the run outlives `timeoutMs` (it is stopped first).
   *
   * Present exactly when `info().features` lists 'demand-paging' (optional until every backend has it:
   * call it through harness/kvm-util/demand-paging.ts runDemandPaging(), which rejects with ENOSYS then).
   */
  runDemandPaging?(config: DemandPagingConfig): Promise<DemandPagingResult>
  /** Frees every VM, fd and mapping this backend created. */
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------------
// Host memory

export interface HostMapping {
  /** The host virtual address of the mapping's first byte, as the backend's process sees it. */
  readonly addr: bigint
  readonly size: bigint
  readonly backing: Backing | 'guest_memfd'
  /** The file behind a shared mapping (the memfd or the guest_memfd), `null` for anonymous memory. */
  readonly fd: number | null
  read(offset: U64In, length: number): Promise<Uint8Array>
  write(offset: U64In, data: Uint8Array): Promise<void>
  fill(offset: U64In, length: U64In, byte: number): Promise<void>
  /** The offset of the first byte in [offset, offset+length) that is not `byte`, or -1n. */
  findMismatch(offset: U64In, length: U64In, byte: number): Promise<bigint>
  /** A second mapping of the same file (upstream's alias mapping for MINOR faults); shared backings only. */
  alias(): Promise<HostMapping>
  /** madvise(2) over [offset, offset+length) of the mapping (MADV_* from harness/uapi/fs.ts). */
  madvise(advice: number, offset?: U64In, length?: U64In): Promise<void>
  /** munmap(2); closes the memfd behind it too. */
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------------
// VM

/** struct kvm_userspace_memory_region (KVM_SET_USER_MEMORY_REGION). */
export interface UserspaceMemoryRegion {
  /** u32: address space id in bits 16..31, slot id in bits 0..15. */
  slot: number
  /** u32: KVM_MEM_* flags. */
  flags: number
  guestPhysAddr: U64In
  /** 0 deletes the slot. */
  memorySize: U64In
  userspaceAddr: U64In
}

/** struct kvm_userspace_memory_region2 (KVM_SET_USER_MEMORY_REGION2); every field of the kernel struct. */
export interface UserspaceMemoryRegion2 extends UserspaceMemoryRegion {
  guestMemfdOffset?: U64In
  /** u32 fd number of a guest_memfd, read only with KVM_MEM_GUEST_MEMFD. */
  guestMemfd?: number
  pad1?: number
  /** KVM Userfault series: u64 user pointer at byte 48, taken from the first pad2 word. */
  userfaultBitmap?: U64In
  /** The remaining 13 pad2 words (bytes 56..159); upstream does not validate them. */
  pad2?: readonly U64In[]
}

/** struct kvm_memory_attributes (KVM_SET_MEMORY_ATTRIBUTES). */
export interface MemoryAttributes {
  address: U64In
  size: U64In
  attributes: U64In
  flags?: U64In
}

export interface Vm {
  /** The VM fd number in the backend's process. */
  readonly fd: number
  /** The machine type the VM was created with. */
  readonly type: number
  /** KVM_CHECK_EXTENSION on the VM fd (per-VM answers, e.g. KVM_CAP_GUEST_MEMFD_FLAGS). */
  checkExtension(cap: number): Promise<number>
  /** KVM_ENABLE_CAP on the VM fd. Resolves to the ioctl's return value. */
  enableCap(cap: number, args?: readonly U64In[], flags?: number): Promise<number>
  /** KVM_SET_USER_MEMORY_REGION: create, move, change flags of, or delete (size 0) a memslot. */
  setUserMemoryRegion(region: UserspaceMemoryRegion): Promise<void>
  /** KVM_SET_USER_MEMORY_REGION2: as above plus guest_memfd binding and the series' userfault_bitmap. */
  setUserMemoryRegion2(region: UserspaceMemoryRegion2): Promise<void>
  /** KVM_CREATE_GUEST_MEMFD. */
  createGuestMemfd(opts: { size: U64In; flags?: U64In; reserved?: readonly U64In[] }): Promise<GuestMemfd>
  /** KVM_SET_MEMORY_ATTRIBUTES. */
  setMemoryAttributes(attrs: MemoryAttributes): Promise<void>
  /** KVM_GET_DIRTY_LOG: the slot's dirty bitmap (one bit per page, little-endian 64-bit words). */
  getDirtyLog(slot: number): Promise<Uint8Array>
  /** KVM_SET_NR_MMU_PAGES. */
  setNrMmuPages(pages: number): Promise<void>
  /** KVM_CREATE_VCPU. */
  createVcpu(id: number): Promise<Vcpu>
  /** Closes the VM fd (and every vCPU of it). */
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------------
// guest_memfd

export interface GuestMemfdStat {
  /** st_size */
  size: bigint
  /** st_blksize */
  blockSize: number
  /** st_ino */
  ino: bigint
}

export interface GuestMemfd {
  readonly fd: number
  readonly flags: bigint
  /** fstat(2). */
  stat(): Promise<GuestMemfdStat>
  /** read(2); guest_memfd refuses it. */
  read(length: number): Promise<Uint8Array>
  /** write(2); guest_memfd refuses it. */
  write(data: Uint8Array): Promise<number>
  /** pread(2). */
  pread(length: number, offset: U64In): Promise<Uint8Array>
  /** pwrite(2). */
  pwrite(data: Uint8Array, offset: U64In): Promise<number>
  /** fallocate(2) with FALLOC_FL_* `mode`. */
  fallocate(mode: number, offset: U64In, length: U64In): Promise<void>
  /**
   * mmap(2) of the file; `shared: false` is MAP_PRIVATE. `align` places the mapping at an address that
   * is a multiple of it (upstream maps PMD-aligned to test huge-page collapse).
   */
  mmap(opts: { length: U64In; offset?: U64In; shared?: boolean; align?: U64In }): Promise<HostMapping>
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------------
// vCPU

/** One KVM_RUN's outcome, decoded from struct kvm_run. */
export type VcpuExit =
  | { kind: 'io'; port: number; size: number; direction: 'in' | 'out'; count: number; data: Uint8Array }
  | { kind: 'mmio'; physAddr: bigint; len: number; isWrite: boolean; data: Uint8Array }
  | { kind: 'hlt' }
  | { kind: 'shutdown' }
  | { kind: 'internal_error'; suberror: number; data: bigint[] }
  /** KVM_EXIT_MEMORY_FAULT: KVM_RUN returned -1 with `errno` (EFAULT or EHWPOISON) and this exit. */
  | { kind: 'memory_fault'; errno: 'EFAULT' | 'EHWPOISON'; flags: bigint; gpa: bigint; size: bigint }
  /** KVM_EXIT_INTR, or KVM_RUN returned EINTR after a kick or immediate_exit. */
  | { kind: 'intr' }
  | { kind: 'fail_entry'; reason: bigint }
  | { kind: 'other'; exitReason: number }

/** KVM_PRE_FAULT_MEMORY's in/out struct after one call. */
export type PreFaultResult =
  /** The ioctl returned 0: at least one page was processed; `gpa`/`size` are what is left. */
  | { ok: true; gpa: bigint; size: bigint }
  /** The ioctl returned -1; `gpa`/`size` are as the kernel left them. */
  | { ok: false; error: { code: string; errno: number }; gpa: bigint; size: bigint }

export interface RunOptions {
  /** Kick the vCPU if KVM_RUN has not returned by then; the run rejects with VcpuTimeout. */
  timeoutMs?: number
  /** Data for the guest's pending MMIO read, placed in kvm_run.mmio.data before re-entering. */
  mmioData?: Uint8Array
  /** Data for the guest's pending port-I/O `in`. */
  ioData?: Uint8Array
}

export interface Vcpu {
  readonly id: number
  readonly fd: number
  /** Places the guest program, its page tables and its registers (KVM_SET_SREGS/KVM_SET_REGS). */
  loadProgram(program: GuestProgram): Promise<void>
  /** KVM_RUN on the vCPU's own thread until it exits. */
  run(opts?: RunOptions): Promise<VcpuExit>
  /** Interrupts a running KVM_RUN (immediate_exit plus a signal to its thread). */
  kick(): Promise<void>
  /** KVM_PRE_FAULT_MEMORY (vCPU ioctl). */
  preFaultMemory(range: { gpa: U64In; size: U64In; flags?: U64In }): Promise<PreFaultResult>
  /** The guest's instruction pointer (KVM_GET_REGS), for exit assertions. */
  getRip(): Promise<bigint>
  /**
   * Which step of the loaded program the vCPU is in (from its RIP), `'halt'` in the trailing halt loop,
   * or `null` outside the program: upstream's final_rip_start/final_rip_end check, backend-neutral.
   */
  programStep(): Promise<number | 'halt' | null>
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------------
// KVM Userfault bitmap and userfaultfd

export interface UserfaultBitmap {
  /** The host address of word 0: what goes into `userfault_bitmap`. */
  readonly addr: bigint
  readonly npages: number
  /** Sets bit n (page `base_gfn + n` exits on a vCPU access). */
  set(n: number): Promise<void>
  /** Clears bit n with release ordering, as the series asks of a resolver. */
  clear(n: number): Promise<void>
  test(n: number): Promise<boolean>
  /** Sets or clears every bit. */
  fill(value: boolean): Promise<void>
  /** The words as KVM reads them: ceil(npages/64) 64-bit words, bit n%64 of word n/64. */
  words(): Promise<BigUint64Array>
  close(): Promise<void>
}

export type UffdEvent =
  | { kind: 'pagefault'; address: bigint; flags: bigint }
  | { kind: 'other'; event: number }

export interface Uffd {
  readonly fd: number
  /** UFFDIO_API. Resolves to the features and ioctls the kernel reports. */
  api(features?: U64In): Promise<{ features: bigint; ioctls: bigint }>
  /** UFFDIO_REGISTER with UFFDIO_REGISTER_MODE_* `mode`. Resolves to the allowed ioctls. */
  register(range: { start: U64In; len: U64In }, mode: number): Promise<{ ioctls: bigint }>
  unregister(range: { start: U64In; len: U64In }): Promise<void>
  /** UFFDIO_COPY from `data` (its length is the length). Resolves to the bytes copied. */
  copy(op: { dst: U64In; data: Uint8Array; mode?: number }): Promise<bigint>
  /** UFFDIO_ZEROPAGE. */
  zeropage(op: { start: U64In; len: U64In; mode?: number }): Promise<bigint>
  /** UFFDIO_CONTINUE. */
  continue(op: { start: U64In; len: U64In; mode?: number }): Promise<bigint>
  /** UFFDIO_WAKE. */
  wake(range: { start: U64In; len: U64In }): Promise<void>
  /** Reads the pending events without blocking (at most `max`). */
  readEvents(max?: number): Promise<UffdEvent[]>
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------------
// Loading

/** What loading a backend produced: the backend, or why this run cannot have it. */
export type BackendLoad =
  | { available: true; backend: Backend }
  | { available: false; reason: string }
