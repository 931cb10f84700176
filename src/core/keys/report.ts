import type { StageErrors } from './encoder.js';

/**
 * The train-key report: held-out relative error ‖k − k̂‖²/‖k‖² (summed over tokens, key units) after every residual
 * stage, per layer and per group, plus what training did. Written as JSON beside the codebook and printed as a table.
 */

export interface GroupKeyReport {
  group: number;
  /** held-out Σ‖k_g − k̂_g‖² / Σ‖k_g‖² after stages 1..R */
  relative_error: number[];
}

export interface LayerKeyReport {
  layer: number;
  train_tokens: number;
  heldout_tokens: number;
  seconds: number;
  /** held-out Σ‖k − k̂‖² / Σ‖k‖² over all groups after stages 1..R */
  relative_error: number[];
  groups: GroupKeyReport[];
  /** EM: E-steps run and best hard_mse (key units², the reference's monitor) per group and stage */
  em: { steps: number[][]; train_mse: number[][] };
  /** E2E: the EM init's held-out errors, the loss history, and E2E final / EM final */
  e2e?: { em_relative_error: number[]; valid_loss: number[]; train_loss: number[]; best_epoch: number; ratio: number };
}

export interface KeyReport {
  format: 'commvq.key-report';
  version: 1;
  codebook: string;
  method: 'em' | 'e2e';
  bits: number;
  residuals: number;
  seed: number;
  device: string;
  layers: LayerKeyReport[];
}

/** Layer-level and per-group relative errors after each stage from summed errors. */
export function relativeErrors(e: StageErrors, residuals: number, groups: number): { layer: number[]; groups: number[][] } {
  const total = e.power.reduce((a, b) => a + b, 0);
  const layer: number[] = [];
  const perGroup: number[][] = Array.from({ length: groups }, () => []);
  for (let r = 0; r < residuals; r++) {
    let s = 0;
    for (let g = 0; g < groups; g++) {
      const err = e.error[r * groups + g]!;
      s += err;
      perGroup[g]!.push(e.power[g]! > 0 ? err / e.power[g]! : 0);
    }
    layer.push(total > 0 ? s / total : 0);
  }
  return { layer, groups: perGroup };
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** The report as a readable table (one row per layer). */
export function formatKeyReport(r: KeyReport): string {
  const R = r.residuals;
  const mid = Math.ceil(R / 2);
  const head = ['layer', 'train / held-out tokens', 'stage 1', `stage ${mid}`, `stage ${R}`, 'groups at stage R (best–worst)'];
  if (r.method === 'e2e') head.push(`EM stage ${R}`, 'E2E / EM');
  const rows = r.layers.map((l) => {
    const finals = l.groups.map((g) => g.relative_error[R - 1]!);
    const row = [
      String(l.layer),
      `${l.train_tokens} / ${l.heldout_tokens}`,
      pct(l.relative_error[0]!),
      pct(l.relative_error[mid - 1]!),
      pct(l.relative_error[R - 1]!),
      `${pct(Math.min(...finals))}–${pct(Math.max(...finals))}`,
    ];
    if (l.e2e) row.push(pct(l.e2e.em_relative_error[R - 1]!), l.e2e.ratio.toFixed(3));
    return row;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [
    `key codebook (${r.method}, ${r.bits}-bit, R = ${R}, seed ${r.seed}, ${r.device}): held-out relative error ‖k − k̂‖²/‖k‖²`,
    line(head),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
}
