// How the suites write addresses, sizes and flags in their messages: 0x and lowercase hex, as the kernel's
// selftests print them.

export const hex = (n: bigint | number): string => `0x${n.toString(16)}`
