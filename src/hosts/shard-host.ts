// A shard: the Durable Object (in a Worker script of its own, so that it has an isolate of its own) that holds
// one part of the model, a range of layers with their KV caches or a slice of the vocabulary, in a
// WebAssembly.Memory whose maximum is its budget. It answers only the coordinator, over one WebSocket, one
// message at a time, in order. Its own Worker has no route of its own (see src/entries/shard.ts).
// Platform limits this respects (Cloudflare docs, read Dec 2026): "Each incoming HTTP request or WebSocket
// message resets the remaining available CPU time" of a Durable Object (30 s, up to 5 min with limits.cpu_ms):
// the heaviest message here, one 64-token chunk through one Gemma-2B layer, takes well under a second.
import type { DurableObjectState, R2Bucket, WebSocket as CfWebSocket } from "@cloudflare/workers-types";
import { hasRelaxedSimd, WasmBackend } from "../engine/backend/wasm.ts";
import type { GgufTensorInfo } from "../engine/gguf.ts";
import { loadPart, type ModelPart } from "../engine/model/part.ts";
import relaxedKernels from "../../build/kernels-relaxed.wasm";
import simdKernels from "../../build/kernels-simd.wasm";
import { R2ByteSource } from "./r2-source.ts";
import { decodeFrame, encodeFrame, shardName, type ShardLoad, type ShardRequest, type ShardStatus } from "./shard-protocol.ts";

/** Whether a frame asks for the status (its header is small JSON; the payload is not touched). */
function isStatus(frame: ArrayBuffer): boolean {
  return decodeFrame<ShardRequest>(frame).header.op === "status";
}

declare const WebSocketPair: { new (): { 0: CfWebSocket; 1: CfWebSocket } };

export interface ShardEnv {
  MODELS: R2Bucket;
  /** "1" in test configurations only: the coordinator may reset this shard (see ShardRequest "reset"). */
  ALLOW_SHARD_RESET?: string;
}

export class ModelShard {
  private readonly env: ShardEnv;
  private readonly state: DurableObjectState;
  private part: ModelPart | undefined;
  private backend: WasmBackend | undefined;
  private loadedJson = "";
  private load: ShardLoad | undefined;
  private progress = { loaded: 0, total: 0 };
  private error: string | undefined;
  private loading = false;
  /** Messages are handled one at a time, in arrival order. */
  private queue: Promise<void> = Promise.resolve();

  constructor(state: DurableObjectState, env: ShardEnv) {
    this.state = state;
    this.env = env;
  }

  async fetch(request: Request): Promise<Response> {
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("this shard answers only its coordinator, over a WebSocket", { status: 403 });
    }
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    (server as unknown as { binaryType: string }).binaryType = "arraybuffer"; // the default is "blob" since 2026-03-17
    server.accept();
    server.addEventListener("message", (ev) => {
      const data = ev.data;
      // a status question is answered at once, even while a load or a chunk is in progress (health probes)
      if (data instanceof ArrayBuffer && isStatus(data)) void this.handle(server, data);
      else this.queue = this.queue.then(() => this.handle(server, data)).catch(() => {});
    });
    return new Response(null, { status: 101, webSocket: client } as ResponseInit);
  }

  private status(): ShardStatus {
    return {
      status: this.error ? "error" : this.part ? "ready" : this.loading ? "loading" : "empty",
      layers: this.load?.spec.layers,
      vocab: this.load?.spec.vocab,
      wasm_memory_bytes: this.backend?.memoryBytes ?? 0,
      budget_bytes: this.load?.budgetBytes ?? 0,
      sequences_in_use: this.part?.sequencesInUse ?? 0,
      loaded_bytes: this.progress.loaded,
      total_bytes: this.progress.total,
      ...(this.error ? { error: this.error } : {}),
    };
  }

  private async handle(ws: CfWebSocket, data: unknown): Promise<void> {
    let id = -1;
    try {
      if (!(data instanceof ArrayBuffer)) throw new Error("shard messages are binary frames");
      const { header: req, payload } = decodeFrame<ShardRequest>(data);
      id = req.id;
      const reply = (extra: object = {}, out?: Float32Array) => ws.send(encodeFrame({ id, ok: true, ...extra }, out));
      switch (req.op) {
        case "load":
          await this.ensureLoaded(req.load);
          return reply({ status: this.status() });
        case "status":
          return reply({ status: this.status() });
        case "release":
          this.part?.release(req.slot);
          return reply();
        case "reset":
          if (this.env.ALLOW_SHARD_RESET !== "1") throw new Error("reset is allowed only where ALLOW_SHARD_RESET is 1 (tests)");
          reply();
          this.part = undefined;
          this.backend = undefined;
          this.loadedJson = "";
          ws.close(1012, "shard reset");
          this.state.abort?.("reset by its coordinator (tests)");
          return;
      }
      const part = this.part;
      if (!part) throw new Error(`${this.load ? shardName(this.load.index, this.load.spec) : "this shard"} holds no model (it was restarted or never loaded)`);
      switch (req.op) {
        case "embed":
          return reply({}, part.embed(req.tokens));
        case "step": {
          const r = part.layersBatch(payload, req.segs);
          return reply({ rows: r.rows }, r.x);
        }
        case "heads":
          return reply({}, part.headRows(payload, req.m));
        case "copy":
          part.copyKv(req.from, req.to, req.n);
          return reply();
      }
    } catch (e) {
      try {
        ws.send(encodeFrame({ id, error: (e as Error).message }));
      } catch {
        // the coordinator is gone
      }
    }
  }

  /** Load the part described by `load` (nothing to do when it is the one loaded). A failure is kept for status. */
  private async ensureLoaded(load: ShardLoad): Promise<void> {
    const json = JSON.stringify(load);
    if (this.part && json === this.loadedJson) return;
    this.part = undefined;
    this.backend = undefined;
    this.load = load;
    this.error = undefined;
    this.loading = true;
    this.progress = { loaded: 0, total: load.tensors.reduce((s, t) => s + t.nbytes, 0) };
    const name = shardName(load.index, load.spec);
    try {
      const src = await R2ByteSource.open(this.env.MODELS, load.key);
      if (src.etag !== load.etag) throw new Error(`the R2 object "${load.key}" changed (etag ${src.etag}, planned from ${load.etag})`);
      const relaxed = hasRelaxedSimd();
      const backend = new WasmBackend(relaxed ? relaxedKernels : simdKernels, relaxed ? "relaxed" : "simd", { maxBytes: load.budgetBytes });
      this.backend = backend;
      const infos = new Map(load.tensors.map((t) => [t.name, t as GgufTensorInfo]));
      this.part = await loadPart(src, backend, load.cfg, (n) => infos.get(n), load.spec, load.sizing, {
        onProgress: (loaded, total) => (this.progress = { loaded, total }),
      });
      this.loadedJson = json;
    } catch (e) {
      this.part = undefined;
      this.error = `${name} failed to load: ${(e as Error).message}`;
      throw new Error(this.error);
    } finally {
      this.loading = false;
    }
  }
}
