// `tessera convert` on NIfTI written by another program (Python's struct and gzip, byte by byte
// per the NIfTI-1 layout): int16 CT with a scale slope, voxel size 0.8 × 0.7 × 2.5 mm → an
// OME-Zarr image with a pyramid and the same values and voxel size; labels made from it
// (python3-zarr) → NIfTI on the image's header, read back by Python: same dims, pixdim,
// orientation fields and voxels. Big-endian files read the same.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hasPython, tessera, tesseraOk, tmpDir } from '../helpers/cli.ts';
import { openArray, readRegion, boxOfShape } from '../../shared/index.ts';
import { readGroupAttributes } from '../../shared/volume/zarr.ts';

let dir: string;

// Writes ct.nii.gz (little-endian) and ct-be.nii (big-endian): x 40, y 30, z 12, int16, slope 2, inter −1000.
const WRITE = `
import gzip, struct, sys, random
out = sys.argv[1]
nx, ny, nz = 40, 30, 12
random.seed(5)
vals = [random.randint(-300, 900) for _ in range(nx * ny * nz)]
def nii(e):
    h = bytearray(348)
    struct.pack_into(e + 'i', h, 0, 348)
    struct.pack_into(e + '8h', h, 40, 3, nx, ny, nz, 1, 1, 1, 1)
    struct.pack_into(e + 'h', h, 70, 4)      # int16
    struct.pack_into(e + 'h', h, 72, 16)
    struct.pack_into(e + '8f', h, 76, 1.0, 0.8, 0.7, 2.5, 1, 1, 1, 1)
    struct.pack_into(e + 'f', h, 108, 352.0)
    struct.pack_into(e + 'f', h, 112, 2.0)   # scl_slope
    struct.pack_into(e + 'f', h, 116, -1000.0)
    h[123] = 2                               # mm
    struct.pack_into(e + 'h', h, 252, 1)     # qform_code
    struct.pack_into(e + '3f', h, 268, -12.5, 40.0, 7.25)  # qoffset x, y, z
    h[344:348] = b'n+1\\0'
    return bytes(h) + b'\\0' * 4 + struct.pack(e + '%dh' % len(vals), *vals)
with gzip.open(out + '/ct.nii.gz', 'wb') as f: f.write(nii('<'))
open(out + '/ct-be.nii', 'wb').write(nii('>'))
print(vals[0], vals[nx * ny * nz - 1])
`;

// Labels from the converted image (value > 600 HU → 1), by python3-zarr; then the NIfTI back.
const LABELS = `
import sys, numpy as np, zarr
img = zarr.open(sys.argv[1] + '/0', mode='r')[:]
a = zarr.open(sys.argv[2], mode='w', shape=img.shape, chunks=(6, 16, 16), dtype='u1')
a[:] = (img > 600).astype('u1')
print(int((img > 600).sum()))
`;
const READ = `
import gzip, json, struct, sys
d = gzip.open(sys.argv[1]).read()
dims = struct.unpack_from('<8h', d, 40); pix = struct.unpack_from('<8f', d, 76)
off = int(struct.unpack_from('<f', d, 108)[0]); dt = struct.unpack_from('<h', d, 70)[0]
q = struct.unpack_from('<3f', d, 268)
print(json.dumps({'dims': dims[:4], 'pix': [round(p, 5) for p in pix[1:4]], 'datatype': dt, 'qoffset': q, 'ones': sum(d[off:]), 'n': len(d) - off}))
`;


before(() => {
  dir = tmpDir();
  execFileSync('/usr/bin/python3', ['-c', WRITE, dir]);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('convert: NIfTI (gzip, int16, scaled) → OME-Zarr with the values, voxel size, unit and a pyramid; big-endian the same', async () => {
  for (const f of ['ct.nii.gz', 'ct-be.nii']) {
    const out = path.join(dir, `${f}.zarr`);
    const r = await tesseraOk(['convert', path.join(dir, f), out]);
    assert.match(r.stderr, /12x30x40 voxels of 2\.5x0\.7x0\.8 millimeter, 3 levels/);
    const ms = (readGroupAttributes(out) as { multiscales: { datasets: { coordinateTransformations: { scale: number[] }[] }[] }[] }).multiscales[0];
    assert.deepEqual(ms.datasets.map((d) => d.coordinateTransformations[0].scale.map((s) => +s.toFixed(5))), [[2.5, 0.7, 0.8], [2.5, 1.4, 1.6], [2.5, 2.8, 3.2]]);
    const a = await openArray(path.join(out, '0'));
    assert.equal(a.dtype, 'float32');
    const v = (await readRegion(a, boxOfShape(a.shape))).data as Float32Array;
    const [first, last] = execFileSync('/usr/bin/python3', ['-c', WRITE, fs.mkdtempSync(path.join(dir, 'again-'))], { encoding: 'utf8' }).trim().split(' ').map(Number);
    assert.equal(v[0], 2 * first - 1000, 'slope and intercept applied');
    assert.equal(v[v.length - 1], 2 * last - 1000);
    assert.deepEqual((await openArray(path.join(out, '1'))).shape, [12, 15, 20]);
  }
});

test('convert: labels → NIfTI on the header --like names (dims, pixdim, qform kept; uint8); refused without a header to take', { skip: !hasPython('zarr, numpy') && 'python3-zarr missing (.ci/run installs it)' }, async () => {
  const img = path.join(dir, 'ct.nii.gz.zarr');
  if (!fs.existsSync(img)) await tesseraOk(['convert', path.join(dir, 'ct.nii.gz'), img]);
  const labels = path.join(dir, 'labels.zarr');
  const ones = Number(execFileSync('/usr/bin/python3', ['-c', LABELS, img, labels], { encoding: 'utf8' }).trim());
  assert.ok(ones > 0);
  const refused = await tessera(['convert', labels, path.join(dir, 'x.nii.gz')]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /pass --like IMAGE\.nii\.gz/);
  const back = path.join(dir, 'labels.nii.gz');
  await tesseraOk(['convert', labels, back, '--like', path.join(dir, 'ct.nii.gz')]);
  const h = JSON.parse(execFileSync('/usr/bin/python3', ['-c', READ, back], { encoding: 'utf8' }));
  assert.deepEqual(h.dims, [3, 40, 30, 12]);
  assert.deepEqual(h.pix, [0.8, 0.7, 2.5]);
  assert.equal(h.datatype, 2);
  assert.deepEqual(h.qoffset, [-12.5, 40, 7.25]);
  assert.equal(h.n, 40 * 30 * 12);
  assert.equal(h.ones, ones, 'every label voxel back in place');
});

// TIFF stacks written by tifffile: an ImageJ hyperstack (uint16, spacing 2 × 0.5 × 0.25 µm) and a
// folder of Deflate-compressed 8-bit sections with no voxel size.
const TIFFS = `
import os, sys, json, numpy as np, tifffile
out = sys.argv[1]
rng = np.random.default_rng(3)
a = rng.integers(0, 60000, size=(9, 20, 24), dtype=np.uint16)
tifffile.imwrite(out + '/stack.tif', a, imagej=True, resolution=(1 / 0.25, 1 / 0.5), metadata={'spacing': 2.0, 'unit': 'um', 'axes': 'ZYX'})
os.makedirs(out + '/sections', exist_ok=True)
b = rng.integers(0, 255, size=(5, 16, 12), dtype=np.uint8)
for z in range(5): tifffile.imwrite(out + '/sections/s%03d.tif' % z, b[z], compression='zlib')
print(json.dumps({'a0': int(a[0, 0, 0]), 'alast': int(a[-1, -1, -1]), 'asum': int(a.astype(np.int64).sum()), 'bsum': int(b.astype(np.int64).sum()), 'b3': int(b[3, 7, 5])}))
`;


test('convert: TIFF stacks from tifffile — an ImageJ hyperstack with its voxel size, a folder of compressed sections with --spacing (refused without)', { skip: !hasPython('tifffile, numpy') && 'python3-tifffile missing (.ci/run installs it)' }, async () => {
  const want = JSON.parse(execFileSync('/usr/bin/python3', ['-c', TIFFS, dir], { encoding: 'utf8' }));
  const stack = path.join(dir, 'stack.zarr');
  const r = await tesseraOk(['convert', path.join(dir, 'stack.tif'), stack]);
  assert.match(r.stderr, /9x20x24 voxels of 2x0\.5x0\.25 micrometer/);
  const a = await openArray(path.join(stack, '0'));
  assert.equal(a.dtype, 'uint16');
  const av = (await readRegion(a, boxOfShape(a.shape))).data as Uint16Array;
  assert.equal(av[0], want.a0);
  assert.equal(av[av.length - 1], want.alast);
  assert.equal(av.reduce((s, v) => s + v, 0), want.asum);
  const refused = await tessera(['convert', path.join(dir, 'sections'), path.join(dir, 'sections.zarr')]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /do not say their voxel size.*--spacing/);
  const sec = path.join(dir, 'sections.zarr');
  await tesseraOk(['convert', path.join(dir, 'sections'), sec, '--spacing', '30,8,8', '--unit', 'nanometer']);
  const b = await openArray(path.join(sec, '0'));
  assert.deepEqual(b.shape, [5, 16, 12]);
  const bv = (await readRegion(b, boxOfShape(b.shape))).data as Uint8Array;
  assert.equal(bv.reduce((s, v) => s + v, 0), want.bsum);
  assert.equal(bv[3 * 16 * 12 + 7 * 12 + 5], want.b3);
  const ms = (readGroupAttributes(sec) as { multiscales: { axes: { unit?: string }[] }[] }).multiscales[0];
  assert.equal(ms.axes.find((x) => x.unit)?.unit, 'nanometer');
});
