/**
 * What `--resume` may change (issue 17, item 5): a setting no finished stage used takes its new value; one a
 * finished stage used is refused, naming the setting, the run's value and the stage; a setting left out keeps the
 * run's value; with the generated corpus, a change that would have generated another corpus is refused once
 * collect-kv has read it. Also: a collect-kv budget too small for train-key is refused by the settings, before any stage.
 */
import { describe, expect, it } from 'vitest';
import { OptionError } from '../../src/core/errors.js';
import { openPipelineManifest, writePipelineManifest, type PipelineIdentity } from '../../src/core/pipeline/pipeline-manifest.js';
import { checkResumeSettings } from '../../src/core/pipeline/resume-settings.js';
import { pipelineSettings, PIPELINE_DEFAULTS, type PipelineSettings } from '../../src/core/pipeline/settings.js';
import type { StageName } from '../../src/core/pipeline/stage.js';
import { tempRoot } from '../eval/run/helpers.js';

const had = pipelineSettings();
const refusal = (want: Partial<PipelineSettings>, done: StageName[], corpusSize?: (s: PipelineSettings) => number) => {
  try {
    checkResumeSettings('runs/p', had, { ...had, ...want }, done, corpusSize);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(OptionError);
    return (err as OptionError).message;
  }
};

describe('resume settings', () => {
  it('refuses a change a finished stage used, naming the setting, the run’s value and the stage', () => {
    expect(refusal({ collectTokens: 5120 }, ['collect-kv', 'make-scale'])).toBe('collectTokens 5120: runs/p ran collect-kv with 4608');
    expect(refusal({ valueSteps: 32 }, ['collect-kv', 'make-scale', 'train-key', 'train-value-1bit'])).toBe('valueSteps 32: runs/p ran train-value-1bit with 16');
    expect(refusal({ niahLengths: [2000] }, ['collect-kv', 'make-scale', 'train-key', 'train-value-1bit', 'train-value-2bit', 'agreement', 'eval-niah'])).toBe(
      'niahLengths 2000: runs/p ran eval-niah with 512,1024',
    );
  });

  it('takes a change only stages still to run use', () => {
    expect(refusal({ valueSteps: 32, niahLengths: [2000], memoryContexts: [4096] }, ['collect-kv', 'make-scale', 'train-key'])).toBeUndefined();
    expect(refusal({ seed: 1 }, [])).toBeUndefined();
  });

  it('with the generated corpus, refuses a change that would have generated another one after collect-kv read it', () => {
    const size = (s: PipelineSettings) => Math.max(s.collectTokens, s.valueSteps * s.valueSeqLen);
    expect(refusal({ valueSteps: 17 }, ['collect-kv'], size)).toBeUndefined(); // 17 × 256 < 4608: the same corpus
    expect(refusal({ valueSteps: 100, niahLengths: [2000] }, ['collect-kv'], size)).toBe('valueSteps 100: runs/p generated its corpus for 16, and collect-kv has read it');
  });

  it('openPipelineManifest: a resume records the new settings; left-out settings keep the run’s (pipelineSettings on its base)', () => {
    const root = tempRoot('resume-settings');
    const identity: PipelineIdentity = { model: 'm', demo: false, corpus: 'c', generatedCorpus: false, settings: pipelineSettings({ collectTokens: 5120 }) };
    const m = openPipelineManifest(root, identity, { resume: false });
    m.stages['collect-kv'] = { headline: '', files: [], numbers: {}, seconds: 1, finished: '' };
    writePipelineManifest(root, m);
    const resumed = pipelineSettings({ valueSteps: 40, collectTokens: undefined }, m.settings);
    expect(resumed).toEqual({ ...PIPELINE_DEFAULTS, collectTokens: 5120, valueSteps: 40 });
    expect(openPipelineManifest(root, { ...identity, settings: resumed }, { resume: true }).settings).toEqual(resumed);
    expect(() => openPipelineManifest(root, { ...identity, settings: pipelineSettings() }, { resume: true })).toThrow('collectTokens 4608: ' + root + ' ran collect-kv with 5120');
  });

  it('a collect-kv budget too small for train-key’s EM is refused by the settings, with the least that works', () => {
    expect(() => pipelineSettings({ collectTokens: 1000 })).toThrow(/^collectTokens 1000: too few for train-key.*collect at least 4608 \(9 windows of 512\)$/);
    expect(() => pipelineSettings({ collectTokens: 4096 })).toThrow(/collect at least 4608/);
    expect(pipelineSettings({ collectTokens: 4097 }).collectTokens).toBe(4097); // 9 windows of 512
    expect(() => pipelineSettings({ collectTokens: 4096, collectSeqLen: 4096 })).toThrow(/collect at least 8192 \(2 windows of 4096\)/);
    expect(() => pipelineSettings({ keyTokens: 100 })).toThrow(/^keyTokens 100: /);
  });
});
