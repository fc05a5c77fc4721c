import { runCli } from './program.js'

// The only place that touches process signals, argv and the exit status.
const shutdown = new AbortController()
let signals = 0
const onSignal = (signal: NodeJS.Signals): void => {
  signals++
  if (signals > 1) process.exit(signal === 'SIGINT' ? 130 : 143)
  shutdown.abort()
}
process.on('SIGTERM', onSignal)
process.on('SIGINT', onSignal)

const code = await runCli(process.argv, { env: process.env, shutdown: shutdown.signal })
process.exit(code)
