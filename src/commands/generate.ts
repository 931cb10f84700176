import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { deviceFlag, dtypeFlag } from '../cli/flags.js';
import { progressBar } from '../cli/progress.js';
import { createBackend } from '../core/backend/create-backend.js';
import { CommvqError } from '../core/errors.js';
import { generateText } from '../core/generate-text.js';
import { writeDemoModel } from '../core/model/demo-model.js';
import type { DType } from '../core/tensor/dtype.js';

export default class Generate extends BaseCommand {
  static override summary = 'Continue a prompt with greedy decoding.';
  static override description =
    'Loads a Hugging Face model folder (Llama, Mistral or Qwen2; safetensors in f32, bf16 or f16, single or sharded) and ' +
    'prints the greedy continuation. --demo uses a tiny built-in model with seeded random weights (its text is noise).';

  static override examples = [
    '<%= config.bin %> generate --demo --prompt "The pass key is" --max-new-tokens 12',
    '<%= config.bin %> generate --model ./Llama-3.1-8B-Instruct --chat --prompt "What is 2+2?"',
    '<%= config.bin %> generate --model ./tiny-llama --prompt-file prompt.txt --device cpu --json',
    '<%= config.bin %> generate --model ./Llama-3.1-8B-Instruct --random-weights --prompt-file long.txt --ignore-eos --device cuda --prefill-chunk 4096',
    '<%= config.bin %> generate --model ./tiny-llama --prompt "..." --cache commvq --key-codebook runs/t/key-codebook-em-1bit.arrow --value-codebook runs/t/value-codebook-1bit.arrow',
  ];

  static override flags = {
    model: Flags.string({ description: 'Hugging Face model folder', exactlyOne: ['model', 'demo'] }),
    demo: Flags.boolean({ description: 'use the built-in tiny demo model (no download)' }),
    prompt: Flags.string({ description: 'prompt text', exactlyOne: ['prompt', 'prompt-file'] }),
    'prompt-file': Flags.string({ description: 'file holding the prompt text' }),
    'max-new-tokens': Flags.integer({ description: 'most tokens to generate', default: 64, min: 1 }),
    chat: Flags.boolean({ description: "wrap the prompt in the model's chat template as a user message" }),
    'ignore-eos': Flags.boolean({ description: 'keep going past end-of-sequence tokens' }),
    'random-weights': Flags.boolean({ description: 'ignore the checkpoint: seeded random weights from config.json, made on the device (for speed and memory at real sizes)' }),
    cache: Flags.string({ description: 'KV cache: dense (exact) or commvq (1-2 bit codes; needs both codebooks)', options: ['dense', 'commvq'], default: 'dense' }),
    'key-codebook': Flags.string({ description: 'key codebook from commvq train-key (with --cache commvq)' }),
    'value-codebook': Flags.string({ description: 'value codebook from commvq train-value (with --cache commvq)' }),
    prefill: Flags.string({ description: "the prompt's own attention with --cache commvq: faithful (exact, the reference) or strict (on codes)", options: ['faithful', 'strict'], default: 'faithful' }),
    'value-encoding': Flags.string({ description: 'value codes with --cache commvq: argmax (deterministic) or gumbel (the reference: sampled, seeded by --seed)', options: ['argmax', 'gumbel'], default: 'argmax' }),
    seed: Flags.integer({ description: 'seed of --value-encoding gumbel', default: 42 }),
    'prefill-chunk': Flags.integer({
      description: 'prompt tokens per forward (default: the whole prompt): bounds the prompt’s activations on long prompts; with --cache commvq it needs --prefill strict',
      min: 1,
    }),
    device: deviceFlag,
    dtype: dtypeFlag,
  };

  async run(): Promise<{ prompt_ids: number[]; output_ids: number[]; text: string }> {
    const { flags } = await this.parse(Generate);
    const prompt = flags.prompt ?? readPromptFile(flags['prompt-file']!);
    if (flags.cache === 'commvq' && !(flags['key-codebook'] && flags['value-codebook'])) {
      throw new CommvqError('--cache commvq needs --key-codebook and --value-codebook', 'train them with commvq train-key and commvq train-value');
    }
    if (flags['prefill-chunk'] && flags.cache === 'commvq' && flags.prefill === 'faithful') {
      throw new CommvqError('--prefill-chunk with --cache commvq needs --prefill strict', 'faithful prefill attends exactly over the whole prompt, in one forward');
    }
    const cache =
      flags.cache === 'commvq'
        ? { kind: 'commvq' as const, keyCodebook: flags['key-codebook']!, valueCodebook: flags['value-codebook']!, prefill: flags.prefill as 'faithful' | 'strict', valueEncoding: flags['value-encoding'] === 'gumbel' ? { gumbelSeed: flags.seed } : ('argmax' as const) }
        : { kind: 'dense' as const };
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
        cache,
        prefillChunk: flags['prefill-chunk'],
        dtype: flags.dtype === 'auto' ? undefined : (flags.dtype as DType),
        onLoadProgress: (done, total) => bar.update(done, total),
      });
      bar.stop();
      this.log(result.text);
      const perToken = result.outputIds.length > 1 ? result.decodeMs / (result.outputIds.length - 1) : 0;
      this.logToStderr(
        `[${result.promptIds.length} prompt tokens, ${result.outputIds.length} generated (${result.stopReason}) on ${backend.device}: ` +
          `prefill ${result.prefillMs.toFixed(0)} ms, ${perToken.toFixed(1)} ms/token; ${cache.kind} cache${cache.kind === 'commvq' ? ` (${flags.prefill} prefill)` : ''} ${result.cacheBytes} bytes]`,
      );
      return { prompt_ids: result.promptIds, output_ids: result.outputIds, text: result.text };
    } finally {
      bar.stop();
      if (demoDir) rmSync(demoDir, { recursive: true, force: true });
    }
  }
}

function readPromptFile(path: string): string {
  if (!existsSync(path)) throw new CommvqError(`${path}: prompt file not found`);
  return readFileSync(path, 'utf8');
}
