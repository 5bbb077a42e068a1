// The run identity's input part (shared/run/identity.ts): where the input is and what each read
// level's metadata says; what differs is named line by line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { identityDiff, inputIdentity, runIdentity } from '../../shared/run/identity.ts';
import { loadConfig } from '../../shared/config/load.ts';
import type { Level } from '../../shared/volume/ome.ts';
import type { Vec3 } from '../../shared/geometry/box.ts';
import { tmpDir } from '../helpers/tmpdir.ts';
import { writeMask } from '../helpers/mask.ts';
import { openMask } from '../../shared/volume/mask.ts';

/** A level whose array directory holds a v2 .zarray with `compressor`. */
function level(dir: string, key: string, chunks: Vec3, compressor: string, spacing: Vec3 = [40, 4, 4]): Level {
  const p = path.join(dir, key);
  fs.mkdirSync(p, { recursive: true });
  fs.writeFileSync(path.join(p, '.zarray'), JSON.stringify({ zarr_format: 2, shape: [16, 128, 128], chunks, dtype: '|u1', compressor: { id: compressor }, fill_value: 0, order: 'C', filters: null }));
  return { key, spacing, array: { path: p, shape: [16, 128, 128], chunks, dtype: 'uint8' } } as unknown as Level;
}

const cards = { fullres: { sha256: 'a'.repeat(64) } } as never;

test('inputIdentity: the same levels give the same hash; chunking, codecs or scale change it, named per level', (t) => {
  const dir = tmpDir(t);
  const a = inputIdentity(path.join(dir, 'a'), [level(path.join(dir, 'a'), '0', [16, 64, 64], 'blosc')]);
  assert.equal(a.location, path.join(fs.realpathSync(dir), 'a'));
  assert.equal(inputIdentity(path.join(dir, 'a'), [level(path.join(dir, 'a'), '0', [16, 64, 64], 'blosc')]).metadata, a.metadata);
  const codec = inputIdentity(path.join(dir, 'a'), [level(path.join(dir, 'c'), '0', [16, 64, 64], 'zstd')]);
  assert.notEqual(codec.metadata, a.metadata, 'the compressor is part of it');
  const scale = inputIdentity(path.join(dir, 'a'), [level(path.join(dir, 'a'), '0', [16, 64, 64], 'blosc', [40, 8, 8])]);
  assert.notEqual(scale.metadata, a.metadata);
  const c = loadConfig({ preset: 'synthetic-em' });
  const before = runIdentity(c, cards, a);
  const now = runIdentity(c, cards, inputIdentity(path.join(dir, 'b'), [level(path.join(dir, 'b'), '0', [16, 128, 128], 'blosc')]));
  assert.notEqual(before.hash, now.hash);
  const diff = identityDiff(before, now);
  assert.match(diff[0], /^input: \S+\/a → \S+\/b$/);
  assert.match(diff[1], /^input metadata of \S+\/b: level 0: 16x128x128 uint8, chunks 16,64,64, .* → level 0: 16x128x128 uint8, chunks 16,128,128, /);
  assert.equal(diff.length, 2, 'nothing else differs');
  assert.deepEqual(identityDiff(before, runIdentity(c, cards, a)), []);
});

test('an identity recorded before it included the input differs, saying why', (t) => {
  const dir = tmpDir(t);
  const a = inputIdentity(path.join(dir, 'a'), [level(path.join(dir, 'a'), '0', [16, 64, 64], 'blosc')]);
  const now = runIdentity(loadConfig({ preset: 'synthetic-em' }), cards, a);
  const { input: _, ...old } = now;
  assert.match(identityDiff({ ...old, hash: 'x' }, now)[0], /^input: not recorded \(run\.json written by a Tessera before the run identity included the input\) → .*refused$/);
});

test('the tissue mask is part of the identity: adding, removing or changing one is a new run, named (not the config path)', async (t) => {
  const dir = tmpDir(t);
  const lv = level(path.join(dir, 'in'), '0', [16, 64, 64], 'blosc');
  const input = { shape: [16, 128, 128] as Vec3, spacing: [40, 4, 4] as Vec3 };
  const m1 = await openMask({ path: await writeMask(path.join(dir, 'm1.zarr'), { kind: 'array', shape: [16, 128, 128], inside: () => true }) }, input);
  const m2 = await openMask({ path: await writeMask(path.join(dir, 'm2.zarr'), { kind: 'array', shape: [8, 32, 32], inside: () => true }) }, input);
  const c = loadConfig({ preset: 'synthetic-em' });
  const none = runIdentity(c, cards, inputIdentity(path.join(dir, 'in'), [lv]));
  const one = runIdentity({ ...c, mask: { path: m1.spec.path } }, cards, inputIdentity(path.join(dir, 'in'), [lv], undefined, m1));
  const two = runIdentity({ ...c, mask: { path: m2.spec.path } }, cards, inputIdentity(path.join(dir, 'in'), [lv], undefined, m2));
  assert.equal(new Set([none.hash, one.hash, two.hash]).size, 3);
  assert.deepEqual(identityDiff(none, one), [`tissue mask: none → ${path.join(fs.realpathSync(dir), 'm1.zarr')} (16x128x128, factor 1,1,1, metadata ${one.input!.mask!.split('metadata ')[1]}`]);
  assert.match(identityDiff(one, two).join('\n'), /^tissue mask: .*m1\.zarr \(16x128x128, factor 1,1,1, .*\) → .*m2\.zarr \(8x32x32, factor 2,4,4, /);
  assert.match(identityDiff(two, none).join('\n'), /^tissue mask: .*m2\.zarr .* → none$/);
  assert.ok(!Object.keys(one.config).some((k) => k.startsWith('mask')), 'the config path is not compared (it is in the input identity, resolved)');
});
