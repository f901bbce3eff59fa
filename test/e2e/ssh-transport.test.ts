/**
 * The SSH transport against a private sshd: exec channels are binary-safe
 * and report exit codes, rsync rides the ControlMaster, and a host key we
 * cannot vouch for stops the connection.
 */

import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ConnectionError } from '../../src/core/errors.js';
import { SshEndpoint, type SshConnectOptions } from '../../src/transport/ssh.js';
import {
  startSshd,
  writeCorrectKnownHosts,
  writeEmptyKnownHosts,
  writeWrongKnownHosts,
  type SshdFixture,
} from '../support/sshd.js';

let sshd: SshdFixture;
let work: string;

beforeAll(async () => {
  sshd = await startSshd();
  work = await mkdtemp(join(tmpdir(), 'psync-ssh-e2e-'));
});

afterAll(async () => {
  await sshd?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const optionsFor = (overrides: Partial<SshConnectOptions> = {}): SshConnectOptions => ({
  side: 'right',
  host: sshd.host,
  root: join(work, 'remote-root'),
  sshConfigFile: sshd.configFile,
  remotePsync: 'psync-not-used-here',
  ...overrides,
});

const readAll = async (stream: Readable): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
};

describe('a connected endpoint', () => {
  let endpoint: SshEndpoint;
  beforeAll(async () => {
    endpoint = await SshEndpoint.connect(optionsFor());
  });
  afterAll(async () => {
    await endpoint?.close();
  });

  test('exec channels carry any bytes both ways', async () => {
    const channel = await endpoint.exec('cat');
    const payload = Buffer.concat([Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 0]), Buffer.from('é\n\r\n'), Buffer.alloc(200_000, 0xc3)]);
    const echoed = readAll(channel.stdout);
    const stderr = readAll(channel.stderr);
    channel.stdin.end(payload);
    expect((await echoed).equals(payload)).toBe(true);
    expect((await stderr).length).toBe(0);
    expect(await channel.exited).toBe(0);
  });

  test('an exit code comes back', async () => {
    const channel = await endpoint.exec('echo oops >&2; exit 3');
    const stderr = readAll(channel.stderr);
    channel.stdout.resume();
    expect(await channel.exited).toBe(3);
    expect((await stderr).toString()).toBe('oops\n');
  });

  test('kill() stops a command that runs until its input ends', async () => {
    // Like psync's filter and helper. (A command that ignores EOF would outlive
    // kill() here: sshd refuses signal requests for root logins.)
    const channel = await endpoint.exec('cat >/dev/null');
    channel.kill();
    expect([0, null]).toContain(await channel.exited);
  });

  test('several channels share the connection at once', async () => {
    const channels = await Promise.all([1, 2, 3].map((n) => endpoint.exec(`exit ${n}`)));
    for (const channel of channels) channel.stdout.resume();
    expect(await Promise.all(channels.map((channel) => channel.exited))).toEqual([1, 2, 3]);
  });

  test('rsync reaches the root through the master connection', async () => {
    const source = join(work, 'source');
    await mkdir(join(source, 'sub dir'), { recursive: true });
    await writeFile(join(source, 'a.txt'), 'alpha\n');
    await writeFile(join(source, 'sub dir', "it's b"), Buffer.from([0, 1, 2, 255]));
    expect(endpoint.rsyncLocation()).toBe(`${sshd.host}:${join(work, 'remote-root')}/`);

    // With a wrong known_hosts a fresh SSH connection would be refused, so success proves reuse.
    await writeWrongKnownHosts(sshd);
    const result = await execa('rsync', ['-a', '--protect-args', ...endpoint.rsyncArgs(), `${source}/`, endpoint.rsyncLocation()], {
      reject: false,
    }).finally(() => writeCorrectKnownHosts(sshd));
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
    expect(await readFile(join(work, 'remote-root', 'a.txt'), 'utf8')).toBe('alpha\n');
    expect(await readFile(join(work, 'remote-root', 'sub dir', "it's b"))).toEqual(Buffer.from([0, 1, 2, 255]));
  });

  test('the rsync ssh command uses the control socket and never connects on its own', () => {
    const [flag, command] = endpoint.rsyncArgs();
    expect(flag).toBe('-e');
    expect(command).toMatch(/^ssh -F \S+ -S \S+\/cm -o ControlMaster=no -o BatchMode=yes -o StrictHostKeyChecking=yes$/);
  });

  test('description names host and root', () => {
    expect(endpoint.description).toBe(`${sshd.host}:${join(work, 'remote-root')}`);
  });
});

test('a config path with spaces and quotes survives rsync -e splitting', async () => {
  const oddDir = join(work, "odd dir's");
  await mkdir(oddDir, { recursive: true });
  const oddConfig = join(oddDir, 'ssh config');
  await copyFile(sshd.configFile, oddConfig);
  const endpoint = await SshEndpoint.connect(optionsFor({ sshConfigFile: oddConfig, root: join(work, 'odd-root') }));
  try {
    const source = join(work, 'odd-source');
    await mkdir(source, { recursive: true });
    await writeFile(join(source, 'f'), 'f\n');
    const result = await execa('rsync', ['-a', '--protect-args', ...endpoint.rsyncArgs(), `${source}/`, endpoint.rsyncLocation()], {
      reject: false,
    });
    expect(result.stderr).toBe('');
    expect(await readFile(join(work, 'odd-root', 'f'), 'utf8')).toBe('f\n');
  } finally {
    await endpoint.close();
  }
});

test('close() is idempotent and reports no disconnect', async () => {
  const endpoint = await SshEndpoint.connect(optionsFor());
  const disconnects: ConnectionError[] = [];
  endpoint.onDisconnect((error) => disconnects.push(error));
  await Promise.all([endpoint.close(), endpoint.close()]);
  await endpoint.close();
  expect(disconnects).toEqual([]);
});

describe('refusals', () => {
  afterAll(async () => {
    await writeCorrectKnownHosts(sshd);
  });

  test('a host key that differs from known_hosts', async () => {
    await writeWrongKnownHosts(sshd);
    const attempt = SshEndpoint.connect(optionsFor());
    await expect(attempt).rejects.toThrow(ConnectionError);
    await expect(attempt).rejects.toThrow(/host key for .*127\.0\.0\.1:\d+.* does not match known_hosts/);
  });

  test('a host that is not in known_hosts', async () => {
    await writeEmptyKnownHosts(sshd);
    const attempt = SshEndpoint.connect(optionsFor());
    await expect(attempt).rejects.toThrow(ConnectionError);
    await expect(attempt).rejects.toThrow(/host key for .* is not in known_hosts/);
  });

  test('an unknown host even when the config says StrictHostKeyChecking no', async () => {
    await writeEmptyKnownHosts(sshd);
    const laxConfig = join(work, 'lax_config');
    await writeFile(laxConfig, (await readFile(sshd.configFile, 'utf8')).replace(/StrictHostKeyChecking yes/, 'StrictHostKeyChecking no'));
    await expect(SshEndpoint.connect(optionsFor({ sshConfigFile: laxConfig }))).rejects.toThrow(/is not in known_hosts/);
  });

  test('an ssh config OpenSSH itself rejects fails with ssh\'s message', async () => {
    await writeCorrectKnownHosts(sshd);
    const badConfig = join(work, 'bad_config');
    await writeFile(badConfig, `${await readFile(sshd.configFile, 'utf8')}  NoSuchOption yes\n`);
    const attempt = SshEndpoint.connect(optionsFor({ sshConfigFile: badConfig }));
    await expect(attempt).rejects.toThrow(ConnectionError);
    await expect(attempt).rejects.toThrow(/ssh master connection to .* failed: .*Bad configuration option: nosuchoption/s);
  });

  test('a closed port', async () => {
    await writeCorrectKnownHosts(sshd);
    const closedPortConfig = join(work, 'closed_port_config');
    // Port 1 on loopback: nothing listens there and nobody may bind it without root.
    await writeFile(closedPortConfig, (await readFile(sshd.configFile, 'utf8')).replace(/Port \d+/, 'Port 1'));
    const attempt = SshEndpoint.connect(optionsFor({ sshConfigFile: closedPortConfig }));
    await expect(attempt).rejects.toThrow(ConnectionError);
    await expect(attempt).rejects.toThrow(/connection to .*127\.0\.0\.1:1\) refused/);
  });

  test('a user key the server does not accept', async () => {
    const strangerKey = join(work, 'stranger_key');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', strangerKey]);
    const strangerConfig = join(work, 'stranger_config');
    await writeFile(
      strangerConfig,
      (await readFile(sshd.configFile, 'utf8')).replace(/IdentityFile .*/, `IdentityFile ${strangerKey}`),
    );
    const attempt = SshEndpoint.connect(optionsFor({ sshConfigFile: strangerConfig }));
    await expect(attempt).rejects.toThrow(ConnectionError);
    await expect(attempt).rejects.toThrow(/authentication as \S+ to .* failed/);
  });
});

test('a dropped connection is reported once through onDisconnect', async () => {
  const endpoint = await SshEndpoint.connect(optionsFor());
  try {
    const disconnected = new Promise<ConnectionError>((resolve) => endpoint.onDisconnect(resolve));
    const running = await endpoint.exec('cat');
    running.stdout.resume();
    running.stderr.resume();
    // Kill this connection's sshd session process from the server side.
    const killer = await endpoint.exec('kill -9 $PPID');
    killer.stdout.resume();
    const error = await disconnected;
    expect(error).toBeInstanceOf(ConnectionError);
    expect(await running.exited).toBeNull();
  } finally {
    await endpoint.close();
  }
});

test('inspectRsync reads the whole answer every time (the exit status can come before the last output)', async () => {
  await mkdir(join(work, 'inspected'), { recursive: true });
  const endpoint = await SshEndpoint.connect(optionsFor({ root: join(work, 'inspected') }));
  try {
    const rounds = Number(process.env['PSYNC_INSPECT_ROUNDS'] ?? '20');
    for (let i = 0; i < rounds; i++) {
      const host = await endpoint.inspectRsync();
      expect(host.versionOutput, `round ${i}`).toMatch(/^rsync +version \d+\.\d+\.\d+/);
      expect(host.realRoot).toBe(join(work, 'inspected'));
      expect(host.euid).toBe(process.geteuid!());
    }
  } finally {
    await endpoint.close();
  }
});
