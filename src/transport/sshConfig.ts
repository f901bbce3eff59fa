/**
 * Resolve an SSH destination the way `ssh` does from the user's config, so
 * that our ssh2 connection and the OpenSSH ControlMaster rsync rides on
 * reach the same server as the same user with the same keys.
 *
 * Only what psync needs is resolved. Known gaps, all rare in practice:
 * `Include` and `Match exec` are ignored (the latter so that resolving never
 * runs a shell), `/etc/ssh/ssh_config` is not read, and a ProxyJump or
 * ProxyCommand is reported so the caller can refuse rather than connect
 * around it.
 */

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir, hostname as localHostName, userInfo } from 'node:os';
import { join } from 'node:path';
import SSHConfig from 'ssh-config';
import { ConfigError } from '../core/errors.js';

export const DEFAULT_SSH_PORT = 22;
/** OpenSSH has no default connect timeout; a sync tool should not hang forever on a dead host. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;

export interface SshTarget {
  /** The alias as given (without `user@`): what the OpenSSH master is started with. */
  readonly host: string;
  readonly hostName: string;
  readonly port: number;
  readonly user: string;
  /** In the order to try; explicit files may be missing (the caller skips them). */
  readonly identityFiles: readonly string[];
  readonly identitiesOnly: boolean;
  /** The agent socket from IdentityAgent or SSH_AUTH_SOCK; undefined when there is none or it is disabled. */
  readonly identityAgent: string | undefined;
  readonly userKnownHostsFiles: readonly string[];
  readonly globalKnownHostsFiles: readonly string[];
  /** As written (yes, no, ask, accept-new, off); psync verifies host keys strictly whatever it says. */
  readonly strictHostKeyChecking: string;
  readonly hostKeyAlias: string | undefined;
  readonly connectTimeoutMs: number;
  /** Set when the config routes this host through a ProxyJump or ProxyCommand. */
  readonly proxy: string | undefined;
}

/** What resolution needs from the machine; a test passes its own. */
export interface SshEnvironment {
  readonly home: string;
  readonly localUser: string;
  readonly localHost: string;
  readonly uid: number;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly exists: (path: string) => boolean;
}

export const currentSshEnvironment = (): SshEnvironment => ({
  home: homedir(),
  localUser: userInfo().username,
  localHost: localHostName(),
  uid: process.getuid?.() ?? 0,
  env: process.env,
  exists: existsSync,
});

/** Read `configFile` (or `~/.ssh/config` when there is one) and resolve `destination` ("host" or "user@host"). */
export async function loadSshTarget(
  destination: string,
  configFile?: string,
  environment: SshEnvironment = currentSshEnvironment(),
): Promise<SshTarget> {
  let text = '';
  if (configFile !== undefined) {
    try {
      text = await readFile(configFile, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read ssh config ${configFile}: ${(error as Error).message}`, { cause: error });
    }
  } else {
    const defaultFile = join(environment.home, '.ssh', 'config');
    // A missing default config is normal; an unreadable one is not.
    if (environment.exists(defaultFile)) {
      try {
        text = await readFile(defaultFile, 'utf8');
      } catch (error) {
        throw new ConfigError(`cannot read ssh config ${defaultFile}: ${(error as Error).message}`, { cause: error });
      }
    }
  }
  return resolveSshTarget(text, destination, environment);
}

export function resolveSshTarget(configText: string, destination: string, environment: SshEnvironment): SshTarget {
  const at = destination.lastIndexOf('@');
  const givenUser = at >= 0 ? destination.slice(0, at) : undefined;
  const host = at >= 0 ? destination.slice(at + 1) : destination;
  if (host === '' || givenUser === '') throw new ConfigError(`invalid ssh destination "${destination}"`);

  let computed: Record<string, string | string[]>;
  try {
    const config = SSHConfig.parse(configText);
    computed = config.compute(givenUser === undefined ? { Host: host } : { Host: host, User: givenUser }, {
      ignoreCase: true,
      matchExec: false,
    });
  } catch (error) {
    throw new ConfigError(`cannot parse ssh config: ${(error as Error).message}`, { cause: error });
  }
  const first = (key: string): string | undefined => {
    const value = computed[key];
    return Array.isArray(value) ? value[0] : value;
  };
  const all = (key: string): string[] | undefined => {
    const value = computed[key];
    if (value === undefined) return undefined;
    // Multi-value options may come back as one space-separated string.
    return (Array.isArray(value) ? value : [value]).flatMap((item) => item.split(/\s+/)).filter((item) => item !== '');
  };

  const hostName = expandTokens(first('hostname') ?? host, { h: host, n: host }, environment);
  const port = parsePort(first('port'), destination);
  const user = givenUser ?? first('user') ?? environment.localUser;
  const tokens = { h: hostName, n: host, p: String(port), r: user };
  const expandPath = (path: string): string => expandTilde(expandTokens(path, tokens, environment), environment.home);
  const sshDir = join(environment.home, '.ssh');

  const explicitIdentities = computed['identityfile'];
  const identityFiles =
    explicitIdentities === undefined
      ? ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((name) => join(sshDir, name)).filter(environment.exists)
      : (Array.isArray(explicitIdentities) ? explicitIdentities : [explicitIdentities]).map(expandPath);

  const connectTimeout = first('connecttimeout');
  const connectTimeoutSeconds = connectTimeout === undefined ? undefined : Number(connectTimeout);
  if (connectTimeoutSeconds !== undefined && !(Number.isFinite(connectTimeoutSeconds) && connectTimeoutSeconds > 0)) {
    throw new ConfigError(`invalid ConnectTimeout "${connectTimeout}" for ${host}`);
  }

  const hostKeyAlias = first('hostkeyalias');
  const proxyJump = first('proxyjump');
  const proxyCommand = first('proxycommand');
  return {
    host,
    hostName,
    port,
    user,
    identityFiles,
    identitiesOnly: yes(first('identitiesonly')),
    identityAgent: resolveAgent(first('identityagent'), expandPath, environment),
    userKnownHostsFiles: (all('userknownhostsfile') ?? ['~/.ssh/known_hosts', '~/.ssh/known_hosts2'])
      .filter((file) => file.toLowerCase() !== 'none')
      .map(expandPath),
    globalKnownHostsFiles: (all('globalknownhostsfile') ?? ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'])
      .filter((file) => file.toLowerCase() !== 'none')
      .map(expandPath),
    strictHostKeyChecking: (first('stricthostkeychecking') ?? 'ask').toLowerCase(),
    hostKeyAlias: hostKeyAlias === undefined ? undefined : expandTokens(hostKeyAlias, tokens, environment),
    connectTimeoutMs:
      connectTimeoutSeconds === undefined ? DEFAULT_CONNECT_TIMEOUT_MS : Math.round(connectTimeoutSeconds * 1000),
    proxy:
      proxyJump !== undefined && proxyJump.toLowerCase() !== 'none'
        ? `ProxyJump ${proxyJump}`
        : proxyCommand !== undefined && proxyCommand.toLowerCase() !== 'none'
          ? `ProxyCommand ${proxyCommand}`
          : undefined,
  };
}

const yes = (value: string | undefined): boolean => value?.toLowerCase() === 'yes';

function parsePort(value: string | undefined, destination: string): number {
  if (value === undefined) return DEFAULT_SSH_PORT;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`invalid Port "${value}" for ${destination}`);
  }
  return port;
}

/** IdentityAgent: "none" disables the agent, "SSH_AUTH_SOCK" or "$VAR" names an environment variable. */
function resolveAgent(
  value: string | undefined,
  expandPath: (path: string) => string,
  environment: SshEnvironment,
): string | undefined {
  const fromEnv = (name: string): string | undefined => {
    const socket = environment.env[name];
    return socket === undefined || socket === '' ? undefined : socket;
  };
  if (value === undefined || value === 'SSH_AUTH_SOCK') return fromEnv('SSH_AUTH_SOCK');
  if (value.toLowerCase() === 'none') return undefined;
  if (value.startsWith('$')) return fromEnv(value.slice(1));
  return expandPath(value);
}

/**
 * The `%` tokens of ssh_config(5) that can matter for paths and aliases.
 * An unknown token is left as written rather than guessed at.
 */
export function expandTokens(text: string, tokens: Readonly<Record<string, string>>, environment: SshEnvironment): string {
  const common: Record<string, string> = {
    '%': '%',
    d: environment.home,
    u: environment.localUser,
    i: String(environment.uid),
    l: environment.localHost,
    L: environment.localHost.split('.')[0] ?? environment.localHost,
  };
  return text.replace(/%(.)/g, (whole, token: string) => tokens[token] ?? common[token] ?? whole);
}

const expandTilde = (path: string, home: string): string =>
  path === '~' ? home : path.startsWith('~/') ? join(home, path.slice(2)) : path;
