import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { allowNonFiniteFlag, bitsFlag, deviceFlag, seedFlag } from '../cli/flags.js';
import { parseBitsList, parseContextList } from '../cli/list-flags.js';
import { onInterrupt } from '../cli/interrupt.js';
import { progressBar, type ProgressBar } from '../cli/progress.js';
import { createBackend } from '../core/backend/create-backend.js';
import { runPipeline } from '../core/pipeline/run-pipeline.js';
import { parseNiahLengths } from '../core/eval/niah/grid.js';
import { PIPELINE_DEFAULTS as D } from '../core/pipeline/settings.js';
import { formatPipelineSummary, type PipelineSummary } from '../core/pipeline/summary.js';
import { integerFlag } from '../cli/number-flag.js';
import { checkOutputDir } from '../core/options/path-option.js';

export default class Pipeline extends BaseCommand {
  static override summary = 'Run every stage in order: collect-kv → make-scale → train-key → train-value → agreement → eval niah → measure-memory.';
  static override description =
    'The main job: on the embedded demo model (default) or --model DIR, and a corpus generated into OUT (or --data), runs each ' +
    'stage through the same core function as its command, on the GPU when one is found, else the CPU. Key codebooks are full size ' +
    '(R = 11 or 21); trainers run briefly by default (a few minutes on two CPU cores); the flags raise them. Every finished stage is ' +
    'recorded in OUT/pipeline.json (--resume skips those); the run ends with a summary of what each stage produced and where, also ' +
    'written to OUT/summary.json.';

  static override examples = [
    '<%= config.bin %> pipeline',
    '<%= config.bin %> pipeline --out runs/demo --bits 1 --device cpu --json',
    '<%= config.bin %> pipeline --out runs/demo --resume',
    '<%= config.bin %> pipeline --model ./tiny-llama --data corpus.jsonl --out runs/tiny --em-steps 20 --value-steps 200 --device cuda',
    '<%= config.bin %> pipeline --out runs/demo --niah-lengths 1k..4k --memory-context 4k,8k',
  ];

  /** core options (PipelineSettings, runPipeline's) whose flag is not their kebab-case name */
  static override optionFlags = {
    collectTokens: '--tokens', agreementNewTokens: '--new-tokens', memoryContexts: '--memory-context', context: '--memory-context', lengths: '--niah-lengths',
  };

  static override flags = {
    demo: Flags.boolean({ description: 'use the built-in tiny demo model (the default; written to OUT/model)', exclusive: ['model'] }),
    model: Flags.string({ description: 'Hugging Face model folder' }),
    out: Flags.string({ description: 'run folder (default runs/pipeline-YYYY-MM-DD)' }),
    bits: bitsFlag({ description: 'bit widths to train and evaluate', default: '1,2' }),
    data: Flags.string({ description: 'corpus as collect-kv reads it (default: filler text generated into OUT/corpus.jsonl)', aliases: ['corpus'] }),
    resume: Flags.boolean({ description: 'continue OUT, skipping the stages OUT/pipeline.json lists as done; flags left out keep the run\'s values, and a flag may change only what no finished stage used' }),
    tokens: integerFlag({ description: 'collect-kv tokens per layer (the EM needs 4096 for training plus an eighth held out)', default: D.collectTokens, min: 1 }),
    'em-steps': integerFlag({ description: 'train-key: most EM iterations per stage (the reference: 100)', default: D.emSteps, min: 1 }),
    'value-steps': integerFlag({ description: 'train-value: steps per bit width', default: D.valueSteps, min: 1 }),
    'new-tokens': integerFlag({ description: 'agreement: greedy tokens after the prompt (dense against CommVQ)', default: D.agreementNewTokens, min: 1 }),
    'niah-lengths': Flags.string({ description: 'eval niah context lengths, as eval niah --lengths takes them (k = 1000)', default: D.niahLengths.join(',') }),
    'memory-context': Flags.string({ description: 'measure-memory context lengths, as measure-memory --context takes them (k = 1024)', default: D.memoryContexts.join(',') }),
    seed: seedFlag('the packing shuffles, the EM draws and the value initialisation'),
    'allow-nonfinite': allowNonFiniteFlag,
    device: deviceFlag,
  };

  async run(): Promise<PipelineSummary> {
    const { flags, metadata } = await this.parse(Pipeline);
    // --resume keeps the run's own settings: a flag left at its default is not a change (resume-settings.ts)
    const given = <T>(flag: string, value: () => T): T | undefined => (flags.resume && metadata.flags[flag]?.setFromDefault ? undefined : value());
    if (flags.out !== undefined) checkOutputDir('out', flags.out);
    const quiet = this.jsonEnabled();
    const interrupt = onInterrupt();
    let bar: ProgressBar | undefined;
    try {
      const out = flags.out ?? `runs/pipeline-${new Date().toISOString().slice(0, 10)}`;
      const summary = await this.withRunLock(out, async () => runPipeline({
        out,
        modelDir: flags.model,
        corpus: flags.data,
        backend: await createBackend(flags.device),
        resume: flags.resume,
        allowNonFinite: flags['allow-nonfinite'],
        signal: interrupt.signal,
        settings: {
          bits: given('bits', () => parseBitsList(flags.bits)),
          collectTokens: given('tokens', () => flags.tokens),
          emSteps: given('em-steps', () => flags['em-steps']),
          valueSteps: given('value-steps', () => flags['value-steps']),
          agreementNewTokens: given('new-tokens', () => flags['new-tokens']),
          niahLengths: given('niah-lengths', () => parseNiahLengths(flags['niah-lengths'])),
          memoryContexts: given('memory-context', () => parseContextList(flags['memory-context'], 'memoryContexts')),
          seed: given('seed', () => flags.seed),
        },
        onStage: (e) => {
          bar?.stop();
          bar = e.status === 'start' ? progressBar(`[${e.index}/${e.stages}] ${e.label}`, quiet) : undefined;
          if (quiet || e.status === 'start') return;
          const what = e.status === 'skipped' ? 'done earlier' : e.status === 'interrupted' ? 'interrupted' : `${e.seconds!.toFixed(1)} s`;
          this.logToStderr(`[${e.index}/${e.stages}] ${e.stage}: ${what}${e.headline ? ` — ${e.headline}` : ''}`);
        },
        onProgress: (p) => bar?.update(p.done, p.total, p.detail),
      }));
      bar?.stop();
      for (const line of formatPipelineSummary(summary)) this.log(line);
      this.notePngFonts();
      if (summary.interrupted) process.exitCode = 130;
      return summary;
    } finally {
      bar?.stop();
      interrupt.dispose();
    }
  }
}
