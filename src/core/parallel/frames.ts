import type { Socket } from 'node:net';
import { CommvqError } from '../errors.js';

/**
 * Length-prefixed frames over a TCP socket ([u32 LE length][payload]), and a queue of the frames one socket has
 * delivered, so the rendezvous can wait for "the next frame from rank r" with a deadline. A socket that closes
 * fails every waiter with one line naming the peer.
 */
export function encodeFrame(payload: Uint8Array): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32LE(payload.byteLength, 0);
  return Buffer.concat([header, payload]);
}

export class FrameQueue {
  /** bytes received and not yet framed, kept as chunks: a large frame is joined once, not once per chunk */
  private chunks: Buffer[] = [];
  private pendingBytes = 0;
  private readonly frames: Buffer[] = [];
  private readonly waiters: { resolve: (b: Buffer) => void; reject: (e: Error) => void }[] = [];
  private closed: Error | null = null;

  /** Reads frames from `socket`; `peer` names it in errors ("rank 3", "rank 0 at host:port"). */
  constructor(
    readonly socket: Socket,
    /** who is at the other end; rank 0 renames a connection once it has said which rank it is */
    public peer: string,
  ) {
    socket.on('data', (chunk: Buffer) => this.push(chunk));
    socket.on('close', () => this.fail(new CommvqError(`rendezvous: ${this.peer} left (its connection closed)`)));
    socket.on('error', () => undefined); // 'close' follows and reports it
  }

  send(payload: Uint8Array): void {
    this.socket.write(encodeFrame(payload));
  }

  /** The next frame, or a CommvqError `timeoutLine` after `timeoutMs` (no deadline when it is Infinity). */
  next(timeoutMs: number, timeoutLine: () => string): Promise<Buffer> {
    const ready = this.frames.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      // unref'd: the open socket keeps the process alive while it waits, and a failed job never lingers for a deadline
      const timer = Number.isFinite(timeoutMs) ? setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new CommvqError(timeoutLine()));
      }, timeoutMs).unref() : undefined;
      const waiter = {
        resolve: (b: Buffer) => (clearTimeout(timer), resolve(b)),
        reject: (e: Error) => (clearTimeout(timer), reject(e)),
      };
      this.waiters.push(waiter);
    });
  }

  close(): void {
    this.closed ??= new CommvqError(`rendezvous: the connection to ${this.peer} was closed here`);
    this.socket.destroy();
  }

  private push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.pendingBytes += chunk.length;
    for (;;) {
      if (this.pendingBytes < 4) return;
      if (this.chunks[0]!.length < 4) this.chunks = [Buffer.concat(this.chunks)];
      const n = this.chunks[0]!.readUInt32LE(0);
      if (this.pendingBytes < 4 + n) return;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      const frame = Buffer.from(all.subarray(4, 4 + n));
      const rest = all.subarray(4 + n);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.pendingBytes = rest.length;
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(frame);
      else this.frames.push(frame);
    }
  }

  private fail(e: Error): void {
    this.closed ??= e;
    for (const w of this.waiters.splice(0)) w.reject(this.closed);
  }
}
