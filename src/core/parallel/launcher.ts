import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { constants } from 'node:os';
import { freePort } from './free-port.js';
import { rankEnv, type JobLayout } from './launch-env.js';

/**
 * `commvq launch`'s core: one child process per GPU of this node, each with its rank's environment (launch-env.ts).
 * The job ends when every child has exited. A child that exits non-zero (or by a signal) while the job runs ends the
 * job: the others get SIGTERM, then SIGKILL after `graceMs`, and the result names the first failed rank. An
 * interrupt (`job.forward('SIGINT')`, what Ctrl-C does) goes to every child, which then stop on their own.
 * Children run in their own process groups, so a terminal's Ctrl-C reaches them once, through the launcher.
 *
 *   const job = startJob({ gpus: [0, 1], nnodes: 1, nodeRank: 0, masterAddr: '127.0.0.1', command: 'node', args: ['x.js'] });
 *   process.on('SIGINT', () => job.forward('SIGINT'));
 *   const { exitCode, failed } = await job.done;  // failed: { rank: 1, gpu: 1, code: 3, signal: null }
 */
export interface LaunchOptions extends Omit<JobLayout, 'masterPort'> {
  /** default: a free port for one node, torchrun's 29500 for several */
  masterPort?: number;
  command: string;
  args: string[];
  /** the environment the children's start from (default process.env) */
  env?: NodeJS.ProcessEnv;
  stdio?: StdioOptions;
  /** how long a stopped job's children get between SIGTERM and SIGKILL (default 5 s) */
  graceMs?: number;
}

export interface RankFailure {
  rank: number;
  gpu: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LaunchResult {
  /** 0, the failed rank's exit code (128 + signal number for a signal), or the first non-zero code after an interrupt */
  exitCode: number;
  failed?: RankFailure;
  interrupted: boolean;
  masterPort: number;
}

export interface Job {
  done: Promise<LaunchResult>;
  forward(signal: NodeJS.Signals): void;
  /** the children's pids once started, by local rank */
  pids(): number[];
}

/** The one line a failed job ends with. */
export function failureLine(f: RankFailure, worldSize: number): string {
  const how = f.signal ? `was killed by ${f.signal}` : `exited with code ${f.code}`;
  const others = worldSize === 1 ? '' : worldSize === 2 ? '; the other rank was stopped' : `; the other ${worldSize - 1} ranks were stopped`;
  return `rank ${f.rank} (GPU ${f.gpu}) ${how}${others}`;
}

export function startJob(o: LaunchOptions): Job {
  const children: ChildProcess[] = [];
  let interrupted = false;
  const pending: NodeJS.Signals[] = [];
  const forward = (signal: NodeJS.Signals) => {
    interrupted = true;
    if (children.length === 0) pending.push(signal);
    for (const c of children) signalGroup(c, signal);
  };
  const done = (async (): Promise<LaunchResult> => {
    const masterPort = o.masterPort ?? (o.nnodes === 1 ? await freePort() : 29500);
    const exits = o.gpus.map((_, localRank) => {
      const child = spawn(o.command, o.args, {
        env: { ...(o.env ?? process.env), ...rankEnv({ ...o, masterPort, localRank }) },
        stdio: o.stdio ?? 'inherit',
        detached: true,
      });
      children.push(child);
      return new Promise<{ localRank: number; code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
        child.once('error', () => resolve({ localRank, code: 127, signal: null })); // could not start
        child.once('exit', (code, signal) => resolve({ localRank, code, signal }));
      });
    });
    for (const s of pending) forward(s);
    let failed: RankFailure | undefined;
    let firstCode = 0;
    const running = new Set(exits.map((_, i) => i));
    await Promise.all(exits.map((p) => p.then((e) => {
      running.delete(e.localRank);
      const code = e.signal ? 128 + (constants.signals[e.signal] ?? 0) : e.code ?? 1;
      if (code === 0) return;
      firstCode ||= code;
      if (interrupted || failed) return;
      failed = { rank: o.nodeRank * o.gpus.length + e.localRank, gpu: o.gpus[e.localRank]!, code: e.code, signal: e.signal };
      stopAll(children.filter((_, i) => running.has(i)), o.graceMs ?? 5000);
    })));
    return { exitCode: firstCode, failed, interrupted, masterPort };
  })();
  return { done, forward, pids: () => children.map((c) => c.pid ?? 0) };
}

function stopAll(children: ChildProcess[], graceMs: number): void {
  for (const c of children) signalGroup(c, 'SIGTERM');
  const timer = setTimeout(() => children.forEach((c) => c.exitCode === null && c.signalCode === null && signalGroup(c, 'SIGKILL')), graceMs);
  timer.unref();
}

/** Signals the child's whole process group (it may have started its own children). */
function signalGroup(c: ChildProcess, signal: NodeJS.Signals): void {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
  try {
    process.kill(-c.pid, signal);
  } catch {
    c.kill(signal);
  }
}
