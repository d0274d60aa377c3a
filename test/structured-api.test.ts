// Structured outputs and tool calls through `gemma-edge serve`, driven by the SDKs people use unchanged: the
// official `openai` client (response_format with a zod schema, tools with each tool_choice, streaming deltas, a
// second turn with the tool's result), the Vercel AI SDK's OpenAI-compatible provider (generateObject, tool calls)
// and LangChain's ChatOpenAI (withStructuredOutput, bindTools). The test model has random weights: unconstrained
// it writes no JSON, so every object and call that validates here was made by the grammar.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { ChatOpenAI } from "@langchain/openai";
import type { ServerType } from "@hono/node-server";
import { generateObject, generateText, jsonSchema, tool } from "ai";
import { Ajv } from "ajv";
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startNodeServer } from "../src/hosts/node-server.ts";
import { SHAPES } from "../src/tools/make-test-model.ts";
import { testModel } from "./helpers/models.ts";

let server: ServerType;
let url = "";
let client: OpenAI;
beforeAll(async () => {
  // the tiny shape with room for a prompt that lists functions (its character-sized vocabulary makes them long)
  const { path } = await testModel({ ...SHAPES.tiny!, contextLength: 2048 }, "q4_0");
  const s = await startNodeServer({ model: path, port: 0, modelId: "tiny", keepAliveMs: 50, contextSize: 2048 });
  server = s.server;
  url = s.url;
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
  await s.service.load();
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const ajv = new Ajv({ strict: true });
const weather = {
  type: "object",
  properties: { city: { type: "string", maxLength: 12 }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
  required: ["city", "unit"],
  additionalProperties: false,
} as const;
const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "The weather in a city", parameters: weather } },
  { type: "function", function: { name: "get_time", description: "The time in a time zone", parameters: { type: "object", properties: { zone: { type: "string", enum: ["UTC", "CET"] } }, required: ["zone"], additionalProperties: false } } },
];
const ask: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Paris?" }];
const post = (path: string, body: unknown) => fetch(`${url}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

function checkCall(c: { id: string; type?: string; function: { name: string; arguments: string } }) {
  expect(c.id).toMatch(/^call_[0-9a-f]{24}$/);
  const t = tools.find((x) => x.type === "function" && x.function.name === c.function.name);
  expect(t, c.function.name).toBeDefined();
  const validate = ajv.compile((t as { function: { parameters: object } }).function.parameters);
  expect(validate(JSON.parse(c.function.arguments)), c.function.arguments).toBe(true);
}

describe("structured output through the official openai client", () => {
  it("parses a zod schema's answer with chat.completions.parse (json_schema, strict)", async () => {
    const Person = z.object({ name: z.string().max(10), age: z.number().int().min(0).max(120), kind: z.enum(["cat", "dog"]), tags: z.array(z.enum(["a", "b"])).max(2) });
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.parse({ model: "tiny", messages: [{ role: "user", content: "A person, please" }], response_format: zodResponseFormat(Person, "person"), max_tokens: 120, seed, temperature: 1 });
      expect(r.choices[0]!.finish_reason).toBe("stop");
      expect(Person.parse(r.choices[0]!.message.parsed)).toEqual(r.choices[0]!.message.parsed);
    }
  });

  it("json_object gives a JSON object; the same request without it does not", async () => {
    const r = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "JSON" }], response_format: { type: "json_object" }, max_tokens: 200, seed: 4 });
    if (r.choices[0]!.finish_reason === "stop") expect(typeof JSON.parse(r.choices[0]!.message.content!)).toBe("object");
    else expect(r.choices[0]!.message.content!.startsWith("{")).toBe(true);
    const free = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "JSON" }], max_tokens: 30, seed: 4 });
    expect(() => JSON.parse(free.choices[0]!.message.content!)).toThrow();
  });

  it("streams a constrained answer, and says length when max_tokens cuts it", async () => {
    const s = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "x" }], response_format: { type: "json_schema", json_schema: { name: "w", schema: weather, strict: true } }, max_tokens: 4, stream: true, seed: 1 });
    let text = "";
    let finish: string | null = null;
    for await (const ch of s) {
      text += ch.choices[0]?.delta.content ?? "";
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe("length");
    const start = '{"city": "';
    expect(text.length).toBeGreaterThan(0);
    expect(text.startsWith(start) || start.startsWith(text), text).toBe(true);
  });
});

describe("tool calls through the official openai client", () => {
  it("tool_choice required: calls with ids, names and arguments of the schema; finish_reason tool_calls", async () => {
    const r = await client.chat.completions.create({ model: "tiny", messages: ask, tools, tool_choice: "required", parallel_tool_calls: false, max_tokens: 100, seed: 1 });
    const m = r.choices[0]!.message;
    expect(r.choices[0]!.finish_reason).toBe("tool_calls");
    expect(m.content).toBeNull();
    expect(m.tool_calls).toHaveLength(1);
    checkCall(m.tool_calls![0]! as never);
  });

  it("a named function is the one called (finish_reason stop, as OpenAI's for a forced function)", async () => {
    for (const name of ["get_weather", "get_time"]) {
      const r = await client.chat.completions.create({ model: "tiny", messages: ask, tools, tool_choice: { type: "function", function: { name } }, max_tokens: 100, seed: 2 });
      expect(r.choices[0]!.finish_reason).toBe("stop"); // as OpenAI answers a forced function
      const calls = r.choices[0]!.message.tool_calls!;
      expect(calls).toHaveLength(1);
      expect((calls[0] as { function: { name: string } }).function.name).toBe(name);
      checkCall(calls[0] as never);
    }
  });

  it("auto lets the model answer in text; none never parses calls", async () => {
    for (const tool_choice of ["auto", "none"] as const) {
      const r = await client.chat.completions.create({ model: "tiny", messages: ask, tools, tool_choice, max_tokens: 20, seed: 3 });
      expect(r.choices[0]!.message.tool_calls ?? []).toHaveLength(0);
      expect(typeof r.choices[0]!.message.content).toBe("string");
      expect(["stop", "length"]).toContain(r.choices[0]!.finish_reason);
    }
  });

  it("streams a call as OpenAI does: index, id, type and name first, then argument fragments", async () => {
    const body = { model: "tiny", messages: ask, tools, tool_choice: "required" as const, parallel_tool_calls: false, max_tokens: 100, seed: 5 };
    const whole = await client.chat.completions.create(body);
    const s = await client.chat.completions.create({ ...body, stream: true });
    const deltas: OpenAI.Chat.Completions.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    let finish: string | null = null;
    for await (const ch of s) {
      deltas.push(...(ch.choices[0]?.delta.tool_calls ?? []));
      expect(ch.choices[0]?.delta.content ?? "").toBe("");
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe("tool_calls");
    expect(deltas[0]).toMatchObject({ index: 0, type: "function", function: { arguments: "" } });
    expect(deltas[0]!.id).toMatch(/^call_/);
    expect(deltas.slice(1).every((d) => d.index === 0 && d.id === undefined && d.function?.name === undefined)).toBe(true);
    const call = whole.choices[0]!.message.tool_calls![0] as { function: { name: string; arguments: string } };
    expect(deltas[0]!.function!.name).toBe(call.function.name);
    expect(deltas.map((d) => d.function?.arguments ?? "").join("")).toBe(call.function.arguments);
  });

  it("takes the tool's result back in a second turn", async () => {
    const first = await client.chat.completions.create({ model: "tiny", messages: ask, tools, tool_choice: "required", parallel_tool_calls: false, max_tokens: 100, seed: 1 });
    const call = first.choices[0]!.message.tool_calls![0]! as { id: string; function: { name: string; arguments: string } };
    const history: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      ...ask,
      first.choices[0]!.message as OpenAI.Chat.Completions.ChatCompletionMessageParam,
      { role: "tool", tool_call_id: call.id, content: JSON.stringify({ temperature: 21, unit: "celsius" }) },
    ];
    const second = await client.chat.completions.create({ model: "tiny", messages: history, tools, tool_choice: "none", max_tokens: 8, seed: 1 });
    expect(second.choices[0]!.message.role).toBe("assistant");
    const without = await client.chat.completions.create({ model: "tiny", messages: ask, tools, tool_choice: "none", max_tokens: 1, seed: 1 });
    expect(second.usage!.prompt_tokens).toBeGreaterThan(without.usage!.prompt_tokens + call.function.arguments.length / 4);
    // a tool message that answers no call is the client's mistake, named
    const bad = await post("/v1/chat/completions", { model: "tiny", messages: [...ask, { role: "tool", tool_call_id: "call_nope", content: "1" }], max_tokens: 4 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.param).toBe("messages[1].tool_call_id");
  });
});

describe("the Vercel AI SDK and LangChain, unchanged", () => {
  it("AI SDK: generateObject with a JSON schema, and a required tool call", async () => {
    const provider = createOpenAICompatible({ name: "gemma-edge", baseURL: `${url}/v1`, supportsStructuredOutputs: true });
    const { object } = await generateObject({ model: provider("tiny"), schema: jsonSchema<{ city: string; unit: string }>(weather), prompt: "Weather as JSON", seed: 1, maxOutputTokens: 100 });
    expect(ajv.validate(weather, object)).toBe(true);
    const r = await generateText({
      model: provider("tiny"),
      prompt: "Weather in Paris?",
      tools: { get_weather: tool({ description: "The weather in a city", inputSchema: jsonSchema(weather) }) },
      toolChoice: "required",
      seed: 1,
      maxOutputTokens: 100,
    });
    expect(r.toolCalls).toHaveLength(1);
    expect(r.toolCalls[0]!.toolName).toBe("get_weather");
    expect(ajv.validate(weather, r.toolCalls[0]!.input)).toBe(true);
  });

  it("LangChain: withStructuredOutput and bindTools", async () => {
    const model = new ChatOpenAI({ model: "tiny", apiKey: "unused", configuration: { baseURL: `${url}/v1` }, maxTokens: 100, temperature: 1, maxRetries: 0, modelKwargs: { seed: 1 } });
    const structured = model.withStructuredOutput(weather, { name: "weather", method: "jsonSchema" });
    expect(ajv.validate(weather, await structured.invoke("Weather as JSON"))).toBe(true);
    const withTools = model.bindTools([{ type: "function", function: { name: "get_weather", description: "The weather in a city", parameters: weather } }], { tool_choice: "required" });
    const msg = await withTools.invoke("Weather in Paris?");
    expect(msg.tool_calls).toHaveLength(1);
    expect(msg.tool_calls![0]!.name).toBe("get_weather");
    expect(ajv.validate(weather, msg.tool_calls![0]!.args)).toBe(true);
  });
});

describe("the other constraint fields, and what is refused", () => {
  it("TGI's parameters.grammar (regex and json), llama.cpp's json_schema and grammar, vLLM's guided_regex", async () => {
    const g = (await (await post("/generate", { inputs: "Email:", parameters: { max_new_tokens: 40, grammar: { type: "regex", value: "[a-z]{3,8}@example\\.(com|org)" } } })).json()) as any;
    expect(g.generated_text).toMatch(/^[a-z]{3,8}@example\.(com|org)$/);
    const j = (await (await post("/generate", { inputs: "JSON:", parameters: { max_new_tokens: 60, grammar: { type: "json", value: weather } } })).json()) as any;
    expect(ajv.validate(weather, JSON.parse(j.generated_text))).toBe(true);
    const c = (await (await post("/v1/completions", { model: "tiny", prompt: "JSON:", max_tokens: 60, json_schema: weather, seed: 1 })).json()) as any;
    expect(ajv.validate(weather, JSON.parse(c.choices[0].text))).toBe(true);
    const e = (await (await post("/v1/completions", { model: "tiny", prompt: "Answer:", max_tokens: 8, grammar: 'root ::= "yes" | "no"', seed: 1 })).json()) as any;
    expect(["yes", "no"]).toContain(e.choices[0].text);
    const v = (await (await post("/v1/chat/completions", { model: "tiny", messages: [{ role: "user", content: "n" }], max_tokens: 8, guided_regex: "[0-9]{2}" })).json()) as any;
    expect(v.choices[0].message.content).toMatch(/^[0-9]{2}$/);
  });

  const refusals: [string, Record<string, unknown>, string, RegExp][] = [
    ["an unsupported schema keyword", { response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", not: {} } } } }, "response_format.json_schema.schema", /'not' is not supported/],
    ["a pattern", { response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "string", pattern: "a+" } } } }, "response_format.json_schema.schema", /'pattern' is not supported/],
    ["a tool schema keyword", { tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { a: { type: "string", format: "email" } } } } }], tool_choice: "required" }, "tools[0].function.parameters", /tools\[0\]\.function\.parameters\.properties\.a\.format/],
    ["an unknown tool_choice", { tools, tool_choice: { type: "function", function: { name: "nope" } } }, "tool_choice", /'nope', which is not in 'tools'/],
    ["tools and response_format together", { tools, response_format: { type: "json_object" } }, "response_format", /cannot be combined with 'tools'/],
    ["two constraints", { json_schema: {}, grammar: "root ::= \"a\"" }, "grammar", /only one of/],
    ["a grammar that does not parse", { grammar: "root ::= (" }, "grammar", /EBNF parser error/],
    ["a regex that does not parse", { guided_regex: "a(" }, "guided_regex", /guided_regex/],
    ["typical_p", { typical_p: 0.5 }, "typical_p", /typical sampling is not implemented/],
    ["min_tokens", { min_tokens: 5 }, "min_tokens", /minimum length/],
    ["ignore_eos", { ignore_eos: true }, "ignore_eos", /end-of-turn/],
    ["guided_choice", { guided_choice: ["a", "b"] }, "guided_choice", /not supported/],
    ["a logit_bias out of range", { logit_bias: { "5": 101 } }, "logit_bias", /from -100 to 100/],
    ["a logit_bias key that is no id", { logit_bias: { abc: 1 } }, "logit_bias", /token ids/],
    ["a logit_bias id outside the vocabulary", { logit_bias: { "99999": 1 } }, "logit_bias", /the vocabulary has 1024 tokens/],
  ];
  it.each(refusals)("refuses %s with a 400 naming the field", async (_, extra, param, message) => {
    const r = await post("/v1/chat/completions", { model: "tiny", messages: [{ role: "user", content: "x" }], max_tokens: 4, ...extra });
    expect(r.status).toBe(400);
    const b = (await r.json()) as any;
    expect(b.error.param).toBe(param);
    expect(b.error.message).toMatch(message);
  });

  it("accepts fields that change nothing, and logit_bias that steers the greedy answer", async () => {
    const base = { model: "tiny", messages: [{ role: "user", content: "x" }], max_tokens: 1, temperature: 0, logprobs: true };
    const plain = (await (await post("/v1/chat/completions", { ...base, user: "u", metadata: { a: "b" }, store: false, service_tier: "auto", typical_p: 1, min_tokens: 0, ignore_eos: false })).json()) as any;
    expect(plain.choices[0].finish_reason).toBeDefined();
    const tok = (await (await post("/tokenize", { inputs: "Z" })).json()) as any;
    const biased = (await (await post("/v1/chat/completions", { ...base, logit_bias: { [tok[0].id]: 100 } })).json()) as any;
    expect(biased.choices[0].message.content).toBe("Z");
  });
});
