// Checks the golden ONNX export against PyTorch: runs test/fixtures/golden/model.onnx with
// onnxruntime-node on check-in.f32 ([1,1,8,16,16]) and compares with torch's check-out.f32
// ([1,3,8,16,16]); also runs a batch of 2 at the patch shape to exercise the dynamic axes.
// Run from the repository root:  node tools/golden/check-onnx.cjs   (exit 1 if max|d| > 1e-5)
const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');

const dir = path.join(__dirname, '..', '..', 'test', 'fixtures', 'golden');
const f32 = (name) => {
  const b = fs.readFileSync(path.join(dir, name));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

(async () => {
  const golden = JSON.parse(fs.readFileSync(path.join(dir, 'golden.json'), 'utf8'));
  const s = await ort.InferenceSession.create(path.join(dir, 'model.onnx'), { intraOpNumThreads: 1 });
  const x = f32(golden.check.input);
  const want = f32(golden.check.output);
  const r = await s.run({ input: new ort.Tensor('float32', x, golden.check.input_shape) });
  const got = r.logits;
  let d = 0;
  for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(got.data[i] - want[i]));
  console.log(`ort ${require('onnxruntime-node/package.json').version}: output dims [${got.dims}] ` +
    `(want [${golden.check.output_shape}]), max|onnx - torch| = ${d.toExponential(3)}`);

  // dynamic axes: batch 2 at the patch shape runs and gives [2,3,...patch]
  const [D, H, W] = golden.patch;
  const b = new Float32Array(2 * D * H * W).map((_, i) => Math.sin(i * 0.37));
  const r2 = await s.run({ input: new ort.Tensor('float32', b, [2, 1, D, H, W]) });
  console.log(`batch 2 at patch ${golden.patch}: output dims [${r2.logits.dims}]`);
  const ok = d <= 1e-5 && `${got.dims}` === `${golden.check.output_shape}` && `${r2.logits.dims}` === `${[2, 3, D, H, W]}`;
  console.log(ok ? 'OK' : 'FAIL');
  process.exit(ok ? 0 : 1);
})().catch((e) => { console.error(e); process.exit(1); });
