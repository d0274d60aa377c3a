// One loaded model and its request queue: loading (with progress, retried after a failure), validation of a
// request against the context, first-in-first-out scheduling of one generation at a time, keep-alives while a
// request waits, a time limit per request, and cancellation. Host-agnostic: the Durable Object and the Node
// server both run this; only the ByteSource and the Backend they hand in differ.
import type { ByteSource } from "../engine/byte-source.ts";
import { ChatTemplateError } from "../engine/chat-template.ts";
import { encodePrompt, generate, type DoneEvent, type Prompt, type TokenEvent } from "../engine/generate.ts";
import type { LoadOptions, RunnableModel } from "../engine/model/load.ts";
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
}

/** An error to answer with before anything was streamed (loading failed, bad request...). */
export class ServiceFailure extends Error {
  readonly event: ServiceError;
  constructor(event: Omit<ServiceError, "type">) {
    super(event.message);
    this.event = { type: "error", ...event };
  }
}

export interface LocalServiceOptions {
  modelId: string;
  /** Opens the model file (an R2 object, a local file); reports progress while it first downloads it, if it does. */
  openSource: (onDownload?: (received: number, total: number) => void) => Promise<ByteSource>;
  /** Loads the model from the source on a fresh backend (each load attempt). */
  loadModel: (src: ByteSource, opts: LoadOptions) => Promise<RunnableModel>;
  contextSize?: number;
  maxBatch?: number;
  /** Requests that may wait behind the running one before new ones get 429. */
  maxQueue?: number;
  requestTimeoutMs?: number;
  keepAliveMs?: number;
  /** The parts of the model and how they stand, for status() (hosts that know them). */
  shards?: () => Promise<ShardReport[]>;
  /**
   * Whether status() starts loading in the background (default true). The Durable Object says false: it loads
   * inside a response body (see durable-object.ts) when the Worker asks it to warm up.
   */
  autoLoad?: boolean;
}

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export class LocalModelService implements ModelService {
  readonly modelId: string;
  private readonly opts: LocalServiceOptions;
  private model: RunnableModel | undefined;
  private loading: Promise<RunnableModel> | undefined;
  private loadError: string | undefined;
  private progress = { loaded: 0, total: 0 };
  private phase: "downloading" | "loading" = "loading";
  private lastAttempt = 0;
  private busy = false;
  /** Requests waiting for the model, oldest first. */
  private readonly waiting: { granted: boolean; wake: () => void }[] = [];

  constructor(opts: LocalServiceOptions) {
    this.opts = opts;
    this.modelId = opts.modelId;
  }

  /** Load the model once; concurrent callers share the load; a failed load is retried by the next caller. */
  load(): Promise<RunnableModel> {
    if (this.model) return Promise.resolve(this.model);
    this.loading ??= (async () => {
      this.lastAttempt = Date.now();
      this.loadError = undefined;
      this.progress = { loaded: 0, total: 0 };
      this.phase = "loading";
      let src: ByteSource | undefined;
      try {
        src = await this.opts.openSource((received, total) => {
          this.phase = "downloading";
          this.progress = { loaded: received, total };
        });
        this.phase = "loading";
        this.progress = { loaded: 0, total: 0 };
        const m = await this.opts.loadModel(src, {
          contextSize: this.opts.contextSize,
          maxBatch: this.opts.maxBatch,
          onProgress: (loaded, total) => (this.progress = { loaded, total }),
        });
        this.model = m;
        return m;
      } catch (e) {
        this.loadError = (e as Error).message;
        throw new ServiceFailure({ kind: "unavailable", status: 503, message: `model "${this.modelId}" is unavailable: ${this.loadError}` });
      } finally {
        this.loading = undefined;
        await src?.close?.().catch(() => {});
      }
    })();
    return this.loading;
  }

  /** Loaded, and nothing running or waiting. */
  get readyAndIdle(): boolean {
    return this.model !== undefined && !this.busy && this.waiting.length === 0;
  }

  /** Whether a load should start: nothing loaded or loading, and no failure in the last few seconds. */
  get shouldLoad(): boolean {
    return !this.model && !this.loading && (!this.loadError || Date.now() - this.lastAttempt > 5000);
  }

  /** Where loading stands; starts loading (unless autoLoad is off) when idle, or a few seconds after a failure. */
  async status(): Promise<ModelStatus> {
    if (this.opts.autoLoad !== false && this.shouldLoad) void this.load().catch(() => {});
    const shards = await this.opts.shards?.();
    const base = { model: this.modelId, queue_length: this.waiting.length + (this.busy ? 1 : 0), ...(shards ? { shards } : {}) };
    if (this.model) {
      const total = this.progress.total;
      return { ...base, status: "ready", progress: 1, loaded_bytes: total, total_bytes: total, context_size: this.model.contextSize };
    }
    const { loaded, total } = this.progress;
    const progress = total ? loaded / total : 0;
    if (this.loading) return { ...base, status: "loading", phase: this.phase, progress, loaded_bytes: loaded, total_bytes: total };
    if (this.loadError) return { ...base, status: "error", progress, loaded_bytes: loaded, total_bytes: total, error: this.loadError };
    return { ...base, status: "idle", progress: 0, loaded_bytes: 0, total_bytes: 0 };
  }

  async info(): Promise<ModelInfo> {
    const m = await this.load();
    return { model: this.modelId, contextSize: m.contextSize, vocabSize: m.cfg.vocabSize, architecture: "gemma" };
  }

  async tokenize(text: string): Promise<{ ids: number[]; pieces: string[] }> {
    const m = await this.load();
    const ids = m.tokenizer.encode(text);
    return { ids, pieces: ids.map((i) => m.tokenizer.decode([i])) };
  }

  async *generate(req: ServiceRequest, signal?: AbortSignal): AsyncGenerator<ServiceEvent> {
    let m: RunnableModel;
    try {
      m = await this.load();
    } catch (e) {
      yield (e as ServiceFailure).event;
      return;
    }
    // validate against the model before queueing: prompt length, completion budget, chat template
    let promptIds: number[];
    try {
      promptIds = encodePrompt(m, req.prompt);
    } catch (e) {
      if (e instanceof ChatTemplateError) {
        yield { type: "error", kind: "template", status: 422, message: e.message, field: req.promptField ?? "messages" };
        return;
      }
      throw e;
    }
    const ctx = m.contextSize;
    const promptField = req.promptField ?? "prompt";
    if (promptIds.length >= ctx) {
      yield {
        type: "error", kind: "validation", status: 400, field: promptField,
        message: `This model's maximum context length is ${ctx} tokens. However, your ${promptField} resulted in ${promptIds.length} tokens, which leaves no room for a completion. Please shorten the ${promptField}.`,
      };
      return;
    }
    const room = ctx - promptIds.length;
    if (req.maxTokens !== undefined && req.maxTokens > room) {
      const field = req.maxTokensField ?? "max_tokens";
      yield {
        type: "error", kind: "validation", status: 400, field,
        message: `This model's maximum context length is ${ctx} tokens. However, you requested ${promptIds.length + req.maxTokens} tokens (${promptIds.length} in the ${promptField}, ${req.maxTokens} in the completion). Please reduce the length of the ${promptField} or the value of ${field} (at most ${room}).`,
      };
      return;
    }
    const maxTokens = req.maxTokens ?? room;

    // queue: first in, first out, one generation at a time
    const queuePosition = this.waiting.length + (this.busy ? 1 : 0);
    if (this.busy && this.waiting.length >= (this.opts.maxQueue ?? 8)) {
      yield { type: "error", kind: "overloaded", status: 429, message: `model "${this.modelId}" is busy: ${this.waiting.length} requests are already waiting; retry shortly` };
      return;
    }
    // a seed is always set, so that a sampled answer can be reproduced from what the response reports
    const seed = req.sampling?.seed ?? Math.floor(Math.random() * 2 ** 32);
    yield { type: "accepted", promptTokens: promptIds.length, maxTokens, queuePosition, seed };
    if (this.busy) {
      const slot = { granted: false, wake: () => {} };
      const turn = new Promise<void>((resolve) => (slot.wake = () => ((slot.granted = true), resolve())));
      this.waiting.push(slot);
      const keepAlive = this.opts.keepAliveMs ?? 10_000;
      let proceed = false;
      try {
        while (!slot.granted) {
          if (signal?.aborted) return;
          let timer: ReturnType<typeof setTimeout> | undefined;
          const woke = await Promise.race([turn.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), keepAlive)))]);
          if (timer !== undefined) clearTimeout(timer);
          if (!woke && !signal?.aborted) yield { type: "keepalive" };
        }
        proceed = true;
      } finally {
        // leaving the queue (abort, or the consumer stopped listening): give up the place or pass the turn on
        if (!proceed) {
          if (slot.granted) this.next();
          else this.waiting.splice(this.waiting.indexOf(slot), 1);
        }
      }
    } else {
      this.busy = true;
    }

    // our turn: generate, under the time limit, stopping when the caller goes away
    const timeoutMs = this.opts.requestTimeoutMs ?? 300_000;
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal?.addEventListener("abort", onAbort);
    const timer = setTimeout(() => ac.abort(new Error("timeout")), timeoutMs);
    try {
      const sampling = { ...req.sampling, seed };
      const tok = m.tokenizer;
      const piece = (id: number) => {
        const bytes = tok.pieceOf(id);
        return { piece: new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(bytes), bytes: Array.from(bytes) };
      };
      for await (const ev of generate(m, { prompt: { ids: promptIds }, maxTokens, sampling, stop: req.stop, topLogprobs: req.topLogprobs, signal: ac.signal })) {
        if (ev.type === "done") {
          if (ev.finishReason === "abort" && !signal?.aborted) {
            yield { type: "error", kind: "timeout", status: 504, message: `the request exceeded the time limit of ${timeoutMs} ms and was stopped after ${ev.completionTokens} tokens` };
            return;
          }
          yield ev;
          continue;
        }
        yield { ...ev, ...piece(ev.id), top: ev.top.map((t) => ({ ...t, ...piece(t.id) })) };
        await tick(); // let disconnects and new requests in between tokens
      }
    } catch (e) {
      yield { type: "error", kind: "generation", status: 500, message: `generation failed: ${(e as Error).message}` };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      this.next();
    }
  }

  /** Hand the model to the next waiting request (or mark it free). */
  private next(): void {
    const slot = this.waiting.shift();
    if (slot) slot.wake();
    else this.busy = false;
  }

}
