import { existsSync } from 'node:fs'
import { afterEach, describe, expect, test } from 'vitest'
import { killAllProcesses, runProcess, spokelinkBin, waitFor } from '@spokelink/testkit'

const node = process.execPath
const script = (source: string): string[] => ['-e', source]

afterEach(async () => {
  await killAllProcesses()
})

describe('runProcess', () => {
  test('collects lines, parses JSON log lines and reports the exit', async () => {
    const child = runProcess(node, script(`
      console.log(JSON.stringify({ level: 30, msg: 'listening', port: 1234 }))
      console.log('plain line')
      console.error('to stderr')
      process.exitCode = 3
    `), { name: 'child' })
    expect(child.pid).toBeGreaterThan(0)
    const entry = await child.waitForLog((e) => e.msg === 'listening', { what: 'the listening line' })
    expect(entry).toEqual({ level: 30, msg: 'listening', port: 1234 })
    const match = await child.waitForLine(/^to (std\w+)$/, { what: 'the stderr line' })
    expect(match[1]).toBe('stderr')
    expect(await child.waitForExit()).toEqual({ code: 3, signal: null })
    expect(child.stdoutLines).toEqual(['{"level":30,"msg":"listening","port":1234}', 'plain line'])
    expect(child.stderrLines).toEqual(['to stderr'])
    expect(child.logs).toHaveLength(1)
    expect(child.output()).toContain('plain line\n')
    expect(child.output()).toContain('to stderr\n')
  })

  test('waits for lines that arrive later', async () => {
    const child = runProcess(node, script(`
      process.stdin.on('data', (d) => { console.log(JSON.stringify({ msg: 'got', text: String(d).trim() })) })
    `))
    const waiting = child.waitForLog((e) => e.msg === 'got', { what: 'the echo' })
    child.stdin.write('hello\n')
    await expect(waiting).resolves.toMatchObject({ text: 'hello' })
  })

  test('fails a wait at once when the process exits first, showing its output', async () => {
    const child = runProcess(node, script('console.log(\'boom\'); process.exit(2)'), { name: 'short-lived' })
    await expect(child.waitForLog(() => false, { what: 'a log that never comes' }))
      .rejects.toThrow(/^short-lived exited with code 2 before a log that never comes\n--- last output of short-lived \(pid \d+\) ---\nboom$/)
  })

  test('times out naming what never happened', async () => {
    const child = runProcess(node, script('setInterval(() => {}, 1000); console.log("alive")'), { name: 'idle' })
    // First its output, so the message's tail does not depend on how fast a loaded machine starts node.
    await child.waitForLine(/^alive$/, { what: 'the alive line' })
    await expect(child.waitForLine(/never/, { timeoutMs: 200, what: 'the word never' }))
      .rejects.toThrow(/^timed out after 200ms waiting for the word never\n--- last output of idle \(pid \d+\) ---\nalive$/)
  })

  test('kill sends SIGTERM, is idempotent, and escalates to SIGKILL', async () => {
    const polite = runProcess(node, script('setInterval(() => {}, 1000)'))
    const [first, second] = await Promise.all([polite.kill(), polite.kill()])
    expect(first).toEqual({ code: null, signal: 'SIGTERM' })
    expect(second).toBe(first)
    expect(await polite.kill()).toBe(first)

    const stubborn = runProcess(node, script(`
      process.on('SIGTERM', () => { console.log('ignoring SIGTERM') })
      setInterval(() => {}, 1000)
      console.log('ready')
    `), { killTimeoutMs: 200 })
    await stubborn.waitForLine(/^ready$/)
    expect(await stubborn.kill()).toEqual({ code: null, signal: 'SIGKILL' })
    expect(stubborn.output()).toContain('ignoring SIGTERM')
  })

  test('killAllProcesses stops every running child', async () => {
    const children = [1, 2, 3].map(() => runProcess(node, script('setInterval(() => {}, 1000)')))
    await killAllProcesses()
    for (const child of children) expect(child.exit).toEqual({ code: null, signal: 'SIGTERM' })
  })

  test('keeps a bounded ring of lines but scans every line it saw', async () => {
    const child = runProcess(node, script('for (let i = 0; i < 100; i++) console.log("line " + i)'), { maxLines: 10 })
    await child.waitForExit()
    expect(child.stdoutLines).toHaveLength(10)
    expect(child.stdoutLines.at(-1)).toBe('line 99')
    expect(child.stdoutLines[0]).toBe('line 90')
  })

  test('merges env over the parent environment', async () => {
    const child = runProcess(node, script('console.log(process.env.TESTKIT_X + ":" + typeof process.env.PATH)'), { env: { TESTKIT_X: 'yes' } })
    await child.waitForExit()
    expect(child.stdoutLines).toEqual(['yes:string'])
  })

  test('handles output without a trailing newline and split UTF-8', async () => {
    const child = runProcess(node, script(`
      const b = Buffer.from('héllo wörld')
      process.stdout.write(b.subarray(0, 2), () => process.stdout.write(b.subarray(2)))
    `))
    await child.waitForExit()
    expect(child.stdoutLines).toEqual(['héllo wörld'])
  })

  test('throws at once when the command does not exist', () => {
    expect(() => runProcess('/nonexistent/testkit-command', [])).toThrow(/could not spawn/)
  })
})

test('spokelinkBin points at the CLI shim in the workspace', async () => {
  const bin = spokelinkBin()
  expect(bin).toMatch(/packages\/cli\/bin\/spokelink\.js$/)
  await waitFor(() => existsSync(bin), { what: 'the bin to exist', timeoutMs: 1 })
})
