/**
 * Waiting for a condition with a deadline. Every "it arrived" figure in the
 * benchmark comes from a poll like this, never from a fixed sleep.
 */

export class DeadlineError extends Error {}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Call `probe` every `intervalMs` until it returns something other than
 * `undefined` / `false`; throw a DeadlineError after `deadlineMs`.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  deadlineMs: number,
  intervalMs = 10,
): Promise<T> {
  const until = performance.now() + deadlineMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() > until) {
      const why = lastError === undefined ? '' : `: ${String(lastError)}`;
      throw new DeadlineError(`timed out after ${deadlineMs} ms waiting for ${what}${why}`);
    }
    await sleep(intervalMs);
  }
}

/** Milliseconds on a monotonic clock. */
export function nowMs(): number {
  return performance.now();
}
