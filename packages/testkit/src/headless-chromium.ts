import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findExecutable } from './find-executable.js'

/** Options of {@link runHeadlessChromium}. */
export interface HeadlessChromiumOptions {
  /** Write a PNG of the page here instead of dumping the DOM. */
  screenshotPath?: string
  /** `--window-size`, e.g. `1100,500`. @default '1100,500' */
  windowSize?: string
  /** Kill Chromium after this long. @default 60000 */
  timeoutMs?: number
}

/** Debian's `chromium` (`apt-get install chromium`), or `$CHROMIUM_BIN`; undefined when neither is executable. */
export function findChromiumBin (): string | undefined {
  return findExecutable({ env: 'CHROMIUM_BIN', fallbacks: ['/usr/bin/chromium', '/usr/bin/chromium-browser'] })
}

/**
 * Loads `url` in a fresh headless Chromium (own profile, no network but the page's, no GPU) and resolves with the
 * serialized DOM after scripts ran (`--dump-dom`), or writes a screenshot with `screenshotPath`.
 * @throws Error naming the install step when Chromium is missing, or Chromium's stderr when it fails
 */
export async function runHeadlessChromium (url: string, options: HeadlessChromiumOptions = {}): Promise<string> {
  const bin = findChromiumBin()
  if (bin === undefined) throw new Error('chromium not found: apt-get install -y chromium (scripts/test installs it)')
  const profile = await mkdtemp(join(tmpdir(), 'slk-chromium-'))
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--hide-scrollbars', `--user-data-dir=${profile}`,
    `--window-size=${options.windowSize ?? '1100,500'}`,
    ...(options.screenshotPath === undefined ? ['--dump-dom'] : [`--screenshot=${options.screenshotPath}`]),
    url,
  ]
  try {
    return await new Promise<string>((resolve, reject) => {
      execFile(bin, args, { timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`chromium failed on ${url}: ${err.message}; stderr: ${stderr.slice(-2000)}`))
        else resolve(stdout)
      })
    })
  } finally {
    await rm(profile, { recursive: true, force: true })
  }
}
