// One writer per output: a lock file beside it (`out.zarr.lock`: pid, host, start time), made
// with O_EXCL so two processes can never both hold it. Its holder touches it every
// HEARTBEAT_MS; a lock left by a process that is gone — same host and pid not alive, or not
// touched for STALE_MS (another host: a coordinator pod restarted elsewhere) — is taken over.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { OutputError, oneLine } from '../errors.ts';

interface LockDoc {
  pid: number;
  host: string;
  startedAt: string;
}

export function lockPath(out: string): string {
  return `${path.resolve(out)}.lock`;
}

const HEARTBEAT_MS = 10_000;
const STALE_MS = 60_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Take the output's lock; returns its release. */
export function lockOutput(out: string): () => void {
  const file = lockPath(out);
  const me: LockDoc = { pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString() };
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
  } catch (err) {
    throw new OutputError(out, `cannot create its directory: ${oneLine(err)}`, { cause: err });
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, JSON.stringify(me) + '\n', { flag: 'wx' });
      let released = false;
      const beat = setInterval(() => {
        const now = new Date();
        try {
          fs.utimesSync(file, now, now);
        } catch {
          // Gone or unwritable: the next writer's check decides.
        }
      }, HEARTBEAT_MS);
      beat.unref();
      return () => {
        if (released) return;
        released = true;
        clearInterval(beat);
        try {
          const held = JSON.parse(fs.readFileSync(file, 'utf8')) as LockDoc;
          if (held.pid === me.pid && held.host === me.host) fs.rmSync(file, { force: true });
        } catch {
          // Already gone.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new OutputError(out, `cannot create its lock file: ${oneLine(err)}`, { cause: err });
    }
    let held: LockDoc | undefined;
    try {
      held = JSON.parse(fs.readFileSync(file, 'utf8')) as LockDoc;
    } catch {
      held = undefined;
    }
    let age = 0;
    try {
      age = Date.now() - fs.statSync(file).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    if ((held && held.host === me.host && !alive(held.pid)) || age > STALE_MS) {
      fs.rmSync(file, { force: true }); // stale: its process is gone
      continue;
    }
    const who = held ? `tessera pid ${held.pid} on ${held.host} (since ${held.startedAt})` : 'another process (unreadable lock)';
    throw new OutputError(out, `is in use by ${who}, alive ${Math.round(age / 1000)} s ago; wait for it to end (a lock not refreshed for ${STALE_MS / 1000} s is taken over), or if it is gone, delete ${file}`);
  }
  throw new OutputError(out, `cannot take the lock ${file}`);
}
