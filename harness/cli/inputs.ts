// The files a verb reads because the user named them (run results, benchmark results, replay files): one
// that cannot be read or parsed is a usage error naming the file, never a stack trace.

import { readFile } from 'node:fs/promises'
import { UsageError } from './usage.ts'

/** The text of `file`, or a UsageError `<file>: <errno code>`. */
export async function readInput(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (e) {
    throw new UsageError(`${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
}

/** `file` read and given to `parse` (which throws on a malformed one); its error becomes the usage error. */
export async function parseInput<T>(file: string, parse: (text: string, file: string) => T): Promise<T> {
  const text = await readInput(file)
  try {
    return parse(text, file)
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
}
