import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { progressBar } from '../cli/progress.js';
import { toBits } from '../core/commvq/geometry.js';
import { exportReference, type ExportReferenceResult } from '../core/reference/export-reference.js';

export default class ExportReference extends BaseCommand {
  static override summary = "Write a run's codebooks in the CommVQ reference's names and layout (spec §3.6, §5.8, §6.1).";
  static override description =
    'Writes OUT/Llama-3.1-8B-Instruct-CommVQ-Nbit-codebook/{l:03d}_{g}.pt (torch.save files: final_error and, per ' +
    'stage, mse_loss, theta and the clustering_centers rebuilt from θ) and OUT/Llama-3.1-8B-Instruct-CommVQ-Nbit/ ' +
    '(config.json with quant_bits, the value compressors as value_vq_model.safetensors, the shard index). With --model ' +
    'the base model\'s shards and tokenizer are linked in, so the reference\'s loader reads the folder as a whole checkpoint.';

  static override examples = [
    '<%= config.bin %> export-reference runs/llama --bits 1 --out export --model ./Llama-3.1-8B-Instruct',
    '<%= config.bin %> export-reference runs/ref-2bit --out roundtrip',
  ];

  static override args = { runDir: Args.string({ description: 'run folder with a key and a value codebook', required: true }) };

  static override flags = {
    out: Flags.string({ description: 'folder to write the two reference folders into', required: true }),
    bits: Flags.string({ description: 'the width to export when the run holds both: 1 or 2' }),
    model: Flags.string({ description: "base model folder: its config.json, and its shards and tokenizer linked into the checkpoint (default: the codebook's recorded model, config only)" }),
    force: Flags.boolean({ description: 'replace the output folders if they exist' }),
  };

  async run(): Promise<ExportReferenceResult> {
    const { args, flags } = await this.parse(ExportReference);
    const bits = flags.bits === undefined ? undefined : toBits(flags.bits);
    const bar = progressBar('writing key codebooks', this.jsonEnabled());
    const r = await this.withRunLock(flags.out, () =>
      exportReference({ run: args.runDir, out: flags.out, bits, model: flags.model, force: flags.force, onProgress: (d, t) => bar.update(d, t) }),
    ).finally(() => bar.stop());
    this.log(`${r.bits}-bit: ${r.keyFiles} key files (R = ${r.residuals}, G = ${r.groups}) → ${r.keysDir}`);
    this.log(`value compressors (${r.valueDtype}) → ${r.valuesDir}${r.modelTensors > 0 ? ` with ${r.modelTensors} base-model tensors linked` : ' (no base model weights: pass --model to link them)'}`);
    return r;
  }
}
