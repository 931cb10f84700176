/**
 * Turns the two sides of the Llama benchmark (ours: `llama-bench.ts`, PyTorch: `scripts/bench/torch_llama.py`) into
 * one table of ratios against the targets. Pure: data in, markdown out.
 */
export interface EngineResult {
  gpu: string;
  copy_bytes_per_s: number;
  decode_ms_per_token: Record<string, number>;
  prefill_tokens_per_s: Record<string, number>;
}

export interface OurResult extends EngineResult {
  /** bytes one decode step must read at each context: weights (all but the embedding table) + the KV cache */
  decode_bytes_per_token: Record<string, number>;
}

export interface TorchResult extends EngineResult {
  torch: string;
  transformers: string;
}

/** Decode: ≤ 0.5× PyTorch's time per token and ≥ 60% of the bandwidth limit. Prefill: ≤ 1.5× PyTorch's time. */
export const TARGETS = { decodeTimeRatio: 0.5, bandwidthFraction: 0.6, prefillTimeRatio: 1.5 };

const k = (n: string) => (Number(n) >= 1024 ? `${Number(n) / 1024}K` : n);
const pass = (ok: boolean) => (ok ? 'yes' : '**no**');

export function llamaReport(ours: OurResult, torch: TorchResult): string {
  const lines = [
    `GPU: ${ours.gpu}; PyTorch ${torch.torch}, transformers ${torch.transformers} (LlamaForCausalLM, bf16, sdpa).`,
    `Measured copy bandwidth (bytes read + written per second): ours ${(ours.copy_bytes_per_s / 1e12).toFixed(2)} TB/s, PyTorch ${(torch.copy_bytes_per_s / 1e12).toFixed(2)} TB/s.`,
    '',
    '| decode at context | ours ms/token | PyTorch ms/token | time ratio (target ≤ 0.5) | bandwidth limit ms | % of limit (target ≥ 60%) | targets met |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const ctx of Object.keys(ours.decode_ms_per_token)) {
    const o = ours.decode_ms_per_token[ctx]!;
    const t = torch.decode_ms_per_token[ctx];
    const limit = (ours.decode_bytes_per_token[ctx]! / ours.copy_bytes_per_s) * 1e3;
    const ratio = t ? o / t : NaN;
    lines.push(
      `| ${k(ctx)} | ${o.toFixed(2)} | ${t?.toFixed(2) ?? '—'} | ${ratio.toFixed(2)} | ${limit.toFixed(2)} | ${((limit / o) * 100).toFixed(0)}% | ` +
        `${pass(ratio <= TARGETS.decodeTimeRatio && limit / o >= TARGETS.bandwidthFraction)} |`,
    );
  }
  lines.push('', '| prefill tokens | ours tokens/s | PyTorch tokens/s | time ratio (target ≤ 1.5) | targets met |', '|---|---|---|---|---|');
  for (const n of Object.keys(ours.prefill_tokens_per_s)) {
    const o = ours.prefill_tokens_per_s[n]!;
    const t = torch.prefill_tokens_per_s[n];
    const ratio = t ? t / o : NaN; // time ratio = our time / their time = their rate / our rate
    lines.push(`| ${k(n)} | ${o.toFixed(0)} | ${t?.toFixed(0) ?? '—'} | ${ratio.toFixed(2)} | ${pass(ratio <= TARGETS.prefillTimeRatio)} |`);
  }
  return lines.join('\n');
}
