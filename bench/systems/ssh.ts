import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { runProcess } from '@spokelink/testkit'
import { pickNamedPorts } from '../lib/ports.js'
import { startChildren } from '../lib/child-group.js'
import { waitUntilAccepting, waitUntilForwardingBoth } from '../lib/probe.js'
import type { StartedSystem, SystemContext, SystemSpec } from './system.js'

const run = promisify(execFile)

const SSHD = '/usr/sbin/sshd'
const SSH = 'ssh'
const SSH_KEYGEN = 'ssh-keygen'
/** The cipher a user tuning `ssh -R` for speed would pick; AES-NI makes it the fastest on x86. */
const CIPHER = 'aes128-gcm@openssh.com'
/** sshd refuses to start without its privilege-separation directory, which Debian's unit creates at boot. */
const PRIVSEP_DIR = '/run/sshd'

interface SshKeys {
  hostKey: string
  clientKey: string
  authorizedKeys: string
}

async function hasCommand (command: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${command}`])
    return true
  } catch {
    return false
  }
}

async function generateKeys (dir: string): Promise<SshKeys> {
  const keys = { hostKey: join(dir, 'host_ed25519'), clientKey: join(dir, 'client_ed25519'), authorizedKeys: join(dir, 'authorized_keys') }
  await run(SSH_KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-f', keys.hostKey])
  await run(SSH_KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-f', keys.clientKey])
  await writeFile(keys.authorizedKeys, await readFile(`${keys.clientKey}.pub`), { mode: 0o600 })
  return keys
}

function sshdConfig (dir: string, port: number, keys: SshKeys): string {
  return [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${keys.hostKey}`,
    `AuthorizedKeysFile ${keys.authorizedKeys}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    'PermitRootLogin yes',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'StrictModes no',
    'UsePAM no',
    'AllowTcpForwarding yes',
    'PermitTTY yes',
    `Ciphers ${CIPHER}`,
    'LogLevel ERROR',
    '',
  ].join('\n')
}

interface SshVariant {
  /** `-N`: forwarding only, no session, so neither end sets TCP_NODELAY (OpenSSH does so only for a pty session). */
  mode: 'forward-only' | 'pty'
}

function sshClientArgs (sshdPort: number, keys: SshKeys, forwards: Array<[number, number]>, variant: SshVariant): string[] {
  const args = [
    '-F', '/dev/null',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'ExitOnForwardFailure=yes',
    '-o', 'LogLevel=ERROR',
    '-c', CIPHER,
    '-i', keys.clientKey,
    '-p', String(sshdPort),
  ]
  for (const [remote, local] of forwards) args.push('-R', `${remote}:127.0.0.1:${local}`)
  // A pty session makes both ends call ssh_packet_set_interactive(), which sets TCP_NODELAY on the connection.
  return variant.mode === 'forward-only'
    ? ['-N', ...args, 'root@127.0.0.1']
    : ['-tt', ...args, 'root@127.0.0.1', 'exec sleep 2147483647']
}

async function startSsh (context: SystemContext, variant: SshVariant): Promise<StartedSystem> {
  for (const command of [SSHD, SSH, SSH_KEYGEN]) {
    if (!(await hasCommand(command))) return { skipped: `${command} not found (apt-get install openssh-server openssh-client)` }
  }
  if (!existsSync(PRIVSEP_DIR)) await mkdir(PRIVSEP_DIR, { mode: 0o755 })
  const keys = await generateKeys(context.dir)
  const { sshdPort, bulkPort, httpPort } = await pickNamedPorts(['sshdPort', 'bulkPort', 'httpPort'])
  const configFile = join(context.dir, 'sshd_config')
  await writeFile(configFile, sshdConfig(context.dir, sshdPort, keys))
  // Closing kills the client first: that ends the per-connection sshd before the listening one goes.
  return startChildren(async (group) => {
    const sshd = group.add(runProcess(SSHD, ['-f', configFile, '-D', '-e'], { name: 'sshd' }))
    await group.until(waitUntilAccepting(sshdPort, 'sshd'))
    const forwards: Array<[number, number]> = [[bulkPort, context.upstream.bulkPort], [httpPort, context.upstream.httpPort]]
    const client = group.add(runProcess(SSH, sshClientArgs(sshdPort, keys, forwards, variant), { name: `ssh -R (${variant.mode})` }))
    await group.until(waitUntilForwardingBoth({ bulkPort, httpPort }, `ssh -R (${variant.mode})`))
    // sshd forwards in its per-connection child; the CPU reading walks the tree.
    return { bulkPort, httpPort, pids: { sshd: sshd.pid, ssh: client.pid } }
  })
}

/** `ssh -N -R` to a private sshd on loopback, as the issue specifies. */
export const sshForward: SystemSpec = {
  name: 'ssh -N -R',
  kind: 'peer',
  bulk: true,
  start: async (context) => startSsh(context, { mode: 'forward-only' }),
}

/** `ssh -tt -R … sleep`: the same tunnel, but with TCP_NODELAY on the ssh connection, which OpenSSH sets only for a pty session. */
export const sshForwardPty: SystemSpec = {
  name: 'ssh -R +pty (NODELAY)',
  kind: 'peer',
  // Only latency should differ from `ssh -N -R`; leaving out the bulk rounds keeps the run short.
  bulk: false,
  start: async (context) => startSsh(context, { mode: 'pty' }),
}
