import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { CACHE_LIST_HELP, parseCacheList, withBits } from '../cli/cache-flag.js';
import { allowNonFiniteFlag, bitsFlag, deviceFlag } from '../cli/flags.js';
import { parseBatchList, parseBitsList, parseContextList } from '../cli/list-flags.js';
import { progressBar } from '../cli/progress.js';
import { parseDevice } from '../core/backend/create-backend.js';
import { cacheLabel, contextLabel, DEVICE_MEMORY_MARGIN, GiB, type DeviceName } from '../core/memory/measure-memory.js';
import { formatMemoryReport, type MemoryReportDocument } from '../core/memory/memory-report.js';
import { runMeasureMemory } from '../core/memory/run-measure-memory.js';
import { integerFlag, numberFlag } from '../cli/number-flag.js';
import { checkOutputDir } from '../core/options/path-option.js';

export default class MeasureMemory extends BaseCommand {
  static override summary = 'Measure GPU memory and decode time of dense and CommVQ caches over contexts and batches.';
  static override description =
    'For each point (cache × context × batch): weights, cache (packed arithmetic and as allocated), codebooks, value encoders, ' +
    'activation workspace, the allocator’s peak during prefill and decode (checked against the driver), the time of one decode step of the whole batch ' +
    'and tokens/s (batch × 1000 / ms per step), with each cache’s best tokens/s per context beside dense’s. ' +
    'A CommVQ cache runs its prompt in its prefill mode (prefill=faithful, the default, or strict; labelled commvq-1bit and ' +
    'commvq-1bit-strict). On the CPU it reports the byte accounting only (peaks are GPU-only). --max-batch searches the largest batch that fits.';

  static override examples = [
    '<%= config.bin %> measure-memory --random-weights scripts/bench/llama-3.1-8b.config.json --cache dense,commvq:bits=1,commvq:bits=2 --device cpu',
    '<%= config.bin %> measure-memory --random-weights llama.json --cache dense,commvq:bits=1 --context 32k --max-batch --device cuda --device-memory 79.65 --out runs/mem',
    '<%= config.bin %> measure-memory --random-weights llama.json --cache commvq:bits=1,commvq:bits=1,prefill=strict --context 128k --device cuda',
    '<%= config.bin %> measure-memory --model ./Llama-3.1-8B-Instruct --cache commvq:bits=1,run=runs/a,commvq:bits=2,run=runs/a --context 8k,128k --json',
  ];

  static override flags = {
    model: Flags.string({ description: 'Hugging Face model folder', exactlyOne: ['model', 'random-weights'] }),
    'random-weights': Flags.string({ description: 'config.json (or a folder holding one): seeded random weights; commvq:bits=N without codebook files then means random codebooks' }),
    cache: Flags.string({ description: CACHE_LIST_HELP, default: 'dense' }),
    bits: bitsFlag({ description: 'the bit widths of each commvq in --cache that names neither bits= nor codebook files (older spelling)', default: '1', hidden: true }),
    context: Flags.string({ description: 'context lengths, a comma list (k = 1024)', default: '8k,32k,128k' }),
    batch: Flags.string({ description: 'batch sizes, a comma list', default: '1' }),
    'max-batch': Flags.boolean({ description: 'search the largest batch that fits at each cache and context' }),
    'max-batch-limit': integerFlag({ description: 'largest batch the search tries', default: 1024, min: 1 }),
    'decode-tokens': integerFlag({ description: 'tokens decoded after the prompt at each point', default: 16, min: 1 }),
    'device-memory': numberFlag({
      above: 0,
      description:
        'device size in GiB that points must fit. On a GPU: behave as a card of this size (the allocator is capped, the CUDA context counted; ' +
        `an H100 80GB has 79.65); default the card. It is compared with the driver’s total memory (an H100 80GB’s is 79.18): up to ${DEVICE_MEMORY_MARGIN * 100}% ` +
        'above it names the card itself and is measured at the driver’s total; more is refused. On the CPU: resident bytes only; default 80',
    }),
    out: Flags.string({ description: 'folder to write memory.json, memory.svg/.png, bytes-per-token.svg/.png and (GPU) throughput.svg/.png' }),
    'allow-nonfinite': allowNonFiniteFlag,
    device: deviceFlag,
  };

  async run(): Promise<MemoryReportDocument> {
    const { flags } = await this.parse(MeasureMemory);
    parseDevice(flags.device);
    if (flags.out !== undefined) checkOutputDir('out', flags.out); // before the table, not after it
    const bar = progressBar('measuring', this.jsonEnabled());
    try {
      const measure = () => runMeasureMemory({
        model: flags.model,
        randomWeights: flags['random-weights'],
        caches: withBits(parseCacheList(flags.cache), parseBitsList(flags.bits)),
        contexts: parseContextList(flags.context),
        batches: parseBatchList(flags.batch),
        maxBatch: flags['max-batch'] ? { limit: flags['max-batch-limit'] } : undefined,
        decodeTokens: flags['decode-tokens'],
        deviceBytes: flags['device-memory'] === undefined ? undefined : flags['device-memory'] * GiB,
        device: flags.device as DeviceName,
        allowNonFinite: flags['allow-nonfinite'],
        command: ['commvq', 'measure-memory', ...this.argv.map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a))].join(' '),
        out: flags.out,
        onProgress: (p) => bar.update(p.index, p.total, `${cacheLabel(p.spec)} ${contextLabel(p.spec.context)} × ${p.spec.batch} ${p.phase}`),
      });
      const { doc, files } = flags.out === undefined ? await measure() : await this.withRunLock(flags.out, measure);
      bar.stop();
      for (const line of formatMemoryReport(doc)) this.log(line);
      if (files.length) {
        this.logToStderr(`wrote ${files.join(', ')}`);
        this.notePngFonts();
      }
      return doc;
    } finally {
      bar.stop();
    }
  }
}
