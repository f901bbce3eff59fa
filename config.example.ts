/**
 * Every psync setting, with its default. Copy it (to `/etc/psync/share.ts`,
 * say) and run `psync --config FILE`: a `.ts` file is loaded as it is (no
 * build step), and so are `.js`/`.mjs` modules with a default export and
 * `.json` files holding the same object. Options given on the command line
 * win over the file (a repeated option such as `-e` adds to the file's list).
 *
 * The file is checked when psync starts: an unknown setting (a typo) or a
 * value of the wrong type stops psync with one line naming it (exit 2).
 *
 * Two kinds of settings:
 * - process-wide (`debug`, `logFile`, `logFormat`, `progress`, `banned`,
 *   `stateDir`): one psync process has one log and one progress output,
 *   whatever it runs;
 * - per pair (everything else): given at the top level they are the
 *   settings of every pair that does not set its own.
 *
 * `pairs` lists the pairs this process runs, all at once, each isolated: a
 * pair that fails (its root is missing, its host unreachable, a halt) is
 * reported and the others go on. Without `pairs` the file describes one
 * pair (`srcRoot`, `dstRoot` and `name` at the top level, or the roots on
 * the command line). Left out, a setting takes the default shown here.
 *
 * This file is type-checked against the exported `ConfigFile` type and a
 * test validates it and checks that it names every setting.
 */

import type { ConfigFile } from './src/config.js';

const config: ConfigFile = {
  // ---- process-wide ----

  /** -d: 0 quiet (start, stop, one line per batch, warnings, errors), 1 each action (default), 2 every event, 3 everything. */
  debug: 1,
  /** --log-file: also write the log to this file, rotated at 10 MiB (5 old files kept); stderr then gets warnings and errors only. Default: stderr only. */
  logFile: '/var/log/psync/psync.log',
  /** --log-format: 'text' (default) or 'json' (one object per line, for log shippers). */
  logFormat: 'text',
  /**
   * --progress: 'auto' (default: a bar when stderr is a terminal, else a
   * periodic line), 'bar', 'line' or 'off'.
   */
  progress: 'auto',
  /** -b: refuse to start, and stop every pair, while a program of this name runs on this machine. Default: none. */
  banned: 'backup-job',
  /** --state-dir: where each pair's archive (what both sides last agreed on) is kept. Default: $XDG_STATE_HOME/psync, else ~/.local/state/psync. */
  stateDir: '/var/lib/psync',

  // ---- per pair: here, the settings every pair below takes unless it sets its own ----

  /** -r: host or ~/.ssh/config alias of the right side. Default: none, both roots are local. */
  remoteHost: 'replica.example.org',
  /**
   * -t: temp-file globs, never synced under their own name. Shown here is the
   * built-in list (vim, emacs, gedit/GIO, MS Office, LibreOffice and rsync's
   * own temp names), the default. In a config file this list replaces the
   * built-in one, so keep those entries; each `-t` on the command line is
   * added to it.
   */
  tempfiles: ['.*.swp', '.*.swo', '.*.swx', '*~', '.#*', '#*#', '4913', '*.tmp', '~$*', '.~lock.*#', '.goutputstream-*', '.*.??????'],
  /**
   * -e: excluded globs, never synced in either direction (default: none).
   * Without a slash a pattern matches the base name at any depth (`*.o`
   * excludes `a/b/c.o`); with a slash it matches the path from the root
   * (`/build`, `docs/*.pdf`); a trailing slash matches directories only
   * (`cache/`). Everything below an excluded directory is excluded too.
   * Braces (`*.{jpg,png}`) are refused: give one pattern per alternative.
   */
  excludes: ['node_modules', '*.o', '/build/'],
  /** --rsync-excludes: extra `--exclude` patterns for every rsync run (rsync's syntax). Default: none. */
  rsyncExcludes: [],
  /** -x: extra rsync options, one per element. Default: none. */
  rsyncExtra: ['--bwlimit=10000'],
  /** -n: log what would be done, change nothing. Default: false. */
  dryRun: false,
  /** -s: reconcile both trees once against the archive (with -n: list every decision), then exit. Default: false. */
  syncOnly: false,
  /** -k: start watching without the start-up reconcile (the trees are known to be identical). Default: false. */
  skipInitialSync: false,
  /** -f: let the helper delete non-empty directories and move onto them. Default: false. */
  force: false,
  /**
   * --preserve-suid: keep setuid and setgid bits on the files psync makes.
   * Off by default: psync runs as root and keeps owners, so a user's setuid
   * program on one side would become a setuid program of that owner on the
   * other. Setgid directories keep their bit either way.
   */
  preserveSuid: false,
  /** -i: settle delay in seconds: a path must be quiet this long before it is sent. Default: 0.1. */
  intervalSeconds: 0.1,
  /** --max-delay: a path that never goes quiet (a growing log) is sent at least this often, in seconds. Default: 5. */
  maxDelaySeconds: 5,
  /** --rescan: re-read both trees every this many seconds and send what inotify missed (0: off). Default: 600. */
  rescanSeconds: 600,
  /** --ssh-config: ssh client config file instead of ~/.ssh/config. Default: ~/.ssh/config. */
  sshConfig: '/etc/psync/ssh_config',
  /** --remote-psync: the command that starts psync on the remote host. Default: this node binary and install path. */
  remotePsync: '/usr/bin/node /opt/psync/dist/src/cli.js',
  /** --max-delete: a start-up that would delete more than this percentage of the archived entries halts instead (exit 7). Default: 50. */
  maxDeletePercent: 50,
  /** --reset: forget what the pair agreed on; the next start is a first run (the union, nothing deleted). Default: false. */
  resetArchive: false,
  /** --reconnect-timeout: after a lost link or side, give up (exit 3) after this many seconds of trying; 0 exits at once. Default: never give up. */
  reconnectTimeoutSeconds: 3600,

  // ---- the pairs ----

  /**
   * The pairs this process runs, all at once (default: none, the file
   * describes one pair). Each needs a unique `name`, `srcRoot` and `dstRoot`,
   * and may set any per-pair setting for itself.
   */
  pairs: [
    {
      /** The pair's name (unique in the file): it is in the pair's log lines. Letters, digits, ".", "_", "-". */
      name: 'share',
      /** The left root, on this machine (SRCROOT). Required. */
      srcRoot: '/srv/share',
      /** The right root, on `remoteHost` when set, else on this machine too (DSTROOT). Required. */
      dstRoot: '/srv/share',
      /** --status-file: keep this pair's JSON status (state, counters, last error) here. Default: psync's status directory. */
      statusFile: '/run/psync/share.json',
    },
    {
      name: 'home',
      srcRoot: '/home',
      dstRoot: '/backup/home',
      // Any per-pair setting may be given here, for this pair only; it replaces the common one.
      remoteHost: 'archive.example.org',
      excludes: ['.cache/', '*.tmp'],
      intervalSeconds: 1,
    },
  ],
};

export default config;
