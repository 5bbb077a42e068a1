// One writer per output: a lock file beside it (`out.zarr.lock`) holding its holder's pid, host,
// a random token, when it started and `beatAt`, the holder's own time of its last heartbeat.
//
// - Taking a free lock links a complete temp document to the lock path (link fails if the path
//   exists), so a reader never sees a half-written lock and two takers never both win.
// - A lock is stale when its holder's beatAt is older than the stale limit (another host: a
//   coordinator pod restarted elsewhere), or, on this host, its pid is gone or a zombie.
// - Taking over a stale lock, a heartbeat and a release each hold a short guard file
//   (`<lock>.takeover`, O_EXCL) while they re-read the lock and rename a temp document over it:
//   the staleness is re-judged under the guard, so of two takers only the first wins, and a
//   heartbeat never overwrites a lock another process took meanwhile (it is then fenced).
// - check() throws FencedError once the lock is no longer this process's own; it re-reads the
//   file only when the last good beat is older than half the stale limit (so at once after a
//   SIGSTOP/SIGCONT, rarely otherwise).
//
// What the guard cannot exclude: a process stopped for longer than the guard's own staleness
// while holding it (microseconds of its life). Comparing the holder's beatAt with this host's
// clock assumes hosts' clocks agree to well under the stale limit.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { FencedError, OutputError, oneLine } from '../errors.ts';

export interface LockDoc {
  pid: number;
  host: string;
  token: string;
  startedAt: string;
  /** The holder's time of its last heartbeat (absent in locks of older Tesseras). */
  beatAt?: string;
}

export interface OutputLock {
  /** Remove the lock if it is still this process's own; stop the heartbeat. */
  release(): void;
  /** Throws FencedError if the lock is no longer this process's own. */
  check(): void;
}

export interface LockOptions {
  /** Milliseconds without a heartbeat after which the lock is stale. @default 60000 */
  staleMs?: number;
  /** Called once when the heartbeat finds the lock taken by another process. */
  onFenced?: (err: FencedError) => void;
}

export function lockPath(out: string): string {
  return `${path.resolve(out)}.lock`;
}

/** A guard older than this was left by a process that died holding it. */
const GUARD_STALE_MS = 2_000;

/** The state letter of /proc/<pid>/stat ('R', 'S', 'Z' …), parsed after the last ')' (a command name may hold spaces and parentheses). */
export function procStatState(stat: string): string | undefined {
  const end = stat.lastIndexOf(')');
  if (end < 0) return undefined;
  return stat.slice(end + 1).trim().split(/\s+/)[0] || undefined;
}

/** Is `pid` a process of this host that can still run (alive and not a zombie)? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // A zombie answers signal 0 but has ended: its parent has not reaped it yet.
  try {
    return procStatState(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')) !== 'Z';
  } catch {
    return true; // no /proc (not Linux): signal 0 is all there is
  }
}

function readDoc(file: string): LockDoc | undefined | 'unreadable' {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return 'unreadable';
  }
  try {
    return JSON.parse(text) as LockDoc;
  } catch {
    return 'unreadable';
  }
}

/** Milliseconds since the holder's last beat: its own beatAt, else (older locks) the file's mtime. */
function ageOf(file: string, held: LockDoc | 'unreadable'): number {
  const t = held === 'unreadable' ? NaN : Date.parse(held.beatAt ?? '');
  if (Number.isFinite(t)) return Date.now() - t;
  try {
    return Date.now() - fs.statSync(file).mtimeMs;
  } catch {
    return Infinity;
  }
}

function isStale(file: string, held: LockDoc | 'unreadable', staleMs: number): boolean {
  if (held !== 'unreadable' && held.host === os.hostname() && !alive(held.pid)) return true;
  return ageOf(file, held) > staleMs;
}

function describe(held: LockDoc | 'unreadable' | undefined): string {
  if (held === undefined) return 'no process (the lock was removed)';
  if (held === 'unreadable') return 'another process (unreadable lock)';
  return `tessera pid ${held.pid} on ${held.host} (since ${held.startedAt})`;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Run `f` holding the guard file; undefined when another process held it throughout. */
function withGuard<T>(file: string, f: () => T): T | undefined {
  const guard = `${file}.takeover`;
  for (let attempt = 0; attempt < 50; attempt++) {
    let fd: number;
    try {
      fd = fs.openSync(guard, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        if (Date.now() - fs.statSync(guard).mtimeMs > GUARD_STALE_MS) fs.rmSync(guard, { force: true });
      } catch {
        // Gone meanwhile: try again.
      }
      sleepSync(2 + Math.random() * 5);
      continue;
    }
    try {
      return f();
    } finally {
      fs.closeSync(fd);
      fs.rmSync(guard, { force: true });
    }
  }
  return undefined;
}

/** Write `doc` to a temp file beside `file`; returns its path. */
function writeTemp(file: string, doc: LockDoc): string {
  const tmp = `${file}.${doc.token}.${process.hrtime.bigint()}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(doc) + '\n', { flag: 'wx' });
  return tmp;
}

/** Take the output's lock (or throw OutputError naming its holder); see the file's head. */
export function lockOutput(out: string, o: LockOptions = {}): OutputLock {
  const staleMs = o.staleMs ?? 60_000;
  const file = lockPath(out);
  const me: LockDoc = { pid: process.pid, host: os.hostname(), token: randomBytes(12).toString('hex'), startedAt: new Date().toISOString() };
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
  } catch (err) {
    throw new OutputError(out, `cannot create its directory: ${oneLine(err)}`, { cause: err });
  }
  const acquire = (): boolean => {
    const tmp = writeTemp(file, { ...me, beatAt: new Date().toISOString() });
    try {
      try {
        fs.linkSync(tmp, file);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const held = readDoc(file);
      if (held === undefined) return false; // released meanwhile: try again
      if (!isStale(file, held, staleMs)) throw inUse(held);
      const took = withGuard(file, () => {
        // Judged again under the guard: another taker may have won since.
        const now = readDoc(file);
        if (now !== undefined && !isStale(file, now, staleMs)) throw inUse(now);
        fs.renameSync(tmp, file);
        return true;
      });
      if (took === undefined) throw inUse(readDoc(file) ?? 'unreadable');
      return true;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  };
  const inUse = (held: LockDoc | 'unreadable'): OutputError => {
    const age = ageOf(file, held);
    return new OutputError(out, `is in use by ${describe(held)}, alive ${Math.round(age / 1000)} s ago; wait for it to end (a lock not refreshed for ${staleMs / 1000} s is taken over), or if it is gone, delete ${file}`);
  };
  let got = false;
  for (let attempt = 0; attempt < 5 && !got; attempt++) {
    try {
      got = acquire();
    } catch (err) {
      if (err instanceof OutputError) throw err;
      // Named by the lock's path, not the temp file beside it the error met.
      const e = err as NodeJS.ErrnoException;
      const named = e.code ? Object.assign(new Error(e.message), { code: e.code, syscall: e.syscall, path: file }) : err;
      throw new OutputError(out, `cannot create its lock file: ${oneLine(named)}`, { cause: err });
    }
  }
  if (!got) throw new OutputError(out, `cannot take the lock ${file}`);
  return holding(out, file, me, staleMs, o.onFenced);
}

/** The lock once taken: heartbeat, fence check, release. */
function holding(out: string, file: string, me: LockDoc, staleMs: number, onFenced?: (err: FencedError) => void): OutputLock {
  let lastBeat = Date.now();
  let fenced: FencedError | undefined;
  let released = false;
  const fence = (held: LockDoc | 'unreadable' | undefined) => {
    if (fenced) return;
    fenced = new FencedError(out, `its lock ${file} was taken over by ${describe(held)}`);
    clearInterval(timer);
    onFenced?.(fenced);
  };
  // Re-read the lock and, while it is still ours, write a new beat (temp + rename, under the guard).
  const beat = () => {
    if (fenced || released) return;
    try {
      withGuard(file, () => {
        const held = readDoc(file);
        if (held === undefined || held === 'unreadable' || held.token !== me.token) {
          fence(held);
          return;
        }
        const tmp = writeTemp(file, { ...me, beatAt: new Date().toISOString() });
        try {
          fs.renameSync(tmp, file);
        } finally {
          fs.rmSync(tmp, { force: true });
        }
        lastBeat = Date.now();
      });
    } catch {
      // Unwritable for now (disk full): the next beat or check() decides.
    }
  };
  const timer = setInterval(beat, Math.max(100, staleMs / 6));
  timer.unref();
  return {
    check: () => {
      if (!fenced && Date.now() - lastBeat > staleMs / 2) beat();
      if (fenced) throw fenced;
    },
    release: () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      if (fenced) return;
      try {
        withGuard(file, () => {
          const held = readDoc(file);
          if (held !== undefined && held !== 'unreadable' && held.token === me.token) fs.rmSync(file, { force: true });
        });
      } catch {
        // Already gone, or unreachable: a later run judges it stale.
      }
    },
  };
}
