import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout; anything that could hold a secret is redacted. */
export function createLogger(level = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'berth' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['*.key', '*.privateKey', '*.secretAccessKey', '*.sessionToken', '*.authorization', '*.Authorization', 'key', 'privateKey'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

/** A logger that drops everything, for tests and library defaults. */
export const silentLogger: Logger = pino({ level: 'silent' });
