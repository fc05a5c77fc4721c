import { readdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'

/**
 * What a child started with `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=<dir>` holds alive: a heap snapshot
 * collects garbage first, so the sum of its nodes' self sizes is the live JS heap plus the live ArrayBuffer
 * (Buffer) contents, without the garbage that the process's heap and `external` figures carry between
 * collections. Native memory outside V8 (OpenSSL, TLS BIOs, malloc's free lists) is not in it.
 */
export interface LiveHeap {
  /** Sum of self sizes of every node (bytes). */
  totalBytes: number
  /** Of which ArrayBuffer contents (`system / JSArrayBufferData`), i.e. Buffers. */
  arrayBufferBytes: number
}

/**
 * Signals `pid` to write a heap snapshot into `dir`, waits until the file is complete (`ready` is awaited first: a
 * request to the child answers only once the synchronous snapshot is written), sums it and deletes the file.
 */
export async function takeLiveHeap (pid: number, dir: string, ready: () => Promise<unknown>): Promise<LiveHeap> {
  const before = new Set(await readdir(dir))
  process.kill(pid, 'SIGUSR2')
  let file: string | undefined
  for (let i = 0; i < 600 && file === undefined; i++) {
    await delay(100)
    file = (await readdir(dir)).find((name) => name.endsWith('.heapsnapshot') && !before.has(name))
  }
  if (file === undefined) throw new Error(`no heap snapshot from pid ${pid} in ${dir} after 60 s`)
  await ready()
  const path = join(dir, file)
  let size = -1
  for (let i = 0; i < 600; i++) {
    const now = (await stat(path)).size
    if (now === size) break
    size = now
    await delay(250)
  }
  const live = summarizeHeapSnapshot(await readFile(path, 'utf8'))
  await rm(path)
  return live
}

interface HeapSnapshotJson {
  snapshot: { meta: { node_fields: string[], node_types: [string[]] } }
  nodes: number[]
  strings: string[]
}

/** Sums a `.heapsnapshot`'s self sizes; see {@link LiveHeap}. */
export function summarizeHeapSnapshot (text: string): LiveHeap {
  const snapshot = JSON.parse(text) as HeapSnapshotJson
  const fields = snapshot.snapshot.meta.node_fields
  const stride = fields.length
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const sizeAt = fields.indexOf('self_size')
  const nativeType = snapshot.snapshot.meta.node_types[0].indexOf('native')
  let totalBytes = 0
  let arrayBufferBytes = 0
  for (let i = 0; i < snapshot.nodes.length; i += stride) {
    const size = snapshot.nodes[i + sizeAt] ?? 0
    totalBytes += size
    if (snapshot.nodes[i + typeAt] === nativeType && snapshot.strings[snapshot.nodes[i + nameAt] ?? -1] === 'system / JSArrayBufferData') arrayBufferBytes += size
  }
  return { totalBytes, arrayBufferBytes }
}
