import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  loadSshTarget,
  resolveSshTarget,
  type SshEnvironment,
  type SshTarget,
} from '../../src/transport/sshConfig.js';

const HOME = '/home/alice';
const environment = (existing: readonly string[] = [], env: Record<string, string> = {}): SshEnvironment => ({
  home: HOME,
  localUser: 'alice',
  localHost: 'laptop.lan',
  uid: 1000,
  env,
  exists: (path) => existing.includes(path),
});

const CONFIG = `
Host build
  HostName build.example.com
  Port 2222
  User deploy
  IdentityFile ~/.ssh/deploy_%r_%h
  IdentityFile %d/keys/%u-%n
  IdentitiesOnly yes
  UserKnownHostsFile ~/.ssh/kh_one /etc/kh_two
  GlobalKnownHostsFile none
  StrictHostKeyChecking accept-new
  HostKeyAlias build-key
  ConnectTimeout 7

Host *.corp
  HostName %h.internal
  User corp

Host jumped
  ProxyJump bastion

Host agentless
  IdentityAgent none

Host custom-agent
  IdentityAgent $MY_AGENT

Host bad-port
  Port 99999

Host *
  User fallback
  ServerAliveInterval 30
`;

const defaults = {
  port: 22,
  identitiesOnly: false,
  identityAgent: undefined,
  userKnownHostsFiles: [`${HOME}/.ssh/known_hosts`, `${HOME}/.ssh/known_hosts2`],
  globalKnownHostsFiles: ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'],
  strictHostKeyChecking: 'ask',
  hostKeyAlias: undefined,
  connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
  proxy: undefined,
};

describe('resolveSshTarget', () => {
  test.each<{ description: string; config: string; destination: string; env?: SshEnvironment; expected: Partial<SshTarget> }>([
    {
      description: 'no config: the name itself, port 22, the local user, the default keys that exist',
      config: '',
      destination: 'plain.example.com',
      env: environment([`${HOME}/.ssh/id_rsa`, `${HOME}/.ssh/id_ed25519`]),
      expected: {
        ...defaults,
        host: 'plain.example.com',
        hostName: 'plain.example.com',
        user: 'alice',
        identityFiles: [`${HOME}/.ssh/id_ed25519`, `${HOME}/.ssh/id_rsa`],
      },
    },
    {
      description: 'an alias with everything set, tokens and ~ expanded',
      config: CONFIG,
      destination: 'build',
      expected: {
        host: 'build',
        hostName: 'build.example.com',
        port: 2222,
        user: 'deploy',
        identityFiles: [`${HOME}/.ssh/deploy_deploy_build.example.com`, `${HOME}/keys/alice-build`],
        identitiesOnly: true,
        userKnownHostsFiles: [`${HOME}/.ssh/kh_one`, '/etc/kh_two'],
        globalKnownHostsFiles: [],
        strictHostKeyChecking: 'accept-new',
        hostKeyAlias: 'build-key',
        connectTimeoutMs: 7000,
      },
    },
    {
      description: 'user@ on the command line beats the config User',
      config: CONFIG,
      destination: 'root@build',
      expected: { host: 'build', user: 'root', identityFiles: [`${HOME}/.ssh/deploy_root_build.example.com`, `${HOME}/keys/alice-build`] },
    },
    {
      description: 'the first match wins: a wildcard section before Host *',
      config: CONFIG,
      destination: 'db.corp',
      expected: { host: 'db.corp', hostName: 'db.corp.internal', user: 'corp', port: 22 },
    },
    {
      description: 'Host * supplies what nothing earlier set',
      config: CONFIG,
      destination: 'other',
      expected: { hostName: 'other', user: 'fallback', identityFiles: [] },
    },
    {
      description: 'SSH_AUTH_SOCK is the agent by default',
      config: '',
      destination: 'h',
      env: environment([], { SSH_AUTH_SOCK: '/tmp/agent.sock' }),
      expected: { identityAgent: '/tmp/agent.sock' },
    },
    {
      description: 'IdentityAgent none disables the agent',
      config: CONFIG,
      destination: 'agentless',
      env: environment([], { SSH_AUTH_SOCK: '/tmp/agent.sock' }),
      expected: { identityAgent: undefined },
    },
    {
      description: 'IdentityAgent $VAR names an environment variable',
      config: CONFIG,
      destination: 'custom-agent',
      env: environment([], { SSH_AUTH_SOCK: '/tmp/agent.sock', MY_AGENT: '/run/my.sock' }),
      expected: { identityAgent: '/run/my.sock' },
    },
    {
      description: 'a ProxyJump is reported, not ignored',
      config: CONFIG,
      destination: 'jumped',
      expected: { proxy: 'ProxyJump bastion' },
    },
    {
      description: 'keywords are case-insensitive',
      config: 'host lower\n  hostname lower.example.com\n  PORT 2200\n',
      destination: 'lower',
      expected: { hostName: 'lower.example.com', port: 2200 },
    },
    {
      description: 'Match exec is never run (it would run a shell)',
      config: 'Match exec "true"\n  Port 2201\n',
      destination: 'h',
      expected: { port: 22 },
    },
  ])('$description', ({ config, destination, env, expected }) => {
    expect(resolveSshTarget(config, destination, env ?? environment())).toMatchObject(expected);
  });

  test.each([
    { description: 'a port out of range', config: CONFIG, destination: 'bad-port', message: /invalid Port "99999"/ },
    { description: 'an empty host', config: '', destination: 'user@', message: /invalid ssh destination/ },
    { description: 'a non-numeric ConnectTimeout', config: 'Host t\n  ConnectTimeout soon\n', destination: 't', message: /ConnectTimeout/ },
  ])('refuses $description', ({ config, destination, message }) => {
    expect(() => resolveSshTarget(config, destination, environment())).toThrow(message);
    expect(() => resolveSshTarget(config, destination, environment())).toThrow(ConfigError);
  });
});

describe('loadSshTarget', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psync-sshconfig-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('reads an explicit file', async () => {
    const file = join(dir, 'config');
    await writeFile(file, 'Host t\n  HostName 192.0.2.7\n  Port 2022\n');
    expect(await loadSshTarget('t', file, environment())).toMatchObject({ hostName: '192.0.2.7', port: 2022 });
  });

  test('a missing explicit file is a ConfigError', async () => {
    await expect(loadSshTarget('t', join(dir, 'missing'), environment())).rejects.toThrow(ConfigError);
  });

  test('a missing ~/.ssh/config is fine', async () => {
    const env = { ...environment(), home: join(dir, 'nohome') };
    expect(await loadSshTarget('t', undefined, env)).toMatchObject({ hostName: 't', port: 22 });
  });

  test('~/.ssh/config is read when it exists', async () => {
    const home = join(dir, 'home');
    await mkdir(join(home, '.ssh'), { recursive: true });
    await writeFile(join(home, '.ssh', 'config'), 'Host t\n  Port 2023\n');
    const env = { ...environment(), home, exists: (path: string) => path === join(home, '.ssh', 'config') };
    expect(await loadSshTarget('t', undefined, env)).toMatchObject({ port: 2023 });
  });
});
