/** The benchmark table computes ratios and target verdicts from both sides' numbers. */
import { describe, expect, it } from 'vitest';
import { llamaReport } from '../../src/bench/llama-report.js';

describe('llamaReport', () => {
  it('puts ratios and verdicts in the table', () => {
    const table = llamaReport(
      { gpu: 'H100', copy_bytes_per_s: 3e12, decode_ms_per_token: { 1024: 6 }, prefill_tokens_per_s: { 8192: 9000 }, decode_bytes_per_token: { 1024: 15e9 } },
      { gpu: 'H100', torch: '2.11', transformers: '5.17', copy_bytes_per_s: 3e12, decode_ms_per_token: { 1024: 24 }, prefill_tokens_per_s: { 8192: 12000 } },
    );
    // 6 / 24 = 0.25; limit 15e9 / 3e12 = 5 ms → 83% of the limit
    expect(table).toContain('| 1K | 6.00 | 24.00 | 0.25 | 5.00 | 83% | yes |');
    // our time / their time = 12000 / 9000
    expect(table).toContain('| 8K | 9000 | 12000 | 1.33 | yes |');
  });

  it('marks missed targets', () => {
    const table = llamaReport(
      { gpu: 'g', copy_bytes_per_s: 3e12, decode_ms_per_token: { 1024: 20 }, prefill_tokens_per_s: { 8192: 1000 }, decode_bytes_per_token: { 1024: 15e9 } },
      { gpu: 'g', torch: '', transformers: '', copy_bytes_per_s: 3e12, decode_ms_per_token: { 1024: 24 }, prefill_tokens_per_s: { 8192: 12000 } },
    );
    expect(table).toMatch(/\| 1K .* \*\*no\*\* \|/);
    expect(table).toMatch(/\| 8K .* \*\*no\*\* \|/);
  });
});
