/**
 * The local endpoint: children are processes of this machine, rsync reaches
 * the root directly.
 *
 * rsync's client always runs on the left. When the right side is local
 * too, rsync would fork its receiver for a local copy, and the fork keeps
 * the client's options: one `--confine-root` for both ends, which makes the
 * end on the other root refuse its paths (the receiver then skipped
 * `--backup-dir` without a word). So a local right side is reached the way
 * a remote one is, by a separate `rsync --server` that gets its own
 * `--confine-root` (transfer/rsync.ts): rsync's `-e` program is
 * LOCAL_RSYNC_SHELL, which drops the host name rsync passes it and execs
 * the server command (argv only; with `--protect-args` it names no file).
 */

import { realpath } from 'node:fs/promises';
import { execa } from 'execa';
import type { Role } from '../core/protocol.js';
import type { Side } from '../core/types.js';
import { ROLE_COMMAND, selfCommand } from '../install.js';
import type { Channel, Endpoint, RsyncHost } from './endpoint.js';

/** The host name a local right side has in rsync's `HOST:PATH`; LOCAL_RSYNC_SHELL ignores it. */
export const LOCAL_RSYNC_HOST = 'psync-local';
/** rsync's `-e` for a local right side: `sh -c 'shift; exec "$@"' psync-local HOST rsync --server ...` (rsync splits it on spaces, honouring the quotes). */
export const LOCAL_RSYNC_SHELL = `sh -c 'shift; exec "$@"' ${LOCAL_RSYNC_HOST}`;

export interface LocalEndpointOptions {
  /** rsync reaches this root through a separate local `rsync --server` (a right side: see the header). */
  readonly separateRsync?: boolean;
}

export class LocalEndpoint implements Endpoint {
  constructor(
    readonly side: Side,
    readonly root: string,
    private readonly options: LocalEndpointOptions = {},
  ) {}

  get description(): string {
    return this.root;
  }

  async start(role: Role): Promise<Channel> {
    const [node, cli] = selfCommand() as [string, string];
    const child = execa(node, [cli, ROLE_COMMAND[role]], {
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      encoding: 'buffer',
      cleanup: true,
    });
    return {
      stdin: child.stdin,
      stdout: child.stdout,
      stderr: child.stderr,
      exited: child.then((result) => (result.signal ? null : (result.exitCode ?? null))),
      kill: () => {
        child.kill('SIGTERM');
      },
    };
  }

  rsyncLocation(): string {
    const location = `${this.root.replace(/\/+$/, '')}/`;
    return this.options.separateRsync === true ? `${LOCAL_RSYNC_HOST}:${location}` : location;
  }

  rsyncArgs(): string[] {
    // Both ends on this host: whole files, as rsync does by itself for a local copy
    // (the delta algorithm would read every target file to save no network).
    return this.options.separateRsync === true ? ['-e', LOCAL_RSYNC_SHELL, '--whole-file'] : [];
  }

  async inspectRsync(): Promise<RsyncHost> {
    const [realRoot, version] = await Promise.all([
      realpath(this.root).catch(() => this.root),
      execa('rsync', ['--version'], { reject: false, stdin: 'ignore', stderr: 'ignore' }),
    ]);
    return { where: 'this host', realRoot, versionOutput: typeof version.stdout === 'string' ? version.stdout : '', euid: process.geteuid?.() ?? -1 };
  }

  async close(): Promise<void> {}
}
