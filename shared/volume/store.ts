// A file-system Zarr store whose writes are atomic: each key is written to a temporary file
// (under the store's .tmp/) and renamed into place, so a crash never leaves a half-written chunk
// or metadata document that a later reader (or a resumed run) would take as complete.
import FileSystemStore from '@zarrita/storage/fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { OutputError, oneLine } from '../errors.ts';

type Key = `/${string}`;

const METADATA = new Set(['.zarray', '.zattrs', '.zgroup', '.zmetadata', 'zarr.json']);

export class AtomicFileStore extends FileSystemStore {
  /** `onMissing`: called for a chunk key with no file (a reader would otherwise see the fill value). */
  private readonly onMissing?: (key: string) => void;

  constructor(root: string, onMissing?: (key: string) => void) {
    super(root);
    this.onMissing = onMissing;
  }

  override async get(key: Key, opts?: Parameters<FileSystemStore['get']>[1]): Promise<Uint8Array | undefined> {
    const v = await super.get(key, opts);
    if (v === undefined && this.onMissing && !METADATA.has(key.slice(key.lastIndexOf('/') + 1))) this.onMissing(key);
    return v;
  }

  /** Sharded arrays read shards by range: a shard with no file is missing like a chunk. */
  override async getRange(key: Key, range: Parameters<FileSystemStore['getRange']>[1], opts?: Parameters<FileSystemStore['getRange']>[2]): Promise<Uint8Array | undefined> {
    const v = await super.getRange(key, range, opts);
    if (v === undefined && this.onMissing && 'suffixLength' in range) this.onMissing(key);
    return v;
  }

  override async set(key: Key, value: Uint8Array): Promise<void> {
    await writeFileAtomic(path.join(this.root, key.replace(/^\//, '')), value);
  }
}

/**
 * Where a file under a Zarr store (`…/x.zarr/…`) is written before it is renamed into place:
 * the store's own `.tmp/` folder, so a writer killed mid-write leaves nothing among the chunks,
 * and whoever opens the store for writing next clears that one folder (clearTemp) instead of
 * searching the store. Elsewhere: beside the file.
 */
function tempFor(file: string): string {
  const abs = path.resolve(file);
  const parts = abs.split(path.sep);
  const i = parts.findIndex((p) => p.endsWith('.zarr'));
  const name = `${path.basename(abs)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  if (i < 0 || i === parts.length - 1) return `${abs}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  return path.join(parts.slice(0, i + 1).join(path.sep), TEMP_DIR, name);
}

export const TEMP_DIR = '.tmp';

/** Remove what writers killed mid-write left in the store at `root` (call before writing to it). */
export function clearTemp(root: string): void {
  fs.rmSync(path.join(root, TEMP_DIR), { recursive: true, force: true });
}

/** Remove the store's temp folder if nothing is in it (a finished output keeps no empty .tmp/). */
export function removeEmptyTemp(root: string): void {
  try {
    fs.rmdirSync(path.join(root, TEMP_DIR));
  } catch {
    // Absent, or a writer still has a file there: left for clearTemp.
  }
}

/**
 * Folders this process made (or found) for its writes, the most recent MADE_DIRS: a chunk's
 * storage chunks share a few folders, and two mkdir calls per file were a tenth of paste's time.
 * A folder removed since (a cleared `.tmp/`) shows as ENOENT; writeFileAtomic then makes it again.
 */
const madeDirs = new Set<string>();
const MADE_DIRS = 4096;

async function ensureDir(dir: string): Promise<void> {
  if (madeDirs.has(dir)) return;
  await fs.promises.mkdir(dir, { recursive: true });
  madeDirs.add(dir);
  if (madeDirs.size > MADE_DIRS) madeDirs.delete(madeDirs.values().next().value!);
}

/** Write a file atomically (temp file + rename); no temp file is left behind by a failed write. */
export async function writeFileAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const tmp = tempFor(file);
  const dirs = [path.dirname(file), path.dirname(tmp)];
  try {
    for (const d of dirs) await ensureDir(d);
    try {
      await fs.promises.writeFile(tmp, data);
      await fs.promises.rename(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // A folder made earlier is gone: make both again, once.
      for (const d of dirs) madeDirs.delete(d);
      for (const d of dirs) await ensureDir(d);
      await fs.promises.writeFile(tmp, data);
      await fs.promises.rename(tmp, file);
    }
  } catch (err) {
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    // Name the file the user knows (not the temporary one) and the cause in words.
    const code = (err as NodeJS.ErrnoException).code;
    throw new OutputError(file, code === 'ENOSPC' ? 'no space left on device' : oneLine(err), { cause: err });
  }
}

/** Write a JSON document atomically (temp + rename). */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

/**
 * Delete a file that may not exist. One unlink (fs.rm with `force` first lstats every path): the
 * coordinator frees two results per chunk, 10⁷ over FAFB, and a rewritten output chunk that
 * became all fill value loses its file.
 */
export async function unlinkIfThere(file: string): Promise<void> {
  try {
    await fs.promises.unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new OutputError(file, (err as Error).message, { cause: err });
  }
}
