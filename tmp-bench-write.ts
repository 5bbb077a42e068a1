import { createArray, openArray, writeRegion } from './shared/volume/zarr.ts';
import { installCheckedCodecs } from './shared/volume/codecs.ts';
import { array3 } from './shared/array/array3.ts';
import { box } from './shared/geometry/box.ts';
import * as fs from 'node:fs';
import { chunkEncoder } from './shared/volume/encode.ts';
installCheckedCodecs();
const D = 32, H = 512, W = 512;
const seg = new Uint8Array(D * H * W);
// sparse blobs: 0.5% fg
let s = 1; const rnd = () => (s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
for (let k = 0; k < 200; k++) { const z = Math.floor(rnd() * (D - 4)), y = Math.floor(rnd() * (H - 10)), x = Math.floor(rnd() * (W - 10));
  for (let a = 0; a < 4; a++) for (let b = 0; b < 10; b++) for (let c = 0; c < 10; c++) seg[((z + a) * H + y + b) * W + x + c] = 1; }
fs.rmSync('/tmp/pb/o.zarr', { recursive: true, force: true });
const va = await createArray('/tmp/pb/o.zarr/seg', { shape: [D, H, W], chunks: [16, 128, 128], dtype: 'uint8' } as never);
const data = array3(seg, [D, H, W]);
for (let r = 0; r < 3; r++) { const t = performance.now(); await writeRegion(va, box([0, 0, 0], [D, H, W]), data); console.log('write', (performance.now() - t).toFixed(1), 'ms'); }
const enc = await chunkEncoder([{ name: 'bytes', configuration: { endian: 'little' } }, { name: 'blosc', configuration: { cname: 'zstd', clevel: 3, shuffle: 1, blocksize: 0 } }] as never, 'uint8', [16, 128, 128], 0, (m) => { throw new Error(m); });
const ch = new Uint8Array(16 * 128 * 128); ch.set(seg.subarray(0, ch.length));
for (let r = 0; r < 3; r++) { const t = performance.now(); for (let i = 0; i < 64; i++) await enc(ch.slice()); console.log('encode x64', (performance.now() - t).toFixed(1), 'ms'); }
const z = new Uint8Array(16*128*128);
{ const t = performance.now(); for (let i = 0; i < 64; i++) await enc(z.slice()); console.log('encode zeros x64', (performance.now() - t).toFixed(1), 'ms'); }
