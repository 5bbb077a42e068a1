import * as fs from 'node:fs';
import { PasteAccumulator } from './shared/pipeline/paste.ts';
import { BufferPool } from './shared/array/pool.ts';
import { shapeOf, volumeOf } from './shared/geometry/box.ts';
const crops = (JSON.parse(fs.readFileSync('/tmp/p/crops.json', 'utf8')) as string[][]).map(([s, t, w]) => ({ source: JSON.parse(s), target: JSON.parse(t), write: JSON.parse(w) }));
const byWrite = new Map<string, typeof crops>();
for (const c of crops) { const k = JSON.stringify(c.write); if (!byWrite.has(k)) byWrite.set(k, []); byWrite.get(k)!.push(c); }
const pool = new BufferPool(1 << 30, 32 * 512 * 512);
for (let rep = 0; rep < 4; rep++) {
  let tAcc = 0, tFin = 0, n = 0, vox = 0;
  for (const [k, cs] of byWrite) {
    const write = JSON.parse(k);
    const acc = new PasteAccumulator(write, 1, pool);
    const vals = cs.map((c) => { const v = new Uint16Array(volumeOf(c.target)); for (let i = 0; i < v.length; i++) v[i] = (i * 7919) & 0xffff; return v; });
    let t = performance.now();
    cs.forEach((c, i) => acc.addQuantised({ source: c.source, target: c.target, values: vals[i] }));
    tAcc += performance.now() - t; n += cs.reduce((a, c) => a + volumeOf(c.target), 0);
    t = performance.now();
    acc.finish('softmax');
    tFin += performance.now() - t; vox += volumeOf(write);
    acc.release();
  }
  console.log(`accumulate ${tAcc.toFixed(1)} ms for ${(n / 1e6).toFixed(2)} M (${(tAcc * 1e6 / n).toFixed(1)} ns/vox); finish ${tFin.toFixed(1)} ms over ${(vox / 1e6).toFixed(1)} M chunk voxels`);
}
