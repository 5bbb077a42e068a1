// Tagged errors: one class per cause, structured fields, `cause` kept. The class decides the
// policy of a long-running service: PermanentError (bad input, bad config) is never retried;
// anything else is transient and retried with backoff.

export type ErrorTag = 'ConfigError' | 'InputError' | 'ModelError' | 'MessageError' | 'OutputError' | 'TaskError' | 'FencedError' | 'LeaseError' | 'RemoteError';

export abstract class TesseraError extends Error {
  abstract readonly _tag: ErrorTag;
  /** True when retrying cannot help (the input itself is wrong). */
  abstract readonly permanent: boolean;
}

/** A config key is unknown, of the wrong type, or impossible. `key` is the dotted path. */
export class ConfigError extends TesseraError {
  readonly _tag = 'ConfigError' as const;
  readonly permanent = true;
  readonly key: string;
  constructor(key: string, message: string, options?: { cause?: unknown }) {
    super(`config ${key}: ${message}`, options);
    this.key = key;
    this.name = 'ConfigError';
  }
}

/** An input volume is missing, corrupt, or of the wrong dtype/shape. Names file and chunk. */
export class InputError extends TesseraError {
  readonly _tag = 'InputError' as const;
  readonly permanent = true;
  readonly path: string;
  readonly chunk?: string;
  constructor(path: string, message: string, chunk?: string, options?: { cause?: unknown }) {
    super(`${path}${chunk ? ` (chunk ${chunk})` : ''}: ${message}`, options);
    this.path = path;
    this.chunk = chunk;
    this.name = 'InputError';
  }
}

/** A model file is missing, unreadable, or does not match its sidecar or the config. */
export class ModelError extends TesseraError {
  readonly _tag = 'ModelError' as const;
  readonly permanent = true;
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(`model ${path}: ${message}`, options);
    this.path = path;
    this.name = 'ModelError';
  }
}

/** A bus message failed validation. Never retried: the same bytes fail the same way. */
export class MessageError extends TesseraError {
  readonly _tag = 'MessageError' as const;
  readonly permanent = true;
  readonly subject: string;
  constructor(subject: string, message: string, options?: { cause?: unknown }) {
    super(`message on ${subject}: ${message}`, options);
    this.subject = subject;
    this.name = 'MessageError';
  }
}

/** Writing the output failed (disk full, permissions); usually transient. */
export class OutputError extends TesseraError {
  readonly _tag = 'OutputError' as const;
  readonly permanent = false;
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(`output ${path}: ${message}`, options);
    this.path = path;
    this.name = 'OutputError';
  }
}

/**
 * A read from object storage or HTTP (`s3://`, `https://`, `gs://`) still failed after every try
 * for a cause that may pass: 5xx, throttling (429, 503 SlowDown), a timeout, a connection reset.
 * Transient: the task is retried later (by the embedded runner or the broker). Names the URL and
 * the key, never a credential.
 */
export class RemoteError extends TesseraError {
  readonly _tag = 'RemoteError' as const;
  readonly permanent = false;
  readonly url: string;
  constructor(url: string, message: string, options?: { cause?: unknown }) {
    super(`${url}: ${message}`, options);
    this.url = url;
    this.name = 'RemoteError';
  }
}

/**
 * A task failed where the coordinator cannot retry it: a worker reported a permanent error or
 * gave up after the broker's last delivery, or every delivery died with its worker.
 */
export class TaskError extends TesseraError {
  readonly _tag = 'TaskError' as const;
  readonly permanent = true;
  readonly task: string;
  constructor(task: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.task = task;
    this.name = 'TaskError';
  }
}

/**
 * This process no longer owns the output it was writing: its lock was taken over (it looked
 * stale: the process was stopped, or its host's clock or disk stalled) or a caller's lease was
 * lost. Permanent: the run must stop before its next write, never retry.
 */
export class FencedError extends TesseraError {
  readonly _tag = 'FencedError' as const;
  readonly permanent = true;
  readonly path: string;
  readonly holder: string;
  constructor(path: string, holder: string, options?: { cause?: unknown }) {
    super(`output ${path}: fenced — ${holder}; this run stopped without writing more (the new holder carries on; re-run once it has ended if needed)`, options);
    this.path = path;
    this.holder = holder;
    this.name = 'FencedError';
  }
}

/**
 * This coordinator no longer holds its run's lease (`lost`: permanent, another one owns the
 * output now and this one must stop without writing), or cannot confirm it holds it (the broker
 * is unreachable: it must not write until it can, a transient state).
 */
export class LeaseError extends TesseraError {
  readonly _tag = 'LeaseError' as const;
  readonly permanent: boolean;
  readonly run: string;
  constructor(run: string, message: string, options?: { cause?: unknown; lost?: boolean }) {
    super(`run ${run}: ${message}`, options);
    this.run = run;
    this.name = 'LeaseError';
    this.permanent = options?.lost ?? true;
  }
}

export function isTesseraError(err: unknown, tag?: ErrorTag): err is TesseraError {
  return err instanceof TesseraError && (tag === undefined || err._tag === tag);
}

export function isPermanent(err: unknown): boolean {
  return isTesseraError(err) && err.permanent;
}

const ERRNO: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a path component is not a directory',
  EISDIR: 'is a directory',
  EEXIST: 'is a file, not a directory',
  ENOENT: 'no such file or directory',
  EROFS: 'read-only file system',
  EMFILE: 'too many open files',
};

/**
 * One line for a user: a Tessera error's own message; a system error as "what failed PATH: cause"
 * (ENOSPC → "no space left on device writing PATH"); anything else, its message.
 */
export function oneLine(err: unknown): string {
  if (isTesseraError(err)) return err.message;
  const e = err as NodeJS.ErrnoException & { dest?: string };
  if (e && typeof e.code === 'string' && ERRNO[e.code]) {
    // The device's state first ("no space left on device writing PATH"), a path's state after it.
    if (['ENOSPC', 'EDQUOT', 'EROFS', 'EMFILE'].includes(e.code)) {
      const verb = e.syscall && /read|stat|scandir/.test(e.syscall) ? 'reading' : 'writing';
      return `${ERRNO[e.code]}${e.path ? ` ${verb} ${e.path}` : ''}`;
    }
    return e.path ? `${e.path}${e.dest ? ` → ${e.dest}` : ''}: ${ERRNO[e.code]}` : ERRNO[e.code];
  }
  return e?.message ?? String(err);
}
