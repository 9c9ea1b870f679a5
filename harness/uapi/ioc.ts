// The ioctl number encoding of include/uapi/asm-generic/ioctl.h (_IOC, _IO, _IOR, _IOW, _IOWR and the
// _IOC_DIR/_IOC_TYPE/_IOC_NR/_IOC_SIZE decoders), which x86-64 and arm64 both use.
//
// A number packs four fields: nr in bits 0-7, type (the driver's magic, KVMIO = 0xAE) in bits 8-15, the
// argument's size in bits 16-29 and the direction in bits 30-31. The direction is seen from userspace:
// _IOC_WRITE means userspace writes the argument (the kernel reads it), _IOC_READ the reverse.
// powerpc, mips, sparc and alpha override the widths and direction values; kvmconf does not target them.
//
// The C macros take a type and apply sizeof(); these take the size in bytes, which the struct layouts
// in this directory provide (`kvm_userspace_memory_region2.size`). The kernel rejects sizes that do not
// fit 14 bits at compile time (_IOC_TYPECHECK); here every field is checked and a bad one is a
// RangeError. Results are unsigned 32-bit numbers, as the kernel's `unsigned int cmd` sees them.

export const _IOC_NRBITS = 8
export const _IOC_TYPEBITS = 8
export const _IOC_SIZEBITS = 14
export const _IOC_DIRBITS = 2

export const _IOC_NRSHIFT = 0
export const _IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
export const _IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
export const _IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS

export const _IOC_NONE = 0
export const _IOC_WRITE = 1
export const _IOC_READ = 2

function field(name: string, value: number, bits: number): number {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw new RangeError(`_IOC ${name} ${value} does not fit ${bits} bits`)
  }
  return value
}

/** _IOC(dir, type, nr, size): the ioctl number, unsigned. */
export function _IOC(dir: number, type: number, nr: number, size: number): number {
  // `* 2 ** shift` rather than `<<` for the direction: `2 << 30` is negative in a signed 32-bit int.
  return (
    field('dir', dir, _IOC_DIRBITS) * 2 ** _IOC_DIRSHIFT +
    field('size', size, _IOC_SIZEBITS) * 2 ** _IOC_SIZESHIFT +
    field('type', type, _IOC_TYPEBITS) * 2 ** _IOC_TYPESHIFT +
    field('nr', nr, _IOC_NRBITS) * 2 ** _IOC_NRSHIFT
  )
}

/** _IO(type, nr): no argument struct (the argument, if any, is passed by value). */
export function _IO(type: number, nr: number): number {
  return _IOC(_IOC_NONE, type, nr, 0)
}

/** _IOR(type, nr, size): the kernel writes a `size`-byte struct back to userspace. */
export function _IOR(type: number, nr: number, size: number): number {
  return _IOC(_IOC_READ, type, nr, size)
}

/** _IOW(type, nr, size): the kernel reads a `size`-byte struct from userspace. */
export function _IOW(type: number, nr: number, size: number): number {
  return _IOC(_IOC_WRITE, type, nr, size)
}

/** _IOWR(type, nr, size): both directions (KVM_CREATE_GUEST_MEMFD, KVM_PRE_FAULT_MEMORY, UFFDIO_COPY). */
export function _IOWR(type: number, nr: number, size: number): number {
  return _IOC(_IOC_READ | _IOC_WRITE, type, nr, size)
}

function unsigned(cmd: number): number {
  if (!Number.isInteger(cmd) || cmd < 0 || cmd > 0xffff_ffff) {
    throw new RangeError(`ioctl number ${cmd} is not an unsigned 32-bit integer`)
  }
  return cmd
}

export function _IOC_DIR(cmd: number): number {
  return Math.floor(unsigned(cmd) / 2 ** _IOC_DIRSHIFT) % 2 ** _IOC_DIRBITS
}

export function _IOC_TYPE(cmd: number): number {
  return Math.floor(unsigned(cmd) / 2 ** _IOC_TYPESHIFT) % 2 ** _IOC_TYPEBITS
}

export function _IOC_NR(cmd: number): number {
  return Math.floor(unsigned(cmd) / 2 ** _IOC_NRSHIFT) % 2 ** _IOC_NRBITS
}

export function _IOC_SIZE(cmd: number): number {
  return Math.floor(unsigned(cmd) / 2 ** _IOC_SIZESHIFT) % 2 ** _IOC_SIZEBITS
}
