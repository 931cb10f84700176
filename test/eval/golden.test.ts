/**
 * The metrics against values computed in Python by a transcription of the reference scorers (fixtures/
 * metrics-golden.json `_about`): random strings with odd whitespace, periods, Unicode word characters and option
 * letters, where a JavaScript default (ASCII \b, Math.round, String.trim) would differ from Python's.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { scoreChoice, scoreCodeDebug, scoreKvRetrieval, scoreLongdialogue, scoreMathFind } from '../../src/core/eval/infinitebench/score.js';
import { difflibRatio, indelRatio } from '../../src/core/eval/metrics/fuzz.js';
import { classificationScore, codeSimScore, countScore } from '../../src/core/eval/metrics/longbench-metrics.js';
import { qaF1Score } from '../../src/core/eval/metrics/qa-f1.js';
import { googleRouge1F, googleRougeLsum } from '../../src/core/eval/metrics/rouge-google.js';
import { pltrdyRougeLF } from '../../src/core/eval/metrics/rouge-pltrdy.js';

interface Case {
  p: string;
  g: string;
  cls: string[];
  g2: string;
  ib_label: string[];
  qa_f1: number;
  count: number;
  count_g: string;
  classification: number;
  code_lev: number;
  code_dif: number;
  rougeL: number;
  g_rouge1_stem: number;
  g_rougeLsum: number;
  ib_choice: boolean;
  ib_code_debug: boolean;
  ib_math_int: boolean;
  ib_kv: boolean;
  ib_dialogue: boolean;
}

const golden = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'metrics-golden.json'), 'utf8')) as {
  cases: Case[];
  long: { p: string; g: string; code_dif_long: number; lev_long: number; rougeL: number; g_rougeLsum: number; g_rouge1_stem: number }[];
};
const b = (x: boolean) => (x ? 1 : 0);

describe('metrics match the reference code paths exactly', () => {
  it.each(golden.cases.map((c, i) => [i, c] as const))('case %i', (_, c) => {
    const got = {
      qa_f1: qaF1Score(c.p, c.g),
      count: countScore(c.p, c.count_g),
      classification: classificationScore(c.p, c.g2, c.cls),
      code_lev: codeSimScore(c.p, c.g, 'levenshtein'),
      code_dif: codeSimScore(c.p, c.g, 'difflib'),
      rougeL: pltrdyRougeLF(c.p, c.g),
      g_rouge1_stem: googleRouge1F(c.g, c.p, true),
      g_rougeLsum: googleRougeLsum(c.g, c.p, false).fmeasure,
      ib_choice: scoreChoice(c.p, c.ib_label),
      ib_code_debug: scoreCodeDebug(c.p, c.ib_label),
      ib_math_int: scoreMathFind(c.p, [12]),
      ib_kv: scoreKvRetrieval(c.p, ['345']),
      ib_dialogue: scoreLongdialogue(c.p, ['cat', 'Park']),
    };
    expect(got).toEqual({
      qa_f1: c.qa_f1,
      count: c.count,
      classification: c.classification,
      code_lev: c.code_lev,
      code_dif: c.code_dif,
      rougeL: c.rougeL,
      g_rouge1_stem: c.g_rouge1_stem,
      g_rougeLsum: c.g_rougeLsum,
      ib_choice: b(c.ib_choice),
      ib_code_debug: b(c.ib_code_debug),
      ib_math_int: b(c.ib_math_int),
      ib_kv: b(c.ib_kv),
      ib_dialogue: b(c.ib_dialogue),
    });
  });

  it('long strings: difflib with autojunk, InDel ratio, both ROUGEs', () => {
    for (const c of golden.long) {
      expect(difflibRatio([...c.p], [...c.g])).toBe(c.code_dif_long);
      expect(indelRatio([...c.p], [...c.g])).toBe(c.lev_long);
      expect(pltrdyRougeLF(c.p, c.g)).toBe(c.rougeL);
      expect(googleRougeLsum(c.g, c.p, false).fmeasure).toBe(c.g_rougeLsum);
      expect(googleRouge1F(c.g, c.p, true)).toBe(c.g_rouge1_stem);
    }
  });
});
