/**
 * `commvq eval niah`: needle in a haystack (§8.3 with the fixes of §10.1 item 6). For each (length L, depth d)
 * cell: the first L − 200 − |needle| haystack tokens with the needle moved back to a sentence end (found with the
 * model's own tokenizer), the prompt around those ids with exactly one BOS, greedy decoding of up to 40 tokens
 * stopping at EOS or a newline, the score (ROUGE-1 F × 10, or exact recall × 10). Writes a JSON file per cell (named
 * by model and cache), the summary, and the depth × length heatmap as SVG and PNG.
 *
 *   const r = await runNiah({ modelDir, out: 'runs/niah-dense', backend, lengths: parseNiahLengths('1k..32k') });
 *   r.plots?.png   // runs/niah-dense/niah.png
 */
import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { OptionError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic-write.js';
import { fileHash } from '../../io/file-hash.js';
import { writeVegaLite } from '../../plot/heatmap-render.js';
import { EVAL_DEPARTURES } from '../departures.js';
import { newlineTokenId } from '../longbench/prompt.js';
import type { PredictionRecord } from '../predictions.js';
import { niahDepths, niahGrid, parseNiahLengths, type NiahCell } from '../niah/grid.js';
import { buildHaystack, haystackFiles, type HaystackSource } from '../niah/haystack.js';
import { niahHeatmap, niahHeatmapSpec, type NiahHeatmap } from '../niah/heatmap.js';
import { detectPeriodIds, insertNeedles, NIAH_CONTEXT_BUFFER, NIAH_NEEDLE, NIAH_QUESTION } from '../niah/needle.js';
import { NeedleGenerator, RULER_NEEDLE, RULER_QUESTION } from '../niah/needle-generator.js';
import { niahGeneration, niahPromptIds, niahTemplateName, type NiahTemplate } from '../niah/prompt.js';
import { niahRecordExpected, niahResponse, niahRunKey, niahScoreExpected, type NiahCellResult, type NiahScorer } from '../niah/score.js';
import { DEFAULT_SEED } from '../../model/seeded-random.js';
import { outputTimes } from './session.js';
import { WHOLE } from '../shard.js';
import { runPaths, type RunPaths } from './layout.js';
import type { EvalTask } from './eval-run.js';
import type { EvalManifest } from './manifest.js';
import { runBenchmark, type EvalRunOptions, type EvalRunResult } from './run-benchmark.js';
import { summaryBase, type SummaryBase } from './summary.js';

/** The default grid: 1k, 2k, 4k, … 128k tokens (those that fit the model), 10 depths. */
export const NIAH_DEFAULT_LENGTHS = '1k..128k';

export interface NiahRunOptions extends EvalRunOptions {
  /** context lengths in tokens; default NIAH_DEFAULT_LENGTHS cut to the model's context */
  lengths?: readonly number[];
  /** depth percents; default niahDepths(10) */
  depths?: readonly number[];
  /** default: the generated filler text */
  haystack?: HaystackSource;
  /** the needle sentence; `{digits:N}`, `{words:N}` and `{key}` make it vary per cell (needle-generator.ts) */
  needle?: string;
  question?: string;
  scorer?: NiahScorer;
  /** default auto: the chat template if the tokenizer has one, else plain */
  template?: NiahTemplate;
  /** of the varied needles (default 42) */
  seed?: number;
  /** RULER's variants: needles of distinct keys, values per key, keys asked (default 1 each) */
  keys?: number;
  values?: number;
  queries?: number;
}

export interface NiahSummary extends SummaryBase {
  scorer: NiahScorer;
  /** mean score over the cells present (0–10), null when none */
  overall: number | null;
  lengths: number[];
  depths: number[];
  /** [depth row][length column] mean score, null where no cell ran */
  matrix: (number | null)[][];
  /** context length → mean score over its depths */
  by_length: Record<string, number>;
}

/**
 * The run's needle generator: the needle and question given, or the defaults (the reference's needle, RULER's when
 * asking for several keys, values or queries). A bad needle is an OptionError: commands call this before the run
 * folder is made, so that nothing is written for it.
 *
 *   niahNeedles({ needle: 'The pass key is {digits:7}.', question: 'What is the pass key?' })
 */
export function niahNeedles(o: Pick<NiahRunOptions, 'needle' | 'question' | 'seed' | 'keys' | 'values' | 'queries'>): NeedleGenerator {
  const ruler = (o.keys ?? 1) > 1 || (o.values ?? 1) > 1 || (o.queries ?? 1) > 1;
  const needle = o.needle ?? (ruler ? RULER_NEEDLE : NIAH_NEEDLE);
  const question = o.question ?? (ruler && o.needle === undefined ? RULER_QUESTION : NIAH_QUESTION);
  if (needle.trim() === '') throw new OptionError('needle', undefined, 'the needle is empty');
  return NeedleGenerator.create({ needle, question, seed: o.seed ?? DEFAULT_SEED, keys: o.keys, values: o.values, queries: o.queries });
}

export async function runNiah(o: NiahRunOptions): Promise<EvalRunResult<NiahSummary>> {
  const depths = [...(o.depths ?? niahDepths(10))];
  const scorer = o.scorer ?? 'rouge1';
  const haystack = o.haystack ?? { kind: 'filler' };
  const template = o.template ?? 'auto';
  const needles = niahNeedles(o);
  const { needle, question } = needles.options;
  const paths = runPaths(o.out, o.shard ?? WHOLE);
  return runBenchmark(o, {
    benchmark: 'niah',
    dataDir: haystack.kind === 'folder' ? haystack.dir : null,
    summarize: niahSummary,
    after: (run, summary) => writeNiahHeatmap(run.manifest, summary, paths),
    prepare: (session) => {
      const tok = session.loaded.tokenizer;
      const sample = needles.cell('len_0_depth_0'); // varied needles differ only in their values: this one sizes the checks
      const sampleTokens = sample.needles.reduce((a, x) => a + tok.encode(x.text, { addSpecialTokens: false }).length, 0);
      const lengths = niahLengths(o.lengths, session.contextLength, sampleTokens);
      const hay = buildHaystack(tok, haystack, lengths[lengths.length - 1]!);
      const periods = detectPeriodIds(tok, hay.ids);
      const generation = niahGeneration({ tokenizerEosTokenId: session.tokenizerEosTokenId, newlineTokenId: newlineTokenId(tok) }, { severalValues: sample.answers.length > 1 });
      const cache = session.caches.description.label;
      const cellsDir = paths.cellsDir(niahRunKey(session.identity.name, cache));
      const cells = niahGrid(lengths, depths).map((c, index) => ({ ...c, index }));
      const task: EvalTask<NiahCell & { index: number }> = {
        name: 'niah',
        examples: () => cells,
        predict: (cell) => {
          const drawn = needles.cell(cell.id);
          const placedNeedles = drawn.needles.map((x) => ({ ids: tok.encode(x.text, { addSpecialTokens: false }), depth: x.depth ?? cell.depthPercent }));
          const placed = insertNeedles({ haystack: hay.ids, needles: placedNeedles, contextLength: cell.contextLength, periodIds: periods });
          const prompt = niahPromptIds(tok, placed.ids, { question: drawn.question, template });
          const out = session.generate(prompt.ids, generation);
          const record: PredictionRecord = {
            id: cell.id,
            index: cell.index,
            task: 'niah',
            pred: niahResponse(out.text),
            context_length: cell.contextLength,
            depth_percent: cell.depthPercent,
            insertion_point: placed.insertionPoint,
            target_point: placed.targetPoint,
            prompt_tokens: prompt.ids.length,
            new_tokens: out.outputIds.length,
            stop: out.stopReason,
            // varied needles: what this cell asked, so scoring and merges need nothing else
            ...(needles.varies ? { question: drawn.question, asked: drawn.asked, answers: drawn.answers } : {}),
          };
          writeNiahCell(cellsDir, niahCellResult(record, { model: session.identity.name, cache, needle, scorer }));
          return { record, promptTokens: prompt.ids.length, newTokens: out.outputIds.length, times: outputTimes(out) };
        },
      };
      return {
        tasks: [task],
        protocol: {
          haystack: haystackIdentity(haystack),
          needle,
          question,
          buffer: NIAH_CONTEXT_BUFFER,
          template: template === 'auto' ? (tok.hasChatTemplate ? 'chat' : 'plain') : niahTemplateName(template),
          ...(needles.varies ? { needle_generator: needles.describe() } : {}),
          max_new_tokens: generation.maxNewTokens,
          eos_token_ids: generation.eosTokenIds,
        },
        settings: { scorer, lengths, depths, haystack: hay.description, period_ids: [...periods].sort((a, b) => a - b), special_tokens_removed: hay.specialTokensRemoved },
        planSettings: ['lengths', 'depths'], // the grid: its cells are the examples
        departures: EVAL_DEPARTURES.niah,
      };
    },
  });
}

/** The lengths to run: each must fit the model and leave room for the buffer and the needle. */
function niahLengths(asked: readonly number[] | undefined, context: number, needleTokens: number): number[] {
  const lengths = asked ? [...asked] : parseNiahLengths(NIAH_DEFAULT_LENGTHS).filter((l) => l <= context);
  if (lengths.length === 0) throw new OptionError('lengths', undefined, `the model's context of ${context} tokens is shorter than every default NIAH length`, 'give lengths that fit');
  for (const l of lengths) {
    if (l > context) throw new OptionError('lengths', String(l), `longer than the model's context of ${context} tokens (max_position_embeddings)`);
    if (l - NIAH_CONTEXT_BUFFER - needleTokens < 1) {
      throw new OptionError('lengths', String(l), `too short for the ${NIAH_CONTEXT_BUFFER}-token buffer and the ${needleTokens} needle tokens`);
    }
  }
  return lengths;
}

/** What identifies a haystack: the filler's seed, or the names and content hashes of the files. */
function haystackIdentity(source: HaystackSource): unknown {
  if (source.kind === 'filler') return { kind: 'filler', seed: source.seed ?? 1 };
  return { kind: 'folder', files: haystackFiles(source.dir).map((f) => ({ name: basename(f), hash: fileHash(f) })) };
}

export function niahCellResult(r: PredictionRecord, m: { model: string; cache: string; needle: string; scorer: NiahScorer }): NiahCellResult {
  return {
    id: r.id,
    model: m.model,
    cache: m.cache,
    context_length: r.context_length as number,
    depth_percent: r.depth_percent as number,
    version: 1,
    needle: Array.isArray(r.asked) ? r.asked.join(' ') : m.needle,
    model_response: r.pred,
    score: niahScoreExpected(r.pred, m.scorer, niahRecordExpected(r, m.needle)),
    scorer: m.scorer,
    insertion_point: r.insertion_point as number,
    target_point: r.target_point as number,
    prompt_tokens: r.prompt_tokens as number,
  };
}

export function writeNiahCell(dir: string, cell: NiahCellResult): void {
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, `${cell.id}.json`), [Buffer.from(JSON.stringify(cell, null, 1) + '\n')]);
}

/** The scorer and needle a NIAH run was made with (merge may rescore with another scorer). */
export function niahScoring(manifest: EvalManifest): { scorer: NiahScorer; needle: string } {
  return { scorer: (manifest.settings.scorer as NiahScorer | undefined) ?? 'rouge1', needle: String(manifest.identity.protocol.needle ?? NIAH_NEEDLE) };
}

export function niahSummary(manifest: EvalManifest, records: readonly PredictionRecord[], planned: Record<string, number>): NiahSummary {
  const { scorer, needle } = niahScoring(manifest);
  const results = records.map((r) => ({ context_length: r.context_length as number, depth_percent: r.depth_percent as number, score: niahScoreExpected(r.pred, scorer, niahRecordExpected(r, needle)) }));
  const grid = niahHeatmap(results);
  const byLength: Record<string, number> = {};
  for (const l of grid.lengths) {
    const s = grid.cells.filter((c) => c.contextLength === l);
    byLength[String(l)] = s.reduce((a, c) => a + c.score, 0) / s.length;
  }
  return { ...summaryBase(manifest, records, planned), scorer, overall: grid.overall, lengths: grid.lengths, depths: grid.depths, matrix: grid.matrix, by_length: byLength };
}

/** Draws the summary's grid; nothing when no cell has run. */
export async function writeNiahHeatmap(manifest: EvalManifest, summary: NiahSummary, paths: RunPaths): Promise<{ svg: string; png: string } | undefined> {
  if (summary.lengths.length === 0) return undefined;
  const grid = niahSummaryGrid(summary);
  const model = `${manifest.identity.model.name}${manifest.identity.model.random_weights ? ' (random weights)' : ''}`;
  const title = `${model} · ${manifest.identity.cache.label} · NIAH ${summary.scorer}, mean ${summary.overall?.toFixed(2)}`;
  const spec = niahHeatmapSpec(grid, { title });
  // a legend as tall as the plot and a readable title (the spec leaves both at Vega's small defaults)
  const config = { ...(spec.config as Record<string, unknown>), legend: { gradientLength: 560, gradientThickness: 18, labelFontSize: 12, titleFontSize: 13 }, title: { fontSize: 17 } };
  return writeVegaLite({ ...spec, config }, paths.plotBase);
}

/** The heatmap grid a summary holds (its matrix back into cells), for drawing it alone or beside others. */
export function niahSummaryGrid(summary: Pick<NiahSummary, 'lengths' | 'depths' | 'matrix' | 'overall'>): NiahHeatmap {
  const cells = summary.depths.flatMap((d, i) =>
    summary.lengths.flatMap((l, j) => (summary.matrix[i]![j] === null ? [] : [{ contextLength: l, depthPercent: d, score: summary.matrix[i]![j]!, n: 1 }])),
  );
  return { lengths: summary.lengths, depths: summary.depths, cells, matrix: summary.matrix, overall: summary.overall };
}
