/** Where this psync install lives, so the same install can be started as a child or on the remote host. */

import { fileURLToPath } from 'node:url';
import { shellQuote } from './transport/endpoint.js';

/** The compiled CLI entry (dist/src/cli.js). */
export const CLI_PATH = fileURLToPath(new URL('./cli.js', import.meta.url));

/** argv that starts this psync install with this node binary. */
export const selfCommand = (): string[] => [process.execPath, CLI_PATH];

/** The default `--remote-psync`: the same node binary and install path on the remote host. */
export const defaultRemotePsync = (): string => selfCommand().map(shellQuote).join(' ');

/** Subcommands the brain starts; underscored so they cannot be mistaken for a root. */
export const ROLE_COMMAND = { filter: '_filter', helper: '_helper', side: '_side' } as const;

/** Subcommands scripts/start, stop and check run (commands/service.ts); underscored for the same reason. */
export const SERVICE_COMMAND = { start: '_start', stop: '_stop', check: '_check' } as const;
