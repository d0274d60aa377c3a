// One request from prompt to finish: encode (plain text or chat) -> prefill -> decode/sample -> stop.
// Streaming and non-streaming callers share this path. Text comes out whole: incomplete UTF-8 and any tail
// that could begin a stop string are held back; stop strings are matched across tokens and removed.
import type { ChatMessage, ChatTemplateOptions } from "./chat-template.ts";
import type { RunnableModel } from "./model/load.ts";
import { DEFAULT_SAMPLING, Sampler, type SamplingParams } from "./sampler.ts";
import { StreamingDecoder } from "./tokenizer.ts";

export type Prompt = { text: string } | { messages: ChatMessage[]; template?: ChatTemplateOptions } | { ids: number[] };

export interface GenerateRequest {
  prompt: Prompt;
  maxTokens: number;
  sampling?: Partial<SamplingParams>;
  stop?: string[];
  /** Report this many most-likely alternatives per token (0 = none). */
  topLogprobs?: number;
  signal?: AbortSignal;
}

export type FinishReason = "stop" | "length" | "abort";

export interface TokenEvent {
  type: "token";
  id: number;
  /** Text that became final with this token (may be "" while text is held back). */
  text: string;
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
  if ("messages" in prompt) return m.chatTemplate.encode(prompt.messages, prompt.template);
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
  const promptIds = encodePrompt(m, req.prompt);
  if (!promptIds.length) throw new RequestError("the prompt is empty", "prompt");
  const room = m.contextSize - promptIds.length;
  if (room <= 0) {
    throw new RequestError(`the prompt has ${promptIds.length} tokens; the context holds ${m.contextSize}`, "prompt");
  }
  if (!(Number.isInteger(req.maxTokens) && req.maxTokens > 0)) throw new RequestError(`maxTokens must be a positive integer, got ${req.maxTokens}`, "max_tokens");
  const maxTokens = Math.min(req.maxTokens, room);

  try {
    yield* decode(m, req, promptIds, maxTokens);
  } finally {
    await Promise.resolve(m.release?.()).catch(() => {}); // a part that is gone holds nothing to free
  }
}

async function* decode(m: RunnableModel, req: GenerateRequest, promptIds: number[], maxTokens: number): AsyncGenerator<TokenEvent | DoneEvent> {
  const sampler = new Sampler({ ...DEFAULT_SAMPLING, ...req.sampling });
  const stops = (req.stop ?? []).filter((s) => s.length > 0);
  const matcher = new StopMatcher(stops);
  const decoder = new StreamingDecoder(m.tokenizer);
  const stopIds = new Set(m.tokenizer.stopIds);
  const history = promptIds.slice();

  let logits = await m.forward(promptIds, 0);
  let pos = promptIds.length;
  let generated = 0;
  const done = (finishReason: FinishReason, stoppedBy?: number | string, text = ""): DoneEvent => ({
    type: "done", finishReason, stoppedBy, text, promptTokens: promptIds.length, completionTokens: generated,
  });

  for (;;) {
    if (req.signal?.aborted) {
      yield done("abort");
      return;
    }
    const choice = sampler.sample(logits, history.slice(-64), req.topLogprobs ?? 0);
    generated++;
    history.push(choice.id);
    if (stopIds.has(choice.id)) {
      yield { type: "token", id: choice.id, text: "", logprob: choice.logprob, top: choice.top, special: true };
      yield done("stop", choice.id, matcher.flush() + decoder.flush());
      return;
    }
    const piece = decoder.push(choice.id);
    const { text, stop } = matcher.push(piece);
    yield { type: "token", id: choice.id, text, logprob: choice.logprob, top: choice.top, special: m.tokenizer.isSpecial(choice.id) };
    if (stop !== undefined) {
      yield done("stop", stop);
      return;
    }
    if (generated >= maxTokens) {
      const tail = matcher.push(decoder.flush());
      if (tail.stop !== undefined) {
        yield done("stop", tail.stop, tail.text);
        return;
      }
      yield done("length", undefined, tail.text + matcher.flush());
      return;
    }
    // let other work (a disconnect, another request's I/O) run between tokens
    await Promise.resolve();
    logits = await m.forward([choice.id], pos);
    pos++;
  }
}
