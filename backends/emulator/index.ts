// The reference emulator as a Backend (harness/backend.ts): what backends/index.ts loads and the
// emulator's own self-tests reach into (the VM model behind a handle, its stage-2).
//
// contract/ implements the contract, one file per contract object: it converts arguments at the edge,
// asks the rule files (the other files here, which answer with errno names and never throw KvmError),
// and turns their answers into errors named after the ioctl or syscall (contract/errors.ts). The one
// other file that throws them is demand-paging.ts, runDemandPaging's simulation, itself a contract call.

import type { BackendLoad, Vm } from '../../harness/backend.ts'
import { createEmulatorBackend, type EmulatorOptions } from './contract/backend.ts'
import { vmStateOf } from './contract/vm.ts'
import type { Stage2View } from './stage2.ts'

export { DEFAULT_PROFILE, defineProfile, getProfile, profileNames, type KernelProfile } from './profiles.ts'
export { createEmulatorBackend, vmStateOf, type EmulatorOptions }


/**
 * What KVM has mapped of `vm`'s guest memory and at what size (4K or 2M), for the emulator's self-tests
 * of the stage-2 rules (zaps, 4 KiB-only while KVM_MEM_USERFAULT is set, huge-page recovery, pre-fault).
 * `warnings` are the kernel WARNs the VM's calls raised. Not part of the contract.
 */
export function stage2Of(vm: Vm): Stage2View & { readonly warnings: readonly string[] } {
  const state = vmStateOf(vm)
  return {
    level: (gfn) => state.stage2.level(gfn),
    mappings: () => state.stage2.mappings(),
    get warnings() {
      return state.warnings
    },
  }
}

/**
 * For self-tests: the next DELETE or MOVE of a memslot of `vm` stops in its KVM_MEMSLOT_INVALID window
 * (the old slot invalid and zapped, its ioctl not yet returned) until `release()`; `reached` resolves
 * once it is there. Meanwhile vCPU faults on the slot are retried and KVM_PRE_FAULT_MEMORY gets EAGAIN.
 */
export function holdMemslotInvalidation(vm: Vm): { reached: Promise<void>; release(): void } {
  return vmStateOf(vm).holdNextInvalidation()
}

/** The loader backends/index.ts calls: the emulator is always available. An unknown profile throws. */
export function loadEmulator(opts: EmulatorOptions = {}): BackendLoad {
  return { available: true, backend: createEmulatorBackend(opts) }
}
