// The native backend's guest code: GuestProgram -> x86-64 long-mode code, page tables, descriptor tables
// and the KVM_SET_REGS/KVM_SET_SREGS buffers, all as bytes. Pure TypeScript: no I/O, no addon.
//
// Integration (backends/native): once per VM, mmap BOOT_SLOT_SIZE bytes and register them as memslot 0
// at GPA 0; per vCPU, compileGuestProgram(program, { vcpuId }), write `writes` (or, with one vCPU,
// `bootSlot.bytes`) into that mapping, then KVM_SET_SREGS(sregs) and KVM_SET_REGS(regs).

export { compileGuestProgram, stepAt, type BootWrite, type CompileOptions, type CompiledGuest, type GuestLabels } from './compile.ts'
export * from './boot-image.ts'
export * from './kvm-regs.ts'
export { decode, disassemble, type DecodedInstruction } from './decode.ts'
export * as encoder from './encoder.ts'
export { Assembler, type Assembled, type Label } from './assembler.ts'
