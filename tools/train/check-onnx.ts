// Check exported models against PyTorch: run each model through onnxruntime-node on the
// reference input train.py saved (a non-patch shape) and compare with PyTorch's output; also
// check the sidecar (sha256, names, divisibility) and time one patch on the CPU.
//
//   node --import tsx tools/train/check-onnx.ts [models/synthetic-em-fullres.json ...]
//   (no arguments: every models/synthetic-*.json)
// Exit status 1 when any model fails.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';

interface Sidecar {
  name: string;
  inputName: string;
  outputName: string;
  classes: string[];
  patchSize: [number, number, number];
  divisor: [number, number, number];
  sha256: string;
  training?: { reference?: { shape: number[]; input: string; output: string } };
}

function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

async function check(jsonPath: string, threads: number): Promise<boolean> {
  const dir = dirname(jsonPath);
  const sc = JSON.parse(readFileSync(jsonPath, 'utf8')) as Sidecar;
  const onnxPath = join(dir, `${sc.name}.onnx`);
  const bytes = readFileSync(onnxPath);
  const problems: string[] = [];
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== sc.sha256) problems.push(`sha256 ${sha} != sidecar ${sc.sha256}`);
  if (sc.patchSize.some((p, k) => p % sc.divisor[k] !== 0)) problems.push(`patch ${sc.patchSize} not divisible by ${sc.divisor}`);
  const session = await ort.InferenceSession.create(onnxPath, {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  if (session.inputNames[0] !== sc.inputName) problems.push(`input name ${session.inputNames[0]} != ${sc.inputName}`);
  if (session.outputNames[0] !== sc.outputName) problems.push(`output name ${session.outputNames[0]} != ${sc.outputName}`);

  let maxDiff = NaN, agree = NaN;
  const ref = sc.training?.reference;
  if (!ref) problems.push('sidecar has no training.reference');
  else {
    const x = readF32(join(dir, ref.input));
    const want = readF32(join(dir, ref.output));
    const out = await session.run({ [sc.inputName]: new ort.Tensor('float32', x, ref.shape) });
    const t = out[sc.outputName];
    const got = t.data as Float32Array;
    const expectDims = [ref.shape[0], sc.classes.length, ...ref.shape.slice(2)];
    if (t.dims.join() !== expectDims.join()) problems.push(`output dims ${t.dims} != ${expectDims}`);
    if (got.length !== want.length) problems.push(`output length ${got.length} != ${want.length}`);
    else {
      maxDiff = 0;
      let same = 0;
      const n = want.length / 2;
      for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
      for (let i = 0; i < n; i++) if ((got[n + i] > got[i]) === (want[n + i] > want[i])) same++;
      agree = same / n;
      if (!(maxDiff < 1e-3)) problems.push(`max |onnx - torch| = ${maxDiff}`);
    }
  }
  // CPU throughput on one training-size patch (second run, after warm-up).
  const p = sc.patchSize;
  const nvox = p[0] * p[1] * p[2];
  const feed = { [sc.inputName]: new ort.Tensor('float32', new Float32Array(nvox), [1, 1, ...p]) };
  await session.run(feed);
  const t0 = performance.now();
  await session.run(feed);
  const s = (performance.now() - t0) / 1000;
  await session.release();
  const ok = problems.length === 0;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${sc.name}: max|diff| ${maxDiff.toExponential(2)}, argmax agreement ${(agree * 100).toFixed(3)} %, ` +
    `patch ${p.join('x')} in ${s.toFixed(2)} s = ${(nvox / s / 1e6).toFixed(2)} Mvox/s on ${threads} thread(s)` +
    (ok ? '' : `\n     ${problems.join('\n     ')}`));
  return ok;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const threads = Number(process.env.CHECK_THREADS ?? 1);
  const files = args.length ? args : readdirSync('models').filter((f) => /^synthetic-.*\.json$/.test(f)).sort().map((f) => join('models', f));
  if (files.length === 0) throw new Error('no models/synthetic-*.json found');
  let ok = true;
  for (const f of files) ok = (await check(f, threads)) && ok;
  process.exitCode = ok ? 0 : 1;
}

await main();
