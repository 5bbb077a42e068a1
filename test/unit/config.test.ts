import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { SCHEMA, type TesseraConfig } from '../../shared/config/config.ts';
import { PACKAGE_ROOT, checkModels, loadConfig } from '../../shared/config/load.ts';
import { PRESET_NAMES, preset } from '../../shared/config/presets.ts';
import { type Field, deepMerge, describe, validate } from '../../shared/config/schema.ts';
import { ConfigError, ModelError, isPermanent } from '../../shared/errors.ts';
import { loadModelCard } from '../../shared/infer/model.ts';
import { tmpDir } from '../helpers/tmpdir.ts';

/** Assert that `fn` throws a ConfigError for `key`; returns it for further checks. */
function configError(fn: () => unknown, key: string): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError for ${key}, got ${String(caught)}`);
  assert.equal(caught.key, key, caught.message);
  assert.ok(caught.message.includes(key), `message names ${key}: ${caught.message}`);
  assert.ok(isPermanent(caught));
  return caught;
}

const over = (overrides: Record<string, unknown>, name = 'synthetic-em') => () => loadConfig({ preset: name, overrides });

// ---------------------------------------------------------------- presets

test('every preset passes validation, with model paths resolved against the package', () => {
  assert.ok(PRESET_NAMES.length >= 6);
  for (const name of ['cremi', 'fafb', 'covid', 'word', 'synthetic-em', 'synthetic-ct']) assert.ok(PRESET_NAMES.includes(name), name);
  for (const name of PRESET_NAMES) {
    const c = loadConfig({ preset: name });
    assert.equal(c.name, name);
    validate(SCHEMA, c); // idempotent: the loaded config is itself valid
    for (const k of ['fullres', 'lowres'] as const) {
      assert.ok(path.isAbsolute(c.models[k]), `${name}.models.${k}`);
      assert.equal(c.models[k], path.join(PACKAGE_ROOT, 'models', `${name}-${k}.onnx`));
    }
    assert.ok(c.io.chunk.every((v, a) => v % c.io.outputChunk[a] === 0), `${name} io.chunk`);
  }
  // Presets override the defaults but keep defaults they do not set.
  const em = loadConfig({ preset: 'cremi' });
  assert.equal(em.mode, 'two-stage');
  assert.deepEqual(em.io.chunk, [96, 1024, 1024]);
  assert.equal(em.io.pad, 'mirror');
  assert.equal(em.select.policy, 'spatial');
  assert.equal(em.select.lambda, 0.03);
});

test('overrides of one load do not leak into later loads or the preset', () => {
  const a = loadConfig({ preset: 'covid', overrides: { io: { concurrency: 3 }, boxes: { margin: [1, 1, 1] } } });
  const b = loadConfig({ preset: 'covid' });
  assert.equal(a.io.concurrency, 3);
  assert.equal(b.io.concurrency, 8);
  assert.deepEqual(b.boxes.margin, [0, 0, 0]);
  assert.deepEqual(preset('covid')!.boxes.margin, [0, 0, 0]);
});

test('unknown preset → ConfigError on "preset" listing the known ones', () => {
  const e = configError(() => loadConfig({ preset: 'cremii' }), 'preset');
  assert.ok(e.message.includes('cremi') && e.message.includes('synthetic-em'));
});

// ---------------------------------------------------------------- validation

test('unknown keys name their dotted path', () => {
  configError(over({ boxes: { nmsThresh: 0.5 } }), 'boxes.nmsThresh');
  configError(over({ colour: 'red' }), 'colour');
  configError(over({ io: { chunk: [32, 512, 512], extra: { deep: 1 } } }), 'io.extra');
});

test('unknown key differing only in case suggests the real key', () => {
  const e = configError(over({ boxes: { NMSThreshold: 0.5 } }), 'boxes.NMSThreshold');
  assert.match(e.message, /did you mean "nmsThreshold"/);
  const f = configError(over({ stage1: { Patch: [16, 64, 64] } }), 'stage1.Patch');
  assert.match(f.message, /did you mean "patch"/);
});

test('unknown snake_case key suggests the camelCase key (boxes.nms_threshold → nmsThreshold)', () => {
  const e = configError(over({ boxes: { nms_threshold: 0.5 } }), 'boxes.nms_threshold');
  assert.match(e.message, /did you mean "nmsThreshold"/);
  const f = configError(over({ io: { output_chunk: [16, 128, 128] } }), 'io.output_chunk');
  assert.match(f.message, /did you mean "outputChunk"/);
});

test('unknown keys named like Object.prototype members are refused too', () => {
  configError(over({ boxes: { constructor: 1 } }), 'boxes.constructor');
  configError(over({ toString: 'x' }), 'toString');
});

test('wrong types name their key', () => {
  configError(over({ io: { concurrency: '8' } }), 'io.concurrency');
  configError(over({ baseline: { patch: [16, 128] } }), 'baseline.patch');
  configError(over({ baseline: { patch: [16, 128, '128'] } }), 'baseline.patch');
  configError(over({ stage1: { mirror: 'yes' } }), 'stage1.mirror');
  configError(over({ io: 5 }), 'io');
  configError(over({ models: { fullres: '' } }), 'models.fullres');
  configError(over({ name: 42 }), 'name');
  configError(over({ boxes: { roiThreshold: Number.NaN } }), 'boxes.roiThreshold');
  configError(over({ inference: { batch: 1.5 } }), 'inference.batch'); // integer key
  configError(over({ pack: { crop: [16, 64.5, 64] } }), 'pack.crop'); // integer vec3
});

test('out-of-range values name their key', () => {
  configError(over({ baseline: { step: 1.5 } }), 'baseline.step');
  configError(over({ stage1: { step: 0.01 } }), 'stage1.step');
  configError(over({ io: { concurrency: 0 } }), 'io.concurrency');
  configError(over({ io: { concurrency: 257 } }), 'io.concurrency');
  configError(over({ boxes: { nmsThreshold: -0.1 } }), 'boxes.nmsThreshold');
  configError(over({ boxes: { nmmThreshold: 1.01 } }), 'boxes.nmmThreshold');
  configError(over({ boxes: { margin: [0, -1, 0] } }), 'boxes.margin');
  configError(over({ stage1: { patch: [0, 64, 64] } }), 'stage1.patch');
  configError(over({ select: { maxBoxes: -1 } }), 'select.maxBoxes');
  // Boundaries are inclusive.
  assert.equal(loadConfig({ preset: 'synthetic-em', overrides: { baseline: { step: 1 }, boxes: { nmsThreshold: 0, margin: [0, 0, 0] } } }).baseline.step, 1);
});

test('bad enum values name their key and list the allowed values', () => {
  const e = configError(over({ pack: { heuristic: 'tetris' } }), 'pack.heuristic');
  for (const v of ['grid', 'scale', 'jigsaw']) assert.ok(e.message.includes(`"${v}"`), e.message);
  configError(over({ mode: 'three-stage' }), 'mode');
  configError(over({ io: { pad: 'reflect' } }), 'io.pad');
  configError(over({ inference: { provider: 'CUDA' } }), 'inference.provider');
});

test('validate: missing keys are named', () => {
  const c = loadConfig({ preset: 'word' }) as unknown as Record<string, Record<string, unknown>>;
  const { nmsThreshold: _, ...boxes } = c.boxes;
  assert.throws(() => validate(SCHEMA, { ...c, boxes }), (e: unknown) => e instanceof ConfigError && e.key === 'boxes.nmsThreshold');
  const { unit: __, ...noUnit } = c;
  assert.throws(() => validate(SCHEMA, noUnit), (e: unknown) => e instanceof ConfigError && e.key === 'unit');
  // Defaults alone lack the preset-only keys.
  assert.throws(() => loadConfig({}), ConfigError);
});

test('cross-key checks: io.chunk a multiple of io.outputChunk; stage-one spacing not finer than full', () => {
  const e = configError(over({ io: { chunk: [32, 500, 512] } }), 'io.chunk');
  assert.ok(e.message.includes('io.outputChunk'));
  configError(over({ io: { chunk: [32, 512, 512], outputChunk: [16, 128, 96] } }), 'io.chunk');
  assert.deepEqual(loadConfig({ preset: 'synthetic-em', overrides: { io: { chunk: [48, 384, 512], outputChunk: [16, 128, 128] } } }).io.chunk, [48, 384, 512]);
  configError(over({ stage1: { spacing: [40, 2, 16] } }), 'stage1.spacing');
});

// ---------------------------------------------------------------- config files

test('a config file with "extends" resolves model paths relative to the file', (t) => {
  const dir = tmpDir(t);
  const sub = path.join(dir, 'configs', 'mine');
  fs.mkdirSync(sub, { recursive: true });
  const file = path.join(sub, 'run.json');
  fs.writeFileSync(file, JSON.stringify({
    extends: 'cremi',
    name: 'mine',
    models: { fullres: '../../nets/full.onnx', lowres: 'low.onnx' },
    boxes: { roiThreshold: 0.2 },
  }));
  const c = loadConfig({ file });
  assert.equal(c.name, 'mine');
  assert.equal(c.models.fullres, path.join(dir, 'nets', 'full.onnx'));
  assert.equal(c.models.lowres, path.join(sub, 'low.onnx'));
  assert.equal(c.boxes.roiThreshold, 0.2);
  // Everything else comes from the preset (deep merge, not replacement).
  const cremi = loadConfig({ preset: 'cremi' });
  assert.equal(c.boxes.nmsThreshold, cremi.boxes.nmsThreshold);
  assert.deepEqual(c.stage1, cremi.stage1);
  assert.deepEqual(c.io, cremi.io);
  // Only one model overridden: the other stays the preset's (relative to the package).
  const one = path.join(sub, 'one.json');
  fs.writeFileSync(one, JSON.stringify({ extends: 'fafb', models: { lowres: './x/low.onnx' } }));
  const d = loadConfig({ file: one });
  assert.equal(d.models.fullres, path.join(PACKAGE_ROOT, 'models', 'fafb-fullres.onnx'));
  assert.equal(d.models.lowres, path.join(sub, 'x', 'low.onnx'));
  // Absolute paths stay as they are; overrides apply after the file.
  const abs = path.join(sub, 'abs.json');
  fs.writeFileSync(abs, JSON.stringify({ extends: 'word', models: { fullres: '/opt/nets/f.onnx' }, io: { concurrency: 4 } }));
  const e = loadConfig({ file: abs, overrides: { io: { concurrency: 16 } } });
  assert.equal(e.models.fullres, '/opt/nets/f.onnx');
  assert.equal(e.io.concurrency, 16);
});

test('a config file without "extends" builds on the preset given alongside it', (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'c.json');
  fs.writeFileSync(file, JSON.stringify({ models: { fullres: 'f.onnx' }, select: { policy: 'score' } }));
  const c = loadConfig({ preset: 'synthetic-ct', file });
  assert.equal(c.name, 'synthetic-ct');
  assert.equal(c.models.fullres, path.join(dir, 'f.onnx'));
  assert.equal(c.models.lowres, path.join(PACKAGE_ROOT, 'models', 'synthetic-ct-lowres.onnx'));
  assert.equal(c.select.policy, 'score');
});

test('config file errors: invalid JSON and missing files name the file; bad keys name key and file', (t) => {
  const dir = tmpDir(t);
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, '{ "extends": "cremi", ');
  const e = configError(() => loadConfig({ file: bad }), 'config');
  assert.ok(e.message.includes(bad), e.message);
  const missing = path.join(dir, 'missing.json');
  assert.ok(configError(() => loadConfig({ file: missing }), 'config').message.includes(missing));
  const typo = path.join(dir, 'typo.json');
  fs.writeFileSync(typo, JSON.stringify({ extends: 'cremi', pack: { heuristics: 'grid' } }));
  assert.ok(configError(() => loadConfig({ file: typo }), 'pack.heuristics').message.includes(typo));
  const range = path.join(dir, 'range.json');
  fs.writeFileSync(range, JSON.stringify({ extends: 'cremi', baseline: { step: 0 } }));
  assert.ok(configError(() => loadConfig({ file: range }), 'baseline.step').message.includes(range));
  const ext = path.join(dir, 'ext.json');
  fs.writeFileSync(ext, JSON.stringify({ extends: 'nope' }));
  assert.ok(configError(() => loadConfig({ file: ext }), 'extends').message.includes(ext));
});

// ---------------------------------------------------------------- describe

function leaves(f: Field, key = ''): string[] {
  if (f.type === 'object') return Object.entries(f.fields).flatMap(([k, sub]) => leaves(sub, key ? `${key}.${k}` : k));
  // A key that is a value or an object (mask: a path or { path, level }) is a row, and so are its fields.
  const t = f.type === 'optional' ? f.of : f;
  const o = t.type === 'either' ? t.of.find((x) => x.type === 'object') : undefined;
  if (o) return [key, ...leaves(o, key)];
  return [key];
}

test('describe(SCHEMA) lists every leaf key exactly once', () => {
  const lines = describe(SCHEMA);
  const rows = lines.map((l) => {
    const m = /^\| `([^`]+)` \| (.+?) \| /.exec(l);
    assert.ok(m, `table row: ${l}`);
    return { key: m[1], type: m[2] };
  });
  const leafRows = rows.filter((r) => r.type !== 'object').map((r) => r.key);
  const want = leaves(SCHEMA);
  // TesseraConfig: 4 top-level scalars + models 3 + io 15 (remote 3, s3 2) + inference 4 + baseline 3 + stage1 5 +
  // boxes 12 + select 4 + pack 11 + stage2 2 + output 2 + nats 7 + mask 3 (itself, path, level) = 75 leaves.
  assert.equal(want.length, 75);
  assert.deepEqual([...leafRows].sort(), [...want].sort());
  assert.equal(new Set(leafRows).size, leafRows.length, 'no leaf listed twice');
  // Each leaf row is documented and typed.
  for (const r of rows) assert.ok(r.type.length > 0);
  assert.ok(rows.some((r) => r.key === 'pack.heuristic' && r.type.includes('`jigsaw`')));
  assert.ok(rows.some((r) => r.key === 'io' && r.type === 'object'));
  // Every key of a loaded preset is a leaf of the schema and vice versa.
  const c = loadConfig({ preset: 'cremi' });
  const configLeaves = (o: unknown, key = ''): string[] =>
    typeof o === 'object' && o !== null && !Array.isArray(o)
      ? Object.entries(o).flatMap(([k, v]) => configLeaves(v, key ? `${key}.${k}` : k))
      : [key];
  // (optional leaves — models.allowOtherPatch, mask and its fields — may be absent from a preset)
  const optional = rows.filter((r) => r.type.endsWith('(optional)') || r.key.startsWith('mask.')).map((r) => r.key);
  assert.deepEqual(configLeaves(c).filter((k) => !optional.includes(k)).sort(), want.filter((k) => !optional.includes(k)).sort());
});

test('deepMerge: objects merge, arrays and scalars replace, undefined keeps', () => {
  const base = { a: { b: 1, c: [1, 2, 3] }, d: 'x' };
  assert.deepEqual(deepMerge(base, { a: { c: [9] } }), { a: { b: 1, c: [9] }, d: 'x' });
  assert.deepEqual(deepMerge(base, undefined), base);
  assert.deepEqual(deepMerge(base, { d: { e: 1 } }), { a: { b: 1, c: [1, 2, 3] }, d: { e: 1 } });
  assert.deepEqual(base, { a: { b: 1, c: [1, 2, 3] }, d: 'x' }, 'base untouched');
});

// ---------------------------------------------------------------- checkModels

interface Card { spacing: number[]; patchSize: number[]; divisor: number[]; channels?: number }

function writeModel(dir: string, name: string, card: Card, opts: { sidecar?: boolean; sha?: string } = {}): string {
  const onnx = path.join(dir, `${name}.onnx`);
  const bytes = Buffer.from(`not really onnx: ${name}`);
  fs.writeFileSync(onnx, bytes);
  if (opts.sidecar !== false) {
    fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({
      name, classes: ['background', 'foreground'], output: 'logits', activation: 'softmax', channels: card.channels ?? 1, inputName: 'input', outputName: 'logits',
      normalization: { kind: 'zscore', mean: 100, std: 20 },
      spacing: card.spacing, patchSize: card.patchSize, divisor: card.divisor,
      sha256: opts.sha ?? createHash('sha256').update(bytes).digest('hex'),
    }));
  }
  return onnx;
}

// synthetic-em: spacing [40,4,4], stage1.spacing [40,16,16], stage1.patch [16,64,64],
// baseline.patch [16,128,128], pack.canvas [16,144,144], pack.crop [16,64,64].
const FULL: Card = { spacing: [40, 4, 4], patchSize: [16, 144, 144], divisor: [16, 16, 16] };
const LOW: Card = { spacing: [40, 16, 16], patchSize: [16, 64, 64], divisor: [8, 16, 16] };

function modelConfig(dir: string, overrides: Record<string, unknown> = {}, full: Card = FULL, low: Card = LOW,
  opts: { full?: Parameters<typeof writeModel>[3]; low?: Parameters<typeof writeModel>[3] } = {}): TesseraConfig {
  writeModel(dir, 'full', full, opts.full);
  writeModel(dir, 'low', low, opts.low);
  const file = path.join(dir, 'models.json');
  fs.writeFileSync(file, JSON.stringify({ extends: 'synthetic-em', models: { fullres: 'full.onnx', lowres: 'low.onnx' } }));
  return loadConfig({ file, overrides });
}

test('checkModels: matching models pass and their cards carry the file hash', (t) => {
  const dir = tmpDir(t);
  const c = modelConfig(dir);
  const cards = checkModels(c);
  assert.equal(cards.fullres.sha256, createHash('sha256').update(Buffer.from('not really onnx: full')).digest('hex'));
  assert.deepEqual(cards.lowres!.spacing, [40, 16, 16]);
  // Spacing within 1 % is a match.
  assert.ok(checkModels({ ...c, spacing: [40, 4.02, 4.02] }).fullres);
  // One-stage needs only the full-resolution model.
  fs.rmSync(path.join(dir, 'low.onnx'));
  assert.ok(checkModels({ ...c, mode: 'one-stage' }).lowres === undefined);
});

test('checkModels: patch or canvas not divisible by the model divisor names the key', (t) => {
  const dir = tmpDir(t);
  configError(() => checkModels(modelConfig(dir, { stage1: { patch: [16, 72, 64] } })), 'stage1.patch');
  configError(() => checkModels(modelConfig(dir, { pack: { canvas: [16, 120, 128] } })), 'pack.canvas');
  configError(() => checkModels(modelConfig(dir, { mode: 'one-stage', baseline: { patch: [24, 128, 128] } })), 'baseline.patch');
  configError(() => checkModels(modelConfig(dir, { pack: { crop: [16, 160, 64], canvas: [16, 128, 128] } })), 'pack.crop');
});

test('checkModels: a spacing mismatch names the key', (t) => {
  const dir = tmpDir(t);
  const e = configError(() => checkModels(modelConfig(dir, {}, { ...FULL, spacing: [40, 5, 5] })), 'spacing');
  assert.ok(e.message.includes(path.join(dir, 'full.onnx')), e.message);
  configError(() => checkModels(modelConfig(dir, {}, FULL, { ...LOW, spacing: [40, 20, 20] })), 'stage1.spacing');
  configError(() => checkModels(modelConfig(dir, { spacing: [40, 4.1, 4] })), 'spacing');
});

test('checkModels: a sha256 mismatch names the model key', (t) => {
  const dir = tmpDir(t);
  const e = configError(() => checkModels(modelConfig(dir, {}, FULL, LOW, { full: { sha: 'ab'.repeat(32) } })), 'models.fullres');
  assert.match(e.message, /sha256/);
  configError(() => checkModels(modelConfig(dir, {}, FULL, LOW, { low: { sha: '00'.repeat(32) } })), 'models.lowres');
});

test('checkModels: a missing sidecar or model file names the model key', (t) => {
  const dir = tmpDir(t);
  const e = configError(() => checkModels(modelConfig(dir, {}, FULL, LOW, { low: { sidecar: false } })), 'models.lowres');
  assert.ok(e.message.includes(path.join(dir, 'low.json')), e.message);
  const c = modelConfig(dir);
  fs.rmSync(path.join(dir, 'full.onnx'));
  configError(() => checkModels(c), 'models.fullres');
});

test('checkModels: a model with more than one input channel is refused', (t) => {
  const dir = tmpDir(t);
  configError(() => checkModels(modelConfig(dir, {}, { ...FULL, channels: 2 })), 'models.fullres');
  configError(() => checkModels(modelConfig(dir, {}, FULL, { ...LOW, channels: 3 })), 'models.lowres');
});

test('model cards are strict: unknown keys, a missing sha256 or tensor names are refused, naming the key', (t) => {
  const dir = tmpDir(t);
  const onnx = writeModel(dir, 'm', FULL);
  const side = path.join(dir, 'm.json');
  const card = JSON.parse(fs.readFileSync(side, 'utf8'));
  const expectBad = (doc: Record<string, unknown>, re: RegExp) => {
    fs.writeFileSync(side, JSON.stringify(doc));
    assert.throws(() => loadModelCard(onnx), (e: unknown) => e instanceof ModelError && re.test(e.message), JSON.stringify(doc));
  };
  expectBad({ ...card, activations: 'softmax' }, /key "activations" is not a model card key/);
  // The old one-word form said nothing about whether the graph already applies the activation.
  expectBad({ ...card, output: 'softmax', activation: undefined }, /key "output" "softmax" is ambiguous: write "output": "logits" \(or "probabilities"/);
  expectBad({ ...card, output: 'probs' }, /key "output" must be "logits"/);
  expectBad({ ...card, activation: undefined }, /key "activation" is required/);
  expectBad({ ...card, sha256: undefined }, /key "sha256" is required/);
  expectBad({ ...card, sha256: 'abc' }, /key "sha256" is required: the sha256 of the \.onnx file/);
  expectBad({ ...card, outputName: undefined }, /key "outputName" is required/);
  fs.writeFileSync(side, JSON.stringify(card));
  assert.equal(loadModelCard(onnx).outputName, 'logits');
});

test('every preset runs the same test-time augmentation in both modes (stage one and two mirror as the baseline does)', () => {
  for (const name of PRESET_NAMES) {
    const p = preset(name)!;
    assert.equal(p.stage1.mirror, p.baseline.mirror, `${name}: stage1.mirror`);
    assert.equal(p.stage2.mirror, p.baseline.mirror, `${name}: stage2.mirror`);
  }
});

test('checkModels: a patch other than the card\'s training patch is refused, naming the key, unless models.allowOtherPatch', (t) => {
  const dir = tmpDir(t);
  // synthetic-em runs stage one at 32×128×128; LOW was trained at 16×64×64.
  const strict = { models: { fullres: path.join(dir, 'full.onnx'), lowres: path.join(dir, 'low.onnx'), allowOtherPatch: false } };
  const e = configError(() => checkModels(modelConfig(dir, strict)), 'stage1.patch');
  assert.match(e.message, /differs from the patch \[16,64,64\] model .*low\.onnx was trained at .*models\.allowOtherPatch: true/);
  assert.ok(checkModels(modelConfig(dir, { ...strict, stage1: { patch: [16, 64, 64] } })).lowres);
  configError(() => checkModels(modelConfig(dir, { ...strict, stage1: { patch: [16, 64, 64] }, pack: { canvas: [16, 64, 64] } })), 'pack.canvas');
  configError(() => checkModels(modelConfig(dir, { ...strict, mode: 'one-stage', baseline: { patch: [32, 128, 128] } })), 'baseline.patch');
  assert.ok(checkModels(modelConfig(dir)).lowres, 'the preset allows it explicitly');
});
