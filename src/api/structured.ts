// The request fields that constrain an answer, as the clients send them: OpenAI's response_format and tools, TGI's
// grammar, llama.cpp's json_schema / grammar, vLLM's guided_json / guided_regex / guided_grammar; and logit_bias.
// Each becomes one engine ConstraintSpec (engine/grammar.ts) with the field it came from, so that a schema the
// grammar cannot enforce is refused by that field's name. At most one constraint per request.
import type { ConstraintSpec } from "../engine/grammar.ts";
import type { ToolChoice, ToolDefinition } from "../engine/tools.ts";
import { toolCallConstraint } from "../engine/tools.ts";
import { bad, bool, object, type Json } from "./validate.ts";

export interface Constraint {
  spec: ConstraintSpec;
  field: string;
}

/** A JSON Schema given as an object or as its JSON text (TGI and vLLM accept both). */
function schemaValue(v: unknown, field: string): unknown {
  if (typeof v === "string") {
    try {
      return JSON.parse(v);
    } catch (e) {
      throw bad(field, `'${field}' is not valid JSON: ${(e as Error).message}`);
    }
  }
  if (typeof v === "boolean" || (typeof v === "object" && v !== null && !Array.isArray(v))) return v;
  throw bad(field, `'${field}' must be a JSON Schema (an object)`);
}

function nonEmptyString(v: unknown, field: string): string {
  if (typeof v !== "string" || !v.trim()) throw bad(field, `'${field}' must be a non-empty string`);
  return v;
}

/** OpenAI's response_format (and TGI's forms of it on the chat route). */
function responseFormat(v: unknown): Constraint | undefined {
  const f = object(v, "response_format");
  switch (f.type) {
    case "text":
      return undefined;
    case "json_object":
      return { spec: { type: "json_object" }, field: "response_format" };
    case "json_schema": {
      const js = object(f.json_schema, "response_format.json_schema");
      if (js.name !== undefined && (typeof js.name !== "string" || !/^[a-zA-Z0-9_-]{1,64}$/.test(js.name))) {
        throw bad("response_format.json_schema.name", `'response_format.json_schema.name' must be 1-64 letters, digits, '_' or '-'`);
      }
      if (js.strict !== undefined && js.strict !== null && typeof js.strict !== "boolean") throw bad("response_format.json_schema.strict", `'response_format.json_schema.strict' must be a boolean`);
      // strict or not, the schema is enforced: a grammar cannot follow a schema halfway
      const schema = js.schema === undefined ? { type: "object" } : schemaValue(js.schema, "response_format.json_schema.schema");
      return { spec: { type: "json_schema", schema }, field: "response_format.json_schema.schema" };
    }
    case "json": // TGI: {"type": "json", "value": schema}
      return { spec: { type: "json_schema", schema: schemaValue(f.value, "response_format.value") }, field: "response_format.value" };
    case "regex": // TGI
      return { spec: { type: "regex", pattern: nonEmptyString(f.value, "response_format.value") }, field: "response_format.value" };
    default:
      throw bad("response_format.type", `'response_format.type' must be one of text, json_object, json_schema; got ${JSON.stringify(f.type)}`);
  }
}

/** The constraint fields of a /v1/* body (response_format only where `chat`); undefined: none. */
export function constraintOf(b: Json, chat: boolean): Constraint | undefined {
  const found: Constraint[] = [];
  const present = (k: string) => b[k] !== undefined && b[k] !== null;
  if (chat && present("response_format")) {
    const c = responseFormat(b.response_format);
    if (c) found.push(c);
  }
  if (present("json_schema")) found.push({ spec: { type: "json_schema", schema: schemaValue(b.json_schema, "json_schema") }, field: "json_schema" });
  if (present("grammar")) found.push({ spec: { type: "grammar", grammar: nonEmptyString(b.grammar, "grammar") }, field: "grammar" });
  if (present("guided_json")) found.push({ spec: { type: "json_schema", schema: schemaValue(b.guided_json, "guided_json") }, field: "guided_json" });
  if (present("guided_regex")) found.push({ spec: { type: "regex", pattern: nonEmptyString(b.guided_regex, "guided_regex") }, field: "guided_regex" });
  if (present("guided_grammar")) found.push({ spec: { type: "grammar", grammar: nonEmptyString(b.guided_grammar, "guided_grammar") }, field: "guided_grammar" });
  if (found.length > 1) throw bad(found[1]!.field.split(".")[0]!, `only one of response_format, json_schema, grammar, guided_json, guided_regex, guided_grammar may be given; got ${found.map((c) => c.field.split(".")[0]).join(" and ")}`);
  return found[0];
}

/** TGI's parameters.grammar: {"type": "json", "value": schema} or {"type": "regex", "value": pattern}. */
export function tgiGrammar(v: unknown, field: string): Constraint | undefined {
  if (v === undefined || v === null) return undefined;
  const g = object(v, field);
  if (g.type === "json" || g.type === "json_schema") {
    const value = g.type === "json_schema" ? object(g.value, `${field}.value`).schema : g.value;
    return { spec: { type: "json_schema", schema: schemaValue(value, `${field}.value`) }, field: `${field}.value` };
  }
  if (g.type === "regex") return { spec: { type: "regex", pattern: nonEmptyString(g.value, `${field}.value`) }, field: `${field}.value` };
  throw bad(`${field}.type`, `'${field}.type' must be "json" or "regex", got ${JSON.stringify(g.type)}`);
}

export interface ToolRequest {
  tools: ToolDefinition[];
  /** undefined: tool_choice "none" (the tools are shown to the model, no call is parsed). */
  choice?: ToolChoice;
  parallel: boolean;
}

/** tools, tool_choice and parallel_tool_calls of a chat body; undefined when no tools are offered. */
export function toolsOf(b: Json): ToolRequest | undefined {
  const v = b.tools;
  const choiceRaw = b.tool_choice;
  if (v === undefined || v === null || (Array.isArray(v) && v.length === 0)) {
    if (choiceRaw !== undefined && choiceRaw !== null && choiceRaw !== "none" && choiceRaw !== "auto") throw bad("tool_choice", `'tool_choice' ${JSON.stringify(choiceRaw)} needs 'tools'`);
    return undefined;
  }
  if (!Array.isArray(v)) throw bad("tools", `'tools' must be an array`);
  if (v.length > 128) throw bad("tools", `'tools' may hold at most 128 functions, got ${v.length}`);
  const names = new Set<string>();
  const tools = v.map((raw, i): ToolDefinition => {
    const t = object(raw, `tools[${i}]`);
    if (t.type !== "function") throw bad(`tools[${i}].type`, `'tools[${i}].type' must be "function", got ${JSON.stringify(t.type)}`);
    const f = object(t.function, `tools[${i}].function`);
    if (typeof f.name !== "string" || !/^[a-zA-Z0-9_-]{1,64}$/.test(f.name)) throw bad(`tools[${i}].function.name`, `'tools[${i}].function.name' must be 1-64 letters, digits, '_' or '-'`);
    if (names.has(f.name)) throw bad(`tools[${i}].function.name`, `'tools[${i}].function.name': the function '${f.name}' is listed twice`);
    names.add(f.name);
    if (f.description !== undefined && f.description !== null && typeof f.description !== "string") throw bad(`tools[${i}].function.description`, `'tools[${i}].function.description' must be a string`);
    let parameters: unknown;
    if (f.parameters !== undefined && f.parameters !== null) {
      const p = object(f.parameters, `tools[${i}].function.parameters`);
      // {} declares no arguments; anything else must be an object schema (the arguments are a JSON object)
      if (Object.keys(p).length && p.type !== "object") throw bad(`tools[${i}].function.parameters`, `'tools[${i}].function.parameters' must be an object schema (type "object")`);
      if (Object.keys(p).length) parameters = p;
    }
    return { name: f.name, ...(typeof f.description === "string" ? { description: f.description } : {}), ...(parameters !== undefined ? { parameters } : {}) };
  });
  let choice: ToolChoice | undefined = "auto";
  if (choiceRaw === "none") choice = undefined;
  else if (choiceRaw === "required" || choiceRaw === "auto" || choiceRaw === undefined || choiceRaw === null) choice = (choiceRaw ?? "auto") as ToolChoice;
  else if (typeof choiceRaw === "object" && !Array.isArray(choiceRaw)) {
    const c = choiceRaw as Json;
    const fn = c.type === "function" && typeof c.function === "object" && c.function !== null ? (c.function as Json).name : undefined;
    if (typeof fn !== "string") throw bad("tool_choice", `'tool_choice' must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`);
    if (!names.has(fn)) throw bad("tool_choice", `'tool_choice' names the function '${fn}', which is not in 'tools'`);
    choice = { name: fn };
  } else throw bad("tool_choice", `'tool_choice' must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`);
  return { tools, choice, parallel: bool(b, "parallel_tool_calls") ?? true };
}

/** The constraint of a tool request (none for tool_choice "none"). */
export function toolConstraint(t: ToolRequest): Constraint | undefined {
  return t.choice ? { spec: toolCallConstraint(t.tools, t.choice, t.parallel), field: "tools" } : undefined;
}

/** OpenAI's logit_bias: {"token id": bias in [-100, 100]}, as [id, bias] pairs (ids checked against the vocabulary by the host). */
export function logitBias(b: Json): [number, number][] | undefined {
  const v = b.logit_bias;
  if (v === undefined || v === null) return undefined;
  const o = object(v, "logit_bias");
  const out: [number, number][] = [];
  for (const [k, bias] of Object.entries(o)) {
    if (!/^\d{1,9}$/.test(k)) throw bad("logit_bias", `'logit_bias' keys must be token ids (non-negative integers), got ${JSON.stringify(k)}`);
    if (typeof bias !== "number" || !Number.isFinite(bias) || bias < -100 || bias > 100) throw bad("logit_bias", `'logit_bias' values must be numbers from -100 to 100; token ${k} has ${JSON.stringify(bias)}`);
    out.push([Number(k), bias]);
  }
  if (out.length > 1024) throw bad("logit_bias", `'logit_bias' may hold at most 1024 tokens, got ${out.length}`);
  return out.length ? out : undefined;
}
