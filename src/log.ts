/** The one logger: winston to stderr, levels chosen by `-d`. */

import winston from 'winston';

export type Logger = winston.Logger;

/** `-d 0` warnings and errors only, 1 (default) what psync does, 2 every event, 3 everything. */
const LEVEL_BY_DEBUG = ['warn', 'info', 'debug', 'silly'] as const;

/** Wait until everything logged so far has been written (winston writes through async streams). */
export function flushLogger(log: Logger): Promise<void> {
  return new Promise((resolve) => {
    // A late line from a closing child must not crash the exit.
    log.on('error', () => {});
    log.once('finish', () => resolve());
    log.end();
  });
}

export function createLogger(debug: number): Logger {
  const level = LEVEL_BY_DEBUG[Math.max(0, Math.min(3, debug))]!;
  return winston.createLogger({
    level,
    format: winston.format.combine(
      winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
      winston.format.printf(({ timestamp, level: lvl, message }) => `${String(timestamp)} ${lvl.padEnd(5)} ${String(message)}`),
    ),
    transports: [new winston.transports.Stream({ stream: process.stderr })],
  });
}
