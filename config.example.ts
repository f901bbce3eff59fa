/**
 * Every psync setting, with its default. Copy it to `psync.config.mjs` (drop
 * the type annotation) or `psync.config.json` and pass `--config FILE`;
 * options given on the command line win over the file.
 *
 * This file is type-checked against the exported `Config` type, so it cannot
 * drift from what psync accepts.
 */

import type { Config } from './src/config.js';

const config: Config = {
  /** The left root, on this machine (the first positional argument). */
  srcRoot: '/srv/share',
  /** The right root: on `remoteHost` when set, else on this machine too. */
  dstRoot: '/srv/share',
  /** Host or ~/.ssh/config alias of the right side (-r). Leave it out for two local roots. */
  remoteHost: 'replica.example.org',
  /** -d: 0 quiet (start, stop, one line per batch, warnings, errors), 1 each action, 2 every event, 3 everything. */
  debug: 1,
  /**
   * -t: temp-file globs, never synced under their own name. Shown here is the
   * built-in list (vim, emacs, gedit/GIO, MS Office, LibreOffice and rsync's
   * own temp names). In a config file this list replaces the built-in one, so
   * keep those entries; each `-t` on the command line is added to it.
   */
  tempfiles: ['.*.swp', '.*.swo', '.*.swx', '*~', '.#*', '#*#', '4913', '*.tmp', '~$*', '.~lock.*#', '.goutputstream-*', '.*.??????'],
  /**
   * -e: excluded globs, never synced in either direction. Without a slash a
   * pattern matches the base name at any depth (`*.o` excludes `a/b/c.o`);
   * with a slash it matches the path from the root (`/build`, `docs/*.pdf`);
   * a trailing slash matches directories only (`cache/`). Everything below an
   * excluded directory is excluded too.
   */
  excludes: ['node_modules', '*.o', '/build/'],
  /** --rsync-excludes: extra `--exclude` patterns for every rsync run (rsync's syntax). */
  rsyncExcludes: [],
  /** -x: extra rsync options, one per element. */
  rsyncExtra: ['--bwlimit=10000'],
  /** -b: refuse to start, and stop, while a program of this name runs on this machine. */
  banned: 'backup-job',
  /** -n: log what would be done, change nothing. */
  dryRun: false,
  /** -s: reconcile both trees once against the archive (with -n: list every decision), then exit. */
  syncOnly: false,
  /** -k: start watching without the start-up reconcile (the trees are known to be identical). */
  skipInitialSync: false,
  /** -f: let the helper delete non-empty directories and move onto them. */
  force: false,
  /**
   * --preserve-suid: keep setuid and setgid bits on the files psync makes.
   * Off by default: psync runs as root and keeps owners, so a user's setuid
   * program on one side would become a setuid program of that owner on the
   * other. Setgid directories keep their bit either way.
   */
  preserveSuid: false,
  /** -i: settle delay in seconds: a path must be quiet this long before it is sent. */
  intervalSeconds: 0.1,
  /** --max-delay: a path that never goes quiet (a growing log) is sent at least this often. */
  maxDelaySeconds: 5,
  /** --rescan: re-read both trees every this many seconds and send what inotify missed (0: off). */
  rescanSeconds: 600,
  /** --ssh-config: ssh client config file instead of ~/.ssh/config. */
  sshConfig: '/etc/psync/ssh_config',
  /** --remote-psync: the command that starts psync on the remote host. */
  remotePsync: '/usr/bin/node /opt/psync/dist/src/cli.js',
  /** --status-file: keep a JSON status (state, counters, last error) here. */
  statusFile: '/run/psync/share.json',
  /** --state-dir: where each pair's archive (what both sides last agreed on) is kept. */
  stateDir: '/var/lib/psync',
  /** --max-delete: a start-up that would delete more than this percentage of the archived entries halts instead (exit 7). */
  maxDeletePercent: 50,
  /** --reset: forget what this pair agreed on; the next start is a first run (the union, nothing deleted). */
  resetArchive: false,
  /** --reconnect-timeout: after a lost link or side, give up (exit 3) after this many seconds of trying; leave it out to never give up, 0 to exit at once. */
  reconnectTimeoutSeconds: 3600,
  /**
   * --log-file: also log to this file, rotated past 10 MiB (FILE.1 ... FILE.5
   * kept); stderr then gets warnings and errors only. Never opened through a
   * symlink. Leave it out to log to stderr only.
   */
  logFile: '/var/log/psync/share.log',
  /** --log-format: `text` (dated lines) or `json` (one object a line: timestamp, level, pair, message). */
  logFormat: 'text',
  /** --progress: `auto` (a bar on a terminal, else a progress line every 10 s), `bar`, `line` or `off`. */
  progress: 'auto',
};

export default config;
