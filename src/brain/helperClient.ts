/**
 * The brain's client for one side's helper: pipelined requests, replies
 * matched by id. A reply that cannot be decoded, or whose id is not a
 * pending request (forged, replayed, or late after its request was given
 * up), is never acted on: it is counted and reported (`onRejected`). An
 * unreadable reply to a pending request fails that request (`error`), so
 * the brain never waits for ever.
 */

import type { Frame } from '../core/frame.js';
import {
  decodeHelperReply,
  encodeHelperRequest,
  type HelperReply,
  type HelperReplyTo,
  type HelperRequest,
  type HelperRequestKind,
} from '../core/protocol.js';
import type { ChildLink } from './childLink.js';

/** A request waiting for its reply: its kind says which form of DONE answers it. */
interface Pending {
  readonly kind: HelperRequestKind;
  readonly resolve: (reply: HelperReply) => void;
}

/** A request as the brain writes it: the client numbers it. */
export type HelperRequestBody = DistributiveOmit<HelperRequest, 'id'>;

/** The replies to `R`, in its order, each typed by its request's kind (a HASH's carries `hash`). */
export type HelperRepliesTo<R extends readonly HelperRequestBody[]> = {
  -readonly [I in keyof R]: R[I] extends { readonly kind: infer K extends HelperRequestKind } ? HelperReplyTo<K> : never;
};

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
  /** Why no request will be answered any more (closed, or the helper exited). */
  private gone: string | undefined;
  private offered: (offer: RelayOffer) => void = () => {};
  /** The helper's relay offer; only a helper whose CONFIG asked for one makes it. */
  readonly relay = new Promise<RelayOffer>((resolve) => (this.offered = resolve));

  /** Replies refused so far: undecodable, or naming no pending request. */
  rejected = 0;

  constructor(
    readonly link: ChildLink,
    relayAsked: boolean,
    /** Told of every refused reply, with why: the brain counts it in its status and logs it. */
    private readonly onRejected: (why: string) => void = () => {},
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
    const id = /^[0-9]{1,15}$/.test(frame.args[0] ?? '') ? Number(frame.args[0]) : undefined;
    const waiting = id === undefined ? undefined : this.pending.get(id);
    let reply: HelperReply;
    try {
      reply = decodeHelperReply(frame, waiting?.kind);
    } catch (error) {
      const why = `${frame.verb}: ${(error as Error).message}`;
      this.reject(why);
      // A pending request whose reply is unreadable is not done: fail it rather than wait for ever.
      if (id !== undefined && waiting !== undefined) {
        this.pending.delete(id);
        waiting.resolve({ id, ok: false, code: 'error', message: `unreadable reply (${why})` });
      }
      return true;
    }
    if (waiting === undefined) {
      this.reject(`${frame.verb} ${reply.id} answers no pending request (forged, replayed or late)`);
      return true;
    }
    this.pending.delete(reply.id);
    waiting.resolve(reply);
    return true;
  }

  /**
   * Send every request at once and resolve with the replies in request
   * order. A literal list gets a typed tuple back:
   * `request([{ kind: 'hash', path }])` resolves to `[HelperReplyTo<'hash'>]`.
   */
  request<const R extends readonly HelperRequestBody[]>(requests: R): Promise<HelperRepliesTo<R>> {
    return Promise.all(
      requests.map((request) => {
        const id = this.nextId++;
        // A request after the helper is gone (closed, exited) fails at once: nothing would ever answer it.
        if (this.gone !== undefined) return Promise.resolve<HelperReply>({ id, ok: false, code: 'error', message: this.gone });
        const full = { ...request, id } as HelperRequest;
        const promise = new Promise<HelperReply>((resolve) => this.pending.set(id, { kind: full.kind, resolve }));
        const { verb, args } = encodeHelperRequest(full);
        this.link.send(verb, args);
        return promise;
      }),
    ) as Promise<HelperRepliesTo<R>>;
  }

  private reject(why: string): void {
    this.rejected += 1;
    this.link.counters.rejected += 1;
    this.onRejected(why);
  }

  close(): void {
    this.link.close();
    this.failAll('the helper was closed');
  }

  /** Fail every pending request, and every later one, with `why`. */
  private failAll(why: string): void {
    this.gone ??= why;
    for (const [id, { resolve }] of this.pending) resolve({ id, ok: false, code: 'error', message: why });
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
