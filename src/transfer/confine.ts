/**
 * Before the first rsync of a pair (the brain's, or `psync check`'s): each
 * host's rsync and each root's real path, which `--confine-root` takes
 * (transfer/rsync.ts). Running as root there with an rsync older than
 * 3.5.0 is refused (SafetyError); otherwise an old rsync runs without
 * `--confine-root`, said once (core/rsyncVersion.ts).
 */

import { SafetyError } from '../core/errors.js';
import { parseRsyncVersion, rsyncVerdict } from '../core/rsyncVersion.js';
import type { Side } from '../core/types.js';
import type { Endpoint, RsyncHost } from '../transport/endpoint.js';

export interface ConfineLog {
  warn(message: string): void;
  debug(message: string): void;
}

/** Each side's `--confine-root`; a side is missing when its rsync is too old for it or its root was not found. */
export async function confineRoots(endpoints: Readonly<Record<Side, Endpoint>>, log: ConfineLog): Promise<Partial<Record<Side, string>>> {
  const inspect = async (side: Side): Promise<RsyncHost> => {
    const host = await endpoints[side].inspectRsync();
    // An answer that holds no version (rsync could not be started there for a moment) is asked for once more.
    return parseRsyncVersion(host.versionOutput) === undefined ? endpoints[side].inspectRsync() : host;
  };
  const hosts = await Promise.all((['left', 'right'] as const).map(async (side) => [side, await inspect(side)] as const));
  const confine: Partial<Record<Side, string>> = {};
  const warned = new Set<string>();
  for (const [side, host] of hosts) {
    const verdict = rsyncVerdict(host.versionOutput, host.euid, host.where);
    if (verdict.kind !== 'ok') {
      if (verdict.kind === 'refuse') throw new SafetyError(verdict.message);
      if (!warned.has(verdict.message)) log.warn(verdict.message); // two local roots: one host, one warning
      warned.add(verdict.message);
      continue;
    }
    if (!host.realRoot.startsWith('/')) {
      // A relative root that does not exist yet on that host: rsync makes it; --confine-root needs an absolute path.
      log.warn(`${side}: ${JSON.stringify(host.realRoot)} was not found on ${host.where}; its transfers run without --confine-root`);
      continue;
    }
    confine[side] = host.realRoot;
    log.debug(`${side}: rsync ${verdict.version.major}.${verdict.version.minor}.${verdict.version.patch}, confined to ${host.realRoot}`);
  }
  return confine;
}
