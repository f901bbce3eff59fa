/** The local endpoint: children are processes of this machine, rsync reaches the root directly. */

import { execa } from 'execa';
import type { Role } from '../core/protocol.js';
import type { Side } from '../core/types.js';
import { ROLE_COMMAND, selfCommand } from '../install.js';
import type { Channel, Endpoint } from './endpoint.js';

export class LocalEndpoint implements Endpoint {
  constructor(
    readonly side: Side,
    readonly root: string,
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
    return `${this.root.replace(/\/+$/, '')}/`;
  }

  rsyncArgs(): string[] {
    return [];
  }

  async close(): Promise<void> {}
}
