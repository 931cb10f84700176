/**
 * `commvq pipeline` end to end on the embedded demo model, on the CPU, with tiny settings through the core's options
 * (R = 1 and 2 instead of 11 and 21, one EM step, one value step, a 16-token window): every stage runs and leaves
 * its files; a run stopped after train-key continues with --resume without redoing what it finished; a finished run
 * resumed runs nothing; the 1-bit key codebook written as the 2-bit one's prefix equals what train-key trains.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { readKeyCodebook } from '../../src/core/keys/format.js';
import { trainKey } from '../../src/core/keys/train-key.js';
import { readPipelineManifest } from '../../src/core/pipeline/pipeline-manifest.js';
import { runPipeline, type PipelineStageEvent } from '../../src/core/pipeline/run-pipeline.js';
import type { PipelineSettings } from '../../src/core/pipeline/settings.js';
import type { PipelineSummary } from '../../src/core/pipeline/summary.js';
import { runCli } from '../helpers/cli.js';

const TINY: Partial<PipelineSettings> = {
  bits: [1, 2],
  collectTokens: 4608, // the EM's floor: 4096 training tokens plus an eighth held out
  collectSeqLen: 512,
  emSteps: 1,
  keyResiduals: { 1: 1, 2: 2 },
  valueSteps: 1,
  valueSeqLen: 128,
  valueEvalWindows: 1,
  agreementPromptTokens: 40,
  agreementNewTokens: 30, // 70 positions with W = 16: four flushes
  window: 16,
  niahLengths: [320],
  niahDepths: [50],
  memoryContexts: [1024],
};

const STAGES = ['collect-kv', 'make-scale', 'train-key', 'train-value-1bit', 'train-value-2bit', 'agreement', 'eval-niah', 'measure-memory'];

describe('commvq pipeline on the demo model', () => {
  const work = mkdtempSync(join(tmpdir(), 'commvq-pipeline-'));
  const out = join(work, 'run');
  const events: PipelineStageEvent[][] = [];
  const summaries: PipelineSummary[] = [];
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** One invocation; `stopAfter` aborts the run as that stage finishes (as Ctrl-C would). */
  const invoke = async (resume: boolean, stopAfter?: string) => {
    const abort = new AbortController();
    const seen: PipelineStageEvent[] = [];
    events.push(seen);
    const summary = await runPipeline({
      out, backend: new CpuBackend(), settings: TINY, resume, signal: abort.signal,
      onStage: (e) => {
        seen.push(e);
        if (e.stage === stopAfter && e.status === 'done') abort.abort();
      },
    });
    summaries.push(summary);
    return summary;
  };

  beforeAll(async () => {
    await invoke(false, 'train-key');
    await invoke(true);
    await invoke(true);
  }, 300_000);

  it('an interrupted run records the stages it finished and says it was interrupted', () => {
    const first = summaries[0]!;
    expect(first.interrupted).toBe(true);
    expect(first.complete).toBe(false);
    expect(first.stages.map((s) => s.status)).toEqual(['ran', 'ran', 'ran', 'pending', 'pending', 'pending', 'pending', 'pending']);
    expect(events[0]!.filter((e) => e.status === 'start').map((e) => e.stage)).toEqual(['collect-kv', 'make-scale', 'train-key']);
  });

  it('--resume skips the finished stages and runs the rest, in order', () => {
    const second = summaries[1]!;
    expect(events[1]!.filter((e) => e.status === 'skipped').map((e) => e.stage)).toEqual(STAGES.slice(0, 3));
    expect(events[1]!.filter((e) => e.status === 'start').map((e) => e.stage)).toEqual(STAGES.slice(3));
    expect(second.complete).toBe(true);
    expect(second.stages.map((s) => s.status)).toEqual(['resumed', 'resumed', 'resumed', 'ran', 'ran', 'ran', 'ran', 'ran']);
    expect(Object.keys(readPipelineManifest(out)!.stages)).toEqual(STAGES);
  });

  it('resuming a finished run runs nothing and reports every stage', () => {
    expect(events[2]!.every((e) => e.status === 'skipped')).toBe(true);
    expect(summaries[2]!.stages.map((s) => s.headline)).toEqual(summaries[1]!.stages.map((s) => s.headline));
  });

  it('every stage leaves its files, and summary.json says where', () => {
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as PipelineSummary;
    expect(summary.stages.map((s) => s.stage)).toEqual(STAGES);
    for (const s of summary.stages) {
      expect(s.files.length, s.stage).toBeGreaterThan(0);
      for (const f of s.files) expect(existsSync(f), f).toBe(true);
    }
    for (const name of ['model/config.json', 'corpus.jsonl', 'kv/key-L000.arrows', 'scale.arrow', 'key-codebook-em-1bit.arrow', 'key-codebook-em-2bit.arrow',
      'value-codebook-1bit.arrow', 'value-codebook-2bit.arrow', 'agreement.json', 'niah/dense/summary.json', 'niah/commvq-2bit/summary.json', 'memory/memory.json']) {
      expect(existsSync(join(out, name)), name).toBe(true);
    }
    // the NIAH stage is one comparison (eval/run/compare.ts): its table holds each cache's own summary
    const comparison = JSON.parse(readFileSync(join(out, 'niah', 'comparison.json'), 'utf8')) as { caches: { name: string; scores: { overall: number } }[] };
    expect(comparison.caches.map((c) => c.name)).toEqual(['dense', 'commvq-1bit', 'commvq-2bit']);
    for (const c of comparison.caches) expect(c.scores.overall).toBe((JSON.parse(readFileSync(join(out, 'niah', c.name, 'summary.json'), 'utf8')) as { overall: number }).overall);
    expect(existsSync(join(out, 'niah', 'comparison.png'))).toBe(true);
  });

  it('reports the numbers of each stage: tokens, key error, value loss, agreement, NIAH score, cache bytes', () => {
    const n = Object.fromEntries(summaries[1]!.stages.map((s) => [s.stage, s.numbers]));
    expect(n['collect-kv']!.tokens_per_layer).toBe(4608);
    for (const bits of [1, 2]) {
      expect(n['train-key']![`key_residuals_${bits}bit`]).toBe(bits);
      expect(n['train-key']![`key_relative_error_${bits}bit`]).toBeGreaterThan(0);
      expect(n[`train-value-${bits}bit`]!.loss).toBeGreaterThan(0);
      expect(n.agreement![`agreement_${bits}bit`]).toBeGreaterThanOrEqual(0);
      expect(n.agreement![`compressed_tokens_${bits}bit`]).toBe(64); // 69 positions held: four whole windows of 16
      expect(n['eval-niah']![`niah_commvq_${bits}bit`]).toBeGreaterThanOrEqual(0);
      expect(n['measure-memory']![`cache_bytes_commvq_${bits}bit`]).toBeLessThan(n['measure-memory']!.cache_bytes_dense as number);
    }
    // two residual stages fit the keys better than one
    expect(n['train-key']!.key_relative_error_2bit).toBeLessThan(n['train-key']!.key_relative_error_1bit as number);
    const agreement = JSON.parse(readFileSync(join(out, 'agreement.json'), 'utf8')) as { dense_ids: number[]; results: { outputIds: number[]; firstDivergence: number | null }[] };
    expect(agreement.dense_ids).toHaveLength(30);
    for (const r of agreement.results) {
      expect(r.outputIds).toHaveLength(30);
      expect(r.outputIds[0]).toBe(agreement.dense_ids[0]); // faithful prefill: the first token sees exact attention only
    }
  });

  it('the 1-bit key codebook, written as the prefix of the 2-bit one, is what train-key trains for 1 bit', async () => {
    const nested = readKeyCodebook(join(out, 'key-codebook-em-1bit.arrow'));
    const nestedReport = JSON.parse(readFileSync(join(out, 'key-codebook-em-1bit.report.json'), 'utf8')) as { derived_from: string; layers: { relative_error: number[] }[] };
    expect(nestedReport.derived_from).toBe(join(out, 'key-codebook-em-2bit.arrow'));
    const thetas = [...nested.layers.values()].map((cb) => cb.theta.slice());
    const trained = await trainKey({ runDir: out, method: 'em', bits: 1, residuals: 1, tokens: 4096, heldout: 512, seed: 42, backend: new CpuBackend(), em: { maxSteps: 1 } });
    const direct = readKeyCodebook(trained.codebook);
    expect(direct.meta).toEqual(nested.meta);
    expect([...direct.layers.values()].map((cb) => cb.theta)).toEqual(thetas);
    expect(trained.report.layers.map((l) => l.relative_error)).toEqual(nestedReport.layers.map((l) => l.relative_error));
  });

  it('refuses to overwrite a run without --resume, and to resume it with a setting a finished stage used', async () => {
    await expect(runPipeline({ out, backend: new CpuBackend(), settings: TINY })).rejects.toThrow(/holds a pipeline run already/);
    await expect(runPipeline({ out, backend: new CpuBackend(), settings: { ...TINY, valueSteps: 2 }, resume: true })).rejects.toThrow(/valueSteps 2: .* ran train-value-1bit with 1$/);
  });
});

describe('commvq pipeline: bad input', () => {
  it('a missing --model folder is one clear line and exit code 1', () => {
    const work = mkdtempSync(join(tmpdir(), 'commvq-pipeline-bad-'));
    try {
      const r = runCli(['pipeline', '--model', join(work, 'no-such-model'), '--out', join(work, 'run'), '--device', 'cpu']);
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toEqual([`commvq: ${join(work, 'no-such-model')}: model folder not found`]);
      expect(existsSync(join(work, 'run'))).toBe(false); // refused before anything was written
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('a length beyond the model\'s context is refused before any stage runs', async () => {
    const out = join(tmpdir(), `commvq-pipeline-never-${process.pid}`);
    await expect(runPipeline({ out, backend: new CpuBackend(), settings: { niahLengths: [512, 9000] } })).rejects.toThrow(/niahLengths 9000: beyond the model's context of 8192/);
    expect(existsSync(out)).toBe(false);
  });

  it('a bad --bits is refused before any work', async () => {
    await expect(runPipeline({ out: join(tmpdir(), 'never-made'), backend: new CpuBackend(), settings: { bits: [3 as 1] } })).rejects.toThrow('bits 3: CommVQ bit widths are 1 and 2');
  });
});
