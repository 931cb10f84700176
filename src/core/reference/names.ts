/**
 * The names the CommVQ reference gives its released artifacts (spec §3.6, §5.8, §6.1), in one place:
 *   key codebooks   one torch.save file per layer ℓ and group g: `{ℓ:03d}_{g}.pt` (g not padded), in a folder the
 *                   evaluation scripts look up as `Llama-3.1-8B-Instruct-CommVQ-{1|2}bit-codebook/`
 *   value compressors  inside the HF checkpoint `Llama-3.1-8B-Instruct-CommVQ-{1|2}bit/`:
 *                   `model.layers.{ℓ}.self_attn.value_vq_model.{embedding, norm1.*, enc1.*, out.*, learnable_scale}`,
 *                   the bit width in config.json as `quant_bits` (a float, e.g. 2.0)
 *
 *   keyFileName(3, 7)                     // '003_7.pt'
 *   valueTensorName(0, 'w1')              // 'model.layers.0.self_attn.value_vq_model.enc1.weight'
 *   referenceDirNames(2).keys             // 'Llama-3.1-8B-Instruct-CommVQ-2bit-codebook'
 */
import type { ParamName } from '../values/value-compressor.js';

/** Our value-compressor parameter → the reference module's tensor name under value_vq_model. */
export const VALUE_TENSOR_NAMES: Readonly<Record<ParamName | 'scale', string>> = {
  lnGamma: 'norm1.weight',
  lnBeta: 'norm1.bias',
  w1: 'enc1.weight',
  b1: 'enc1.bias',
  w2: 'out.weight',
  b2: 'out.bias',
  codebook: 'embedding',
  scale: 'learnable_scale',
};

export const VALUE_MODULE = 'value_vq_model';

export function valueTensorName(layer: number, param: ParamName | 'scale'): string {
  return `model.layers.${layer}.self_attn.${VALUE_MODULE}.${VALUE_TENSOR_NAMES[param]}`;
}

/** `model.layers.12.self_attn.value_vq_model.out.bias` → { layer: 12, rest: 'out.bias' }; other names → undefined. */
export function parseValueTensorName(name: string): { layer: number; rest: string } | undefined {
  const m = /^model\.layers\.(\d+)\.self_attn\.value_vq_model\.(.+)$/.exec(name);
  return m ? { layer: Number(m[1]), rest: m[2]! } : undefined;
}

export function keyFileName(layer: number, group: number): string {
  return `${String(layer).padStart(3, '0')}_${group}.pt`;
}

/** `003_7.pt` → { layer: 3, group: 7 }; other names → undefined. */
export function parseKeyFileName(name: string): { layer: number; group: number } | undefined {
  const m = /^(\d{3})_(\d+)\.pt$/.exec(name);
  return m ? { layer: Number(m[1]), group: Number(m[2]) } : undefined;
}

/** The folders the released checkpoints have and the reference's evaluation scripts expect. */
export function referenceDirNames(bits: number): { values: string; keys: string } {
  return { values: `Llama-3.1-8B-Instruct-CommVQ-${bits}bit`, keys: `Llama-3.1-8B-Instruct-CommVQ-${bits}bit-codebook` };
}

/**
 * The config.json fields the reference's training adds (spec §5.8), as finetune.py writes them for stage 1; the
 * exporter adds them to the base model's config (quant_bits last, a float as the reference writes it).
 */
export function commvqConfigFields(bits: number): Record<string, unknown> {
  return { is_stage1: true, is_stage2: false, use_mse_loss: true, use_vq_loss: true, n_e: 1024, stage1_droppath: 0.0, weight_vq_loss: null, quant_bits: bits };
}
