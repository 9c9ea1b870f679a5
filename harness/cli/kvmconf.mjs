#!/usr/bin/env node
// The `kvmconf` command. Node 20 cannot run TypeScript itself, so tsx loads the CLI's sources.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('./main.ts')
process.exitCode = await main(process.argv.slice(2))
