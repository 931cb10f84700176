/**
 * Needle in a haystack (§8.3, with §10.1 item 6 fixed): the generated haystack, the folder haystack, period ids from
 * the model's own tokenizer, needle placement, one-BOS prompts, the reference-compatible path, the grid, the
 * scorers and the heatmap — with the demo model's byte-level tokenizer where a real tokenizer matters.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeDemoModel } from '../../src/core/model/demo-model.js';
import { TextTokenizer, type ChatMessage } from '../../src/core/tokenizer/text-tokenizer.js';
import { fillerText } from '../../src/core/eval/niah/filler.js';
import { niahCellId, niahDepths, niahGrid, parseNiahDepths, parseNiahLengths, referenceNiahLengths } from '../../src/core/eval/niah/grid.js';
import { buildHaystack, withoutSpecialTokens } from '../../src/core/eval/niah/haystack.js';
import { niahHeatmap, niahHeatmapSpec } from '../../src/core/eval/niah/heatmap.js';
import { detectPeriodIds, insertNeedle, NIAH_NEEDLE, referenceNeedleContext } from '../../src/core/eval/niah/needle.js';
import { niahGeneration, niahPromptIds, referenceNiahPromptIds } from '../../src/core/eval/niah/prompt.js';
import { leadingSpecialIds, withLeadingSpecialIds } from '../../src/core/eval/tokenizer.js';
import { niahResponse, niahRunKey, niahScore, parseNiahScorer } from '../../src/core/eval/niah/score.js';
import { BOS, CharTokenizer } from './char-tokenizer.js';

const root = mkdtempSync(join(tmpdir(), 'commvq-niah-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const LLAMA3_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}" +
  '{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}';

// the demo model's byte-level tokenizer: one token per byte, <|begin_of_text|> = 256, <|end_of_text|> = 257
const demoDir = join(root, 'demo');
writeDemoModel(demoDir);
writeFileSync(join(demoDir, 'chat_template.jinja'), LLAMA3_TEMPLATE);
const demo = TextTokenizer.fromFolder(demoDir);
const DEMO_BOS = 256;
const needleIds = demo.encode(NIAH_NEEDLE, { addSpecialTokens: false });

describe('haystack', () => {
  it('the filler is one deterministic stream per seed, free of the needle’s words', () => {
    const a = fillerText(1, 5000);
    expect(fillerText(1, 5000)).toBe(a);
    expect(fillerText(1, 20000).startsWith(a)).toBe(true);
    expect(fillerText(2, 5000)).not.toBe(a);
    expect(a.length).toBeGreaterThanOrEqual(5000);
    expect(a).not.toMatch(/san|francisco|sandwich|dolores|sunny/i);
    expect(a.trim().split('\n\n').every((p) => p.endsWith('.'))).toBe(true);
  });

  it('builds at least the requested tokens, without special tokens', () => {
    const hay = buildHaystack(demo, { kind: 'filler' }, 3000);
    expect(hay.ids.length).toBeGreaterThanOrEqual(3000);
    expect(hay.ids.some((id) => id >= 256)).toBe(false);
    expect(buildHaystack(demo, { kind: 'filler' }, 3000).ids).toEqual(hay.ids);
  });

  it('a folder: .txt files in sorted name order, repeated whole, literal special tokens removed', () => {
    const dir = join(root, 'essays');
    mkdirSync(dir);
    writeFileSync(join(dir, 'b.txt'), 'Second. ');
    writeFileSync(join(dir, 'a.txt'), 'First<|begin_of_text|>. ');
    writeFileSync(join(dir, 'notes.md'), 'ignored');
    const hay = buildHaystack(demo, { kind: 'folder', dir }, 40);
    expect(hay.files.map((f) => f.slice(dir.length + 1))).toEqual(['a.txt', 'b.txt']);
    expect(demo.decode(hay.ids)).toBe('First. Second. '.repeat(3));
    expect(hay.specialTokensRemoved).toBe(3);
    expect(hay.ids).not.toContain(DEMO_BOS);
    expect(() => buildHaystack(demo, { kind: 'folder', dir: join(root, 'none') }, 10)).toThrow(/haystack folder not found/);
    mkdirSync(join(root, 'empty'));
    expect(() => buildHaystack(demo, { kind: 'folder', dir: join(root, 'empty') }, 10)).toThrow(/no \.txt files/);
  });

  it('special tokens are recognised by the tokenizer itself', () => {
    expect(withoutSpecialTokens(demo, [65, DEMO_BOS, 66, 257])).toEqual({ ids: [65, 66], removed: 2 });
  });
});

describe('needle placement', () => {
  it('period ids come from the model’s tokenizer', () => {
    expect([...detectPeriodIds(demo, demo.encode('Hi. There.\n', { addSpecialTokens: false }))]).toEqual([46]); // byte "."
    expect([...detectPeriodIds(new CharTokenizer(), [])]).toEqual(['.'.codePointAt(0)! + 10]);
  });

  it('moves the needle back to just after a period', () => {
    const periods = new Set([0]);
    const haystack = [5, 5, 0, 5, 5, 5, 0, 5, 5, 5, 5, 5, 5];
    const base = { haystack, needle: [9, 9], contextLength: 14, periodIds: periods, buffer: 2 };
    // context = 14 − 2 − 2 = 10 tokens; depth 50 → 5 → back to 3 (after the period at 2)
    expect(insertNeedle({ ...base, depthPercent: 50 })).toEqual({ ids: [5, 5, 0, 9, 9, 5, 5, 5, 0, 5, 5, 5], insertionPoint: 3, haystackTokens: 10, targetPoint: 5 });
    expect(insertNeedle({ ...base, depthPercent: 99 }).insertionPoint).toBe(7); // 9 → 7
    expect(insertNeedle({ ...base, depthPercent: 0 }).ids.slice(0, 2)).toEqual([9, 9]);
    expect(insertNeedle({ ...base, depthPercent: 100 }).ids.slice(-2)).toEqual([9, 9]);
    expect(insertNeedle({ ...base, periodIds: new Set([7]), depthPercent: 50 }).insertionPoint).toBe(0); // no period before
  });

  it('the depth point is int(n · (d/100)) with float rounding, as the reference', () => {
    const all = new Set([0]);
    // 100 · (57/100) = 56.99999999999999 → 56
    expect(insertNeedle({ haystack: new Array(200).fill(0), needle: [1], contextLength: 101, depthPercent: 57, periodIds: all, buffer: 0 }).insertionPoint).toBe(56);
  });

  it('refuses lengths that leave no room, short haystacks and bad depths', () => {
    const base = { haystack: [0, 0, 0], needle: [1, 1], periodIds: new Set<number>(), buffer: 0 };
    expect(() => insertNeedle({ ...base, contextLength: 2, depthPercent: 0 })).toThrow(/no room/);
    expect(() => insertNeedle({ ...base, contextLength: 10, depthPercent: 0 })).toThrow(/haystack has 3 tokens, 8 are needed/);
    expect(() => insertNeedle({ ...base, contextLength: 4, depthPercent: 101 })).toThrow(/within 0\.\.100/);
  });

  it('with the demo tokenizer: L − 200 tokens, the needle once, right after a "."', () => {
    const hay = buildHaystack(demo, { kind: 'filler' }, 2000);
    const periods = detectPeriodIds(demo, hay.ids);
    for (const depth of niahDepths(10)) {
      const p = insertNeedle({ haystack: hay.ids, needle: needleIds, contextLength: 1000, depthPercent: depth, periodIds: periods });
      expect(p.ids.length).toBe(800);
      expect(p.ids.slice(p.insertionPoint, p.insertionPoint + needleIds.length)).toEqual(needleIds);
      if (depth < 100 && p.insertionPoint > 0) expect(demo.decode([p.ids[p.insertionPoint - 1]])).toBe('.');
      expect(demo.decode(p.ids).split(NIAH_NEEDLE).length).toBe(2);
      expect(p.targetPoint - p.insertionPoint).toBeLessThan(200); // sentences are short
    }
  });
});

describe('prompt', () => {
  it('chat template around the context ids: exactly one BOS, context tokens untouched', () => {
    const context = [...demo.encode('Hay. <|begin_of_text|> text.', { addSpecialTokens: false })];
    const clean = withoutSpecialTokens(demo, context).ids;
    const p = niahPromptIds(demo, clean);
    expect(p.template).toBe('chat');
    expect(p.ids[0]).toBe(DEMO_BOS);
    expect(p.ids.filter((id) => id === DEMO_BOS)).toEqual([DEMO_BOS]);
    const text = demo.decode(p.ids, { skipSpecialTokens: false });
    expect(text).toContain('<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful AI bot');
    expect(text).toContain("What is the best thing to do in San Francisco? Don't give information outside the document");
    expect(text.endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n')).toBe(true);
    const at = p.ids.indexOf(clean[0]);
    expect(p.ids.slice(at, at + clean.length)).toEqual(clean);
  });

  it('a tokenizer without a chat template gets the plain prompt, with the tokenizer’s own BOS once', () => {
    const tok = new CharTokenizer();
    const p = niahPromptIds(tok, tok.encode('ctx', { addSpecialTokens: false }));
    expect(p.template).toBe('plain');
    expect(p.ids.filter((id) => id === BOS)).toEqual([BOS]);
    expect(tok.decode(p.ids)).toBe('This is a very long story book: <book> ctx </book>.\n Based on the content of the book, Question: What is the best thing to do in San Francisco?\nAnswer:');
  });

  it('BOS is whatever the tokenizer’s post-processor adds (none for the demo tokenizer)', () => {
    expect(leadingSpecialIds(new CharTokenizer())).toEqual([BOS]);
    expect(leadingSpecialIds(demo)).toEqual([]);
    expect(withLeadingSpecialIds(new CharTokenizer(), [BOS, 70])).toEqual([BOS, 70]);
    expect(withLeadingSpecialIds(new CharTokenizer(), [70])).toEqual([BOS, 70]);
  });

  it('generation: 40 new tokens, stop at EOS or newline', () => {
    expect(niahGeneration({ tokenizerEosTokenId: 128009, newlineTokenId: 198 })).toEqual({ maxNewTokens: 40, eosTokenIds: [128009, 198] });
  });

  it('reference-compat reproduces the literal BOS strings and the double BOS', () => {
    const tok = Object.assign(new CharTokenizer(), {
      hasChatTemplate: true,
      applyChatTemplate: (m: readonly ChatMessage[]) => `<s>${m.map((x) => `[${x.role}]${x.content}`).join('')}[assistant]`,
    });
    const hay = tok.encode('Aaa. Bbb. Ccc. Ddd. Eee. Fff. '.repeat(20)); // with BOS, as the reference encodes it
    const ctx = referenceNeedleContext(tok, hay, 300, 50, { needle: '\nNEEDLE.\n', periodIds: ['.'.codePointAt(0)! + 10], buffer: 100 });
    // the haystack's BOS is decoded as text, and re-encoding adds another: two literal BOS strings up front
    expect(ctx.startsWith('<s><s>Aaa.')).toBe(true);
    expect(ctx).toContain('.<s>\nNEEDLE.\n'); // the needle was encoded with a BOS of its own
    const ids = referenceNiahPromptIds(tok, ctx);
    expect(ids.filter((id) => id === BOS).length).toBe(5); // post-processor + template + 2 in the context + needle
  });
});

describe('grid', () => {
  it('--lengths: doubling ranges, stepped ranges, lists; k = 1000', () => {
    expect(parseNiahLengths('1k..8k')).toEqual([1000, 2000, 4000, 8000]);
    expect(parseNiahLengths('1k..128k').length).toBe(8);
    expect(parseNiahLengths('4k..16k:4k')).toEqual([4000, 8000, 12000, 16000]);
    expect(parseNiahLengths('32000, 2k,2k')).toEqual([2000, 32000]);
    expect(() => parseNiahLengths('1k..x')).toThrow(/not a token count/);
    expect(() => parseNiahLengths('8k..1k')).toThrow(/ends before it starts/);
  });

  it('the reference’s default run tests only 33,000 and 49,000 tokens', () => {
    expect(referenceNiahLengths()).toEqual([33000, 49000]);
  });

  it('depths are round(linspace(0, 100, n)), half to even', () => {
    expect(niahDepths(10)).toEqual([0, 11, 22, 33, 44, 56, 67, 78, 89, 100]);
    expect(niahDepths(9)).toEqual([0, 12, 25, 38, 50, 62, 75, 88, 100]); // 12.5 → 12, 37.5 → 38, 62.5 → 62
    expect(parseNiahDepths('100,0,50')).toEqual([0, 50, 100]);
    expect(() => parseNiahDepths('0,120')).toThrow(/within 0\.\.100/);
    expect(niahGrid([1000, 2000], [0, 100]).map((c) => c.id)).toEqual(['len_1000_depth_0', 'len_1000_depth_100', 'len_2000_depth_0', 'len_2000_depth_100']);
    expect(niahCellId(33000, 56)).toBe('len_33000_depth_56');
  });
});

describe('scoring and results', () => {
  it('rouge1: ROUGE-1 F (stemmed) × 10, 0 for an empty response', () => {
    // needle 21 stemmed tokens, response 8, all shared: F = 16/29
    expect(niahScore('Eat a sandwich and sit in Dolores Park.', 'rouge1')).toBeCloseTo(160 / 29, 12);
    expect(niahScore(niahResponse(`  ${NIAH_NEEDLE}  `), 'rouge1')).toBe(10);
    expect(niahScore('', 'rouge1')).toBe(0);
  });

  it('exact: 10 when the needle sentence is in the response, whatever the case and punctuation', () => {
    expect(niahScore('the best thing to do in san francisco is: eat a sandwich and sit in Dolores Park on a sunny day!!', 'exact')).toBe(10);
    expect(niahScore('Eat a sandwich and sit in Dolores Park.', 'exact')).toBe(0);
    expect(parseNiahScorer('exact')).toBe('exact');
    expect(() => parseNiahScorer('bleu')).toThrow(/unknown NIAH scorer/);
  });

  it('results are keyed by model and cache', () => {
    expect(niahRunKey('/models/Llama-3.1-8B-Instruct/', 'commvq 2-bit')).toBe('Llama-3.1-8B-Instruct__commvq_2-bit');
  });

  it('heatmap: mean per (depth, length), rows = depth, null where missing; a Vega-Lite spec of it', () => {
    const grid = niahHeatmap([
      { context_length: 2000, depth_percent: 0, score: 10 },
      { context_length: 1000, depth_percent: 0, score: 4 },
      { context_length: 1000, depth_percent: 0, score: 6 }, // a rerun of the same cell: averaged
      { context_length: 1000, depth_percent: 50, score: 0 },
    ]);
    expect(grid.lengths).toEqual([1000, 2000]);
    expect(grid.depths).toEqual([0, 50]);
    expect(grid.matrix).toEqual([
      [5, 10],
      [0, null],
    ]);
    expect(grid.overall).toBe(5);
    const spec = niahHeatmapSpec(grid, { title: 'demo' }) as { data: { values: unknown[] }; encoding: { x: { title: string; axis: { labelAngle: number } }; y: { title: string } }; layer: { encoding: { color: { scale?: unknown } } }[] };
    expect(spec.data.values).toHaveLength(3);
    expect(spec.encoding.x.title).toBe('Token Limit');
    expect(spec.encoding.x.axis.labelAngle).toBe(-45);
    expect(spec.encoding.y.title).toBe('Depth Percent');
    expect(spec.layer[0].encoding.color.scale).toEqual({ domain: [0, 5, 10], range: ['#F0496E', '#EBB839', '#0CD79F'], interpolate: 'rgb' });
  });
});
