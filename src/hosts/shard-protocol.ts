// What the coordinator (the model's Durable Object) and a shard (a Durable Object of its own Worker script,
// holding one part of the model) say to each other over the one WebSocket the coordinator keeps open to each
// shard. A binary frame: u32 LE header length | header (JSON) | zero padding to 4 bytes | payload (f32 values).
// Platform limits this respects (Cloudflare Workers docs, read Dec 2026): a WebSocket message is at most 32 MiB
// (the largest here is one vocabulary slice's logits, 4 bytes x 85,376 rows for Gemma-2B at 100 MB, 0.34 MB;
// a prefill chunk of 64 x 2048 hidden values is 0.5 MB); messages on an open WebSocket are not subrequests.
import type { GemmaConfig } from "../engine/config.ts";
import type { PartSizing, PartSpec, SlotSegment } from "../engine/model/part.ts";

/** A tensor of the part, as the GGUF header describes it (the shard never parses the header itself). */
export interface ShardTensor {
  name: string;
  type: number;
  dims: number[];
  offset: number;
  nbytes: number;
}

/** Everything a shard needs to load its part from the R2 object. */
export interface ShardLoad {
  index: number;
  /** The model's R2 key and the etag the coordinator planned from: a shard refuses an object that changed. */
  key: string;
  etag: string;
  cfg: GemmaConfig;
  spec: PartSpec;
  tensors: ShardTensor[];
  sizing: PartSizing;
  /** The shard's WebAssembly.Memory maximum. */
  budgetBytes: number;
}

export type ShardRequest =
  | { op: "load"; id: number; load: ShardLoad }
  | { op: "status"; id: number }
  | { op: "embed"; id: number; tokens: number[] }
  /** A batched step over several sequences' rows (their hidden states one after another in the payload). */
  | { op: "step"; id: number; segs: SlotSegment[] }
  /** The LM head on `m` final hidden states. */
  | { op: "heads"; id: number; m: number }
  | { op: "copy"; id: number; from: number; to: number; n: number }
  | { op: "release"; id: number; slot: number }
  /** Tests only (a shard with ALLOW_SHARD_RESET = "1"): drop everything, as an evicted Durable Object would. */
  | { op: "reset"; id: number };

export interface ShardStatus {
  status: "empty" | "loading" | "ready" | "error";
  layers?: [number, number];
  vocab?: [number, number];
  /** The byte length of the shard's WebAssembly.Memory, and its maximum (the budget). */
  wasm_memory_bytes: number;
  budget_bytes: number;
  sequences_in_use: number;
  loaded_bytes: number;
  total_bytes: number;
  error?: string;
}

/** `rows`: the rows each segment of a step kept (see ModelPart.layersBatch). */
export type ShardResponse = { id: number; ok: true; status?: ShardStatus; rows?: number[] } | { id: number; error: string };

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeFrame(header: object, payload?: Float32Array): ArrayBuffer {
  const h = enc.encode(JSON.stringify(header));
  const at = (4 + h.length + 3) & ~3;
  const buf = new ArrayBuffer(at + (payload ? payload.byteLength : 0));
  new DataView(buf).setUint32(0, h.length, true);
  new Uint8Array(buf, 4, h.length).set(h);
  if (payload) new Float32Array(buf, at, payload.length).set(payload);
  return buf;
}

export function decodeFrame<H>(buf: ArrayBuffer): { header: H; payload: Float32Array } {
  if (buf.byteLength < 4) throw new Error(`a shard frame of ${buf.byteLength} bytes has no header`);
  const len = new DataView(buf).getUint32(0, true);
  if (4 + len > buf.byteLength) throw new Error(`a shard frame's header of ${len} bytes overruns its ${buf.byteLength} bytes`);
  const header = JSON.parse(dec.decode(new Uint8Array(buf, 4, len))) as H;
  const at = (4 + len + 3) & ~3;
  const payload = at < buf.byteLength ? new Float32Array(buf, at, (buf.byteLength - at) >> 2) : new Float32Array(0);
  return { header, payload };
}

/** How a shard names itself in errors: "shard 3 (layers [3, 4))". */
export function shardName(index: number, spec: PartSpec): string {
  const what = [spec.layers && `layers [${spec.layers[0]}, ${spec.layers[1]})`, spec.vocab && `vocab [${spec.vocab[0]}, ${spec.vocab[1]})`].filter(Boolean).join(" + ");
  return `shard ${index} (${what})`;
}
