// Structured logs (pino, JSON to stderr so stdout stays free for --json results).
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string = process.env.TESSERA_LOG ?? 'info', bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { ...bindings } }, pino.destination(2));
}

/** A logger that drops everything (tests, library callers that pass none). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
