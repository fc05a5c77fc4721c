/** Prints a result line for the user (stdout). */
export function printLine (text: string): void {
  console.log(text)
}

/** Prints one JSON value on one line (stdout), for `--output json`. */
export function printJson (value: unknown): void {
  console.log(JSON.stringify(value))
}

/** Prints `error: <message>` (stderr). */
export function printError (message: string): void {
  console.error(`error: ${message}`)
}

/** Prints a diagnostic line (stderr) that is not an error. */
export function printNotice (text: string): void {
  console.error(text)
}
