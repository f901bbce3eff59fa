/** The brain's client for one side's helper: pipelined requests, replies matched by id. */

import type { Frame } from '../core/frame.js';
import { decodeHelperReply, encodeHelperRequest, type HelperReply, type HelperRequest } from '../core/protocol.js';
import type { ChildLink } from './childLink.js';

type Pending = (reply: HelperReply) => void;

/** Where the helper's rsync relay listens (src/core/relay.ts), or why it has none. */
export type RelayOffer = { readonly ok: true; readonly port: number; readonly token: string } | { readonly ok: false; readonly reason: string };

/** How long a helper asked for a relay may take to offer it. */
const RELAY_OFFER_TIMEOUT_MS = 10_000;

/**
 * Speaks to a helper over its link (the side's, shared with its filter):
 * the brain hands it every frame, and it takes the helper's (`receive`).
 */
export class HelperClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private offered: (offer: RelayOffer) => void = () => {};
  /** The helper's relay offer; only a helper whose CONFIG asked for one makes it. */
  readonly relay = new Promise<RelayOffer>((resolve) => (this.offered = resolve));

  constructor(
    readonly link: ChildLink,
    relayAsked: boolean,
  ) {
    void link.exited.then(() => {
      this.failAll('the helper exited');
      this.offered({ ok: false, reason: 'the helper exited' });
    });
    if (!relayAsked) {
      this.offered({ ok: false, reason: 'not asked for' });
      return;
    }
    const timer = setTimeout(() => this.offered({ ok: false, reason: 'the helper did not offer its relay in time' }), RELAY_OFFER_TIMEOUT_MS);
    void this.relay.then(() => clearTimeout(timer));
  }

  /** Take `frame` if it is the helper's (a reply or a relay offer); false when it is not. */
  receive(frame: Frame): boolean {
    if (frame.verb === 'RELAY' || frame.verb === 'NORELAY') {
      this.offered(parseRelayOffer(frame.verb, frame.args));
      return true;
    }
    if (frame.verb !== 'DONE' && frame.verb !== 'FAIL') return false;
    let reply: HelperReply;
    try {
      reply = decodeHelperReply(frame);
    } catch {
      this.link.counters.rejected += 1;
      return true;
    }
    const resolve = this.pending.get(reply.id);
    if (resolve === undefined) return true; // not ours: a forged or late reply is never acted on
    this.pending.delete(reply.id);
    resolve(reply);
    return true;
  }

  /** Send every request at once and resolve with the replies in request order. */
  request(requests: readonly DistributiveOmit<HelperRequest, 'id'>[]): Promise<HelperReply[]> {
    return Promise.all(
      requests.map((request) => {
        const id = this.nextId++;
        const full = { ...request, id } as HelperRequest;
        const promise = new Promise<HelperReply>((resolve) => this.pending.set(id, resolve));
        const { verb, args } = encodeHelperRequest(full);
        this.link.send(verb, args);
        return promise;
      }),
    );
  }

  close(): void {
    this.link.close();
    this.failAll('the helper was closed');
  }

  private failAll(why: string): void {
    for (const [id, resolve] of this.pending) resolve({ id, ok: false, code: 'error', message: why });
    this.pending.clear();
  }
}

export type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

function parseRelayOffer(verb: string, args: readonly string[]): RelayOffer {
  if (verb === 'NORELAY') return { ok: false, reason: args[0] ?? 'no reason given' };
  const [port, token] = args;
  if (args.length !== 2 || !/^[0-9]{1,5}$/.test(port!) || Number(port) < 1 || Number(port) > 65_535 || !/^[A-Za-z0-9]{16,128}$/.test(token!)) {
    return { ok: false, reason: `a malformed RELAY frame (${args.length} arguments)` };
  }
  return { ok: true, port: Number(port), token: token! };
}
