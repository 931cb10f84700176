import { Flags } from '@oclif/core';
import { join } from 'node:path';
import { BaseCommand } from '../cli/base-command.js';
import { integerFlag } from '../cli/number-flag.js';
import { CommvqError } from '../core/errors.js';
import { parseGpuList } from '../core/parallel/gpu-list.js';
import { failureLine, startJob, type LaunchResult } from '../core/parallel/launcher.js';

export default class Launch extends BaseCommand {
  static override summary = 'Run a command once per GPU, in torchrun\'s conventions (data-parallel train-value, sharded evals, train-key layers and collect-kv windows over GPUs).';
  static override description =
    'Starts one process per GPU of --gpus, each seeing only its GPU (CUDA_VISIBLE_DEVICES) and told its place by RANK, ' +
    'LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT; NCCL_NVLS_ENABLE=0 in every one. Rank 0 serves ' +
    'the TCP rendezvous. A command after -- that is a commvq command (or starts with "commvq") runs with this commvq; ' +
    'train-value, train-key, collect-kv and every eval split their work over the ranks, and rank 0 writes the results. ' +
    'A rank that fails ends the job: the others are stopped and the launcher exits with that rank\'s code. Ctrl-C reaches ' +
    'every rank. For several hosts, run it on each with --nnodes, --node-rank and rank 0\'s --master-addr/--master-port.';

  static override examples = [
    '<%= config.bin %> launch --gpus 0-7 -- train-value runs/llama --model ./Llama-3.1-8B-Instruct --data fineweb.parquet --bits 1 --steps 100000 --device cuda',
    '<%= config.bin %> launch --gpus 0-7 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500 -- train-value …',
  ];

  static override usage = 'launch --gpus <list> [--nnodes <n> --node-rank <i> --master-addr <host> --master-port <port>] -- <command> [args…]';

  static override strict = false;

  static override flags = {
    gpus: Flags.string({ description: 'GPU ordinals of this host, one rank each: 0-7, 0,2,4', required: true }),
    nnodes: integerFlag({ description: 'hosts in the job (each runs launch with the same --gpus count)', default: 1, min: 1 }),
    'node-rank': integerFlag({ description: 'this host\'s place among them, 0 for the host of rank 0', default: 0, min: 0 }),
    'master-addr': Flags.string({ description: 'address of the host of rank 0', default: '127.0.0.1' }),
    'master-port': integerFlag({ description: 'port rank 0 listens on (default: a free one on one host, 29500 on several)', min: 1, max: 65535 }),
    'rdzv-timeout': integerFlag({ description: 'seconds the ranks wait for each other to join', default: 60, min: 1 }),
  };

  async run(): Promise<LaunchResult> {
    const { flags } = await this.parse(Launch);
    const dashes = this.argv.indexOf('--'); // the command as typed: oclif's argv can reorder words after --
    const words = dashes < 0 ? [] : this.argv.slice(dashes + 1);
    if (words.length === 0) throw new CommvqError('launch: no command after --', 'e.g. commvq launch --gpus 0-1 -- train-value …');
    if (flags['node-rank'] >= flags.nnodes) throw new CommvqError(`--node-rank ${flags['node-rank']} is outside --nnodes ${flags.nnodes}`);
    if (flags.nnodes > 1 && flags['master-addr'] === '127.0.0.1') throw new CommvqError('--nnodes > 1 needs --master-addr, the address of the host of rank 0');
    const gpus = parseGpuList(flags.gpus);
    const job = startJob({
      gpus, nnodes: flags.nnodes, nodeRank: flags['node-rank'], masterAddr: flags['master-addr'], masterPort: flags['master-port'],
      timeoutS: flags['rdzv-timeout'], ...this.program(words),
    });
    const forward = (signal: NodeJS.Signals) => () => job.forward(signal);
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    process.on('SIGINT', onInt).on('SIGTERM', onTerm);
    try {
      const result = await job.done;
      if (result.failed) this.logToStderr(`commvq launch: ${failureLine(result.failed, gpus.length * flags.nnodes)}`);
      process.exitCode = result.exitCode;
      return result;
    } finally {
      process.off('SIGINT', onInt).off('SIGTERM', onTerm);
    }
  }

  /** A commvq command runs with this install's node and bin/run.js; anything else as given. */
  private program(words: string[]): { command: string; args: string[] } {
    const rest = words[0] === 'commvq' ? words.slice(1) : words;
    const isOurs = words[0] === 'commvq' || this.config.findCommand(words[0]!) !== undefined || this.config.findTopic(words[0]!) !== undefined;
    return isOurs ? { command: process.execPath, args: [join(this.config.root, 'bin', 'run.js'), ...rest] } : { command: words[0]!, args: words.slice(1) };
  }
}
