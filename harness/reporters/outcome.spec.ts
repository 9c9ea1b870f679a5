// failureOf reads what harness/expect-errno.ts and the backends' errors say; these pins use the real
// functions, so a change of their wording fails here before it silently stops expectations matching.

import { describe, expect, test } from 'vitest'
import { HostFault, KvmError, VcpuTimeout } from '../errors.ts'
import { expectErrno, expectOk } from '../expect-errno.ts'
import { failedStatusOf, failureOf } from './outcome.ts'

async function thrown(p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (e) {
    return e as Error
  }
  throw new Error('did not throw')
}

describe('failureOf', () => {
  test('expectErrno: the wrong errno, and a success where an errno was expected', async () => {
    const wrong = await thrown(expectErrno(Promise.reject(new KvmError('EINVAL', 'KVM_SET_USER_MEMORY_REGION2')), 'EEXIST', 'slot 10 overlapping slot 11'))
    expect(failureOf(wrong)).toEqual({
      message: 'slot 10 overlapping slot 11: expected EEXIST, got EINVAL from KVM_SET_USER_MEMORY_REGION2',
      op: 'KVM_SET_USER_MEMORY_REGION2',
      expected: 'EEXIST',
      errno: 'EINVAL',
    })
    const succeeded = await thrown(expectErrno(Promise.resolve({ fd: 7 }), 'EINVAL', 'creating a guest_memfd of size 0'))
    expect(failureOf(succeeded)).toMatchObject({ expected: 'EINVAL', errno: 'success' })
  })

  test('expectOk: an errno where success was expected', async () => {
    const e = await thrown(expectOk(Promise.reject(new KvmError('EEXIST', 'KVM_SET_USER_MEMORY_REGION')), 'slot 0'))
    expect(failureOf(e)).toMatchObject({ op: 'KVM_SET_USER_MEMORY_REGION', expected: 'success', errno: 'EEXIST' })
  })

  test("the backends' errors, by their fields", () => {
    expect(failureOf(new KvmError('ENOTTY', 'KVM_SET_MEMORY_ATTRIBUTES'))).toEqual({ message: 'KVM_SET_MEMORY_ATTRIBUTES: ENOTTY', op: 'KVM_SET_MEMORY_ATTRIBUTES', errno: 'ENOTTY' })
    expect(failureOf(new HostFault('SIGBUS', 'read', 0x1000n))).toMatchObject({ op: 'read', exit: 'SIGBUS' })
    // As vitest hands it to a reporter: a plain object with the error's own fields.
    expect(failureOf({ name: 'KvmError', message: 'KVM_RUN: EFAULT', code: 'EFAULT', op: 'KVM_RUN' })).toMatchObject({ errno: 'EFAULT', op: 'KVM_RUN' })
    expect(failedStatusOf(new VcpuTimeout('KVM_RUN', 100))).toBe('TIMEOUT')
    expect(failedStatusOf({ message: 'Test timed out in 60000ms.\nIf this is a long-running test, ...' })).toBe('TIMEOUT')
    expect(failedStatusOf(new KvmError('EINVAL', 'x'))).toBe('FAIL')
  })

  test('vCPU exits, as describeExit() words them, and fast-check replay data', () => {
    expect(failureOf(new Error('expected internal_error, got shutdown'))).toMatchObject({ expected: 'internal_error', exit: 'shutdown' })
    expect(failureOf(new Error("expected GUEST_SYNC after the guest's check, got mmio read of 1 bytes at 0x100000000"))).toMatchObject({ exit: 'mmio' })
    expect(failureOf(new Error('read of a private page: expected SIGBUS, but the access completed'))).toMatchObject({ expected: 'SIGBUS', exit: 'completed' })
    expect(failureOf(new Error('Property failed after 3 tests\n{ seed: -1819967440, path: "2:0", endOnFailure: true }'))).toMatchObject({ seed: -1819967440, path: '2:0' })
    expect(failureOf(new Error('expected 1 to be 2'))).toEqual({ message: 'expected 1 to be 2' })
    expect(failureOf(undefined)).toEqual({ message: 'failed without an error message' })
  })
})
