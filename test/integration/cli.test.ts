// End to end through the real CLI: synthetic Zarr volumes on disk, the shipped ONNX models run
// by onnxruntime-node in worker threads, outputs scored by tessera eval.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ROOT, brokenCopy, tessera, tesseraOk, tmpDir, filesUnder } from '../helpers/cli.ts';
import { boxOfShape } from '../../shared/geometry/box.ts';
import { openArray, readRegion } from '../../shared/volume/zarr.ts';
import { downsampleMode } from '../../shared/array/resample.ts';

let dir: string;
let em: string;
let ct: string;

before(async () => {
  dir = tmpDir();
  em = path.join(dir, 'em.zarr');
  ct = path.join(dir, 'ct.zarr');
  await tesseraOk(['synth', '--kind', 'em', '--shape', '32,256,256', '--seed', '11', '--out', em]);
  await tesseraOk(['synth', '--kind', 'ct', '--shape', '32,192,192', '--seed', '12', '--out', ct]);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function runAndEval(input: string, out: string, args: string[]): Promise<{ run: any; dice: number; ev: any }> {
  const r = await tesseraOk(['run', '--input', input, '--output', out, '--json', ...args]);
  const run = JSON.parse(r.stdout);
  const ev = JSON.parse((await tesseraOk(['eval', '--pred', out, '--gt', input, '--json'])).stdout);
  return { run, dice: ev.perClass['1'].dice, ev };
}

test('one-stage on an unseen EM volume reaches Dice ≥ 0.90 and writes a complete NGFF output', async () => {
  const out = path.join(dir, 'em-one.zarr');
  const { run, dice, ev } = await runAndEval(em, out, ['--preset', 'synthetic-em', '--mode', 'one-stage']);
  assert.equal(run.mode, 'one-stage');
  assert.equal(ev.boxRecall, undefined, 'no boxes: no stage-one recall');
  assert.ok(run.voxelsPerSecond > 0);
  // Per-kind rates: the chunks' voxels (the whole volume here) over each kind's busy seconds.
  for (const k of ['blend', 'relabel']) {
    const want = run.voxels / run.busySeconds[`task:${k}`];
    assert.ok(Math.abs(run.voxelsPerBusySecond[k] - want) <= 1e-3 * want, `${k}: ${run.voxelsPerBusySecond[k]} vs ${want}`);
  }
  assert.deepEqual(Object.keys(run.voxelsPerBusySecond).sort(), ['blend', 'relabel']);
  assert.ok(dice >= 0.9, `Dice ${dice}`);
  const doc = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));
  assert.equal(doc.status, 'complete');
  assert.match(doc.models.fullres.sha256, /^[0-9a-f]{64}$/);
  const attrs = JSON.parse(fs.readFileSync(path.join(out, 'segmentation', '.zattrs'), 'utf8'));
  assert.ok(attrs['image-label'], 'segmentation is an NGFF label image');
});

test('two-stage on EM: Dice ≥ 0.90, boxes.json lists placed boxes, fill ratio reported', async () => {
  const out = path.join(dir, 'em-two.zarr');
  const { run, dice, ev } = await runAndEval(em, out, ['--preset', 'synthetic-em']);
  assert.equal(run.mode, 'two-stage');
  // eval reports stage one's recall of the ground-truth objects (the same 26-connected objects it scores).
  assert.equal(ev.boxRecall.objects, ev.perClass['1'].gtObjects);
  assert.ok(ev.boxRecall.found > 0 && ev.boxRecall.found <= ev.boxRecall.objects && ev.boxRecall.recall === ev.boxRecall.found / ev.boxRecall.objects, JSON.stringify(ev.boxRecall));
  assert.ok(dice >= 0.9, `Dice ${dice}`);
  assert.deepEqual(Object.keys(run.voxelsPerBusySecond).sort(), ['paste', 'relabel']);
  const pasteRate = run.voxels / run.busySeconds['task:paste'];
  assert.ok(Math.abs(run.voxelsPerBusySecond.paste - pasteRate) <= 1e-3 * pasteRate, `paste: ${run.voxelsPerBusySecond.paste} vs ${pasteRate}`);
  assert.ok(run.twoStage.boxes > 0 && run.twoStage.canvases > 0);
  assert.ok(run.twoStage.fillRatio > 0 && run.twoStage.fillRatio <= 1);
  // Canvases run at their occupied extent, never more than whole canvases.
  assert.ok(run.twoStage.runFillRatio >= run.twoStage.fillRatio && run.twoStage.runFillRatio <= 1, `run fill ${run.twoStage.runFillRatio}`);
  const boxes = JSON.parse(fs.readFileSync(path.join(out, 'boxes.json'), 'utf8'));
  assert.equal(boxes.boxes.length, run.twoStage.boxes);
  for (const b of boxes.boxes) assert.ok(b.placements.length >= 1, `box ${b.id} has a placement`);
  // The segmentation's viewing pyramid: levels by label mode, scales and centre shifts in the NGFF attributes.
  const attrs = JSON.parse(fs.readFileSync(path.join(out, 'segmentation', '.zattrs'), 'utf8'));
  const ds = attrs.multiscales[0].datasets;
  assert.deepEqual(ds.map((d: any) => d.coordinateTransformations[0].scale), [[40, 4, 4], [40, 8, 8], [40, 16, 16]]);
  assert.deepEqual(ds[1].coordinateTransformations[1], { type: 'translation', translation: [0, 2, 2] });
  const level0 = await readRegion(await openArray(path.join(out, 'segmentation', '0')), boxOfShape([32, 256, 256]));
  for (const [i, f] of [[1, [1, 2, 2]], [2, [1, 4, 4]]] as Array<[number, [number, number, number]]>) {
    const lv = await openArray(path.join(out, 'segmentation', String(i)));
    const got = await readRegion(lv, boxOfShape(lv.shape));
    const want = downsampleMode(level0, f);
    assert.deepEqual(lv.shape, want.shape);
    assert.deepEqual([...got.data], [...want.data], `level ${i} = mode of level 0`);
    assert.ok(want.data.some((v) => v > 0), `level ${i} holds foreground`);
  }
});

test('one-stage and two-stage on an unseen CT volume: Dice ≥ 0.80', async () => {
  for (const mode of ['one-stage', 'two-stage']) {
    const { dice } = await runAndEval(ct, path.join(dir, `ct-${mode}.zarr`), ['--preset', 'synthetic-ct', '--mode', mode]);
    assert.ok(dice >= 0.8, `${mode}: Dice ${dice}`);
  }
});

test('output is bit-identical whatever the number of inference threads and chunks in flight', async () => {
  const a = path.join(dir, 'det-a.zarr');
  const b = path.join(dir, 'det-b.zarr');
  const cfgA = path.join(dir, 'det-a.json');
  const cfgB = path.join(dir, 'det-b.json');
  // Small chunks so several run at once and boxes cross chunk borders.
  const boxes = { cropThreshold: [16, 64, 64], recrop: [16, 32, 32] };
  fs.writeFileSync(cfgA, JSON.stringify({ extends: 'synthetic-em', boxes, io: { chunk: [32, 128, 128], chunksInFlight: 1 }, inference: { threads: 1 } }));
  fs.writeFileSync(cfgB, JSON.stringify({ extends: 'synthetic-em', boxes, io: { chunk: [32, 128, 128], chunksInFlight: 4 }, inference: { threads: 2, intraOpThreads: 1 } }));
  await tesseraOk(['run', '--input', em, '--output', a, '--config', cfgA]);
  await tesseraOk(['run', '--input', em, '--output', b, '--config', cfgB]);
  const fa = filesUnder(path.join(a, 'segmentation'));
  const fb = filesUnder(path.join(b, 'segmentation'));
  assert.deepEqual([...fa.keys()].sort(), [...fb.keys()].sort());
  for (const [k, v] of fa) assert.ok(v.equals(fb.get(k)!), `chunk ${k} differs`);
  assert.ok(fs.readFileSync(path.join(a, 'boxes.json')).equals(fs.readFileSync(path.join(b, 'boxes.json'))));
});

test('--roi processes a sub-volume and eval scores that ROI only', async () => {
  const out = path.join(dir, 'roi.zarr');
  const r = await tesseraOk(['run', '--input', em, '--output', out, '--preset', 'synthetic-em', '--roi', '0:16,0:128,64:256', '--json']);
  assert.equal(JSON.parse(r.stdout).voxels, 16 * 128 * 192);
  const e = JSON.parse((await tesseraOk(['eval', '--pred', out, '--gt', em, '--json'])).stdout);
  assert.equal(e.roi, '0:16,0:128,64:256');
  assert.equal(e.voxels, 16 * 128 * 192);
});

test('bad config stops before any work and names the key', async () => {
  const cfg = path.join(dir, 'bad.json');
  fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', boxes: { nms_threshold: 0.5 } }));
  const out = path.join(dir, 'bad.zarr');
  const r = await tessera(['run', '--input', em, '--output', out, '--config', cfg]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /boxes\.nms_threshold.*unknown key.*nmsThreshold/);
  assert.equal(fs.existsSync(out), false, 'no output was created');

  fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', models: { fullres: 'nope.onnx' } }));
  const m = await tessera(['run', '--input', em, '--output', out, '--config', cfg]);
  assert.equal(m.code, 2);
  assert.match(m.stderr, /models\.fullres.*nope\.onnx.*not found/);

  const roi = await tessera(['run', '--input', em, '--output', out, '--preset', 'synthetic-em', '--roi', '0:16,0:128,0:999']);
  assert.equal(roi.code, 2);
  assert.match(roi.stderr, /roi.*outside the volume/);
  assert.equal(fs.existsSync(out), false);

  const ctOnEm = await tessera(['run', '--input', em, '--output', out, '--preset', 'synthetic-ct']);
  assert.equal(ctOnEm.code, 2);
  assert.match(ctOnEm.stderr, /spacing/);
});

test('a corrupt input chunk fails that chunk by name, marks the run failed, and eval refuses it', async () => {
  const broken = brokenCopy(em, dir, 'broken');
  const out = path.join(dir, 'broken-out.zarr');
  const r = await tessera(['run', '--input', broken.vol, '--output', out, '--config', broken.config]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /task\(s\) failed/);
  assert.match(r.stderr, /broken\.zarr\/0.*chunk 0\/1\/1/);
  const doc = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8'));
  assert.equal(doc.status, 'failed');
  assert.ok(doc.report.failures.length >= 1);
  const e = await tessera(['eval', '--pred', out, '--gt', em]);
  assert.equal(e.code, 2);
  assert.match(e.stderr, /incomplete/);
});

test('an existing output is not overwritten without --overwrite', async () => {
  const out = path.join(dir, 'em-one.zarr');
  const r = await tessera(['run', '--input', em, '--output', out, '--preset', 'synthetic-em']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--overwrite/);
});

test('the output opens in Debian python3-zarr when it is installed', { skip: !hasPythonZarr() }, () => {
  const out = path.join(dir, 'em-two.zarr');
  const py = `import zarr,sys; g=zarr.open(sys.argv[1], mode='r'); a=g['segmentation/0']; print(a.shape, a.dtype, int((a[:]>0).sum()))`;
  const s = execFileSync('/usr/bin/python3', ['-c', py, out], { encoding: 'utf8' });
  assert.match(s, /^\(32, 256, 256\) uint8 [1-9]\d*/);
});

function hasPythonZarr(): boolean {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import zarr'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('the presets run on the smallest synthetic volumes (16×128×128), both kinds and both modes', async () => {
  for (const kind of ['em', 'ct']) {
    const vol = path.join(dir, `small-${kind}.zarr`);
    await tesseraOk(['synth', '--kind', kind, '--shape', '16,128,128', '--seed', '77', '--out', vol]);
    for (const mode of ['one-stage', 'two-stage']) {
      const out = path.join(dir, `small-${kind}-${mode}.zarr`);
      const r = JSON.parse((await tesseraOk(['run', '--input', vol, '--output', out, '--preset', `synthetic-${kind}`, '--mode', mode, '--json'])).stdout);
      assert.equal(r.voxels, 16 * 128 * 128);
      const e = JSON.parse((await tesseraOk(['eval', '--pred', out, '--gt', vol, '--json'])).stdout);
      // A sanity floor: CT's faint and small lesions weigh more in so small a volume (one-stage
      // 0.76, two-stage 0.66 when written; EM 0.91 and 0.90).
      const floor = kind === 'em' ? 0.8 : 0.6;
      assert.ok(e.perClass['1'].dice >= floor, `${kind} ${mode}: Dice ${e.perClass['1'].dice}`);
    }
  }
});

test('a two-stage run warns when its stage-two network normalises over the window; the shipped one does not', async () => {
  const warning = /normalises over its whole input \(InstanceNormalization\)/;
  const vol = path.join(dir, 'small-em.zarr');
  if (!fs.existsSync(vol)) await tesseraOk(['synth', '--kind', 'em', '--shape', '16,128,128', '--seed', '77', '--out', vol]);
  const local = await tesseraOk(['run', '--input', vol, '--output', path.join(dir, 'norm-local.zarr'), '--preset', 'synthetic-em']);
  assert.doesNotMatch(local.stderr, warning);
  // The instance-normalised stage-one net as stage two: its own bytes, the full-resolution card's
  // spacing and statistics, its own size multiple.
  const net = path.join(dir, 'instance-norm.onnx');
  fs.copyFileSync(path.join(ROOT, 'models', 'synthetic-em-lowres.onnx'), net);
  const low = JSON.parse(fs.readFileSync(path.join(ROOT, 'models', 'synthetic-em-lowres.json'), 'utf8'));
  const full = JSON.parse(fs.readFileSync(path.join(ROOT, 'models', 'synthetic-em-fullres.json'), 'utf8'));
  fs.writeFileSync(net.replace(/\.onnx$/, '.json'), JSON.stringify({ ...full, name: 'instance-norm', divisor: low.divisor, sha256: low.sha256, inputName: low.inputName, outputName: low.outputName }));
  const cfg = path.join(dir, 'instance-norm-config.json');
  fs.writeFileSync(cfg, JSON.stringify({ extends: 'synthetic-em', models: { fullres: net } }));
  const r = await tesseraOk(['run', '--input', vol, '--output', path.join(dir, 'norm-instance.zarr'), '--config', cfg]);
  assert.match(r.stderr, warning);
});

test('tessera model card: names, channels and divisor from the graph, checked on one patch; a graph with softmax inside must say probabilities', async () => {
  const golden = path.join(ROOT, 'test', 'fixtures', 'golden');
  const m = path.join(dir, 'net.onnx');
  fs.copyFileSync(path.join(golden, 'model.onnx'), m);
  const args = (onnx: string, ...extra: string[]) => ['model', 'card', onnx, '--spacing', '1,1,1', '--patch', '8,24,16', '--normalization', 'zscore:0:1', '--classes', 'background,a,b', '--json', ...extra];
  const r = JSON.parse((await tesseraOk(args(m))).stdout);
  const want = JSON.parse(fs.readFileSync(path.join(golden, 'model.json'), 'utf8'));
  for (const k of ['inputName', 'outputName', 'output', 'activation', 'channels', 'patchSize', 'divisor', 'sha256', 'normalization']) {
    assert.deepEqual(r.card[k], want[k], k);
  }
  assert.equal(r.divisorProbed, true);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'net.json'), 'utf8')).divisor, [2, 2, 2]);
  // How far a change reaches, measured and kept in the sidecar.
  const reach = JSON.parse(fs.readFileSync(path.join(dir, 'net.json'), 'utf8')).reach;
  assert.deepEqual(reach, r.card.reach);
  assert.ok(reach.voxels.length === 3 && reach.voxels.every((v: number) => Number.isInteger(v) && v > 0), JSON.stringify(reach));
  // An existing card is not replaced silently; wrong class counts and impossible claims are refused.
  assert.match((await tessera(args(m))).stderr, /net\.json exists; pass --overwrite/);
  assert.match((await tessera(args(m, '--overwrite', '--classes', 'background,a'))).stderr, /outputs 3 channels but 2 classes/);
  assert.match((await tessera(args(m, '--overwrite', '--output', 'probabilities'))).stderr, /the graph outputs logits/);
  // Softmax inside the graph: read as logits, it would be softmaxed twice.
  const sm = path.join(dir, 'net-softmax.onnx');
  fs.copyFileSync(path.join(golden, 'model-softmax.onnx'), sm);
  const twice = await tessera(args(sm));
  assert.equal(twice.code, 2);
  assert.match(twice.stderr, /applies softmax itself; pass --output probabilities/);
  assert.ok(!fs.existsSync(path.join(dir, 'net-softmax.json')), 'no card written for a refused model');
  const ok = JSON.parse((await tesseraOk(args(sm, '--output', 'probabilities'))).stdout);
  assert.equal(ok.card.output, 'probabilities');
  assert.equal(ok.card.outputName, 'probabilities');
  assert.ok(ok.range[0] >= 0 && ok.range[1] <= 1);
});
