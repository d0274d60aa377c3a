// One request from prompt to finish: encode (plain text or chat) -> prefill -> decode/sample -> stop.
// Streaming and non-streaming callers share this path. Text comes out whole: incomplete UTF-8 and any tail
// that could begin a stop string are held back; stop strings are matched across tokens and removed.
import type { ChatMessage, ChatTemplateOptions } from "./chat-template.ts";
import type { TokenConstraint } from "./grammar.ts";
import { lowerToolMessages, type ToolChatMessage, type ToolDefinition } from "./tools.ts";
import type { RunnableModel } from "./model/load.ts";
import { DEFAULT_SAMPLING, Sampler, type SamplingParams } from "./sampler.ts";
import { StreamingDecoder, type Tokenizer } from "./tokenizer.ts";

/** A prompt: text, token ids, or chat messages (which may hold tool calls and results, with the tools offered). */
export type Prompt =
  | { text: string }
  /** `toolsCallable` false: tool_choice "none" (the tools are shown, no call asked for; tools.ts). */
  | { messages: (ChatMessage | ToolChatMessage)[]; tools?: ToolDefinition[]; toolsCallable?: boolean; template?: ChatTemplateOptions }
  | { ids: number[] };

export interface GenerateRequest {
  prompt: Prompt;
  maxTokens: number;
  sampling?: Partial<SamplingParams>;
  stop?: string[];
  /** Report this many most-likely alternatives per token (0 = none). */
  topLogprobs?: number;
  /**
   * Report each token's logprob (default true). False spares a pass over the vocabulary per token (a log-sum-exp of
   * 256k values: ~5 ms on these machines) for requests that do not show it; TokenEvent.logprob is then NaN.
   */
  logprobs?: boolean;
  /** Limits what may be generated (grammar.ts); disposed when the generation ends. */
  constraint?: TokenConstraint;
  signal?: AbortSignal;
}

export type FinishReason = "stop" | "length" | "abort";

export interface TokenEvent {
  type: "token";
  id: number;
  /** Text that became final with this token (may be "" while text is held back). */
  text: string;
  /** NaN where the request asked for none (GenerateRequest.logprobs false). */
  logprob: number;
  top: { id: number; logprob: number }[];
  special: boolean;
}

export interface DoneEvent {
  type: "done";
  finishReason: FinishReason;
  /** Which stop matched: a stop token id or a stop string. */
  stoppedBy?: number | string;
  /** Text still held back when generation ended (already free of stop strings). */
  text: string;
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens whose KV came from the prompt cache (batching.ts), not computed for this request. */
  cachedTokens?: number;
}

export class RequestError extends Error {
  override name = "RequestError";
  readonly field?: string;
  constructor(message: string, field?: string) {
    super(message);
    this.field = field;
  }
}

/** Prompt to token ids: plain text gets one BOS in front (as llama.cpp does for this vocab). */
export function encodePrompt(m: RunnableModel, prompt: Prompt): number[] {
  if ("ids" in prompt) return prompt.ids.slice();
  if ("messages" in prompt) return m.chatTemplate.encode(lowerToolMessages(prompt.messages, prompt.tools, prompt.toolsCallable ?? true), prompt.template);
  return m.tokenizer.encode(prompt.text, { addBos: m.tokenizer.addBos });
}

/** Holds back text that could be the start of a stop string; reports a match. */
export class StopMatcher {
  private held = "";
  private readonly stops: string[];
  constructor(stops: string[]) {
    this.stops = stops;
  }
  /** Add text; returns the text safe to emit and the stop string if one matched. */
  push(text: string): { text: string; stop?: string } {
    this.held += text;
    let first = -1;
    let which: string | undefined;
    for (const s of this.stops) {
      const at = this.held.indexOf(s);
      if (at >= 0 && (first < 0 || at < first)) {
        first = at;
        which = s;
      }
    }
    if (which !== undefined) {
      const out = this.held.slice(0, first);
      this.held = "";
      return { text: out, stop: which };
    }
    // keep the longest tail that is a proper prefix of some stop string
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.held.length); k > keep; k--) {
        if (this.held.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    const out = this.held.slice(0, this.held.length - keep);
    this.held = this.held.slice(this.held.length - keep);
    return { text: out };
  }
  flush(): string {
    const t = this.held;
    this.held = "";
    return t;
  }
}

/** Generate tokens for one request on a loaded model (which must not be used concurrently). */
export async function* generate(m: RunnableModel, req: GenerateRequest): AsyncGenerator<TokenEvent | DoneEvent> {
  try {
    const promptIds = encodePrompt(m, req.prompt);
    if (!promptIds.length) throw new RequestError("the prompt is empty", "prompt");
    const room = m.contextSize - promptIds.length;
    if (room <= 0) {
      throw new RequestError(`the prompt has ${promptIds.length} tokens; the context holds ${m.contextSize}`, "prompt");
    }
    if (!(Number.isInteger(req.maxTokens) && req.maxTokens > 0)) throw new RequestError(`maxTokens must be a positive integer, got ${req.maxTokens}`, "max_tokens");
    const maxTokens = Math.min(req.maxTokens, room);

    const d = new Decoding(m.tokenizer, req, promptIds.length, maxTokens, promptIds);
    let logits = await m.forward(promptIds, 0);
    let pos = promptIds.length;
    for (;;) {
      if (req.signal?.aborted) {
        yield d.abort();
        return;
      }
      await d.ready();
      for (const ev of d.accept(logits)) yield ev;
      if (d.finished) return;
      // let other work (a disconnect, another request's I/O) run between tokens
      await Promise.resolve();
      logits = await m.forward([d.next], pos);
      pos++;
    }
  } finally {
    // (a generator never iterated runs none of this: whoever made the constraint disposes it then)
    req.constraint?.dispose();
    await Promise.resolve(m.release?.()).catch(() => {}); // a part that is gone holds nothing to free
  }
}

/**
 * One sequence's decoding, step by step: given the logits of its latest position, sample the next token and say
 * what it produced (the token, then the end when a stop token, a stop string or the length limit is reached).
 * generate() drives one of these; the batch scheduler (batching.ts) drives many, one step each per forward pass.
 */
export class Decoding {
  private readonly sampler: Sampler;
  private readonly matcher: StopMatcher;
  private readonly decoder: StreamingDecoder;
  private readonly stopIds: Set<number>;
  private readonly tokenizer: Tokenizer;
  private readonly history: number[];
  private readonly topLogprobs: number;
  private readonly logprobs: boolean;
  private readonly constraint?: TokenConstraint;
  /** The constraint's mask for the next token, once ready() has computed it. */
  private mask: Int32Array | undefined;
  readonly promptTokens: number;
  readonly maxTokens: number;
  generated = 0;
  finished = false;
  /** The token sampled last: the one to feed next. */
  next = -1;

  /** `promptIds`: the prompt (its last 64 tokens count toward repetition penalties, as llama.cpp's last_n). */
  constructor(tokenizer: Tokenizer, req: Pick<GenerateRequest, "sampling" | "stop" | "topLogprobs" | "logprobs" | "constraint">, promptTokens: number, maxTokens: number, promptIds: number[]) {
    this.tokenizer = tokenizer;
    this.sampler = new Sampler({ ...DEFAULT_SAMPLING, ...req.sampling });
    this.matcher = new StopMatcher((req.stop ?? []).filter((s) => s.length > 0));
    this.decoder = new StreamingDecoder(tokenizer);
    this.stopIds = new Set(tokenizer.stopIds);
    this.history = promptIds.slice(-64);
    this.topLogprobs = req.topLogprobs ?? 0;
    this.logprobs = req.logprobs ?? true;
    this.constraint = req.constraint;
    this.promptTokens = promptTokens;
    this.maxTokens = maxTokens;
  }

  private done(finishReason: FinishReason, stoppedBy?: number | string, text = ""): DoneEvent {
    this.finished = true;
    return { type: "done", finishReason, stoppedBy, text, promptTokens: this.promptTokens, completionTokens: this.generated };
  }

  /** The request was cancelled (or timed out): the end event. */
  abort(): DoneEvent {
    return this.done("abort");
  }

  /** Whether accept() needs ready() first (a constraint whose next mask is not computed yet). */
  get needsMask(): boolean {
    return this.constraint !== undefined && this.mask === undefined;
  }

  /** Compute the constraint's mask for the next token (a no-op without a constraint): call before accept(). */
  async ready(): Promise<void> {
    if (this.needsMask) this.mask = await this.constraint!.nextMask();
  }

  /** Sample from the logits of the sequence's latest position: the token's event, and the end if it ended. */
  accept(logits: Float32Array): (TokenEvent | DoneEvent)[] {
    if (this.finished) throw new Error("this sequence has finished");
    if (this.needsMask) throw new Error("accept() under a constraint needs ready() first");
    const choice = this.sampler.sample(logits, this.history.slice(-64), this.topLogprobs, this.mask, this.logprobs);
    if (this.constraint) {
      this.mask = undefined;
      if (!this.constraint.accept(choice.id)) throw new Error(`the grammar refused token ${choice.id}, which its own mask allowed`);
    }
    this.generated++;
    this.next = choice.id;
    this.history.push(choice.id);
    if (this.history.length > 256) this.history.splice(0, this.history.length - 64);
    if (this.stopIds.has(choice.id)) {
      return [
        { type: "token", id: choice.id, text: "", logprob: choice.logprob, top: choice.top, special: true },
        this.done("stop", choice.id, this.matcher.flush() + this.decoder.flush()),
      ];
    }
    const piece = this.decoder.push(choice.id);
    const { text, stop } = this.matcher.push(piece);
    const token: TokenEvent = { type: "token", id: choice.id, text, logprob: choice.logprob, top: choice.top, special: this.tokenizer.isSpecial(choice.id) };
    if (stop !== undefined) return [token, this.done("stop", stop)];
    if (this.generated >= this.maxTokens) {
      const tail = this.matcher.push(this.decoder.flush());
      if (tail.stop !== undefined) return [token, this.done("stop", tail.stop, tail.text)];
      return [token, this.done("length", undefined, tail.text + this.matcher.flush())];
    }
    return [token];
  }
}
