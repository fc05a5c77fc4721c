import { ReloadRequests } from './command-context.js'
import { runCli } from './program.js'

// The only place that touches process signals, argv and the exit status.
const shutdown = new AbortController()
const reload = new ReloadRequests()
const EXIT_STATUS = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 } as const
let signals = 0
const onSignal = (signal: keyof typeof EXIT_STATUS): void => {
  signals++
  if (signals > 1) process.exit(EXIT_STATUS[signal])
  shutdown.abort()
}
process.on('SIGTERM', onSignal)
process.on('SIGINT', onSignal)
// SIGHUP reloads the files of `server` and `agent`; a command with nothing to reload stops as it would by default.
process.on('SIGHUP', () => { if (!reload.request()) onSignal('SIGHUP') })

const code = await runCli(process.argv, { env: process.env, shutdown: shutdown.signal, reload })
process.exit(code)
