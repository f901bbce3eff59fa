/**
 * Which rsync psync can run as root. psync needs rsync 3.5.0 or newer:
 * that release resolves the paths it is handed (`--files-from` entries,
 * `--backup-dir`, the destination) through held directories with an
 * ownership check on every symlink it follows (CVE-2026-53785, -53795,
 * -53796, -53797, -53801: a symlink planted or raced into a parent made a
 * root rsync read or write outside the tree), and it added `--confine-root`,
 * which psync gives each end of every transfer (transfer/rsync.ts). An older
 * rsync does not know that option and is not safe to run as root on a tree
 * other users write to.
 */

export interface RsyncVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
}

export const MIN_RSYNC_VERSION: RsyncVersion = { major: 3, minor: 5, patch: 0 };

export const formatRsyncVersion = (v: RsyncVersion): string => `${v.major}.${v.minor}.${v.patch}`;

/**
 * The version in `rsync --version` output: its first line reads
 * `rsync  version 3.5.0  protocol version 32` (a distribution may add a
 * suffix: `3.2.7-1ubuntu1`, `v3.2.3`, `3.4.0pre1`). Undefined when there is none.
 */
export function parseRsyncVersion(output: string): RsyncVersion | undefined {
  const first = output.split('\n', 1)[0] ?? '';
  const match = /^rsync\s+version\s+v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?/.exec(first.trim());
  if (match === null) return undefined;
  return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3] ?? 0) };
}

export function compareRsyncVersions(a: RsyncVersion, b: RsyncVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/**
 * What to do with the rsync of one end, from its `rsync --version` output
 * and the effective uid psync runs as there:
 * - `ok`: 3.5.0 or newer; confine it to its root (`--confine-root`);
 * - `refuse` when running as root (uid 0) with an older or unknown rsync:
 *   psync will not start (SafetyError, exit 7);
 * - `warn` otherwise: run it without `--confine-root` (it would not know the
 *   option), and say so once.
 */
export type RsyncVerdict =
  | { readonly kind: 'ok'; readonly version: RsyncVersion }
  | { readonly kind: 'refuse' | 'warn'; readonly message: string };

export function rsyncVerdict(output: string, euid: number, where: string): RsyncVerdict {
  const version = parseRsyncVersion(output);
  if (version !== undefined && compareRsyncVersions(version, MIN_RSYNC_VERSION) >= 0) return { kind: 'ok', version };
  const found =
    version === undefined
      ? `an rsync whose version cannot be read (\`rsync --version\` said ${JSON.stringify(output.slice(0, 80))})`
      : `rsync ${formatRsyncVersion(version)}`;
  const minimum = formatRsyncVersion(MIN_RSYNC_VERSION);
  if (euid === 0) {
    return { kind: 'refuse', message: `${where} has ${found}; running as root psync needs rsync ${minimum} or newer (symlink-race protections and --confine-root)` };
  }
  return { kind: 'warn', message: `${where} has ${found}, older than ${minimum}: its transfers run without --confine-root (psync is not running as root there)` };
}
