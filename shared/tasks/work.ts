// Intermediate results under the output (`out.zarr/.work/`), keyed by task, so that any process
// can pick up any task and an interrupted run resumes:
//
//   .work/<kind>/<z_y_x>.json | .bin   a task's result, written atomically (temp + rename)
//   .work/done/<kind>.log              one line "z_y_x;" per finished task, appended after its
//                                      result (and, for paste, its output chunks) landed
//   .work/freed/<kind>.log             done tasks whose result was deleted once every task of
//                                      the run that needs it had finished
//
// A task is done when its line is in the log; a line cut short by a crash is ignored (the task
// runs again, and writes the same bytes). The run's config hash and model checksums are in
// run.json, which a resume checks before it trusts anything here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Vec3 } from '../geometry/box.ts';
import { indexId, parseIndexId } from '../geometry/grid.ts';
import { InputError, OutputError, isTesseraError } from '../errors.ts';
import { unlinkIfThere, writeFileAtomic } from '../volume/store.ts';
import { type Section, type SectionRead, encodeSections, readSectionFile } from './work-sections.ts';

const MAGIC = 0x31525354; // "TSR1" little-endian

export interface DoneEntry {
  kind: string;
  index: Vec3;
}

/**
 * The entries of the log lines in text[0, end): "z_y_x;" each. Only whole lines count: a line
 * cut short by a crash lacks its closing ';' (the task runs again).
 */
function parseLog(kind: string, text: string, end: number): DoneEntry[] {
  const out: DoneEntry[] = [];
  for (let i = 0; i < end;) {
    let j = text.indexOf('\n', i);
    if (j < 0 || j > end) j = end;
    // The lines this store writes, by hand; anything else through the general parser.
    const index: number[] = [];
    let v = 0;
    let digits = 0;
    let k = i;
    for (; k < j; k++) {
      const c = text.charCodeAt(k);
      if (c >= 48 && c <= 57) {
        v = v * 10 + (c - 48);
        digits++;
      } else if ((c === 95 || c === 59) && digits > 0 && index.length < 3) {
        index.push(v);
        v = 0;
        digits = 0;
        if (c === 59) break;
      } else break;
    }
    if (k === j - 1 && index.length === 3 && text.charCodeAt(k) === 59) out.push({ kind, index: index as unknown as Vec3 });
    else {
      const t = text.slice(i, j).trim();
      const parsed = t.endsWith(';') ? parseIndexId(t.slice(0, -1)) : undefined;
      if (parsed) out.push({ kind, index: parsed });
    }
    i = j + 1;
  }
  return out;
}

/**
 * Appends lines to one log file, coalescing: lines added while a write is on its way go out
 * together in the next one, so a coordinator recording 10⁴ tasks a second makes a few hundred
 * writes, not 10⁴. Each add() resolves once its line is written (in the order added).
 */
class LogAppender {
  private lines: string[] = [];
  private waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  private writing = false;

  private readonly file: string;

  constructor(file: string) {
    this.file = file;
  }

  add(line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.lines.push(line);
      this.waiters.push({ resolve, reject });
      if (!this.writing) void this.write();
    });
  }

  private async write(): Promise<void> {
    this.writing = true;
    while (this.lines.length) {
      const text = this.lines.join('');
      const waiters = this.waiters;
      this.lines = [];
      this.waiters = [];
      try {
        await fs.promises.appendFile(this.file, text).catch(async (err: NodeJS.ErrnoException) => {
          // The first line of a log (or its directory removed by forget()).
          if (err.code !== 'ENOENT') throw err;
          await fs.promises.mkdir(path.dirname(this.file), { recursive: true });
          await fs.promises.appendFile(this.file, text);
        });
        for (const w of waiters) w.resolve();
      } catch (err) {
        const e = new OutputError(this.file, (err as Error).message, { cause: err });
        for (const w of waiters) w.reject(e);
      }
    }
    this.writing = false;
  }
}

export class WorkStore {
  private readonly logs = new Map<string, LogAppender>();

  readonly root: string;
  /** Called before every done or freed log line: it throws once this process no longer owns the output. */
  private readonly fence?: () => void;

  constructor(root: string, fence?: () => void) {
    this.root = root;
    this.fence = fence;
  }

  path(kind: string, index: Vec3, ext: 'json' | 'bin' | 'f32'): string {
    return path.join(this.root, kind, `${indexId(index)}.${ext}`);
  }

  private async atomic(file: string, data: Uint8Array | string): Promise<void> {
    try {
      await writeFileAtomic(file, data);
    } catch (err) {
      if (isTesseraError(err)) throw err;
      throw new OutputError(file, (err as Error).message, { cause: err });
    }
  }

  async writeJson(kind: string, index: Vec3, value: unknown): Promise<void> {
    await this.atomic(this.path(kind, index, 'json'), JSON.stringify(value));
  }

  async readJson<T>(kind: string, index: Vec3): Promise<T> {
    const file = this.path(kind, index, 'json');
    let text: string;
    try {
      text = await fs.promises.readFile(file, 'utf8');
    } catch (err) {
      throw new InputError(file, `intermediate result of ${kind} ${indexId(index)} is missing (${(err as NodeJS.ErrnoException).code})`, indexId(index), { cause: err });
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new InputError(file, `intermediate result of ${kind} ${indexId(index)} is not valid JSON`, indexId(index), { cause: err });
    }
  }

  /** A binary result: a small JSON header and a byte body (typed arrays, little-endian). */
  async writeBinary(kind: string, index: Vec3, header: unknown, body: Uint8Array): Promise<void> {
    const h = Buffer.from(JSON.stringify(header), 'utf8');
    const pre = Buffer.alloc(8);
    pre.writeUInt32LE(MAGIC, 0);
    pre.writeUInt32LE(h.length, 4);
    await this.atomic(this.path(kind, index, 'bin'), Buffer.concat([pre, h, body]));
  }

  async readBinary<H>(kind: string, index: Vec3): Promise<{ header: H; body: Uint8Array }> {
    const file = this.path(kind, index, 'bin');
    let b: Buffer;
    try {
      b = await fs.promises.readFile(file);
    } catch (err) {
      throw new InputError(file, `intermediate result of ${kind} ${indexId(index)} is missing (${(err as NodeJS.ErrnoException).code})`, indexId(index), { cause: err });
    }
    if (b.length < 8 || b.readUInt32LE(0) !== MAGIC || 8 + b.readUInt32LE(4) > b.length) {
      throw new InputError(file, `intermediate result of ${kind} ${indexId(index)} is truncated or not a Tessera result`, indexId(index));
    }
    const n = b.readUInt32LE(4);
    const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as H;
    // Copy the body so its typed-array views are aligned.
    return { header, body: new Uint8Array(b.subarray(8 + n)) };
  }

  /** A result in sections (work-sections.ts), each read alone by readSection(s). */
  async writeSections(kind: string, index: Vec3, sections: readonly Section[]): Promise<void> {
    await this.atomic(this.path(kind, index, 'bin'), encodeSections(sections));
  }

  /**
   * Section `key` of a result written by writeSections: 'none' when it has no such section;
   * 'whole' for a result written by writeBinary (by an earlier version), read whole.
   */
  async readSection<H>(kind: string, index: Vec3, key: string): Promise<{ kind: 'section' | 'whole'; header: H; body: Uint8Array } | { kind: 'none' }> {
    const file = this.path(kind, index, 'bin');
    const [r] = await this.sectionsOf<H>(kind, index, [key]);
    if (r.kind === 'other') return { kind: 'whole', ...(await this.readBinary<H>(kind, index)) };
    return r;
  }

  /** The bodies of sections `keys` (the index read once); every one must be there. */
  async readSections(kind: string, index: Vec3, keys: readonly string[]): Promise<Uint8Array[]> {
    const reads = await this.sectionsOf(kind, index, keys);
    return reads.map((r, i) => {
      if (r.kind === 'section') return r.body;
      const why = r.kind === 'none' ? `has no section ${keys[i]}` : 'is not a sectioned result';
      throw new InputError(this.path(kind, index, 'bin'), `intermediate result of ${kind} ${indexId(index)} ${why}`, indexId(index));
    });
  }

  private async sectionsOf<H>(kind: string, index: Vec3, keys: readonly string[]): Promise<SectionRead<H>[]> {
    const file = this.path(kind, index, 'bin');
    try {
      return await readSectionFile<H>(file, keys);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const what = code ? `is missing (${code})` : `is truncated or not a Tessera result (${(err as Error).message})`;
      throw new InputError(file, `intermediate result of ${kind} ${indexId(index)} ${what}`, indexId(index), { cause: err });
    }
  }

  async writeFloats(kind: string, index: Vec3, data: Float32Array): Promise<void> {
    await this.atomic(this.path(kind, index, 'f32'), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  async readFloats(kind: string, index: Vec3): Promise<Float32Array> {
    const file = this.path(kind, index, 'f32');
    const b = await fs.promises.readFile(file).catch((err: NodeJS.ErrnoException) => {
      throw new InputError(file, `intermediate result of ${kind} ${indexId(index)} is missing (${err.code})`, indexId(index), { cause: err });
    });
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  }

  exists(kind: string, index: Vec3, ext: 'json' | 'bin' | 'f32'): boolean {
    return fs.existsSync(this.path(kind, index, ext));
  }

  async removeFile(kind: string, index: Vec3, ext: 'json' | 'bin' | 'f32'): Promise<void> {
    await unlinkIfThere(this.path(kind, index, ext));
  }

  async remove(kind: string, index: Vec3, exts: readonly ('json' | 'bin' | 'f32')[] = ['json', 'bin', 'f32']): Promise<void> {
    await Promise.all(exts.map((e) => unlinkIfThere(this.path(kind, index, e))));
  }

  private logPath(kind: string, log: 'done' | 'freed' = 'done'): string {
    return path.join(this.root, log, `${kind}.log`);
  }

  /** Record a task as done (after its results landed). */
  async markDone(kind: string, index: Vec3): Promise<void> {
    this.fence?.();
    await this.append(this.logPath(kind), index);
  }

  private append(file: string, index: Vec3): Promise<void> {
    let a = this.logs.get(file);
    if (!a) this.logs.set(file, (a = new LogAppender(file)));
    return a.add(`${indexId(index)};\n`);
  }

  /** Record that a done task's result was deleted because nothing in this run needs it. */
  async markFreed(kind: string, index: Vec3): Promise<void> {
    this.fence?.();
    await this.append(this.logPath(kind, 'freed'), index);
  }

  /** Every task recorded as done, streamed in batches (the log of a huge run is never held whole). */
  done(kinds: readonly string[]): AsyncGenerator<DoneEntry[]> {
    return this.entries(kinds, 'done');
  }

  /** Every done task whose result was freed, in batches. */
  freed(kinds: readonly string[]): AsyncGenerator<DoneEntry[]> {
    return this.entries(kinds, 'freed');
  }

  private async *entries(kinds: readonly string[], log: 'done' | 'freed'): AsyncGenerator<DoneEntry[]> {
    for (const kind of kinds) {
      const file = this.logPath(kind, log);
      if (!fs.existsSync(file)) continue;
      // Read in 64 KiB blocks and parsed by hand: a half-done FAFB run's logs hold ~10⁷ lines,
      // and a restarted coordinator publishes only once they are read. Small blocks keep each
      // batch short-lived (restoring half of FAFB: 36 s and 838 MB peak RSS with 1 MiB blocks,
      // 32 s and 741 MB with 64 KiB).
      let carry = '';
      for await (const chunk of fs.createReadStream(file, { encoding: 'latin1', highWaterMark: 1 << 16 })) {
        const text = carry + (chunk as string);
        const end = text.lastIndexOf('\n');
        if (end < 0) {
          carry = text;
          continue;
        }
        carry = text.slice(end + 1);
        const out = parseLog(kind, text, end);
        if (out.length) yield out;
      }
      const last = parseLog(kind, carry, carry.length);
      if (last.length) yield last;
    }
  }

  /** The kinds that have a done or freed log (a resume looks for kinds of an earlier run's graph). */
  loggedKinds(): string[] {
    const out = new Set<string>();
    for (const log of ['done', 'freed']) {
      const dir = path.join(this.root, log);
      if (!fs.existsSync(dir)) continue;
      for (const f of fs.readdirSync(dir)) if (f.endsWith('.log')) out.add(f.slice(0, -4));
    }
    return [...out].sort();
  }

  /** Drop the done and freed records of `kinds`: their tasks run again. */
  async forget(kinds: readonly string[]): Promise<void> {
    await Promise.all(kinds.flatMap((k) => [this.logPath(k), this.logPath(k, 'freed')].map((f) => fs.promises.rm(f, { force: true }))));
  }
}
