// TIFF stacks, the other form CT, light-sheet and EM volumes come in: a multi-page TIFF (pages are
// z sections) or a folder of single-page TIFFs (sorted by name), greyscale, 8/16/32-bit integer or
// float. Decoded with utif (Photopea's decoder: maintained, every compression TIFF stacks use —
// none, LZW, Deflate, PackBits). The voxel size comes from `--spacing`, else from ImageJ's
// description (`spacing=`, `unit=`) and the resolution tags; with neither, the conversion is
// refused rather than guessed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import UTIF, { type IFD } from 'utif';
import type { Vec3 } from '../geometry/box.ts';
import { InputError } from '../errors.ts';

export interface TiffStack {
  shape: Vec3;
  /** Undefined when the files do not say (the caller asks for --spacing). */
  spacing?: Vec3;
  unit: string;
  data: Uint8Array | Uint16Array | Float32Array;
}

export function isTiffPath(p: string): boolean {
  return /\.tiff?$/i.test(p) || (fs.existsSync(p) && fs.statSync(p).isDirectory() && fs.readdirSync(p).some((f) => /\.tiff?$/i.test(f)));
}

interface Page {
  file: string;
  buf: Uint8Array;
  ifd: IFD;
}

/** Read a whole stack into memory (CT and light-sheet stacks; FAFB-size data is Zarr already). */
export function readTiffStack(p: string): TiffStack {
  if (!fs.existsSync(p)) throw new InputError(p, 'no such file or directory');
  const files = fs.statSync(p).isDirectory()
    ? fs.readdirSync(p).filter((f) => /\.tiff?$/i.test(f)).sort().map((f) => path.join(p, f))
    : [p];
  const pages: Page[] = files.flatMap((file) => {
    const buf = new Uint8Array(fs.readFileSync(file));
    let ifds: IFD[];
    try {
      ifds = UTIF.decode(buf).filter((d) => d.t256 !== undefined);
    } catch (err) {
      throw new InputError(file, `is not a TIFF utif can read: ${(err as Error).message}`, undefined, { cause: err });
    }
    return ifds.map((ifd) => ({ file, buf, ifd }));
  });
  if (!pages.length) throw new InputError(p, 'holds no TIFF images');
  const first = pages[0].ifd;
  const [w, h] = [first.t256![0], (first.t257 as number[])[0]];
  const bits = ((first.t258 as number[] | undefined) ?? [1])[0];
  const format = ((first.t339 as number[] | undefined) ?? [1])[0];
  const samples = ((first.t277 as number[] | undefined) ?? [1])[0];
  if (samples !== 1) throw new InputError(pages[0].file, `has ${samples} samples per pixel: a greyscale stack is needed`);
  const data = allocate(pages[0].file, bits, format, w * h * pages.length);
  pages.forEach((pg, z) => {
    const [pw, ph] = [pg.ifd.t256![0], (pg.ifd.t257 as number[])[0]];
    if (pw !== w || ph !== h) throw new InputError(pg.file, `section ${z} is ${pw}×${ph}, the first ${w}×${h}`);
    UTIF.decodeImage(pg.buf, pg.ifd);
    const raw = pg.ifd.data!;
    const little = pg.buf[0] === 0x49; // "II"
    const size = data.BYTES_PER_ELEMENT;
    const bytes = new Uint8Array(raw.buffer, raw.byteOffset, w * h * size).slice();
    if (!little && size > 1) for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse();
    data.set(new (data.constructor as Uint8ArrayConstructor)(bytes.buffer), z * w * h);
  });
  const { spacing, unit } = voxelSize(first);
  return { shape: [pages.length, h, w], spacing, unit, data };
}

function allocate(file: string, bits: number, format: number, n: number): TiffStack['data'] {
  if (format === 3 && bits === 32) return new Float32Array(n);
  if (format === 1 && bits === 8) return new Uint8Array(n);
  if (format === 1 && bits === 16) return new Uint16Array(n);
  throw new InputError(file, `${bits}-bit ${format === 2 ? 'signed' : format === 3 ? 'float' : 'unsigned'} samples: Tessera reads 8- or 16-bit unsigned and 32-bit float stacks`);
}

const UNIT_NAMES: Record<string, string> = { micron: 'micrometer', um: 'micrometer', 'µm': 'micrometer', nm: 'nanometer', nanometer: 'nanometer', mm: 'millimeter', millimeter: 'millimeter', micrometer: 'micrometer' };

/** ImageJ's description (spacing=, unit=) and the resolution tags; undefined spacing when they do not say. */
function voxelSize(ifd: IFD): { spacing?: Vec3; unit: string } {
  const desc = String((ifd.t270 as string[] | undefined)?.[0] ?? '');
  const ij = /ImageJ=/.test(desc);
  const unit = UNIT_NAMES[/unit=([^\s\\]+)/.exec(desc)?.[1] ?? ''] ?? 'micrometer';
  const xres = ifd.t282 as number[] | undefined;
  const yres = ifd.t283 as number[] | undefined;
  const z = Number(/spacing=([\d.eE+-]+)/.exec(desc)?.[1]);
  if (!ij || !xres?.[0] || !yres?.[0] || !(z > 0)) return { unit };
  // ImageJ writes pixels per unit as the resolution; its unit is the description's.
  return { spacing: [z, 1 / yres[0], 1 / xres[0]], unit };
}
