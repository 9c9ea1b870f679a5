import { describe, expect, test } from 'vitest'
import { HostFault, KvmError, VcpuTimeout } from './errors.ts'
import { ERRNO, errnoName, errnoNumber } from './uapi/errno.ts'

describe('KvmError', () => {
  test('is spelled as a SystemError: code, errno, op', () => {
    const e = new KvmError('EINVAL', 'KVM_SET_USER_MEMORY_REGION2')
    expect(e).toMatchObject({ name: 'KvmError', code: 'EINVAL', errno: 22, op: 'KVM_SET_USER_MEMORY_REGION2' })
    expect(e.message).toBe('KVM_SET_USER_MEMORY_REGION2: EINVAL')
  })

  test('takes an errno number and names it', () => {
    expect(new KvmError(17, 'KVM_SET_USER_MEMORY_REGION')).toMatchObject({ code: 'EEXIST', errno: 17 })
    expect(new KvmError(200, 'x')).toMatchObject({ code: 'E200', errno: 200 })
  })

  test('is() recognises an error that crossed a structured clone', () => {
    const e = new KvmError('EBADF', 'KVM_CREATE_VCPU')
    const crossed = structuredClone({ name: e.name, code: e.code, errno: e.errno, op: e.op, message: e.message })
    expect(KvmError.is(crossed)).toBe(true)
    expect(KvmError.is(new Error('EBADF'))).toBe(false)
    expect(KvmError.is(new HostFault('SIGBUS', 'read', 0x1000n))).toBe(false)
    expect(KvmError.is(null)).toBe(false)
  })

  test('HostFault and VcpuTimeout have their own guards', () => {
    expect(HostFault.is(new HostFault('SIGBUS', 'read', 4096n))).toBe(true)
    expect(new HostFault('SIGBUS', 'read', 4096n).message).toBe('read: SIGBUS at 0x1000')
    expect(VcpuTimeout.is(new VcpuTimeout('KVM_RUN', 100))).toBe(true)
    expect(VcpuTimeout.is(new KvmError('EINTR', 'KVM_RUN'))).toBe(false)
  })
})

describe('errno', () => {
  test('names and numbers round-trip', () => {
    for (const [name, n] of Object.entries(ERRNO)) {
      expect(errnoName(n)).toBe(name)
      expect(errnoNumber(name)).toBe(n)
    }
    expect(errnoNumber('E999')).toBe(999)
    expect(() => errnoNumber('ENOPE')).toThrow(RangeError)
  })
})
