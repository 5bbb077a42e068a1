// The public surface of shared/index.ts and the generated config reference stay deliberate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as lib from '../../shared/index.ts';
import { configDoc } from '../../tools/config-doc.ts';
import { PACKAGE_ROOT } from '../../shared/config/load.ts';

const EXPECTED = [
  'ConfigError', 'DEFAULTS', 'INPUT_DTYPES', 'InferencePool', 'InputError', 'MessageError', 'ModelError', 'OutputError',
  'PACKAGE_ROOT', 'PRESET_NAMES', 'PasteAccumulator', 'SCHEMA', 'TesseraError', 'allPolicy', 'argmax', 'array3',
  'assembleCanvas', 'box', 'boxAt', 'boxOfShape', 'boxToString', 'center', 'checkModels', 'chunkId', 'contains',
  'containsPoint', 'copyRegion', 'createArray', 'createGroup', 'createLogger', 'crop', 'downsampleMax', 'downsampleMean',
  'equals', 'evaluate', 'evaluateOutput', 'gaussianMap', 'grow', 'growTo', 'intersect',
  'intersectionOverSmaller', 'iou', 'isEmpty', 'isPermanent', 'isTesseraError', 'label', 'loadConfig', 'loadModelCard',
  'lowShape', 'matchScore', 'multiscalesAttrs', 'normalize', 'openArray', 'openImage', 'ownedBy', 'pack', 'parseBox',
  'pickLevel', 'planGrid', 'policyByName', 'preset', 'readRegion',
  'renderImage', 'renderLabels', 'resizeLinear', 'resizeNearest', 'runEmbedded', 'scaleFactor', 'scorePolicy',
  'shapeOf', 'silentLogger', 'slidingWindow', 'snapOut', 'spatialPolicy', 'stage1', 'stage2', 'synthScene', 'tileSteps',
  'toFull', 'toLow', 'translate', 'union', 'unionVolume', 'unpackCanvas', 'vec3', 'volumeOf', 'writeRegion', 'writeSynth',
  // The chunk-task run.
  'Scheduler', 'chunkBox', 'chunkRange', 'drive', 'extractFragments', 'indexId', 'labelObjects', 'mergeFragments',
  'runTask', 'taskGraph', 'taskId',
  // Sessions and the NATS services.
  'attachRun', 'finishSession', 'freeAfter', 'guard', 'openSession', 'reportProgress', 'TaskError', 'roleOf', 'RUNS_BUCKET', 'checkRunId',
  'runNames', 'encode', 'MAX_BATCH', 'parseResult', 'parseRunRecord', 'parseTask', 'busOptions', 'connectBus', 'describeBus',
  'ensureRunStreams', 'freshResultsConsumer', 'isNotFound', 'removeRunStreams', 'readRun', 'runsBucket', 'waitForRun',
  'writeRun', 'readRunJson', 'oneLine', 'watchRun', 'nextScope', 'staleness', 'LEASES_BUCKET', 'leasesBucket', 'takeLease',
  'backoff', 'retrying', 'sleep', 'LeaseError',
  // virtual: inputs (a path is resolved, a virtual: string kept).
  'isVirtual', 'isRemote', 'resolveInput',
];

test('shared/index.ts exports exactly the documented surface', () => {
  assert.deepEqual(Object.keys(lib).sort(), [...EXPECTED].sort());
});

test('docs/config.md is generated from the current schema and presets', () => {
  const onDisk = fs.readFileSync(path.join(PACKAGE_ROOT, 'docs', 'config.md'), 'utf8');
  assert.equal(onDisk, configDoc(), 'run: node --import tsx tools/config-doc.ts');
});
