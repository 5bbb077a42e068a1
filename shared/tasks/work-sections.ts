// A work result in sections, each read on its own by byte range: one file per task (one atomic
// write, one file to free), each reader decoding only its part. Stage two stores its crops by
// the chunk they paste into (a paste reads what lands in its chunk and nothing else); a chunk's
// border keeps its faces and edges apart (a neighbour reads the one it shares); a region of the
// id reduction keeps its summary, its decisions and one list per child apart.
//
//   u32 MAGIC ("TSR2")   u32 n   n bytes of JSON: [[key, offset, length], …]   sections…
//   section: u32 h, h bytes of JSON header (space-padded so the body starts 8-aligned), body
//
// Offsets are from the start of the file. Little-endian throughout.
import * as fs from 'node:fs';

export const SECTIONS_MAGIC = 0x32525354; // "TSR2" little-endian

export interface Section {
  key: string;
  header: unknown;
  /** The body, in pieces laid end to end (copied once, into the file's bytes). */
  body: readonly Uint8Array[];
}

export type SectionRead<H> =
  | { kind: 'section'; header: H; body: Uint8Array }
  /** The file has no section under that key. */
  | { kind: 'none' }
  /** The file is not sectioned (its first word is `magic`): the caller reads it whole. */
  | { kind: 'other'; magic: number };

/** A section's header bytes: u32 length, JSON space-padded so the body starts 8-aligned. */
function headerBytes(s: Section): Uint8Array {
  let h = Buffer.from(JSON.stringify(s.header), 'utf8');
  const pad = (8 - ((4 + h.length) % 8)) % 8;
  if (pad) h = Buffer.concat([h, Buffer.alloc(pad, 0x20)]);
  const out = new Uint8Array(4 + h.length);
  new DataView(out.buffer).setUint32(0, h.length, true);
  out.set(h, 4);
  return out;
}

/** The bytes of a sectioned file holding `sections` (keys unique) in the order given. */
export function encodeSections(sections: readonly Section[]): Uint8Array {
  const heads = sections.map(headerBytes);
  const lengths = sections.map((s, i) => s.body.reduce((n, b) => n + b.length, heads[i].length));
  // The index's length depends on the offsets it holds: grow it until it fits (twice at most).
  let indexLen = 0;
  for (;;) {
    let at = 8 + indexLen;
    const entries = lengths.map((n, i): [string, number, number] => { const e: [string, number, number] = [sections[i].key, at, n]; at += n; return e; });
    const json = Buffer.from(JSON.stringify(entries), 'utf8');
    if (json.length <= indexLen) {
      const out = new Uint8Array(at);
      const dv = new DataView(out.buffer);
      dv.setUint32(0, SECTIONS_MAGIC, true);
      dv.setUint32(4, indexLen, true);
      out.set(json, 8);
      out.fill(0x20, 8 + json.length, 8 + indexLen);
      sections.forEach((s, i) => {
        let o = entries[i][1];
        out.set(heads[i], o);
        o += heads[i].length;
        for (const b of s.body) { out.set(b, o); o += b.length; }
      });
      return out;
    }
    indexLen = json.length + 16;
  }
}

/** Bytes [at, at + n) of an open file; a short read is an error the caller names (truncated). */
async function readAt(fh: fs.promises.FileHandle, at: number, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  const { bytesRead } = await fh.read(out, 0, n, at);
  if (bytesRead !== n) throw new RangeError(`truncated: ${bytesRead} of ${n} bytes at ${at}`);
  return out;
}

/** Sections without headers, named by position ("0", "1", …): a border's faces and edges. */
export function numbered(bodies: readonly Uint8Array[]): Section[] {
  return bodies.map((b, i) => ({ key: String(i), header: null, body: [b] }));
}

/**
 * Sections `keys` of `file`, read by range: the index once, then each section. Throws the fs
 * error of a missing file and a RangeError for one that is truncated or malformed.
 */
export async function readSectionFile<H>(file: string, keys: readonly string[]): Promise<SectionRead<H>[]> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const pre = await readAt(fh, 0, 8);
    const dv = new DataView(pre.buffer);
    const magic = dv.getUint32(0, true);
    if (magic !== SECTIONS_MAGIC) return keys.map(() => ({ kind: 'other', magic }));
    const index = JSON.parse(Buffer.from(await readAt(fh, 8, dv.getUint32(4, true))).toString('utf8')) as [string, number, number][];
    const at = new Map(index.map((e) => [e[0], e]));
    return await Promise.all(keys.map(async (key): Promise<SectionRead<H>> => {
      const entry = at.get(key);
      if (!entry) return { kind: 'none' };
      const sec = await readAt(fh, entry[1], entry[2]);
      const h = new DataView(sec.buffer).getUint32(0, true);
      if (4 + h > sec.length) throw new RangeError(`section ${key}: header of ${h} bytes past its end`);
      const header = JSON.parse(Buffer.from(sec.buffer, 4, h).toString('utf8')) as H;
      return { kind: 'section', header, body: sec.subarray(4 + h) };
    }));
  } finally {
    await fh.close();
  }
}
