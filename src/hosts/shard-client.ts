// The coordinator's side of a shard: a PartRunner (engine/pipeline.ts) whose part lives in another Durable
// Object, reached over one WebSocket opened once and kept (reopened, and the part reloaded, when it closes).
// Calls wait for their answer; a socket that closes fails every call in flight at once (a shard that was
// reset ends the stream with an error, never a hang), and the next call reconnects and reloads.
// Platform limits this respects (Cloudflare Workers docs, read Dec 2026): a connection counts toward the six
// an invocation may have "waiting for response headers" only until its 101 arrives: at most 4 handshakes are in
// flight while the model loads (SHARD_LOAD_CONCURRENCY in durable-object.ts), afterwards at most the vocabulary
// slices a forward step asks at once (3 for Gemma-2B at 100 MB). Messages on an open socket are not
// subrequests, so a request's subrequests (10,000 on paid plans) do not grow with its tokens: one per shard
// when it (re)connects.
import type { WebSocket as CfWebSocket } from "@cloudflare/workers-types";
import type { PartRunner } from "../engine/pipeline.ts";
import type { PartSpec, SlotSegment } from "../engine/model/part.ts";
import { decodeFrame, encodeFrame, shardName, type ShardLoad, type ShardResponse, type ShardStatus } from "./shard-protocol.ts";

/** What opens the socket: a Durable Object stub's fetch with Upgrade: websocket. */
export type ShardConnector = () => Promise<CfWebSocket>;

/** A call without an answer for this long fails (a shard that hangs without closing its socket). */
const CALL_TIMEOUT_MS = 120_000;
/** Loading a part reads up to ~100 MB from R2. */
const LOAD_TIMEOUT_MS = 600_000;

interface Pending {
  resolve: (r: { header: ShardResponse; payload: Float32Array }) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class RemoteShard implements PartRunner {
  readonly spec: PartSpec;
  readonly name: string;
  private readonly load: ShardLoad;
  private readonly connector: ShardConnector;
  private ws: CfWebSocket | undefined;
  private ready: Promise<void> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** The last status the shard reported, and why the connection last failed. */
  lastStatus: ShardStatus | undefined;
  lastError: string | undefined;

  constructor(load: ShardLoad, connector: ShardConnector) {
    this.load = load;
    this.spec = load.spec;
    this.name = shardName(load.index, load.spec);
    this.connector = connector;
  }

  /** Connect (if not connected) and have the shard load its part (a no-op for a shard that holds it). */
  ensureReady(): Promise<void> {
    this.ready ??= (async () => {
      try {
        if (!this.ws) {
          const ws = await this.connector();
          (ws as unknown as { binaryType: string }).binaryType = "arraybuffer"; // the default is "blob" since 2026-03-17
          ws.accept();
          ws.addEventListener("message", (ev) => this.onMessage(ev.data));
          ws.addEventListener("close", (ev) => this.fail(`${this.name} closed its connection (${ev.code}${ev.reason ? ` ${ev.reason}` : ""})`));
          ws.addEventListener("error", () => this.fail(`${this.name}: its connection failed`));
          this.ws = ws;
        }
        const r = await this.send({ op: "load", load: this.load }, undefined, LOAD_TIMEOUT_MS);
        this.lastStatus = (r.header as { status?: ShardStatus }).status;
        this.lastError = undefined;
      } catch (e) {
        // the socket stays open when the shard answered (its part failed to load): it reports why in its status
        this.lastError = (e as Error).message.startsWith("shard ") ? (e as Error).message : `${this.name}: ${(e as Error).message}`;
        this.ready = undefined;
        throw new Error(this.lastError);
      }
    })();
    return this.ready;
  }

  /** The shard's status, asked now when connected (cheap: no compute), else what is known. */
  async status(): Promise<ShardStatus | undefined> {
    if (this.ws) {
      try {
        const r = await this.send({ op: "status" }, undefined, 10_000);
        this.lastStatus = (r.header as { status?: ShardStatus }).status;
      } catch {
        // reported through lastError
      }
    }
    return this.lastStatus;
  }

  async embed(tokens: number[]): Promise<Float32Array> {
    return (await this.call({ op: "embed", tokens })).payload;
  }
  async layersBatch(x: Float32Array, segs: SlotSegment[]): Promise<{ x: Float32Array; rows: number[] }> {
    const n = segs.reduce((a, g) => a + g.n, 0);
    const r = await this.call({ op: "step", segs }, x.subarray(0, n * this.load.cfg.dim));
    return { x: r.payload, rows: (r.header as { rows?: number[] }).rows ?? [] };
  }
  async headRows(h: Float32Array, m: number): Promise<Float32Array> {
    return (await this.call({ op: "heads", m }, h.subarray(0, m * this.load.cfg.dim))).payload;
  }
  async copyKv(from: number, to: number, n: number): Promise<void> {
    await this.call({ op: "copy", from, to, n });
  }
  async release(slot: number): Promise<void> {
    if (this.ws) await this.send({ op: "release", slot }, undefined, 10_000).catch(() => {});
  }
  /** Tests: have the shard drop everything (allowed only where the shard says so); it closes the socket as it goes. */
  async reset(): Promise<void> {
    await this.call({ op: "reset" }).catch((e: Error) => {
      if (!/closed its connection|connection failed/.test(e.message)) throw e;
    });
  }

  /** Close the connection (the part stays loaded in the shard). */
  close(): void {
    this.fail(`${this.name}: the coordinator closed the connection`);
  }

  private async call(req: Record<string, unknown>, payload?: Float32Array): Promise<{ header: ShardResponse; payload: Float32Array }> {
    await this.ensureReady();
    return this.send(req, payload, CALL_TIMEOUT_MS);
  }

  private send(req: Record<string, unknown>, payload: Float32Array | undefined, timeoutMs: number): Promise<{ header: ShardResponse; payload: Float32Array }> {
    const ws = this.ws;
    if (!ws) return Promise.reject(new Error(`${this.name} is not connected`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name} did not answer "${String(req.op)}" within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (r) => {
          if ("error" in r.header) reject(new Error(r.header.error.startsWith("shard ") ? r.header.error : `${this.name}: ${r.header.error}`));
          else resolve(r);
        },
        reject, timer,
      });
      try {
        ws.send(encodeFrame({ ...req, id }, payload));
      } catch (e) {
        this.fail(`${this.name}: sending failed: ${(e as Error).message}`);
      }
    });
  }

  private onMessage(data: unknown): void {
    if (!(data instanceof ArrayBuffer)) return;
    const r = decodeFrame<ShardResponse>(data);
    const p = this.pending.get(r.header.id);
    if (!p) return;
    this.pending.delete(r.header.id);
    clearTimeout(p.timer);
    p.resolve(r);
  }

  /** The connection is gone: fail what waits, reconnect on the next call. */
  private fail(message: string): void {
    this.lastError = message;
    this.drop();
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(message));
      this.pending.delete(id);
    }
  }

  private drop(): void {
    try {
      this.ws?.close(1000, "coordinator reconnects");
    } catch {
      // already closed
    }
    this.ws = undefined;
    this.ready = undefined;
  }
}

/** Run `fn` over `items`, at most `limit` at a time; every failure is collected (none stops the others). */
export async function eachLimited<T>(items: T[], limit: number, fn: (t: T) => Promise<void>): Promise<Error[]> {
  const errors: Error[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const t = items[next++]!;
        await fn(t).catch((e: Error) => errors.push(e));
      }
    }),
  );
  return errors;
}
