/** `--shard i/n`, per-example prediction files that resume, `eval merge`, and scoring a run from its records. */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { infinitebenchRecord, scoreInfinitebenchRecords } from '../../src/core/eval/infinitebench/records.js';
import { infinitebenchTask } from '../../src/core/eval/infinitebench/tasks.js';
import { longbenchRecord, scoreLongbenchRecords } from '../../src/core/eval/longbench/records.js';
import { longbenchTask } from '../../src/core/eval/longbench/tasks.js';
import { mergePredictionFiles, mergePredictions, parsePredictions, PredictionLog, type PredictionRecord } from '../../src/core/eval/predictions.js';
import { fnv1a32, inShard, parseShard, selectShard } from '../../src/core/eval/shard.js';

const dir = mkdtempSync(join(tmpdir(), 'commvq-preds-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const rec = (id: string, index: number, pred = `p${id}`, task = 'qasper'): PredictionRecord => ({ id, index, task, pred, answers: ['a'] });

describe('--shard', () => {
  it('parses i/n with 0-based i', () => {
    expect(parseShard('0/2')).toEqual({ index: 0, count: 2 });
    expect(parseShard(' 3 / 4 ')).toEqual({ index: 3, count: 4 });
    expect(() => parseShard('2/2')).toThrow(/i must be below n/);
    expect(() => parseShard('1/0')).toThrow(/at least 1/);
    expect(() => parseShard('a/b')).toThrow(/expected i\/n/);
  });

  it('puts every id in exactly one shard, by id alone', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c); // FNV-1a test vector
    const ids = Array.from({ length: 200 }, (_, i) => `id-${i}`);
    const shards = [0, 1, 2].map((index) => selectShard(ids.map((id) => ({ id })), { index, count: 3 }).map((e) => e.id));
    expect(shards.flat().sort()).toEqual([...ids].sort());
    expect(shards.every((s) => s.length > 40)).toBe(true);
    // the same id lands in the same shard whatever else is in the file
    expect(selectShard([{ id: 'id-7' }], { index: 0, count: 3 }).length === 1).toBe(shards[0].includes('id-7'));
    expect(inShard('anything', { index: 0, count: 1 })).toBe(true);
  });
});

describe('prediction files', () => {
  it('appends per example and resumes without duplicates', () => {
    const path = join(dir, 'run.jsonl');
    const log = PredictionLog.open(path);
    log.append(rec('a', 0));
    log.append(rec('b', 1));
    expect(() => log.append(rec('a', 0))).toThrow(/already there/);
    const again = PredictionLog.open(path);
    expect(again.size).toBe(2);
    expect(again.has('qasper', 'a')).toBe(true);
    expect(again.has('trec', 'a')).toBe(false);
    expect(readFileSync(path, 'utf8').split('\n').filter(Boolean)).toHaveLength(2);
  });

  it('a line cut short by a crash is dropped and the file repaired before appending', () => {
    const path = join(dir, 'cut.jsonl');
    writeFileSync(path, `${JSON.stringify(rec('a', 0))}\n{"id": "b", "ind`);
    const log = PredictionLog.open(path);
    expect(log.size).toBe(1);
    log.append(rec('b', 1));
    expect(parsePredictions(readFileSync(path, 'utf8'), path).records.map((r) => r.id)).toEqual(['a', 'b']);
  });

  it('a malformed line in the middle is an error with its line number', () => {
    expect(() => parsePredictions(`${JSON.stringify(rec('a', 0))}\n{bad\n${JSON.stringify(rec('b', 1))}\n`, 'p.jsonl')).toThrow(/^p\.jsonl:2: not a valid JSON line/);
    expect(() => parsePredictions('{"id": "a", "task": "t", "index": 0}\n', 'p.jsonl')).toThrow('p.jsonl:1: field "pred" must be a string');
  });
});

describe('merge', () => {
  it('combines shards in dataset order, dropping identical repeats', () => {
    const a = join(dir, 'shard0.jsonl');
    const b = join(dir, 'shard1.jsonl');
    writeFileSync(a, [rec('x', 2), rec('y', 0), rec('t1', 0, 'p', 'trec')].map((r) => JSON.stringify(r) + '\n').join(''));
    writeFileSync(b, [rec('z', 1), rec('x', 2)].map((r) => JSON.stringify(r) + '\n').join(''));
    const out = join(dir, 'merged.jsonl');
    const m = mergePredictionFiles([a, b], out);
    expect(m.duplicates).toBe(1);
    expect(m.records.map((r) => `${r.task}/${r.id}`)).toEqual(['qasper/y', 'qasper/z', 'qasper/x', 'trec/t1']);
    expect(readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(4);
  });

  it('different predictions for one example are an error naming both files', () => {
    expect(() =>
      mergePredictions([
        { source: 's0', records: [rec('x', 0, 'yes')] },
        { source: 's1', records: [rec('x', 0, 'no')] },
      ]),
    ).toThrow('qasper example x: different predictions in s0 and s1');
  });

  it('reports a cut last line instead of failing; a missing file is an error', () => {
    const p = join(dir, 'tail.jsonl');
    writeFileSync(p, JSON.stringify(rec('q', 0)) + '\n');
    appendFileSync(p, '{"id": "r"');
    expect(mergePredictionFiles([p]).truncatedTails).toEqual([p]);
    expect(() => mergePredictionFiles([join(dir, 'nope.jsonl')])).toThrow(/file not found/);
    expect(() => mergePredictionFiles([])).toThrow(/no prediction files/);
  });
});

describe('scoring a run from its records (sharded, merged, in any order)', () => {
  it('LongBench: per task in dataset order, the average, and LongBench-E buckets', () => {
    const ex = (id: string, index: number, answers: string[], length = 10) => ({ id, index, input: '', context: '', answers, length, allClasses: null });
    const qasper = longbenchTask('qasper');
    const triviaqa = longbenchTask('triviaqa');
    const records = [
      longbenchRecord(qasper, ex('b', 1, ['no'], 5000), 'yes'),
      longbenchRecord(triviaqa, ex('t', 0, ['Paris']), '\nParis\nRome'),
      longbenchRecord(qasper, ex('a', 0, ['yes']), 'yes'),
    ];
    expect(records[0]).toEqual({ id: 'b', index: 1, task: 'qasper', pred: 'yes', answers: ['no'], all_classes: null, length: 5000 });
    const report = scoreLongbenchRecords(records, { e: true });
    expect(report.tasks).toEqual({ qasper: 50, triviaqa: 100 });
    expect(report.counts).toEqual({ qasper: 2, triviaqa: 1 });
    expect(report.average).toBe(75);
    expect(report.buckets?.qasper).toEqual({ '0-4k': 100, '4-8k': 0, '8k+': null });
    expect(() => scoreLongbenchRecords([{ id: 'x', index: 0, task: 'qasper', pred: '' }])).toThrow(/no "answers" list/);
    expect(() => scoreLongbenchRecords([{ ...records[0], task: 'nope' }])).toThrow(/unknown LongBench task/);
  });

  it('InfiniteBench: means in [0, 1], ×100 per task and their average', () => {
    const choice = infinitebenchTask('longbook_choice_eng');
    const ex = { id: '3', index: 0, context: '', input: '', answer: ['Oslo'], options: ['Rome', 'Paris', 'Oslo', 'Bern'] };
    const r = infinitebenchRecord(choice, ex, 'C');
    expect(r.ground_truth).toEqual(['Oslo', 'C']);
    const report = scoreInfinitebenchRecords([r, { id: 'p1', index: 0, task: 'passkey', pred: '12', ground_truth: ['12'] }, { id: 'p2', index: 1, task: 'passkey', pred: '1', ground_truth: ['12'] }]);
    expect(report.means).toEqual({ longbook_choice_eng: 1, passkey: 0.5 });
    expect(report.tasks).toEqual({ longbook_choice_eng: 100, passkey: 50 });
    expect(report.average).toBe(75);
  });
});
