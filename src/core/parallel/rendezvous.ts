import { connect, createServer, type Server, type Socket } from 'node:net';
import { CommvqError } from '../errors.js';
import { FrameQueue } from './frames.js';

/**
 * The TCP rendezvous of a job (torchrun's "c10d" store, reduced to what we need): rank 0 listens on
 * MASTER_ADDR:MASTER_PORT, every other rank connects and says who it is, and once all WORLD_SIZE ranks are in, each
 * `join` returns. After that one primitive, `exchange`, runs in lockstep on every rank: each rank sends a payload to
 * rank 0, rank 0 combines them in rank order and sends the result back. Publishing a blob (the NCCL unique id), a
 * barrier and a small all-reduce are all exchanges. Every wait has a deadline and fails with one line naming the
 * ranks that did not arrive; a rank whose connection closes fails the others at once.
 *
 *   const rdzv = await Rendezvous.join({ rank, worldSize, masterAddr: '127.0.0.1', masterPort: 29500 });
 *   const id = await rdzv.publish(rank === 0 ? ncclUniqueId() : undefined);  // 128 bytes on every rank
 *   await rdzv.barrier('checkpoint written'); rdzv.close();
 */
export interface RendezvousOptions {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  /** deadline of joining, publishing and barriers, in ms (default 60 s) */
  timeoutMs?: number;
}

export const DEFAULT_RENDEZVOUS_TIMEOUT_MS = 60_000;

export class Rendezvous {
  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    /** rank 0: one queue per other rank (index r − 1); other ranks: the one queue to rank 0 */
    private readonly peers: FrameQueue[],
    private readonly timeoutMs: number,
  ) {}

  /** Joins the job; resolves on every rank once all `worldSize` ranks have joined. */
  static async join(o: RendezvousOptions): Promise<Rendezvous> {
    const timeoutMs = o.timeoutMs ?? DEFAULT_RENDEZVOUS_TIMEOUT_MS;
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) throw new CommvqError(`rendezvous: rank ${o.rank} is outside world size ${o.worldSize}`);
    if (o.worldSize === 1) return new Rendezvous(0, 1, [], timeoutMs);
    const peers = o.rank === 0 ? await serve(o, timeoutMs) : await reach(o, timeoutMs);
    return new Rendezvous(o.rank, o.worldSize, peers, timeoutMs);
  }

  /**
   * Every rank sends `payload`; rank 0 calls `combine` on all of them in rank order and every rank gets its result.
   * `what` names the step in timeout lines; `timeoutMs` defaults to the rendezvous's (Infinity: wait as long as the
   * other ranks stay connected, as gradient all-reduces do).
   */
  async exchange(payload: Uint8Array, combine: (all: Buffer[]) => Uint8Array, what: string, timeoutMs = this.timeoutMs): Promise<Buffer> {
    if (this.worldSize === 1) return Buffer.from(combine([Buffer.from(payload)]));
    const secs = `${timeoutMs / 1000} s`;
    if (this.rank !== 0) {
      this.peers[0]!.send(payload);
      return this.peers[0]!.next(timeoutMs, () => `rendezvous: rank ${this.rank} waited ${secs} for ${what}; rank 0 or another rank did not arrive`);
    }
    const late = new Set(this.peers.map((_, i) => i + 1));
    const frames = await Promise.all(this.peers.map((q, i) => q.next(timeoutMs, () => `rendezvous: rank${late.size > 1 ? 's' : ''} ${[...late].join(', ')} of ${this.worldSize} did not reach ${what} within ${secs}`).then((f) => (late.delete(i + 1), f))));
    const result = combine([Buffer.from(payload), ...frames]);
    for (const q of this.peers) q.send(result);
    return Buffer.from(result);
  }

  /** Rank 0's `blob` (ignored elsewhere), delivered to every rank. */
  publish(blob: Uint8Array | undefined, what = 'the published blob'): Promise<Buffer> {
    if (this.rank === 0 && !blob) throw new Error('rendezvous: rank 0 must give the blob to publish');
    return this.exchange(this.rank === 0 ? blob! : new Uint8Array(0), (all) => all[0]!, what);
  }

  /** Returns once every rank has called it. */
  async barrier(what = 'the barrier'): Promise<void> {
    await this.exchange(new Uint8Array(0), () => new Uint8Array(0), what);
  }

  close(): void {
    for (const q of this.peers) q.close();
  }
}

/** Rank 0: listen, take one JOIN frame from each other rank, then welcome them all. */
async function serve(o: RendezvousOptions, timeoutMs: number): Promise<FrameQueue[]> {
  const peers: (FrameQueue | undefined)[] = Array.from({ length: o.worldSize - 1 }, () => undefined);
  const server = createServer();
  const where = `${o.masterAddr}:${o.masterPort}`;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new CommvqError(`rendezvous: rank 0 cannot listen on port ${o.masterPort} (${e.code ?? e.message})`, 'choose another --master-port')));
      server.listen(o.masterPort, resolve);
    });
    await new Promise<void>((resolve, reject) => {
      let joined = 0;
      const timer = setTimeout(() => {
        const missing = peers.flatMap((p, i) => (p ? [] : [i + 1]));
        reject(new CommvqError(`rendezvous: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of ${o.worldSize} did not join rank 0 at ${where} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      server.on('connection', (socket: Socket) => {
        socket.setNoDelay(true);
        const q = new FrameQueue(socket, 'a joining rank');
        q.next(timeoutMs, () => 'rendezvous: a connection sent no join').then((frame) => {
          const hello = JSON.parse(frame.toString()) as { rank: number; worldSize: number };
          const bad = hello.worldSize !== o.worldSize ? `rank ${hello.rank} was started with world size ${hello.worldSize}, rank 0 with ${o.worldSize}`
            : !(hello.rank >= 1 && hello.rank < o.worldSize) ? `a rank joined as rank ${hello.rank}, outside 1..${o.worldSize - 1}`
            : peers[hello.rank - 1] ? `two ranks joined as rank ${hello.rank}` : '';
          if (bad) {
            clearTimeout(timer);
            q.close();
            return reject(new CommvqError(`rendezvous: ${bad}`));
          }
          q.peer = `rank ${hello.rank}`;
          peers[hello.rank - 1] = q;
          if (++joined === o.worldSize - 1) {
            clearTimeout(timer);
            resolve();
          }
        }, () => q.close());
      });
    });
  } catch (e) {
    for (const p of peers) p?.close();
    throw e;
  } finally {
    server.close(); // stop accepting; the joined connections stay open
  }
  const all = peers as FrameQueue[];
  for (const q of all) q.send(Buffer.from('welcome'));
  return all;
}

/** Ranks 1..: connect to rank 0 (retrying until the deadline: it may start later), join, wait for the welcome. */
async function reach(o: RendezvousOptions, timeoutMs: number): Promise<FrameQueue[]> {
  const deadline = Date.now() + timeoutMs;
  const where = `${o.masterAddr}:${o.masterPort}`;
  for (;;) {
    const socket = await new Promise<Socket | null>((resolve) => {
      const s = connect({ host: o.masterAddr, port: o.masterPort });
      s.once('connect', () => resolve(s));
      s.once('error', () => (s.destroy(), resolve(null)));
    });
    if (socket) {
      socket.setNoDelay(true);
      const q = new FrameQueue(socket, `rank 0 at ${where}`);
      q.send(Buffer.from(JSON.stringify({ rank: o.rank, worldSize: o.worldSize })));
      await q.next(Math.max(1, deadline - Date.now()), () => `rendezvous: rank ${o.rank} reached rank 0 at ${where}, but not every rank joined within ${timeoutMs / 1000} s`);
      return [q];
    }
    if (Date.now() + 100 > deadline) throw new CommvqError(`rendezvous: rank ${o.rank} could not reach rank 0 at ${where} within ${timeoutMs / 1000} s`, 'check --master-addr and --master-port, and that rank 0 started');
    await new Promise((r) => setTimeout(r, 100));
  }
}
