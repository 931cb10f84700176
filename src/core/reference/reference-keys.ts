/**
 * The reference's key codebooks (spec §3.6): a folder of `{ℓ:03d}_{g}.pt`, each `torch.save` of
 *   { final_error: float, steps: R × { mse_loss: 0-d f32, theta: f32 [2·N_h, P], clustering_centers: f32 [N_h², 2P] } }
 * read into our θ [R, G, 2·N_h, P] per layer. R is the step count, G the number of `000_*.pt` files, N_h and P
 * from θ's shape; every file must agree, and G and P must be the model's KV heads and D_h/2. The centres are
 * redundant (= f(θ), §3.3): they are skipped, or read and compared with the centres θ gives (a difference past
 * f32 rounding is refused: the reference quantizes with the stored centres, this engine with θ's).
 *
 *   const keys = readReferenceKeys('Llama-3.1-8B-Instruct-CommVQ-2bit-codebook', { layers: 32, groups: 8, pairs: 64 });
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CommvqError } from '../errors.js';
import { TorchFile, TorchTensor } from '../io/torch-file.js';
import { centresFromTheta, LayerKeyCodebook, type KeyCodebookShape } from '../keys/codebook.js';
import { keyFileName, parseKeyFileName } from './names.js';

export interface ReferenceKeys {
  shape: KeyCodebookShape;
  layers: Map<number, LayerKeyCodebook>;
  /** final_error per [layer][group], and each stage's mse_loss per [layer][group][stage]: kept for provenance and export */
  finalError: number[][];
  mseLoss: number[][][];
  /** what the files held that the codebook does not use (other files, other dict keys, extra zip entries) */
  unused: string[];
  /** largest |centre − centre(θ)| over every file when checked */
  centres: { checked: boolean; maxAbsError: number };
}

export interface ModelKeyShape {
  layers: number;
  groups: number;
  pairs: number;
}

/** Reads every layer's files; `checkCentres` reads the stored centres too and compares them with θ's. */
export function readReferenceKeys(dir: string, model: ModelKeyShape, o: { checkCentres?: boolean; onFile?: (done: number, total: number) => void } = {}): ReferenceKeys {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CommvqError(`${dir}: key codebook folder not found`);
  const names = readdirSync(dir).sort();
  const files = names.map((n) => ({ n, id: parseKeyFileName(n) })).filter((f) => f.id);
  const unused = names.filter((n) => !parseKeyFileName(n)).map((n) => `${join(dir, n)} (not a {layer:03d}_{group}.pt file)`);
  const groups = files.filter((f) => f.id!.layer === 0).length;
  if (files.length === 0) throw new CommvqError(`${dir}: no key codebook files ({layer:03d}_{group}.pt)`);
  if (groups !== model.groups) throw new CommvqError(`${dir}: ${groups} files 000_*.pt (G = ${groups}), the model has ${model.groups} KV heads`);
  for (const f of files) {
    if (f.id!.layer >= model.layers || f.id!.group >= groups) throw new CommvqError(`${join(dir, f.n)}: layer ${f.id!.layer}, group ${f.id!.group} does not fit a model of ${model.layers} layers and ${groups} groups`);
  }
  const have = new Set(files.map((f) => f.n));
  for (let l = 0; l < model.layers; l++) {
    for (let g = 0; g < groups; g++) if (!have.has(keyFileName(l, g))) throw new CommvqError(`${dir}: ${keyFileName(l, g)} is missing (layer ${l}, group ${g})`);
  }
  const out: ReferenceKeys = { shape: undefined as unknown as KeyCodebookShape, layers: new Map(), finalError: [], mseLoss: [], unused, centres: { checked: !!o.checkCentres, maxAbsError: 0 } };
  const total = model.layers * groups;
  for (let l = 0; l < model.layers; l++) {
    out.finalError.push([]);
    out.mseLoss.push([]);
    for (let g = 0; g < groups; g++) {
      const file = readKeyFile(join(dir, keyFileName(l, g)), model.pairs, o.checkCentres ?? false);
      out.shape ??= { residuals: file.theta.length, groups, halfSize: file.halfSize, pairs: model.pairs };
      const first = join(dir, keyFileName(0, 0));
      if (file.theta.length !== out.shape.residuals) throw new CommvqError(`${file.path}: ${file.theta.length} steps, ${first} has ${out.shape.residuals} (R must be the same in every file)`);
      if (file.halfSize !== out.shape.halfSize) throw new CommvqError(`${file.path}: θ has ${2 * file.halfSize} rows, ${first} has ${2 * out.shape.halfSize}`);
      let cb = out.layers.get(l);
      if (!cb) out.layers.set(l, (cb = new LayerKeyCodebook(out.shape)));
      file.theta.forEach((t, r) => cb.stage(r, g).set(t));
      out.finalError[l]!.push(file.finalError);
      out.mseLoss[l]!.push(file.mseLoss);
      out.unused.push(...file.unused);
      out.centres.maxAbsError = Math.max(out.centres.maxAbsError, file.centreError);
      o.onFile?.(l * groups + g + 1, total);
    }
  }
  return out;
}

interface KeyFile {
  path: string;
  finalError: number;
  mseLoss: number[];
  theta: Float32Array[];
  halfSize: number;
  unused: string[];
  centreError: number;
}

const STEP_KEYS = ['mse_loss', 'theta', 'clustering_centers'];

function readKeyFile(path: string, pairs: number, checkCentres: boolean): KeyFile {
  const f = TorchFile.open(path);
  try {
    const bad = (what: string): never => {
      throw new CommvqError(`${path}: ${what}`, 'a reference key codebook file is {final_error: float, steps: [{mse_loss, theta, clustering_centers}, …]}');
    };
    const root = f.root instanceof Map ? (f.root as Map<unknown, unknown>) : bad('the saved object is not a dict');
    const steps = root.get('steps');
    if (!Array.isArray(steps) || steps.length === 0) bad(`'steps' is ${Array.isArray(steps) ? 'empty' : 'missing or not a list'}`);
    const unused = [...root.keys()].filter((k) => k !== 'steps' && k !== 'final_error').map((k) => `${path}: key '${String(k)}'`);
    unused.push(...f.unreferencedEntries().map((e) => `${path}: zip entry ${e}`));
    const scalar = (v: unknown, what: string): number => {
      if (typeof v === 'number') return v;
      if (v instanceof TorchTensor && v.numel === 1) return f.float32(v, what)[0]!;
      return bad(`${what} is not a number`);
    };
    const finalError = root.has('final_error') ? scalar(root.get('final_error'), 'final_error') : bad("'final_error' is missing");
    let halfSize = 0;
    let centreError = 0;
    const mseLoss: number[] = [];
    const theta = (steps as unknown[]).map((s, r) => {
      const step = s instanceof Map ? (s as Map<unknown, unknown>) : bad(`steps[${r}] is not a dict`);
      for (const k of step.keys()) if (!STEP_KEYS.includes(String(k))) unused.push(`${path}: steps[${r}].${String(k)}`);
      const t = step.get('theta');
      if (!(t instanceof TorchTensor) || t.shape.length !== 2 || t.shape[1] !== pairs || t.shape[0]! % 2 !== 0) {
        bad(`steps[${r}].theta is ${t instanceof TorchTensor ? `[${t.shape.join(', ')}]` : 'not a tensor'}, not [2·N_h, ${pairs}] (P = D_h/2 of the model)`);
      }
      const tt = t as TorchTensor;
      halfSize ||= tt.shape[0]! / 2;
      if (tt.shape[0] !== 2 * halfSize) bad(`steps[${r}].theta has ${tt.shape[0]} rows, steps[0] has ${2 * halfSize}`);
      const values = f.float32(tt, `steps[${r}].theta`);
      mseLoss.push(step.has('mse_loss') ? scalar(step.get('mse_loss'), `steps[${r}].mse_loss`) : bad(`steps[${r}].mse_loss is missing`));
      const c = step.get('clustering_centers');
      const want = [halfSize * halfSize, 2 * pairs];
      if (!(c instanceof TorchTensor) || c.shape.join() !== want.join()) bad(`steps[${r}].clustering_centers is not [${want.join(', ')}]`);
      if (checkCentres) {
        const stored = f.float32(c as TorchTensor, `steps[${r}].clustering_centers`);
        const d = centreDifference(stored, centresFromTheta(values, halfSize, pairs));
        if (d.beyond >= 0) {
          throw new CommvqError(
            `${path}: steps[${r}].clustering_centers differ from the centres θ gives (centre ${Math.floor(d.beyond / (2 * pairs))}, channel ${d.beyond % (2 * pairs)}: ${stored[d.beyond]} vs ${centresFromTheta(values, halfSize, pairs)[d.beyond]})`,
            'the reference quantizes with the stored centres and this engine with θ\'s, so these codebooks would not be the same; import without --check-centres only if that is acceptable',
          );
        }
        centreError = Math.max(centreError, d.max);
      }
      return values;
    });
    return { path, finalError, mseLoss, theta, halfSize, unused, centreError };
  } finally {
    f.close();
  }
}

/**
 * The largest |stored − rebuilt|, and the first index past rounding (atol 1e-7 + 1e-6·|rebuilt|; −1 if none): the
 * reference builds its centres as one ±1 matrix product of θ in f32, which is X_A − Y_B and Y_A + X_B rounded once.
 */
function centreDifference(stored: Float32Array, rebuilt: Float32Array): { max: number; beyond: number } {
  let max = 0;
  for (let i = 0; i < stored.length; i++) {
    const d = Math.abs(stored[i]! - rebuilt[i]!);
    if (!(d <= 1e-7 + 1e-6 * Math.abs(rebuilt[i]!))) return { max: Infinity, beyond: i };
    max = Math.max(max, d);
  }
  return { max, beyond: -1 };
}
