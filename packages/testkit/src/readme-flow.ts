/** What a marked README block is for: a file to write, a command to run, or a server to keep running. */
export type ReadmeFlowKind = 'file' | 'run' | 'background'

/** One fenced block of a README marked `<!-- readme-flow:<kind> [arg] -->` on the line before its fence. */
export interface ReadmeFlowBlock {
  kind: ReadmeFlowKind
  /** The marker's argument: the file name for `file`, a name for `background`, `output` for a `run` whose trailing `# ` lines are its expected output. */
  arg: string | undefined
  /** The fence's info string (`sh`, `yaml`). */
  lang: string
  /** The block's text, without the fences, ending in a newline. */
  body: string
  /** 1-based line of the marker, for messages. */
  line: number
}

const MARKER = /^<!-- readme-flow:(file|run|background)(?: (\S+))? -->$/
const FENCE_OPEN = /^```(\S*)$/

/**
 * Extracts the marked blocks of a Markdown document in order, so a test can run a README's walk-through as a reader
 * would. A marker must be followed at once by a fenced block.
 * @throws Error naming the line of a marker with no fenced block after it, or of an unterminated fence
 */
export function extractReadmeFlow (markdown: string): ReadmeFlowBlock[] {
  const lines = markdown.split('\n')
  const blocks: ReadmeFlowBlock[] = []
  for (let i = 0; i < lines.length; i++) {
    const marker = MARKER.exec(lines[i] ?? '')
    if (marker === null) continue
    const fence = FENCE_OPEN.exec(lines[i + 1] ?? '')
    if (fence === null) throw new Error(`README line ${i + 1}: readme-flow marker not followed by a fenced block`)
    const end = lines.indexOf('```', i + 2)
    if (end < 0) throw new Error(`README line ${i + 2}: fenced block never closed`)
    blocks.push({
      kind: marker[1] as ReadmeFlowKind,
      arg: marker[2],
      lang: fence[1] ?? '',
      body: lines.slice(i + 2, end).join('\n') + '\n',
      line: i + 1,
    })
    i = end
  }
  return blocks
}

/**
 * Splits a `run output` block into the commands and the expected output: the `# ` comment lines after the last
 * command line, with the `# ` removed.
 */
export function splitExpectedOutput (body: string): { commands: string, expected: string[] } {
  const lines = body.replace(/\n$/, '').split('\n')
  let cut = lines.length
  while (cut > 0 && (lines[cut - 1] ?? '').startsWith('# ')) cut--
  return { commands: lines.slice(0, cut).join('\n') + '\n', expected: lines.slice(cut).map((line) => line.slice(2)) }
}

/**
 * Turns an example output line into a regular expression for the whole line: `…` matches anything, and each
 * `placeholders` key (an example value such as a token id) becomes its pattern.
 */
export function exampleLinePattern (example: string, placeholders: Readonly<Record<string, string>> = {}): RegExp {
  const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  let source = escape(example)
  for (const [value, pattern] of Object.entries(placeholders)) source = source.replaceAll(escape(value), pattern)
  return new RegExp(`^${source.replaceAll('…', '.*')}$`)
}
