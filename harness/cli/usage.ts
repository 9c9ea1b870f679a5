// Usage errors: one line on stderr and exit code 2, for every verb alike.

export const EXIT_OK = 0
export const EXIT_FAIL = 1
export const EXIT_USAGE = 2
/** kselftest's KSFT_SKIP: nothing ran because every test was skipped. */
export const EXIT_ALL_SKIPPED = 4

export class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** Runs a verb, turning a UsageError or a parseArgs error into one line and exit code 2. */
export async function withUsage(verb: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body()
  } catch (e) {
    const code = (e as { code?: unknown }).code
    const fromParseArgs = typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')
    if (e instanceof UsageError || fromParseArgs) {
      process.stderr.write(`kvmconf ${verb}: ${(e as Error).message} (see 'kvmconf ${verb} --help')\n`)
      return EXIT_USAGE
    }
    throw e
  }
}

export function oneOf<T extends string>(option: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`--${option} ${value}: expected one of ${allowed.join(', ')}`)
  }
  return value as T
}

/**
 * An option's value as a whole number (decimal digits only: no sign, exponent or blanks) of at least
 * `min`, else a UsageError `<flag> <text>: expected <expected>`. `flag` as the user wrote it ('--max-vms', '-v').
 */
export function wholeNumber(flag: string, text: string, min: number, expected: string): number {
  if (!/^\d+$/.test(text) || Number(text) < min || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`${flag} ${text}: expected ${expected}`)
  }
  return Number(text)
}
