// The contract between the HTTP layer (src/api) and the hosts that run a model (src/hosts): what a request is, the
// events a generation answers with, the model's status, and the model file a host serves. Both sides import it;
// neither imports the other (the entries, src/index.ts and src/hosts/node-server.ts, put them together).
import type { DoneEvent, Prompt, TokenEvent } from "../engine/generate.ts";
import type { ConstraintSpec } from "../engine/grammar.ts";
import type { SamplingParams } from "../engine/sampler.ts";

/** A generation request as it travels between hosts (plain JSON). */
export interface ServiceRequest {
  prompt: Prompt;
  /** Tokens to generate at most; undefined: as many as the context leaves. */
  maxTokens?: number;
  /** The request field that set maxTokens, named in errors (max_tokens, max_completion_tokens, max_new_tokens). */
  maxTokensField?: string;
  /** The request field that holds the prompt, named in errors (messages, prompt, inputs). */
  promptField?: string;
  sampling?: Partial<SamplingParams>;
  stop?: string[];
  topLogprobs?: number;
  /** Each token's logprob wanted (default true; GenerateRequest.logprobs). */
  logprobs?: boolean;
  /** What the output must match (engine/grammar.ts), and the request field it came in (named in errors). */
  constraint?: ConstraintSpec;
  constraintField?: string;
  /** Start from the longest prefix kept in the prompt cache (default true; llama.cpp's cache_prompt). */
  cachePrompt?: boolean;
}

export type ErrorKind = "validation" | "template" | "overloaded" | "unavailable" | "timeout" | "generation";

export interface ServiceError {
  type: "error";
  kind: ErrorKind;
  /** The HTTP status the API answers with (when nothing was streamed yet). */
  status: number;
  message: string;
  field?: string;
}

/** A generated token with its own text (what the token alone decodes to) for logprobs and TGI's token lists. */
export interface ServiceToken extends Omit<TokenEvent, "top"> {
  piece: string;
  bytes: number[];
  top: { id: number; logprob: number; piece: string; bytes: number[] }[];
}

export type ServiceEvent =
  | { type: "accepted"; promptTokens: number; maxTokens: number; queuePosition: number; seed: number }
  | { type: "keepalive" }
  | ServiceToken
  | DoneEvent
  | ServiceError;

export interface ModelStatus {
  status: "idle" | "loading" | "ready" | "error";
  model: string;
  progress: number;
  loaded_bytes: number;
  total_bytes: number;
  error?: string;
  /** While loading: "downloading" (into R2 from the model source, see pull-through.ts) or "loading" (into memory). */
  phase?: "downloading" | "loading";
  context_size?: number;
  /** When ready: general.architecture of the file (gemma, gemma2, gemma3). */
  architecture?: string;
  /**
   * When ready: bytes of keys and values one sequence needs for the whole context (sliding-window layers keep
   * a ring of their window), and the number of sequence slots that hold them.
   */
  kv_bytes_per_sequence?: number;
  kv_slots?: number;
  queue_length: number;
  /** The parts the model runs in (one for a model that fits its host; see engine/shard-plan.ts). */
  shards?: ShardReport[];
}

/** One part of the model as /health lists it. */
export interface ShardReport {
  index: number;
  layers?: [number, number];
  vocab?: [number, number];
  status: "empty" | "loading" | "ready" | "error" | "unreachable";
  /** The byte length of its WebAssembly.Memory, and that memory's maximum (null: no budget, 4 GiB). */
  wasm_memory_bytes: number;
  budget_bytes: number | null;
  sequences_in_use: number;
  error?: string;
}

export interface ModelInfo {
  model: string;
  contextSize: number;
  vocabSize: number;
  architecture: string;
  /** See ModelStatus.kv_bytes_per_sequence. */
  kvBytesPerSequence: number;
}

/** What the HTTP layer needs from a model, wherever it runs. */
export interface ModelService {
  readonly modelId: string;
  status(): Promise<ModelStatus>;
  info(): Promise<ModelInfo>;
  tokenize(text: string): Promise<{ ids: number[]; pieces: string[] }>;
  generate(req: ServiceRequest, signal?: AbortSignal): AsyncIterable<ServiceEvent>;
  /** Start (and await) loading, for hosts whose status() does not load by itself. */
  warmUp?(): Promise<void>;
  /** The service's metrics in Prometheus text format (queue, batch, tokens, caches). */
  metrics?(): Promise<string>;
}

/** An error to answer with before anything was streamed (loading failed, bad request...). */
export class ServiceFailure extends Error {
  readonly event: ServiceError;
  constructor(event: Omit<ServiceError, "type">) {
    super(event.message);
    this.event = { type: "error", ...event };
  }
}

/** Where the host keeps the model file (R2 in the Worker, a local file on Node). */
export interface ModelFiles {
  /** Size and etag of the file, or null when it is missing. */
  stat(): Promise<{ size: number; etag: string } | null>;
  /** Bytes [offset, offset + length) of the file. */
  read(offset: number, length: number): Promise<ReadableStream<Uint8Array>>;
}
