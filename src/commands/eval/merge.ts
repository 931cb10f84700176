import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { parseNiahScorer, type NiahScorer } from '../../core/eval/niah/score.js';
import { isComparisonFolder, mergeComparison, type ComparisonMergeResult } from '../../core/eval/run/compare.js';
import { comparisonTable } from '../../core/eval/run/comparison.js';
import { mergeEvalRuns, type MergeRunsResult } from '../../core/eval/run/merge-runs.js';
import { scoreLine } from '../../core/eval/run/report.js';
import { checkOutputDir } from '../../core/options/path-option.js';

export default class EvalMerge extends BaseCommand {
  static override summary = 'Combine the shards of an eval run and score them again.';
  static override description =
    'Reads every manifest and prediction file in the given run folders (shards of one run: same model, cache and protocol), ' +
    'writes one OUT/predictions/<task>.jsonl per task in dataset order, OUT/manifest.json with every shard’s history, ' +
    'OUT/summary.json, and for NIAH the cell files and the heatmap. The same example twice must have the same prediction. ' +
    'Given one finished run folder, it rescores it. Given the folders of a comparison (eval --cache A,B,...), it merges ' +
    'each cache’s shards into OUT/<cache> and writes the whole comparison: OUT/comparison.json and, for NIAH, the heatmaps side by side.';

  static override examples = [
    '<%= config.bin %> eval merge runs/lb   # shards written into one folder',
    '<%= config.bin %> eval merge runs/lb-gpu0 runs/lb-gpu1 --out runs/lb',
    '<%= config.bin %> eval merge runs/niah --scorer exact --json',
    '<%= config.bin %> eval merge runs/niah-caches   # the shards of eval niah --cache dense,kivi:bits=2,... --shard i/n',
  ];

  static override strict = false;

  static override args = {
    dirs: Args.string({ description: 'run folders (the --out of eval runs)', required: true }),
  };

  static override flags = {
    out: Flags.string({ description: 'folder of the merged run (default: the first folder given)' }),
    scorer: Flags.string({ description: 'NIAH: rescore with rouge1, exact or contains' }),
  };

  async run(): Promise<MergeRunsResult | ComparisonMergeResult> {
    const { argv, flags } = await this.parse(EvalMerge);
    if (flags.out !== undefined) checkOutputDir('out', flags.out);
    const dirs = argv as string[];
    const scorer = flags.scorer === undefined ? undefined : parseNiahScorer(flags.scorer);
    if (isComparisonFolder(dirs[0]!)) return this.mergeComparison(dirs, flags.out, scorer);
    // the merged files are the whole run's: the lock of an unsharded run in that folder
    const result = await this.withRunLock(flags.out ?? dirs[0]!, () => mergeEvalRuns({ dirs, out: flags.out, scorer }));
    const total = Object.values(result.counts).reduce((a, n) => a + n, 0);
    this.log(scoreLine(result.summary));
    const dup = result.duplicates > 0 ? `, ${result.duplicates} identical repeats dropped` : '';
    const partial = result.summary.complete ? '' : ' — some planned examples have no prediction yet';
    this.log(`${total} predictions from ${result.predictionFiles.length} files${dup} → ${result.summaryPath}${partial}`);
    if (result.plots) this.log(`heatmap → ${result.plots.png}, ${result.plots.svg}`);
    if (result.plots) this.notePngFonts();
    for (const f of result.truncatedTails) this.logToStderr(`${f}: its last line was cut short (a crash?) and is not merged`);
    return result;
  }

  /** Each cache's shards merged, a line per cache, then the comparison table. */
  private async mergeComparison(dirs: string[], out: string | undefined, scorer: NiahScorer | undefined): Promise<ComparisonMergeResult> {
    const result = await this.withRunLock(out ?? dirs[0]!, () => mergeComparison({ dirs, out, scorer }));
    for (const m of result.merges) this.log(`${m.name}: ${scoreLine(m.summary)} → ${m.summaryPath}`);
    for (const f of result.merges.flatMap((m) => m.truncatedTails)) this.logToStderr(`${f}: its last line was cut short (a crash?) and is not merged`);
    this.log('');
    for (const line of comparisonTable(result.summary)) this.log(line);
    this.log(`comparison → ${result.comparisonPath}`);
    if (result.plots) this.log(`heatmaps → ${result.plots.png}, ${result.plots.svg}`);
    if (result.plots) this.notePngFonts();
    return result;
  }
}
