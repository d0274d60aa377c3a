// OpenAI-compatible routes: /v1/chat/completions, /v1/completions, /v1/models, in the wire format the official
// SDKs parse (docs/api.md): one id per stream, the role in the first delta, one finish chunk, the usage
// chunk with empty choices when asked, then [DONE].
import type { Context, Hono } from "hono";
import type { ServiceEvent, ServiceRequest } from "../service/contract.ts";
import type { AppEnv, ServerConfig } from "./app.ts";
import { ApiError } from "./errors.ts";
import { collect, sse, start, type Started } from "./run.ts";
import { ToolCallParser, type ToolStreamEvent } from "../engine/tools.ts";
import { constraintOf, logitBias, toolConstraint, toolsOf, type ToolRequest } from "./structured.ts";
import { bad, bool, num, object, str, stops, unsupported, type Json } from "./validate.ts";

type TokenEv = Extract<ServiceEvent, { type: "token" }>;

/** Sampling fields shared by both completion routes (OpenAI names, plus the common vLLM/llama.cpp extras). */
function samplingFields(b: Json) {
  const temperature = num(b, "temperature", { min: 0, max: 2 });
  return {
    temperature: temperature ?? 1,
    topP: num(b, "top_p", { above: 0, max: 1 }) ?? 1,
    topK: num(b, "top_k", { min: 0, int: true }) ?? 0,
    minP: num(b, "min_p", { min: 0, max: 1 }) ?? 0,
    presencePenalty: num(b, "presence_penalty", { min: -2, max: 2 }) ?? 0,
    frequencyPenalty: num(b, "frequency_penalty", { min: -2, max: 2 }) ?? 0,
    repetitionPenalty: num(b, "repetition_penalty", { above: 0, max: 10 }) ?? 1,
    seed: num(b, "seed", { min: 0, max: 2 ** 32 - 1, int: true }),
    logitBias: logitBias(b),
  };
}

function commonFields(b: Json, config: ServerConfig) {
  // one model per server: any name is answered by it (as TGI and llama.cpp's server do: Hugging Face's clients send
  // the endpoint URL as the model), and responses name it; STRICT_MODEL makes another name a 404
  const model = str(b, "model", true);
  if (config.strictModel && model !== config.modelId) {
    throw new ApiError(404, `The model '${model}' does not exist (this server serves '${config.modelId}')`, { param: "model", code: "model_not_found" });
  }
  const n = num(b, "n", { int: true });
  if (n !== undefined && n !== 1) throw bad("n", `'n' must be 1: this server generates one choice per request`);
  unsupported(b, "best_of", "only one candidate is generated", (v) => v === 1);
  // fields other servers have that would change the answer, refused unless they ask for the default
  unsupported(b, "typical_p", "typical sampling is not implemented", (v) => v === 1);
  unsupported(b, "min_tokens", "a minimum length is not implemented", (v) => v === 0);
  unsupported(b, "ignore_eos", "generating past the end-of-turn token is not implemented", (v) => v === false);
  unsupported(b, "guided_choice", "use guided_regex or a json_schema with an enum");
  unsupported(b, "guided_decoding_backend", "the grammar engine is xgrammar, always");
  const stream = bool(b, "stream") ?? false;
  const so = b.stream_options;
  if (so !== undefined && so !== null) object(so, "stream_options");
  const includeUsage = so ? bool(so as Json, "include_usage") ?? false : false;
  str(b, "user");
  // llama.cpp's server field: false computes the whole prompt, for answers that must reproduce bit for bit
  const cachePrompt = bool(b, "cache_prompt");
  return { stream, includeUsage, sampling: samplingFields(b), stop: stops(b, "stop"), cachePrompt };
}

/** max_completion_tokens / max_tokens; absent: the rest of the context for chat, 16 for completions (OpenAI's defaults). */
function maxTokens(b: Json, chat: boolean): { maxTokens?: number; maxTokensField?: string } {
  for (const field of ["max_completion_tokens", "max_tokens"]) {
    const v = num(b, field, { min: 1, int: true });
    if (v !== undefined) return { maxTokens: v, maxTokensField: field };
  }
  return chat ? {} : { maxTokens: 16, maxTokensField: "max_tokens" };
}

type Message = NonNullable<Extract<ServiceRequest["prompt"], { messages: unknown }>["messages"]>[number];

/** Text of a message's content: a string or an array of text parts; null/absent is "" where `optional`. */
function textContent(m: Json, i: number, optional: boolean): string {
  let content = m.content;
  if ((content === null || content === undefined) && optional) return "";
  if (Array.isArray(content)) {
    content = content
      .map((p, j) => {
        const part = object(p, `messages[${i}].content[${j}]`);
        if (part.type !== "text" || typeof part.text !== "string") {
          throw bad(`messages[${i}].content[${j}]`, `messages[${i}].content[${j}]: only text parts are supported (got type ${JSON.stringify(part.type)})`);
        }
        return part.text;
      })
      .join("");
  }
  if (typeof content !== "string") throw bad(`messages[${i}].content`, `messages[${i}].content must be a string or an array of text parts`);
  return content;
}

function messages(b: Json): Message[] {
  const v = b.messages;
  if (!Array.isArray(v) || v.length === 0) throw bad("messages", `'messages' must be a non-empty array`);
  const callIds = new Set<string>();
  return v.map((raw, i): Message => {
    const m = object(raw, `messages[${i}]`);
    const role = m.role;
    if (role === "function") throw bad(`messages[${i}].role`, `messages[${i}]: role 'function' (the legacy form) is not supported; use 'tool' messages with tool_call_id`);
    if (role !== "system" && role !== "developer" && role !== "user" && role !== "assistant" && role !== "tool") {
      throw bad(`messages[${i}].role`, `messages[${i}].role must be one of system, developer, user, assistant, tool; got ${JSON.stringify(role)}`);
    }
    if (role === "tool") {
      const id = m.tool_call_id;
      if (typeof id !== "string") throw bad(`messages[${i}].tool_call_id`, `messages[${i}]: a tool message needs 'tool_call_id' (a string)`);
      if (!callIds.has(id)) throw bad(`messages[${i}].tool_call_id`, `messages[${i}]: tool_call_id ${JSON.stringify(id)} does not answer any tool call of an earlier assistant message`);
      return { role: "tool", content: textContent(m, i, false), toolCallId: id };
    }
    if (m.tool_calls !== undefined && m.tool_calls !== null) {
      if (role !== "assistant") throw bad(`messages[${i}].tool_calls`, `messages[${i}]: only assistant messages have tool_calls`);
      if (!Array.isArray(m.tool_calls)) throw bad(`messages[${i}].tool_calls`, `messages[${i}].tool_calls must be an array`);
      const toolCalls = m.tool_calls.map((rc, j) => {
        const at = `messages[${i}].tool_calls[${j}]`;
        const c = object(rc, at);
        if (typeof c.id !== "string" || !c.id) throw bad(`${at}.id`, `${at}.id must be a non-empty string`);
        if (c.type !== undefined && c.type !== "function") throw bad(`${at}.type`, `${at}.type must be "function"`);
        const f = object(c.function, `${at}.function`);
        if (typeof f.name !== "string" || !f.name) throw bad(`${at}.function.name`, `${at}.function.name must be a non-empty string`);
        if (typeof f.arguments !== "string") throw bad(`${at}.function.arguments`, `${at}.function.arguments must be a string (the arguments as JSON text)`);
        callIds.add(c.id);
        return { id: c.id, name: f.name, arguments: f.arguments };
      });
      return { role: "assistant", content: textContent(m, i, true), toolCalls };
    }
    const content = textContent(m, i, false);
    return { role: role === "developer" ? "system" : role, content };
  });
}

const newId = (prefix: string, sep = "-") => `${prefix}${sep}${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`;
const now = () => Math.floor(Date.now() / 1000);
/** Tool call ids as OpenAI writes them (call_ and 24 characters). */
const callId = () => newId("call", "_");

function logprobsOf(tokens: TokenEv[]) {
  return {
    content: tokens.map((t) => ({
      token: t.piece,
      logprob: t.logprob,
      bytes: t.bytes,
      top_logprobs: t.top.map((a) => ({ token: a.piece, logprob: a.logprob, bytes: a.bytes })),
    })),
  };
}

const usage = (run: Started, done: { completionTokens: number; cachedTokens?: number }) => ({
  prompt_tokens: run.promptTokens, completion_tokens: done.completionTokens, total_tokens: run.promptTokens + done.completionTokens,
  prompt_tokens_details: { cached_tokens: done.cachedTokens ?? 0 },
});
/** OpenAI's finish_reason: "tool_calls" when calls were made, except where a named function was forced ("stop", as OpenAI answers). */
const finishReason = (r: string, calls = 0, named = false) => (r === "length" ? "length" : calls > 0 && !named ? "tool_calls" : "stop");

/** OpenAI's tool_calls entries of a whole (non-streamed) answer. */
const toolCallsOut = (p: ToolCallParser) => p.calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));

/** A tool event as a chat.completion.chunk delta. */
function toolDelta(ev: ToolStreamEvent): Json {
  if (ev.type === "content") return { content: ev.text };
  if (ev.type === "call") return { tool_calls: [{ index: ev.index, id: ev.id, type: "function", function: { name: ev.name, arguments: "" } }] };
  return { tool_calls: [{ index: ev.index, function: { arguments: ev.text } }] };
}

async function complete(c: Context<AppEnv>, chat: boolean) {
  const config = c.get("config");
  const service = c.get("service");
  const b = object(await c.req.json().catch((e) => {
    throw bad("body", `the request body is not valid JSON: ${(e as Error).message}`);
  }));
  const common = commonFields(b, config);
  let prompt: ServiceRequest["prompt"];
  let wantLogprobs = false;
  let topLogprobs = 0;
  let tools: ToolRequest | undefined;
  let constraint = constraintOf(b, chat);
  if (chat) {
    unsupported(b, "functions", "the legacy function calling; use 'tools'");
    unsupported(b, "function_call", "the legacy function calling; use 'tool_choice'");
    tools = toolsOf(b);
    if (tools?.choice) {
      if (constraint) {
        const field = constraint.field.split(".")[0]!;
        throw bad(field, `'${field}' cannot be combined with 'tools' (unless tool_choice is "none"): the answer is either text or calls`);
      }
      constraint = toolConstraint(tools);
    }
    prompt = { messages: messages(b), ...(tools ? { tools: tools.tools, toolsCallable: tools.choice !== undefined } : {}) };
    wantLogprobs = bool(b, "logprobs") ?? false;
    topLogprobs = num(b, "top_logprobs", { min: 0, max: 20, int: true }) ?? 0;
    if (topLogprobs > 0 && !wantLogprobs) throw bad("top_logprobs", `'top_logprobs' requires 'logprobs': true`);
  } else {
    const p = b.prompt;
    if (typeof p === "string") prompt = { text: p };
    else if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string") prompt = { text: p[0] };
    else throw bad("prompt", `'prompt' must be a string (one prompt per request)`);
    unsupported(b, "response_format", "on /v1/completions; use json_schema, grammar or guided_* here, or /v1/chat/completions");
    for (const f of ["tools", "tool_choice", "functions"]) unsupported(b, f, "on /v1/completions; tools are for /v1/chat/completions");
    unsupported(b, "suffix", "insertion is not implemented");
    unsupported(b, "echo", "echoing the prompt is not implemented", (v) => v === false);
    const lp = num(b, "logprobs", { min: 0, max: 5, int: true });
    if (lp !== undefined) throw bad("logprobs", `'logprobs' on /v1/completions is not supported; use /v1/chat/completions`);
  }
  const req: ServiceRequest = {
    prompt,
    promptField: chat ? "messages" : "prompt",
    ...maxTokens(b, chat),
    sampling: common.sampling,
    stop: common.stop,
    cachePrompt: common.cachePrompt,
    topLogprobs: wantLogprobs ? topLogprobs : 0,
    logprobs: wantLogprobs, // the only place OpenAI's answers show one
    ...(constraint ? { constraint: constraint.spec, constraintField: constraint.field } : {}),
  };
  // calls are read out of the text (engine/tools.ts), and what is not a call is the content; logprobs are not
  // reported for such answers (OpenAI's cover content tokens only, and call tokens are not content)
  const parsed = tools?.choice !== undefined;
  const named = typeof tools?.choice === "object";
  const run = await start(c, service, req);
  const id = newId(chat ? "chatcmpl" : "cmpl");
  const created = now();
  const model = config.modelId;
  const object_ = chat ? "chat.completion" : "text_completion";

  if (!common.stream) {
    const r = await collect(run);
    let message: Json = { role: "assistant", content: r.text, refusal: null };
    let calls = 0;
    if (parsed) {
      const p = new ToolCallParser(callId);
      p.push(r.text);
      p.finish();
      calls = p.calls.length;
      message = { role: "assistant", content: calls && !p.content ? null : p.content, refusal: null, ...(calls ? { tool_calls: toolCallsOut(p) } : {}) };
    }
    const choice = chat
      ? { index: 0, message, logprobs: wantLogprobs && !parsed ? logprobsOf(r.tokens) : null, finish_reason: finishReason(r.done.finishReason, calls, named) }
      : { index: 0, text: r.text, logprobs: null, finish_reason: finishReason(r.done.finishReason) };
    return c.json({ id, object: object_, created, model, system_fingerprint: config.fingerprint, choices: [choice], usage: usage(run, r.done) });
  }

  const chunkObject = chat ? "chat.completion.chunk" : "text_completion";
  const u = common.includeUsage ? { usage: null } : {};
  const chunk = (choice: Json) => `data: ${JSON.stringify({ id, object: chunkObject, created, model, system_fingerprint: config.fingerprint, choices: [choice], ...u })}\n\n`;
  let first = chat;
  const parser = parsed ? new ToolCallParser(callId) : undefined;
  const toolChunks = (events: ToolStreamEvent[]) => events.map((e) => chunk({ index: 0, delta: toolDelta(e), logprobs: null, finish_reason: null })).join("");
  // text as deltas: plain content, or content and tool-call deltas when calls are parsed
  const textChunks = (text: string, lp: Json | null): string => {
    if (!parser) return chat ? chunk({ index: 0, delta: { content: text }, logprobs: lp, finish_reason: null }) : chunk({ index: 0, text, logprobs: null, finish_reason: null });
    return toolChunks(parser.push(text));
  };
  return sse(
    c,
    run,
    (ev) => {
      let out = "";
      if (first) {
        out += chunk({ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
        first = false;
      }
      if (ev.type === "token") {
        if (ev.text || (wantLogprobs && !ev.special)) out += textChunks(ev.text, wantLogprobs ? logprobsOf([ev]) : null);
      } else if (ev.type === "done") {
        if (ev.text) out += textChunks(ev.text, null);
        if (parser) out += toolChunks(parser.finish());
        const reason = finishReason(ev.finishReason, parser?.calls.length ?? 0, named);
        out += chat ? chunk({ index: 0, delta: {}, logprobs: null, finish_reason: reason }) : chunk({ index: 0, text: "", logprobs: null, finish_reason: reason });
        if (common.includeUsage) {
          out += `data: ${JSON.stringify({ id, object: chunkObject, created, model, system_fingerprint: config.fingerprint, choices: [], usage: usage(run, ev) })}\n\n`;
        }
        out += "data: [DONE]\n\n";
      } else if (ev.type === "error") {
        out += `data: ${JSON.stringify(ApiError.fromService(ev).openAiBody())}\n\n`;
      }
      return out;
    },
  );
}

export function openAiRoutes(app: Hono<AppEnv>) {
  app.post("/v1/chat/completions", (c) => complete(c, true));
  app.post("/v1/completions", (c) => complete(c, false));
  app.get("/v1/models", async (c) => {
    const { modelId, created } = c.get("config");
    // once the model is loaded, what it is (llama.cpp's server adds the same kind of "meta")
    const s = await c.get("service").status().catch(() => undefined);
    const meta = s?.status === "ready" ? { meta: { architecture: s.architecture, context_size: s.context_size } } : {};
    return c.json({ object: "list", data: [{ id: modelId, object: "model", created, owned_by: "gemma-edge", ...meta }] });
  });
  app.get("/v1/models/:id", (c) => {
    const { modelId, created } = c.get("config");
    if (c.req.param("id") !== modelId) throw new ApiError(404, `The model '${c.req.param("id")}' does not exist`, { param: "model", code: "model_not_found" });
    return c.json({ id: modelId, object: "model", created, owned_by: "gemma-edge" });
  });
}
