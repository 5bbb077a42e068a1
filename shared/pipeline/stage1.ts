// Stage one: the low-resolution model over a low-resolution region → foreground heatmap
// (1 − p(background) for softmax models: the probability that anything is there).
import type { Array3 } from '../array/array3.ts';
import { type Model, normalize } from '../infer/model.ts';
import { type SlidingOptions, slidingWindow } from '../infer/sliding.ts';
import { array3 } from '../array/array3.ts';

export async function stage1(lowRaw: Array3, model: Model, o: SlidingOptions): Promise<Array3<Float32Array>> {
  const input = array3(normalize(lowRaw.data, model.card.normalization), lowRaw.shape);
  const probs = await slidingWindow(input, model, o);
  if (probs.length === 1) return probs[0];
  const heat = new Float32Array(input.data.length);
  for (const p of probs) for (let i = 0; i < heat.length; i++) heat[i] += p.data[i];
  for (let i = 0; i < heat.length; i++) if (heat[i] > 1) heat[i] = 1;
  return array3(heat, input.shape);
}
