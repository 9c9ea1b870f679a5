// Constants of include/uapi/linux/userfaultfd.h and the layout of its read() record, struct uffd_msg.
//
// The ioctl numbers are computed from the argument struct sizes (listed beside them) with the generic
// _IOC encoding, the way the header defines them; userfaultfd.spec.ts pins the results as literals.
// Two oddities of the header are kept: UFFDIO_UNREGISTER and UFFDIO_WAKE are _IOR although the kernel
// only reads their argument (the header's own comment admits the mistake; fixing it would change the
// numbers), and UFFDIO_API is nr 0x3F, "the fixed number" every UFFD_API must keep.
// Modes and features are u64 in the kernel; they are numbers here because every bit fits in 2^53.

import { _IO, _IOR, _IOWR } from './ioc.ts'
import { decodeStruct, defineLayout, encodeStruct, type StructInput, type StructValue } from './layout.ts'

// ---- /dev/userfaultfd and userfaultfd(2) ------------------------------------------------------------
export const USERFAULTFD_IOC = 0xaa
/** ioctl on /dev/userfaultfd: returns a new userfaultfd, the argument being userfaultfd(2)'s flags. */
export const USERFAULTFD_IOC_NEW = _IO(USERFAULTFD_IOC, 0x00)
/** userfaultfd(2) flag: user-mode faults only; what an unprivileged caller needs when vm.unprivileged_userfaultfd is 0. */
export const UFFD_USER_MODE_ONLY = 1

/** uffdio_api.api: the only API version there has ever been. */
export const UFFD_API = 0xaa

// ---- ioctl numbers (nr values are also bit indices of uffdio_api.ioctls / uffdio_register.ioctls) ---
export const _UFFDIO_REGISTER = 0x00
export const _UFFDIO_UNREGISTER = 0x01
export const _UFFDIO_WAKE = 0x02
export const _UFFDIO_COPY = 0x03
export const _UFFDIO_ZEROPAGE = 0x04
export const _UFFDIO_MOVE = 0x05
export const _UFFDIO_WRITEPROTECT = 0x06
export const _UFFDIO_CONTINUE = 0x07
export const _UFFDIO_POISON = 0x08
export const _UFFDIO_API = 0x3f

/** Sizes of the ioctl argument structs (all members __u64 or __s64, no padding). */
export const UFFDIO_STRUCT_SIZE = {
  uffdio_api: 24, //          api, features, ioctls
  uffdio_range: 16, //        start, len
  uffdio_register: 32, //     range, mode, ioctls
  uffdio_copy: 40, //         dst, src, len, mode, copy (s64)
  uffdio_zeropage: 32, //     range, mode, zeropage (s64)
  uffdio_move: 40, //         dst, src, len, mode, move (s64)
  uffdio_writeprotect: 24, // range, mode
  uffdio_continue: 32, //     range, mode, mapped (s64)
  uffdio_poison: 32, //       range, mode, updated (s64)
} as const

export const UFFDIO = 0xaa
const S = UFFDIO_STRUCT_SIZE
export const UFFDIO_API = _IOWR(UFFDIO, _UFFDIO_API, S.uffdio_api)
export const UFFDIO_REGISTER = _IOWR(UFFDIO, _UFFDIO_REGISTER, S.uffdio_register)
export const UFFDIO_UNREGISTER = _IOR(UFFDIO, _UFFDIO_UNREGISTER, S.uffdio_range)
export const UFFDIO_WAKE = _IOR(UFFDIO, _UFFDIO_WAKE, S.uffdio_range)
export const UFFDIO_COPY = _IOWR(UFFDIO, _UFFDIO_COPY, S.uffdio_copy)
export const UFFDIO_ZEROPAGE = _IOWR(UFFDIO, _UFFDIO_ZEROPAGE, S.uffdio_zeropage)
export const UFFDIO_MOVE = _IOWR(UFFDIO, _UFFDIO_MOVE, S.uffdio_move)
export const UFFDIO_WRITEPROTECT = _IOWR(UFFDIO, _UFFDIO_WRITEPROTECT, S.uffdio_writeprotect)
export const UFFDIO_CONTINUE = _IOWR(UFFDIO, _UFFDIO_CONTINUE, S.uffdio_continue)
export const UFFDIO_POISON = _IOWR(UFFDIO, _UFFDIO_POISON, S.uffdio_poison)

/** uffdio_api.ioctls after UFFDIO_API: the ioctls valid on the uffd itself. */
export const UFFD_API_IOCTLS = (1n << BigInt(_UFFDIO_REGISTER)) | (1n << BigInt(_UFFDIO_UNREGISTER)) |
  (1n << BigInt(_UFFDIO_API))
/** uffdio_register.ioctls for a range that supports everything (anonymous memory). */
export const UFFD_API_RANGE_IOCTLS = (1n << BigInt(_UFFDIO_WAKE)) | (1n << BigInt(_UFFDIO_COPY)) |
  (1n << BigInt(_UFFDIO_ZEROPAGE)) | (1n << BigInt(_UFFDIO_MOVE)) | (1n << BigInt(_UFFDIO_WRITEPROTECT)) |
  (1n << BigInt(_UFFDIO_CONTINUE)) | (1n << BigInt(_UFFDIO_POISON))
/** uffdio_register.ioctls for a range containing hugetlb VMAs: no ZEROPAGE, no MOVE. */
export const UFFD_API_RANGE_IOCTLS_BASIC = (1n << BigInt(_UFFDIO_WAKE)) | (1n << BigInt(_UFFDIO_COPY)) |
  (1n << BigInt(_UFFDIO_WRITEPROTECT)) | (1n << BigInt(_UFFDIO_CONTINUE)) | (1n << BigInt(_UFFDIO_POISON))

// ---- modes ----------------------------------------------------------------------------------------
export const UFFDIO_REGISTER_MODE_MISSING = 1 << 0
export const UFFDIO_REGISTER_MODE_WP = 1 << 1
export const UFFDIO_REGISTER_MODE_MINOR = 1 << 2
export const UFFD_API_REGISTER_MODES =
  UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MINOR

export const UFFDIO_COPY_MODE_DONTWAKE = 1 << 0
/** Map the copied page write-protected (needs WP registration). */
export const UFFDIO_COPY_MODE_WP = 1 << 1
export const UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1 << 0
export const UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0
export const UFFDIO_WRITEPROTECT_MODE_DONTWAKE = 1 << 1
export const UFFDIO_CONTINUE_MODE_DONTWAKE = 1 << 0
export const UFFDIO_CONTINUE_MODE_WP = 1 << 1
export const UFFDIO_POISON_MODE_DONTWAKE = 1 << 0
export const UFFDIO_MOVE_MODE_DONTWAKE = 1 << 0
export const UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES = 1 << 1

// ---- events (uffd_msg.event; they start at 0x12 "to be more strict against bugs") -----------------
export const UFFD_EVENT_PAGEFAULT = 0x12
export const UFFD_EVENT_FORK = 0x13
export const UFFD_EVENT_REMAP = 0x14
export const UFFD_EVENT_REMOVE = 0x15
export const UFFD_EVENT_UNMAP = 0x16

/** uffd_msg.arg.pagefault.flags */
export const UFFD_PAGEFAULT_FLAG_WRITE = 1 << 0
export const UFFD_PAGEFAULT_FLAG_WP = 1 << 1
export const UFFD_PAGEFAULT_FLAG_MINOR = 1 << 2

// ---- features (uffdio_api.features) ---------------------------------------------------------------
export const UFFD_FEATURE_PAGEFAULT_FLAG_WP = 1 << 0
export const UFFD_FEATURE_EVENT_FORK = 1 << 1
export const UFFD_FEATURE_EVENT_REMAP = 1 << 2
export const UFFD_FEATURE_EVENT_REMOVE = 1 << 3
export const UFFD_FEATURE_MISSING_HUGETLBFS = 1 << 4
export const UFFD_FEATURE_MISSING_SHMEM = 1 << 5
export const UFFD_FEATURE_EVENT_UNMAP = 1 << 6
export const UFFD_FEATURE_SIGBUS = 1 << 7
/** uffd_msg.arg.pagefault.feat.ptid carries the faulting thread's id. */
export const UFFD_FEATURE_THREAD_ID = 1 << 8
export const UFFD_FEATURE_MINOR_HUGETLBFS = 1 << 9
export const UFFD_FEATURE_MINOR_SHMEM = 1 << 10
/** The fault address is reported exactly instead of masked to its page. */
export const UFFD_FEATURE_EXACT_ADDRESS = 1 << 11
export const UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12
export const UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
export const UFFD_FEATURE_POISON = 1 << 14
export const UFFD_FEATURE_WP_ASYNC = 1 << 15
export const UFFD_FEATURE_MOVE = 1 << 16

// ---- struct uffd_msg (32 bytes, __packed) ---------------------------------------------------------
/** The pagefault view of uffd_msg: the header and arg.pagefault, the member every handler reads. */
export const uffd_msg = defineLayout('uffd_msg', 32, {
  event: { offset: 0, type: 'u8' }, //                __u8  event;
  reserved1: { offset: 1, type: 'u8' }, //            __u8  reserved1;
  reserved2: { offset: 2, type: 'u16' }, //           __u16 reserved2;
  reserved3: { offset: 4, type: 'u32' }, //           __u32 reserved3;
  pagefaultFlags: { offset: 8, type: 'u64' }, //      arg.pagefault: __u64 flags;
  pagefaultAddress: { offset: 16, type: 'u64' }, //   arg.pagefault: __u64 address;
  pagefaultPtid: { offset: 24, type: 'u32' }, //      arg.pagefault: union { __u32 ptid; } feat;
})

export type UffdMsg = StructValue<typeof uffd_msg>
export type UffdMsgInput = StructInput<typeof uffd_msg>

export function encodeUffdMsg(value: UffdMsgInput): Uint8Array {
  return encodeStruct(uffd_msg, value)
}

export function decodeUffdMsg(bytes: Uint8Array, offset = 0): UffdMsg {
  return decodeStruct(uffd_msg, bytes, offset)
}
