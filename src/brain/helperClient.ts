/** The brain's client for one side's helper: pipelined requests, replies matched by id. */

import { decodeHelperReply, encodeHelperRequest, type HelperConfig, type HelperReply, type HelperRequest } from '../core/protocol.js';
import type { Logger } from '../log.js';
import type { Endpoint } from '../transport/endpoint.js';
import { ChildLink } from './childLink.js';

type Pending = (reply: HelperReply) => void;

export class HelperClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  private constructor(readonly link: ChildLink) {
    link.listen((frame) => {
      let reply: HelperReply;
      try {
        reply = decodeHelperReply(frame);
      } catch {
        link.counters.rejected += 1;
        return;
      }
      const resolve = this.pending.get(reply.id);
      if (resolve === undefined) return; // not ours: a forged or late reply is never acted on
      this.pending.delete(reply.id);
      resolve(reply);
    });
    void link.exited.then(() => this.failAll('the helper exited'));
  }

  static async open(endpoint: Endpoint, config: HelperConfig, log: Logger): Promise<HelperClient> {
    return new HelperClient(await ChildLink.open(endpoint, 'helper', config, log));
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
