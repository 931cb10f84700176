import { Flags } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';
import { progressBar } from '../cli/progress.js';
import { importReference, type ImportReferenceResult } from '../core/reference/import-reference.js';

export default class ImportReference extends BaseCommand {
  static override summary = "Import the CommVQ authors' released codebooks into a run folder (spec §3.6, §5.8).";
  static override description =
    'Reads the value compressors (model.layers.{l}.self_attn.value_vq_model.*) from a Hugging Face checkpoint folder ' +
    'and the key codebooks ({l:03d}_{g}.pt, torch.save files, read without Python) from their folder; checks every ' +
    'shape against the model in --values/config.json (R from the step count, G from the files, N_c from quant_bits) ' +
    'and writes RUN_DIR/key-codebook-em-Nbit.arrow and value-codebook-Nbit.arrow, as train-key and train-value do, ' +
    'with their source in the schema metadata, and reference-import-Nbit.json listing what was not used. The LLM ' +
    'weights are not copied. Nothing is written when an input is wrong.';

  static override examples = [
    '<%= config.bin %> import-reference --values Llama-3.1-8B-Instruct-CommVQ-2bit --keys Llama-3.1-8B-Instruct-CommVQ-2bit-codebook --out runs/ref-2bit',
    '<%= config.bin %> import-reference --values Llama-3.1-8B-Instruct-CommVQ-1bit --keys Llama-3.1-8B-Instruct-CommVQ-1bit-codebook --out runs/ref-1bit --check-centres',
  ];

  static override flags = {
    values: Flags.string({ description: 'checkpoint folder with the value compressors and config.json (quant_bits)', required: true }),
    keys: Flags.string({ description: 'folder of the key codebook files {layer:03d}_{group}.pt', required: true }),
    out: Flags.string({ description: 'run folder to write the codebooks into (made if missing)', required: true }),
    'check-centres': Flags.boolean({ description: 'also read the stored clustering_centers and refuse files whose centres are not those θ gives (reads every byte; default: skipped)' }),
    force: Flags.boolean({ description: 'replace codebooks of the same width already in the run folder' }),
  };

  async run(): Promise<ImportReferenceResult> {
    const { flags } = await this.parse(ImportReference);
    const bar = progressBar('reading key codebooks', this.jsonEnabled());
    const result = await this.withRunLock(flags.out, async () =>
      importReference({ values: flags.values, keys: flags.keys, out: flags.out, checkCentres: flags['check-centres'], force: flags.force, onProgress: (d, t) => bar.update(d, t) }),
    ).finally(() => bar.stop());
    const r = result;
    this.log(`${r.bits}-bit: ${r.layers} layers; keys R = ${r.residuals}, G = ${r.groups}, N_h = ${r.halfSize}, P = ${r.pairs}; values N_c = ${r.codeBits} (${r.valueDtype})`);
    this.log(r.centres.checked ? `centres checked against θ: max |Δ| ${r.centres.maxAbsError}` : 'centres skipped (rebuilt from θ when needed)');
    this.log(`not copied: ${r.modelTensors} LLM tensors of ${flags.values}`);
    if (r.unused.length > 0) this.log(`unused (${r.unused.length}):\n${r.unused.map((u) => `  ${u}`).join('\n')}`);
    this.log(`→ ${r.keyCodebook}\n→ ${r.valueCodebook}\n  report ${r.report}`);
    return result;
  }
}
