/**
 * The metrics of §8.1–§8.3 on hand-worked cases: token F1, pltrdy ROUGE-L (sentence and set rules), Google ROUGE
 * (stemmer, rougeLsum), fuzz.ratio (both SequenceMatchers), classification with its list mutation, code line
 * selection, count and retrieval.
 */
import { describe, expect, it } from 'vitest';
import { difflibRatio, fuzzRatio, indelRatio } from '../../src/core/eval/metrics/fuzz.js';
import { classificationScore, codeSimLine, codeSimScore, countScore, retrievalScore } from '../../src/core/eval/metrics/longbench-metrics.js';
import { porterStem } from '../../src/core/eval/metrics/porter-stemmer.js';
import { normalizeAnswer, normalizeZhAnswer, qaF1Score, zhCharF1 } from '../../src/core/eval/metrics/qa-f1.js';
import { googleRouge1F, googleRougeLsum, googleTokenize, hfRougeLsumF } from '../../src/core/eval/metrics/rouge-google.js';
import { pltrdyRougeLF, pltrdySentences } from '../../src/core/eval/metrics/rouge-pltrdy.js';

/** pltrdy's F from P and R */
const pltrdyF = (p: number, r: number) => 2.0 * ((p * r) / (p + r + 1e-8));

describe('qa_f1', () => {
  it('normalises: lower, ASCII punctuation out, articles → space, whitespace collapsed', () => {
    expect(normalizeAnswer('The Cat, sat on a mat!')).toBe('cat sat on mat');
    expect(normalizeAnswer('An  apple—the end')).toBe('apple— end'); // the em dash stays (not ASCII punctuation) but bounds a word
    // Python's \b is Unicode-aware: the "a" in "éa" is inside a word and stays
    expect(normalizeAnswer('éa an')).toBe('éa');
  });

  it('is the multiset F1 of the normalised tokens', () => {
    expect(qaF1Score('The cat sat.', 'a cat')).toBe(2 / 3); // [cat, sat] vs [cat]: P 1/2, R 1
    expect(qaF1Score('cat cat dog', 'cat')).toBeCloseTo(0.5, 15); // one shared "cat": P 1/3, R 1
    expect(qaF1Score('dog', 'cat')).toBe(0);
    expect(qaF1Score('', 'cat')).toBe(0);
  });

  it('Chinese variant: characters after removing CJK punctuation and spaces', () => {
    expect(normalizeZhAnswer('你好，世界！ A')).toBe('你好世界a');
    expect(zhCharF1('北京。', '北京市')).toBe(0.8); // 2 shared of 2 and 3 characters
  });
});

describe('pltrdy ROUGE-L (LongBench rouge_score)', () => {
  it('splits sentences on "." before collapsing whitespace, so a blank piece becomes an empty word', () => {
    expect(pltrdySentences('cat sat. ')).toEqual(['cat sat', '']);
    expect(pltrdySentences('a..b')).toEqual(['a', 'b']);
    // hyp words {cat, sat, ""} (n = 3), ref {cat, sat} (m = 2), union LCS {cat, sat}: P 2/3, R 1
    expect(pltrdyRougeLF('cat sat. ', 'cat sat')).toBe(pltrdyF(2 / 3, 1));
  });

  it('counts distinct words (sets) and is case-sensitive', () => {
    expect(pltrdyRougeLF('the cat sat', 'the cat ran')).toBe(pltrdyF(2 / 3, 2 / 3));
    expect(pltrdyRougeLF('the the the', 'the')).toBe(pltrdyF(1, 1));
    expect(pltrdyRougeLF('The cat', 'the cat')).toBe(pltrdyF(1 / 2, 1 / 2));
  });

  it('unions one LCS per (reference, hypothesis) sentence pair, with the library tie-break', () => {
    // LCS("a b", "b a") is reconstructed as [b] (moving left on ties), LCS("a b", "a c") = [a] → union {a, b}
    expect(pltrdyRougeLF('b a. a c', 'a b')).toBe(pltrdyF(2 / 3, 1));
    // alone, "b a" contributes only {b}: P 1/2, R 1/2
    expect(pltrdyRougeLF('b a', 'a b')).toBe(pltrdyF(1 / 2, 1 / 2));
  });

  it('an empty hypothesis or reference raises in the library → 0', () => {
    expect(pltrdyRougeLF('', 'the cat')).toBe(0);
    expect(pltrdyRougeLF('...', 'the cat')).toBe(0);
    expect(pltrdyRougeLF('the cat', '')).toBe(0);
  });

  it("reproduces Python's recursion limit: 991 reconstruction calls pass, 992 give 0", () => {
    const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(' ');
    // ref "w0" against n hypothesis words: n − 1 steps left, one diagonal, plus the base call = n + 1 calls
    expect(pltrdyRougeLF(words(990), 'w0')).toBe(pltrdyF(1 / 990, 1));
    expect(pltrdyRougeLF(words(991), 'w0')).toBe(0);
    expect(pltrdyRougeLF(words(991), 'w0', { recursionLimit: false })).toBe(pltrdyF(1 / 991, 1));
  });
});

describe('Google rouge_score', () => {
  it('tokenizes to [a-z0-9]+ and stems tokens longer than 3 characters', () => {
    expect(googleTokenize('The cat-sat, 3 times!', false)).toEqual(['the', 'cat', 'sat', '3', 'times']);
    expect(googleTokenize('Running dogs fly', true)).toEqual(['run', 'dog', 'fly']);
    expect(googleTokenize('Déjà vu', false)).toEqual(['d', 'j', 'vu']);
  });

  it('NIAH: ROUGE-1 F with the stemmer, needle as target', () => {
    const needle = '\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n';
    // needle: 21 tokens (dolores → dolor, sunny → sunni); response: eat a sandwich and sit in dolor park = 8, all shared
    expect(googleRouge1F(needle, 'Eat a sandwich and sit in Dolores Park.', true)).toBeCloseTo(16 / 29, 15);
    expect(googleRouge1F(needle, needle, true)).toBe(1);
  });

  it('rougeLsum: lines as sentences, union LCS, counters against double counting', () => {
    // ref lines [the cat sat] [the dog ran], candidate [the cat ran]: hits the, cat (line 1), ran (line 2; "the" is used up)
    const s = googleRougeLsum('the cat sat\nthe dog ran', 'the cat ran', false);
    expect(s.recall).toBe(3 / 6);
    expect(s.precision).toBe(1);
    expect(s.fmeasure).toBeCloseTo(2 / 3, 15);
    expect(googleRougeLsum('\n\n', 'x', false).fmeasure).toBe(0);
    // HF evaluate with a list of labels: the best label
    expect(hfRougeLsumF('the cat ran', ['dog', 'the cat ran'])).toBe(1);
  });

  it("NLTK's Porter stemmer (NLTK_EXTENSIONS)", () => {
    const cases: Record<string, string> = {
      caresses: 'caress',
      ponies: 'poni',
      ties: 'tie',
      cats: 'cat',
      feed: 'feed',
      agreed: 'agre',
      plastered: 'plaster',
      motoring: 'motor',
      sing: 'sing',
      conflated: 'conflat',
      sized: 'size',
      hopping: 'hop',
      falling: 'fall',
      filing: 'file',
      happy: 'happi',
      sky: 'sky',
      enjoy: 'enjoy',
      relational: 'relat',
      conditional: 'condit',
      generalizations: 'gener',
      geology: 'geolog',
      spied: 'spi',
      died: 'die',
      flies: 'fli',
      dying: 'die',
      news: 'news',
      proceed: 'proceed',
      exceeding: 'exceed',
      logically: 'logic',
      fully: 'fulli',
      controll: 'control',
      roll: 'roll',
      sunny: 'sunni',
      dolores: 'dolor',
      by: 'by',
    };
    for (const [w, s] of Object.entries(cases)) expect(porterStem(w), w).toBe(s);
  });
});

describe('fuzz.ratio (code_sim)', () => {
  it('Levenshtein ratio: 1 − indel/(|a|+|b|), rounded half to even', () => {
    expect(indelRatio([...'kitten'], [...'sitting'])).toBe(1 - 5 / 13);
    expect(fuzzRatio('kitten', 'sitting')).toBe(62);
    expect(fuzzRatio('abcdefgh', 'aijklmno')).toBe(12); // 2/16 → 12.5 → 12 (JavaScript's Math.round gives 13)
    expect(fuzzRatio('abcdefgh', 'abcijklm')).toBe(38); // 6/16 → 37.5 → 38
  });

  it('equal strings → 100 before the empty check; one empty → 0', () => {
    expect(fuzzRatio('', '')).toBe(100);
    expect(fuzzRatio('', 'x')).toBe(0);
    expect(fuzzRatio('x', 'x')).toBe(100);
  });

  it('difflib fallback: matching blocks, not LCS, and popular elements junked from 200 characters on', () => {
    // the longest block "aa" (a[0:2] = b[2:4]) leaves nothing to match on either side: 2·2/8
    expect(difflibRatio([...'aaaa'], [...'abaa'])).toBe(0.5);
    expect(fuzzRatio('aaaa', 'abaa', 'difflib')).toBe(50);
    expect(fuzzRatio('aaaa', 'abaa', 'levenshtein')).toBe(75);
    const b = 'x'.repeat(150) + 'y'.repeat(60); // both characters are "popular" in b: no match at all
    expect(difflibRatio([...'y'.repeat(60)], [...b])).toBe(0);
    expect(indelRatio([...'y'.repeat(60)], [...b])).toBe(1 - 150 / 270);
  });

  it('compares the first line without ` # // after dropping leading newlines', () => {
    const pred = '\n\n# comment\n`x`\n    return a // b\nfoo(bar)\nbaz';
    expect(codeSimLine(pred)).toBe('foo(bar)');
    expect(codeSimScore(pred, 'foo(bar)')).toBe(1);
    expect(codeSimLine('# a\n// b')).toBe('');
    expect(codeSimScore('# a\n// b', '')).toBe(1);
    expect(codeSimScore('# a\n// b', 'x')).toBe(0);
  });
});

describe('classification, count, retrieval', () => {
  it('classification mutates the match list while iterating it (the next element is skipped)', () => {
    const classes = ['Human', 'being', 'Human being', 'Location'];
    // matches [Human, being, Human being]; "Human" is removed, which shifts "being" under the iterator and skips it:
    // [being, Human being] → 1/2 (a clean filter would give 1)
    expect(classificationScore('Human being', 'Human being', classes)).toBe(0.5);
    expect(classificationScore('Location', 'Location', classes)).toBe(1);
    expect(classificationScore('Location or Human', 'Location', classes)).toBe(0.5);
    expect(classificationScore('nothing', 'Location', classes)).toBe(0);
  });

  it('count: share of the numbers equal to the gold', () => {
    expect(countScore('There are 3 paragraphs, maybe 3 or 4', '3')).toBe(2 / 3);
    expect(countScore('none', '3')).toBe(0);
    expect(countScore('٣ and 3', '3')).toBe(0.5); // Python's \d matches Arabic-Indic digits too
  });

  it('retrieval: the paragraph number from the gold, scored like count', () => {
    expect(retrievalScore('Paragraph 12 and 3', 'Paragraph 12')).toBe(0.5);
    expect(retrievalScore('段落5', '段落5', 'zh')).toBe(1);
    expect(() => retrievalScore('1', 'no paragraph')).toThrow(/names no paragraph/);
  });
});
