/**
 * import-reference and export-reference on a synthetic set of the reference's files for tiny-llama (2 layers, 1 KV
 * head of 128, N_h = 4, R = 3, bf16 value compressors with the model's weights beside them): what is read equals what
 * was written, bit for bit; import → export → import is the identity and a second export the same bytes; every bad
 * input is one line and leaves the run folder untouched.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/core/backend/cpu/cpu-backend.js';
import { readArrowSchema } from '../../src/core/io/arrow-schema.js';
import { TorchFile, TorchTensor } from '../../src/core/io/torch-file.js';
import { F32Tensor, PyFloat, torchSave } from '../../src/core/io/torch-save.js';
import { writeFileAtomic } from '../../src/core/io/atomic-write.js';
import { ZipReader } from '../../src/core/io/zip-reader.js';
import { ZipStoreWriter } from '../../src/core/io/zip-writer.js';
import { centresFromTheta } from '../../src/core/keys/codebook.js';
import { readKeyCodebook } from '../../src/core/keys/format.js';
import { exportReference } from '../../src/core/reference/export-reference.js';
import { importReference } from '../../src/core/reference/import-reference.js';
import { keyFileName, valueTensorName } from '../../src/core/reference/names.js';
import { readValueCodebook } from '../../src/core/values/value-codebook-file.js';
import { PARAM_NAMES } from '../../src/core/values/value-compressor.js';
import { fixtureDir, haveFixture } from '../helpers/fixtures.js';
import { expectSameBits } from '../helpers/same-bits.js';
import { writeReferenceSet } from '../helpers/reference-set.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-ref-'));

/** Rewrites a zip archive entry by entry (CRCs recomputed), so a test can damage one record's content alone. */
function rewriteArchive(path: string, edit: (name: string, bytes: Uint8Array) => Uint8Array): void {
  const zip = new ZipReader(path);
  const out = new ZipStoreWriter();
  for (const e of zip.entries) out.add(e.name, edit(e.name, zip.read(e)));
  zip.close();
  writeFileAtomic(path, out.finish());
}
afterAll(() => rmSync(work, { recursive: true, force: true }));
const cpu = new CpuBackend();

describe.skipIf(!haveFixture('tiny-llama'))('reference codebooks', () => {
  const model = fixtureDir('tiny-llama');
  const set = writeReferenceSet(join(work, 'src'), model, { bits: 1, residuals: 3, halfSize: 4, extraValueTensor: true });
  const runA = join(work, 'runA');
  const imported = importReference({ values: set.values, keys: set.keys, out: runA, checkCentres: true });

  it('imports θ, the value compressors and the scale bit for bit, and says what it left', () => {
    expect(imported).toMatchObject({ bits: 1, layers: 2, residuals: 3, groups: 1, halfSize: 4, pairs: 64, codeBits: 128, valueDtype: 'BF16', centres: { checked: true, maxAbsError: 0 } });
    expect(imported.modelTensors).toBeGreaterThan(10);
    expect(imported.unused).toEqual(['model.layers.0.self_attn.value_vq_model.codebook_usage (F32 [4])']);
    const keys = readKeyCodebook(imported.keyCodebook);
    for (let l = 0; l < 2; l++) for (let r = 0; r < 3; r++) expectSameBits(keys.layers.get(l)!.stage(r, 0), set.theta[l]![0]![r], `θ ${l},${r}`);
    const values = readValueCodebook(imported.valueCodebook, cpu);
    for (let l = 0; l < 2; l++) {
      const v = values.layers.get(l)!;
      for (const p of PARAM_NAMES) expectSameBits(cpu.toFloat32(v.params[p]), set.valueTensors.get(valueTensorName(l, p)), `${p} ${l}`);
      expectSameBits(cpu.toFloat32(v.scale), set.valueTensors.get(valueTensorName(l, 'scale')), `scale ${l}`);
    }
  });

  it('records the provenance in the schema metadata: source folders, final_error and every mse_loss exactly', async () => {
    const md = (await readArrowSchema(imported.keyCodebook)).metadata;
    expect(md.get('commvq.source')).toBe('commvq-reference');
    expect(md.get('commvq.source_keys')).toBe(set.keys);
    expect(JSON.parse(md.get('commvq.final_error')!)).toEqual(set.finalError);
    expect(JSON.parse(md.get('commvq.mse_loss')!)).toEqual(set.mseLoss);
    const vmd = (await readArrowSchema(imported.valueCodebook)).metadata;
    expect(vmd.get('commvq.source_values')).toBe(set.values);
    expect(vmd.get('commvq.source_dtype')).toBe('BF16');
    expect(JSON.parse(vmd.get('commvq.reference_config')!)).toMatchObject({ quant_bits: 1, is_stage1: true });
  });

  it('exports in the reference layout: centres rebuilt from θ, losses kept, bf16 values as they came', async () => {
    const out = join(work, 'exp1');
    const r = await exportReference({ run: runA, out });
    expect(r).toMatchObject({ bits: 1, layers: 2, residuals: 3, groups: 1, keyFiles: 2, valueDtype: 'BF16', modelTensors: 0 });
    expect(readdirSync(r.keysDir).sort()).toEqual(['000_0.pt', '001_0.pt']);
    const f = TorchFile.open(join(r.keysDir, '001_0.pt'));
    const root = f.root as Map<string, unknown>;
    expect(root.get('final_error')).toBe(set.finalError[1]![0]);
    const steps = root.get('steps') as Map<string, TorchTensor>[];
    expect(steps).toHaveLength(3);
    expectSameBits(f.float32(steps[2]!.get('theta')!, 'theta'), set.theta[1]![0]![2], 'theta');
    expectSameBits(f.float32(steps[2]!.get('clustering_centers')!, 'c'), centresFromTheta(set.theta[1]![0]![2]!, 4, 64), 'centres');
    expect(f.float32(steps[2]!.get('mse_loss')!, 'm')[0]).toBe(set.mseLoss[1]![0]![2]);
    f.close();
    const config = JSON.parse(readFileSync(join(r.valuesDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ quant_bits: 1, num_hidden_layers: 2, architectures: ['LlamaForCausalLM'] });
  });

  it('round-trips: import → export → import gives the same codebooks bit for bit, and exporting again the same bytes', async () => {
    const e1 = await exportReference({ run: runA, out: join(work, 'rt1') });
    const runB = join(work, 'runB');
    const again = importReference({ values: e1.valuesDir, keys: e1.keysDir, out: runB, checkCentres: true });
    const [ka, kb] = [imported, again].map((i) => readKeyCodebook(i.keyCodebook));
    for (let l = 0; l < 2; l++) expectSameBits(kb!.layers.get(l)!.theta, ka!.layers.get(l)!.theta, `θ of layer ${l}`);
    const [va, vb] = [imported, again].map((i) => readValueCodebook(i.valueCodebook, cpu));
    for (let l = 0; l < 2; l++) {
      for (const p of PARAM_NAMES) expectSameBits(cpu.toFloat32(vb!.layers.get(l)!.params[p]), cpu.toFloat32(va!.layers.get(l)!.params[p]), `${p} of layer ${l}`);
      expectSameBits(cpu.toFloat32(vb!.layers.get(l)!.scale), cpu.toFloat32(va!.layers.get(l)!.scale), `scale of layer ${l}`);
    }
    const strip = (m: Map<string, string>) => [...m].filter(([k]) => !/source_(keys|values)|commvq\.(data|model)$/.test(k));
    for (const which of ['keyCodebook', 'valueCodebook'] as const) {
      expect(strip((await readArrowSchema(again[which])).metadata)).toEqual(strip((await readArrowSchema(imported[which])).metadata));
    }
    const e2 = await exportReference({ run: runB, out: join(work, 'rt2') });
    for (const name of ['000_0.pt', '001_0.pt']) expect(readFileSync(join(e2.keysDir, name)).equals(readFileSync(join(e1.keysDir, name))), name).toBe(true);
    expect(readFileSync(join(e2.valuesDir, 'value_vq_model.safetensors')).equals(readFileSync(join(e1.valuesDir, 'value_vq_model.safetensors')))).toBe(true);
  });

  describe('bad input: one line, nothing written', () => {
    let n = 0;
    /** A fresh copy of the set, spoiled by `spoil`; the import must fail with `message` and leave no run folder. */
    function refuses(spoil: (s: typeof set) => void, message: RegExp, o: { checkCentres?: boolean } = {}) {
      const s = writeReferenceSet(join(work, `bad${++n}`), model, { bits: 1, residuals: 3, halfSize: 4 });
      spoil(s);
      const out = join(work, `badrun${n}`);
      expect(() => importReference({ values: s.values, keys: s.keys, out, ...o })).toThrow(message);
      expect(existsSync(out)).toBe(false);
    }
    const step = (t: Float32Array, h: number, p: number) => new Map([['mse_loss', new F32Tensor(Float32Array.of(0), [])], ['theta', new F32Tensor(t, [2 * h, p])], ['clustering_centers', new F32Tensor(centresFromTheta(t, h, p), [h * h, 2 * p])]]);
    const save = (path: string, steps: Map<string, F32Tensor>[]) => torchSave(path, new Map<string, PyFloat | Map<string, F32Tensor>[]>([['final_error', new PyFloat(0)], ['steps', steps]]));

    it('a missing layer or group', () => refuses((s) => unlinkSync(join(s.keys, keyFileName(1, 0))), /001_0\.pt is missing \(layer 1, group 0\)/));
    it('more groups than the model has KV heads', () => refuses((s) => save(join(s.keys, '000_1.pt'), [step(new Float32Array(512), 4, 64)]), /2 files 000_\*\.pt \(G = 2\), the model has 1 KV heads/));
    it('a layer the model does not have', () => refuses((s) => save(join(s.keys, '002_0.pt'), [step(new Float32Array(512), 4, 64)]), /002_0\.pt: layer 2, group 0 does not fit a model of 2 layers/));
    it('R not the same in every file', () => refuses((s) => save(join(s.keys, keyFileName(1, 0)), [step(new Float32Array(512), 4, 64)]), /001_0\.pt: 1 steps, .*000_0\.pt has 3 \(R must be the same in every file\)/));
    it('θ not [2·N_h, D_h/2] of the model', () => refuses((s) => save(join(s.keys, keyFileName(0, 0)), [0, 1, 2].map(() => step(new Float32Array(256), 4, 32))), /000_0\.pt: steps\[0\]\.theta is \[8, 32\], not \[2·N_h, 64\]/));
    it('a value tensor of the wrong shape', () => refuses((s) => {
      const cfg = join(s.values, 'config.json');
      writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('"quant_bits": 1.0', '"quant_bits": 2.0'));
    }, /model-00001-of-00002\.safetensors: model\.layers\.0\.self_attn\.value_vq_model\.enc1\.weight is \[256, 128\], a 2-bit compressor for D = 128 needs \[512, 128\]/));
    it('a checkpoint without value_vq_model tensors', () => refuses((s) => {
      for (const f of readdirSync(s.values)) if (f.endsWith('.safetensors') || f.endsWith('.json') && f !== 'config.json') unlinkSync(join(s.values, f));
      writeFileSync(join(s.values, 'model.safetensors'), readFileSync(join(model, 'model.safetensors')));
    }, /no value_vq_model tensors .*not a CommVQ value checkpoint/));
    it('quant_bits other than 1 or 2', () => refuses((s) => {
      const cfg = join(s.values, 'config.json');
      writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('"quant_bits": 1.0', '"quant_bits": 3.0'));
    }, /config\.json: quant_bits 3: CommVQ bit widths are 1 and 2/));
    it('a truncated key file', () => refuses((s) => {
      const p = join(s.keys, keyFileName(1, 0));
      writeFileSync(p, readFileSync(p).subarray(0, 3000));
    }, /001_0\.pt: not a zip archive, or a truncated one/));
    it('a pickle opcode the reader does not know', () => refuses((s) => {
      const p = join(s.keys, keyFileName(0, 0));
      rewriteArchive(p, (name, bytes) => {
        if (!name.endsWith('/data.pkl')) return bytes;
        const at = Buffer.from(bytes).indexOf(Buffer.from('final_error')) + 'final_error'.length + 2; // the float's opcode, after the key's BINPUT
        bytes[at] = 0xf0;
        return bytes;
      });
    }, /000_0\.pt: data\.pkl: unknown pickle opcode 0xf0 at byte 24$/));
    it('a storage type the reader does not know', () => refuses((s) => {
      rewriteArchive(join(s.keys, keyFileName(1, 0)), (name, bytes) => (name.endsWith('/data.pkl') ? Buffer.from(Buffer.from(bytes).toString('latin1').replaceAll('FloatStorage', 'QuintStorage'), 'latin1') : bytes));
    }, /001_0\.pt: unknown storage type torch\.QuintStorage/));
    it('centres that are not the centres of θ (with --check-centres)', () => refuses((s) => {
      const t = new Float32Array(512).fill(0.25);
      const bad = step(t, 4, 64);
      const c = bad.get('clustering_centers')!;
      c.data[5] += 0.01;
      save(join(s.keys, keyFileName(1, 0)), [bad, step(t, 4, 64), step(t, 4, 64)]);
    }, /001_0\.pt: steps\[0\]\.clustering_centers differ from the centres θ gives \(centre 0, channel 5/, { checkCentres: true }));
    it('codebooks already in the run folder', () => {
      expect(() => importReference({ values: set.values, keys: set.keys, out: runA })).toThrow(/key-codebook-em-1bit\.arrow already exists/);
    });
  });
});
