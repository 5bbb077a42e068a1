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
