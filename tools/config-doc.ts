// Writes docs/config.md from the config schema (the unit tests check it is current):
//   node --import tsx tools/config-doc.ts
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SCHEMA } from '../shared/config/config.ts';
import { describe } from '../shared/config/schema.ts';
import { PRESET_NAMES, preset } from '../shared/config/presets.ts';

export function configDoc(): string {
  const keys = ['name', 'spacing', 'stage1.spacing', 'stage1.patch', 'baseline.patch', 'baseline.mirror', 'boxes.roiThreshold', 'boxes.axisThr', 'boxes.areaThr', 'boxes.priorDownsample', 'pack.crop', 'pack.canvas', 'boxes.nmsThreshold', 'boxes.nmmThreshold', 'boxes.recrop', 'boxes.cropThreshold', 'boxes.pooling', 'select.lambda', 'pack.postprocess'];
  const get = (o: unknown, k: string) => k.split('.').reduce((a: any, p) => a?.[p], o);
  const fmt = (v: unknown) => (Array.isArray(v) ? v.join(', ') : String(v));
  return [
    '# Configuration reference',
    '',
    'Generated from `shared/config/config.ts` by `node --import tsx tools/config-doc.ts`. A config file is JSON;',
    '`"extends": "<preset>"` starts from a preset, every other key overrides it. Unknown keys, wrong types and',
    'impossible values stop the run before any work, naming the key. Spacings are [z, y, x] in `unit`',
    '(EM: nanometer, CT: millimeter); shapes are voxels [z, y, x].',
    '',
    '| key | type | meaning |',
    '|---|---|---|',
    ...describe(SCHEMA),
    '',
    '## Presets',
    '',
    `| key | ${PRESET_NAMES.join(' | ')} |`,
    `|---|${PRESET_NAMES.map(() => '---').join('|')}|`,
    ...keys.map((k) => `| \`${k}\` | ${PRESET_NAMES.map((p) => fmt(get(preset(p), k))).join(' | ')} |`),
    '',
    'The research presets (cremi, fafb, covid, word) carry the research\'s parameters; their model files are',
    'not shipped — point `models.fullres` / `models.lowres` at your exported networks.',
    '',
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  fs.mkdirSync('docs', { recursive: true });
  fs.writeFileSync('docs/config.md', configDoc());
}
