/**
 * `commvq pipeline`'s settings, checked before the first stage and under pipeline's own flags (issue 17, item 5):
 * `--tokens 1000` is refused at once, naming --tokens and the least that works, and leaves no folder; `--resume`
 * keeps the run's settings for flags left out, refuses a changed flag that a finished stage used (one line: the flag,
 * the run's value, the stage) and runs nothing.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openPipelineManifest, writePipelineManifest } from '../../src/core/pipeline/pipeline-manifest.js';
import { pipelineStages } from '../../src/core/pipeline/run-pipeline.js';
import { pipelineSettings } from '../../src/core/pipeline/settings.js';
import { tempRoot } from '../eval/run/helpers.js';
import { expectOneLineError, runCli } from '../helpers/cli.js';

const root = tempRoot('pipeline-settings');
const cpu = ['--device', 'cpu'];

/** A demo run folder whose manifest lists every stage as done, made with `--tokens 5120`. */
function finishedRun(name: string): string {
  const out = join(root, name);
  const settings = pipelineSettings({ collectTokens: 5120 });
  const m = openPipelineManifest(out, { model: join(out, 'model'), demo: true, corpus: join(out, 'corpus.jsonl'), generatedCorpus: true, settings }, { resume: false });
  for (const s of pipelineStages(settings)) m.stages[s.name] = { headline: `${s.name} done`, files: [], numbers: {}, seconds: 1, finished: '' };
  mkdirSync(out, { recursive: true });
  writePipelineManifest(out, m);
  return out;
}

describe('pipeline settings', () => {
  it('--tokens too small for train-key: refused before collect-kv, naming --tokens', () => {
    const out = join(root, 'small');
    const r = runCli(['pipeline', '--out', out, ...cpu, '--tokens', '1000']);
    expectOneLineError(r, /^commvq: --tokens 1000: too few for train-key, .* collect at least 4608 \(9 windows of 512\)$/, { silentStdout: true });
    expect(existsSync(out)).toBe(false);
  });

  it('--resume keeps the run’s --tokens when left out, and refuses a changed flag that a finished stage used', () => {
    const out = finishedRun('resumed');
    const ok = runCli(['pipeline', '--out', out, ...cpu, '--resume']);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^complete;/m);
    const refused = runCli(['pipeline', '--out', out, ...cpu, '--resume', '--tokens', '4608']);
    expectOneLineError(refused, new RegExp(`^commvq: --tokens 4608: ${out} ran collect-kv with 5120$`), { silentStdout: true });
    expect(refused.stderr).toMatch(/hint: resume with the run's value \(or without this option\), or start a new run folder/);
    const niah = runCli(['pipeline', '--out', out, ...cpu, '--resume', '--niah-lengths', '2k']);
    expectOneLineError(niah, new RegExp(`^commvq: --niah-lengths 2000: ${out} ran eval-niah with 512,1024$`));
    expect(JSON.parse(readFileSync(join(out, 'pipeline.json'), 'utf8')).settings.collectTokens).toBe(5120);
  });
});
