// A file-system Zarr store whose writes are atomic: each key is written to a temporary file in
// the same directory and renamed into place, so a crash never leaves a half-written chunk or
// metadata document that a later reader (or a resumed run) would take as complete.
import FileSystemStore from '@zarrita/storage/fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

type Key = `/${string}`;

export class AtomicFileStore extends FileSystemStore {
  override async set(key: Key, value: Uint8Array): Promise<void> {
    await writeFileAtomic(path.join(this.root, key.replace(/^\//, '')), value);
  }
}

/** Write a file atomically (temp in the same directory + rename); no temp file is left behind. */
export async function writeFileAtomic(file: string, data: Uint8Array | string): Promise<void> {
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fs.promises.writeFile(tmp, data);
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
}

/** Write a JSON document atomically (temp + rename). */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}
