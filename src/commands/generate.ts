import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { parseCacheFlag } from '../cli/cache-flag.js';
import { allowNonFiniteFlag, cacheFlag, deviceFlag, dtypeFlag, randomWeightsFlag } from '../cli/flags.js';
import { progressBar } from '../cli/progress.js';
import { createBackend } from '../core/backend/create-backend.js';
import { generateText } from '../core/generate-text.js';
import { writeDemoModel } from '../core/model/demo-model.js';
import type { DType } from '../core/tensor/dtype.js';
import { integerFlag } from '../cli/number-flag.js';
import { checkInputFile } from '../core/options/path-option.js';

export default class Generate extends BaseCommand {
  static override summary = 'Continue a prompt with greedy decoding.';
  static override description =
    'Loads a Hugging Face model folder (Llama, Mistral or Qwen2; safetensors in f32, bf16 or f16, single or sharded) and ' +
    'prints the greedy continuation. --demo uses a tiny built-in model with seeded random weights (its text is noise).';

  static override examples = [
    '<%= config.bin %> generate --demo --prompt "The pass key is" --max-new-tokens 12',
    '<%= config.bin %> generate --model ./Llama-3.1-8B-Instruct --chat --prompt "What is 2+2?"',
    '<%= config.bin %> generate --model ./tiny-llama --prompt-file prompt.txt --device cpu --json',
    '<%= config.bin %> generate --model ./Llama-3.1-8B-Instruct --random-weights --prompt-file long.txt --ignore-eos --device cuda --cache dense:chunk=4096',
    '<%= config.bin %> generate --model ./Llama-3.1-8B-Instruct --random-weights --prompt-file long.txt --ignore-eos --device cuda --cache commvq:bits=1,prefill=strict,chunk=4096',
    '<%= config.bin %> generate --model ./tiny-llama --prompt "..." --cache commvq:bits=1,run=runs/t',
    '<%= config.bin %> generate --model ./Llama-3.1-8B-Instruct --prompt-file long.txt --cache commvq:key=runs/a/key-codebook-em-1bit.arrow,value=runs/a/value-codebook-1bit.arrow,prefill=strict,chunk=4096',
  ];

  static override flags = {
    model: Flags.string({ description: 'Hugging Face model folder', exactlyOne: ['model', 'demo'] }),
    demo: Flags.boolean({ description: 'use the built-in tiny demo model (no download)' }),
    prompt: Flags.string({ description: 'prompt text', exactlyOne: ['prompt', 'prompt-file'] }),
    'prompt-file': Flags.string({ description: 'file holding the prompt text' }),
    'max-new-tokens': integerFlag({ description: 'most tokens to generate', default: 64, min: 1 }),
    chat: Flags.boolean({ description: "wrap the prompt in the model's chat template as a user message" }),
    'ignore-eos': Flags.boolean({ description: 'keep going past end-of-sequence tokens' }),
    'random-weights': randomWeightsFlag,
    'allow-nonfinite': allowNonFiniteFlag,
    cache: cacheFlag,
    device: deviceFlag,
    dtype: dtypeFlag,
  };

  async run(): Promise<{ prompt_ids: number[]; output_ids: number[]; text: string }> {
    const { flags } = await this.parse(Generate);
    const cache = parseCacheFlag(flags.cache);
    const prompt = flags.prompt ?? readPromptFile(flags['prompt-file']!);
    const demoDir = flags.demo ? mkdtempSync(join(tmpdir(), 'commvq-demo-')) : undefined;
    if (demoDir) writeDemoModel(demoDir);
    const bar = progressBar('loading weights', this.jsonEnabled());
    try {
      const backend = await createBackend(flags.device);
      const result = generateText({
        modelDir: demoDir ?? flags.model!,
        prompt,
        backend,
        maxNewTokens: flags['max-new-tokens'],
        chat: flags.chat,
        ignoreEos: flags['ignore-eos'],
        randomWeights: flags['random-weights'],
        allowNonFinite: flags['allow-nonfinite'],
        cache,
        dtype: flags.dtype === 'auto' ? undefined : (flags.dtype as DType),
        onLoadProgress: (done, total) => bar.update(done, total),
      });
      bar.stop();
      this.log(result.text);
      const perToken = result.outputIds.length > 1 ? result.decodeMs / (result.outputIds.length - 1) : 0;
      const c = result.cache;
      this.logToStderr(
        `[${result.promptIds.length} prompt tokens, ${result.outputIds.length} generated (${result.stopReason}) on ${backend.device}: ` +
          `prefill ${result.prefillMs.toFixed(0)} ms, ${perToken.toFixed(1)} ms/token; ${c.mode} cache${c.mode === 'commvq' ? ` (${c.prefill} prefill${c.random_codebooks ? ', random codebooks' : ''}${c.compress ? `, compress=${c.compress}` : ''})` : ''} ${result.cacheBytes} bytes]`,
      );
      return { prompt_ids: result.promptIds, output_ids: result.outputIds, text: result.text };
    } finally {
      bar.stop();
      if (demoDir) rmSync(demoDir, { recursive: true, force: true });
    }
  }
}

function readPromptFile(path: string): string {
  checkInputFile('promptFile', path);
  return readFileSync(path, 'utf8');
}
