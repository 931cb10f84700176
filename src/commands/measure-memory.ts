import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { deviceFlag } from '../cli/flags.js';
import { progressBar } from '../cli/progress.js';
import { parseDevice } from '../core/backend/create-backend.js';
import * as mm from '../core/memory/measure-memory.js';
import { formatMemoryReport, memoryReportDocument, writeMemoryOutputs, type MemoryReportDocument } from '../core/memory/memory-report.js';

export default class MeasureMemory extends BaseCommand {
  static override summary = 'Measure GPU memory and decode time of dense and CommVQ caches over contexts and batches.';
  static override description =
    'For each point (cache × context × batch): weights, cache (packed arithmetic and as allocated), codebooks, value encoders, ' +
    'activation workspace, the allocator’s peak during prefill and decode (checked against the driver), and decode time per token. ' +
    'On the CPU it reports the byte accounting only (peaks are GPU-only). --max-batch searches the largest batch that fits.';

  static override examples = [
    '<%= config.bin %> measure-memory --random-weights scripts/bench/llama-3.1-8b.config.json --cache dense,commvq --bits 1,2 --device cpu',
    '<%= config.bin %> measure-memory --random-weights llama.json --cache dense,commvq --context 32k --max-batch --device cuda --device-memory 79.65 --out runs/mem',
    '<%= config.bin %> measure-memory --model ./Llama-3.1-8B-Instruct --cache commvq --run runs/a --bits 1,2 --context 8k,128k --json',
  ];

  static override flags = {
    model: Flags.string({ description: 'Hugging Face model folder', exactlyOne: ['model', 'random-weights'] }),
    'random-weights': Flags.string({ description: 'config.json (or a folder holding one): seeded random weights, and random codebooks unless given' }),
    cache: Flags.string({ description: 'caches to measure, a comma list: dense, commvq', default: 'dense' }),
    bits: Flags.string({ description: 'CommVQ bits per value, a comma list: 1, 2', default: '1' }),
    context: Flags.string({ description: 'context lengths, a comma list (k = 1024)', default: '8k,32k,128k' }),
    batch: Flags.string({ description: 'batch sizes, a comma list', default: '1' }),
    'max-batch': Flags.boolean({ description: 'search the largest batch that fits at each cache and context' }),
    'max-batch-limit': Flags.integer({ description: 'largest batch the search tries', default: 1024, min: 1 }),
    'decode-tokens': Flags.integer({ description: 'tokens decoded after the prompt at each point', default: 16, min: 1 }),
    'key-codebook': Flags.string({ description: 'key codebook from commvq train-key (one bit width)' }),
    'value-codebook': Flags.string({ description: 'value codebook from commvq train-value (one bit width)' }),
    run: Flags.string({ description: 'run folder holding key-codebook-{em|e2e}-{b}bit.arrow and value-codebook-{b}bit.arrow for each --bits' }),
    'device-memory': Flags.string({
      description:
        'device size in GiB that points must fit. On a GPU: behave as a card of this size (the allocator is capped, the CUDA context counted; ' +
        'an H100 80GB has 79.65); default the card. On the CPU: resident bytes only; default 80',
    }),
    out: Flags.string({ description: 'folder to write memory.json, memory.svg/.png and bytes-per-token.svg/.png' }),
    device: deviceFlag,
  };

  async run(): Promise<MemoryReportDocument> {
    const { flags } = await this.parse(MeasureMemory);
    parseDevice(flags.device);
    const caches = mm.parseCacheList(flags.cache);
    const bits = mm.parseBitsList(flags.bits);
    const contexts = mm.parseContextList(flags.context);
    const batches = mm.parseBatchList(flags.batch);
    const model = mm.readMemoryModelConfig({ model: flags.model, randomWeights: flags['random-weights'] });
    mm.checkContexts(contexts, model.config, model.source);
    const settings = mm.resolveCacheSettings({
      caches, bits, randomWeights: Boolean(flags['random-weights']), keyCodebook: flags['key-codebook'], valueCodebook: flags['value-codebook'], run: flags.run,
    });
    const searches = flags['max-batch'] ? mm.gridPoints(settings, contexts, [0]).map(({ batch: _, ...target }) => target) : [];
    const plan: mm.MemoryPlan = { points: mm.gridPoints(settings, contexts, batches), ...(searches.length ? { maxBatch: { targets: searches, limit: flags['max-batch-limit'] } } : {}) };
    const deviceBytes = flags['device-memory'] === undefined ? undefined : mm.parseDeviceMemory(flags['device-memory']);
    const options: mm.ProbeOptions = {
      model: flags.model, randomWeights: flags['random-weights'], caches: settings, device: flags.device as mm.DeviceName, decodeTokens: flags['decode-tokens'],
      deviceBytes,
    };
    const probe = await mm.openMemoryProbe(options, { config: model.config });
    const bar = progressBar('measuring', this.jsonEnabled());
    let measurement: mm.MemoryMeasurement;
    try {
      measurement = await mm.measureMemory(probe, plan, (p) =>
        bar.update(p.index, p.total, `${mm.cacheLabel(p.spec)} ${mm.contextLabel(p.spec.context)} × ${p.spec.batch} ${p.phase}`),
      );
    } finally {
      bar.stop();
      probe.dispose();
    }
    const command = ['commvq', 'measure-memory', ...this.argv.map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a))].join(' ');
    const doc = memoryReportDocument(measurement, { command, model, decodeTokens: flags['decode-tokens'] });
    for (const line of formatMemoryReport(doc)) this.log(line);
    if (flags.out) {
      this.logToStderr(`wrote ${(await writeMemoryOutputs(flags.out, doc)).join(', ')}`);
      this.notePngFonts();
    }
    return doc;
  }
}
