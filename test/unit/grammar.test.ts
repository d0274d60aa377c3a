// Constrained decoding on the tiny model's vocabulary: each mask checked token by token against an oracle that
// knows the whole (finite) language (a token is allowed exactly when the text so far plus the token begins some
// string of the language; a stop token exactly when the text is one), along random paths; refusals name the
// keyword; generations under a schema parse and validate (ajv) where the same requests unconstrained do not.
import { readFileSync } from "node:fs";
import { Ajv } from "ajv";
import { beforeAll, describe, expect, it } from "vitest";
import { ReferenceBackend } from "../../src/engine/backend/reference.ts";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { generate, type GenerateRequest } from "../../src/engine/generate.ts";
import { ConstraintError, enforceableSchema, GrammarEngine, provideGrammarWasm, setGrammarMemoryCap, type ConstraintSpec } from "../../src/engine/grammar.ts";
import { loadModel, type LoadedModel } from "../../src/engine/model/load.ts";
import { mulberry32, Sampler } from "../../src/engine/sampler.ts";
import type { Tokenizer } from "../../src/engine/tokenizer.ts";
import { toolCallConstraint } from "../../src/engine/tools.ts";
import { testModel } from "../helpers/models.ts";

let m: LoadedModel;
let tok: Tokenizer;
let engine: GrammarEngine;
beforeAll(async () => {
  provideGrammarWasm(await WebAssembly.compile(readFileSync(new URL("../../build/xgrammar.wasm", import.meta.url))));
  m = await loadModel(new MemoryByteSource((await testModel("tiny", "q4_0")).bytes), new ReferenceBackend(), { contextSize: 256 });
  tok = m.tokenizer;
  engine = new GrammarEngine(tok);
});

const bytesOf = (s: string) => Buffer.from(s, "utf8");
const startsWith = (a: Buffer, b: Buffer) => a.length >= b.length && a.subarray(0, b.length).equals(b);
const allowed = (mask: Int32Array, id: number) => ((mask[id >> 5]! >>> (id & 31)) & 1) === 1;

/** A language as a test of its prefixes: `text` begins some string of it; `whole`: is one. */
type Oracle = (text: Buffer, whole: boolean) => boolean;
const finite = (language: string[]): Oracle => {
  const L = language.map(bytesOf);
  return (text, whole) => (whole ? L.some((s) => s.equals(text)) : L.some((s) => startsWith(s, text)));
};

/**
 * JSON strings of `min`..`max` characters that need no escape (what minLength/maxLength become): tested on the
 * bytes, where a tail of an unfinished UTF-8 character counts as one more character.
 */
const shortStrings = (min: number, max: number): Oracle => (text, whole) => {
  let end = text.length;
  let back = 0;
  while (back < 3 && end - back - 1 >= 0 && (text[end - back - 1]! & 0xc0) === 0x80) back++;
  const lead = text[end - back - 1];
  let pending = 0;
  if (lead !== undefined && lead >= 0xc0) {
    if (lead < 0xc2 || lead > 0xf4) return false; // never the start of a UTF-8 character
    const need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : 1;
    if (back < need) (pending = 1), (end -= back + 1);
  }
  if (whole && pending) return false;
  const s = text.subarray(0, end).toString("utf8");
  if (s.includes("\uFFFD")) return false;
  if (!s.length) return !whole && !pending;
  const m = /^"([^"\\\x00-\x1f]*)("?)$/u.exec(s);
  if (!m) return false;
  const n = [...m[1]!].length + pending;
  if (m[2]) return !pending && n >= min && n <= max;
  return !whole && n <= max;
};

/** Walk `paths` random paths through the language, checking every token's mask bit against the oracle at each step. */
async function checkMasks(spec: ConstraintSpec, language: string[] | Oracle, paths = 6): Promise<Set<string>> {
  const oracle = typeof language === "function" ? language : finite(language);
  const stops = new Set(tok.stopIds);
  const seen = new Set<string>();
  for (let p = 0; p < paths; p++) {
    const c = await engine.constrain(spec, "test");
    const rand = mulberry32(p + 1);
    let text = Buffer.alloc(0);
    for (let step = 0; step < 64; step++) {
      const mask = await c.nextMask();
      const ok: number[] = [];
      for (let id = 0; id < tok.vocabSize; id++) {
        let expected: boolean;
        if (stops.has(id)) expected = oracle(text, true);
        else if (tok.isSpecial(id) || tok.pieceOf(id).length === 0) expected = false;
        else expected = oracle(Buffer.concat([text, tok.pieceOf(id)]), false);
        if (allowed(mask, id) !== expected) throw new Error(`after ${JSON.stringify(text.toString())}: token ${id} (${JSON.stringify(tok.tokens[id])}) is ${allowed(mask, id) ? "allowed" : "refused"}, the language says ${expected ? "allow" : "refuse"}`);
        if (expected) ok.push(id);
      }
      const id = ok[Math.floor(rand() * ok.length)]!;
      expect(c.accept(id)).toBe(true);
      if (stops.has(id)) break;
      text = Buffer.concat([text, tok.pieceOf(id)]);
    }
    expect(c.terminated).toBe(true);
    seen.add(text.toString());
    c.dispose();
  }
  return seen;
}

describe("grammar masks, token by token against the language", () => {
  it("a JSON schema (object, required, enum, boolean, additionalProperties false) in the fixed layout", async () => {
    const schema = { type: "object", properties: { a: { enum: ["x", "yz"] }, b: { type: "boolean" } }, required: ["a", "b"], additionalProperties: false };
    const L = ["x", "yz"].flatMap((a) => ["true", "false"].map((b) => `{"a": "${a}", "b": ${b}}`));
    const seen = await checkMasks({ type: "json_schema", schema }, L);
    for (const s of seen) expect(L).toContain(s);
  });

  it("arrays with minItems/maxItems of bounded integers; anyOf over a $ref into $defs and null; const; nested $refs", async () => {
    const ints = ["0", "1", "2"];
    const arrays = [...ints.map((a) => `[${a}]`), ...ints.flatMap((a) => ints.map((b) => `[${a}, ${b}]`))];
    await checkMasks({ type: "json_schema", schema: { type: "array", items: { type: "integer", minimum: 0, maximum: 2 }, minItems: 1, maxItems: 2 } }, arrays, 8);
    await checkMasks({ type: "json_schema", schema: { $defs: { b: { type: "boolean" } }, anyOf: [{ $ref: "#/$defs/b" }, { type: "null" }] } }, ["true", "false", "null"]);
    await checkMasks({ type: "json_schema", schema: { type: "object", properties: { v: { const: "hi" } }, required: ["v"], additionalProperties: false } }, ['{"v": "hi"}'], 2);
    // nested references: $defs that refer to $defs, and the older "definitions"
    const item = (t: string) => `{"tag": "${t}"}`;
    const items = ["a", "b"].flatMap((x) => [`[${item(x)}]`, ...["a", "b"].map((y) => `[${item(x)}, ${item(y)}]`)]);
    const nested = { $defs: { item: { type: "object", properties: { tag: { $ref: "#/$defs/tag" } }, required: ["tag"], additionalProperties: false }, tag: { enum: ["a", "b"] } }, type: "array", items: { $ref: "#/$defs/item" }, minItems: 1, maxItems: 2 };
    await checkMasks({ type: "json_schema", schema: nested }, items, 8);
    await checkMasks({ type: "json_schema", schema: { definitions: { t: { enum: [1, 2] } }, type: "array", items: { $ref: "#/definitions/t" }, minItems: 1, maxItems: 1 } }, ["[1]", "[2]"], 3);
  });

  it("strings with minLength/maxLength: any characters that need no escape, counted as characters", async () => {
    const seen = await checkMasks({ type: "json_schema", schema: { type: "string", minLength: 1, maxLength: 3 } }, shortStrings(1, 3), 8);
    for (const s of seen) expect([...JSON.parse(s)].length).toBeLessThanOrEqual(3);
  });

  it("a regex and an EBNF grammar", async () => {
    await checkMasks({ type: "regex", pattern: "(ab|cd)e?" }, ["ab", "abe", "cd", "cde"]);
    await checkMasks({ type: "grammar", grammar: 'root ::= "yes" | "no" | "maybe" ("!" | "")' }, ["yes", "no", "maybe", "maybe!"]);
  });

  it("tool calls: one call of a listed function with arguments of its schema", async () => {
    const spec = toolCallConstraint([{ name: "t", parameters: { type: "object", properties: { u: { enum: ["c", "f"] } }, required: ["u"], additionalProperties: false } }], "required", false);
    await checkMasks(spec, ['{"name": "t", "parameters": {"u": "c"}}', '{"name": "t", "parameters": {"u": "f"}}']);
  });
});

describe("what a constraint may not ask", () => {
  const refused: [unknown, RegExp][] = [
    [{ type: "object", not: { type: "null" } }, /f\.not: the JSON Schema keyword 'not' is not supported/],
    [{ type: "object", properties: { a: { type: "string", format: "color" } } }, /f\.properties\.a\.format: the string format "color" is not supported/],
    [{ type: "strange" }, /f\.type: unknown type "strange"/],
    [{ $ref: "https://example.com/schema" }, /f\.\$ref: only local references/],
    [{ type: "object", patternProperties: { "^x": {} } }, /'patternProperties' is not supported/],
    [{ anyOf: [] }, /'anyOf' must be a non-empty array/],
    // what xgrammar would turn into a broken promise
    [{ type: "string", pattern: "^.*$" }, /f\.pattern: the JSON Schema keyword 'pattern' is not supported/],
    [{ type: "number", maximum: 5 }, /f\.maximum: 'maximum' is supported on integers only/],
    [{ type: "string", format: "email" }, /f\.format: the string format "email" is not supported/],
    [{ type: "string", maxLength: 2, minLength: 3 }, /'maxLength' 2 is below 'minLength' 3/],
  ];
  it.each(refused)("refuses %j by its keyword and path", (schema, message) => {
    expect(() => enforceableSchema(schema, "f")).toThrow(message);
  });

  it("bounds integers to JavaScript's safe range where the schema leaves them open, and strings' lengths as a pattern", () => {
    expect(enforceableSchema({ type: "object", properties: { n: { type: "integer" }, m: { type: "integer", minimum: 3 } } }, "f")).toEqual({
      type: "object",
      properties: { n: { type: "integer", minimum: -(2 ** 53 - 1), maximum: 2 ** 53 - 1 }, m: { type: "integer", minimum: 3, maximum: 2 ** 53 - 1 } },
    });
    expect(enforceableSchema({ type: "string", maxLength: 5 }, "f")).toEqual({ type: "string", pattern: '^[^"\\\\\\x00-\\x1f]{0,5}$' });
    expect(() => enforceableSchema({ type: "string", maxLength: 257 }, "f")).toThrow(/'maxLength' above 256 is not supported/);
  });

  it("refuses constraints whose compile would take too long: length bounds past 512 in all, repetitions past 1024", () => {
    const props = Object.fromEntries([0, 1, 2].map((i) => [`s${i}`, { type: "string", maxLength: 200 }]));
    expect(() => enforceableSchema({ type: "object", properties: props }, "f")).toThrow(/add up past 512 characters/);
    return Promise.all([
      expect(engine.constrain({ type: "regex", pattern: "a{2000}" }, "guided_regex")).rejects.toThrow(/guided_regex: the repetition \{2000\} counts past 1024/),
      expect(engine.constrain({ type: "grammar", grammar: 'root ::= "a"{3,5000}' }, "grammar")).rejects.toThrow(/counts past 1024/),
    ]);
  });

  it("keeps a live generation's matcher working through an abort and through the instance's replacement", async () => {
    const spec: ConstraintSpec = { type: "regex", pattern: "(ab|cd)e?" };
    const live = await engine.constrain(spec, "a");
    const before = await live.nextMask();
    // an abort (a grammar that does not parse), and a memory cap every compile exceeds: the instance is to be
    // replaced, but not while `live` uses it
    await expect(engine.constrain({ type: "grammar", grammar: "root ::= (" }, "grammar")).rejects.toThrow(ConstraintError);
    setGrammarMemoryCap(1);
    try {
      const other = await engine.constrain({ type: "regex", pattern: "x|y" }, "b");
      expect(await live.nextMask()).toEqual(before);
      other.dispose();
      expect(await live.nextMask()).toEqual(before);
    } finally {
      setGrammarMemoryCap(32 * 2 ** 20);
    }
    live.dispose();
    live.dispose(); // twice is harmless
    // nothing used the old instance any more: the next constraint runs on a fresh one, exactly
    await checkMasks(spec, ["ab", "abe", "cd", "cde"], 2);
  });

  it("compiles more distinct constraints at once than it keeps (an evicted grammar still serves its request)", async () => {
    const fresh = new GrammarEngine(tok);
    const made = await Promise.all([...Array(20).keys()].map((i) => fresh.constrain({ type: "regex", pattern: `x{${i + 1}}` }, "r")));
    for (const [i, c] of made.entries()) {
      const x = tok.encode("x")[0]!;
      expect(((await c.nextMask())[x >> 5]! >>> (x & 31)) & 1, `constraint ${i}`).toBe(1);
      c.dispose();
    }
  });

  it("turns grammar, regex and schema errors into ConstraintErrors, and keeps working after xgrammar aborts", async () => {
    await expect(engine.constrain({ type: "grammar", grammar: "root ::= (" }, "grammar")).rejects.toThrow(/^grammar: EBNF parser error at line 1/);
    await expect(engine.constrain({ type: "regex", pattern: "a(" }, "guided_regex")).rejects.toThrow(ConstraintError);
    await expect(engine.constrain({ type: "json_schema", schema: { $ref: "#/$defs/missing" } }, "json_schema")).rejects.toThrow(/^json_schema: .*Cannot find field \$defs/);
    await expect(engine.constrain({ type: "json_schema", schema: { type: "object", not: {} } }, "json_schema")).rejects.toThrow(/'not' is not supported/);
    // after two aborts of its WebAssembly instance, a constraint still compiles and masks exactly
    await checkMasks({ type: "regex", pattern: "(ab|cd)e?" }, ["ab", "abe", "cd", "cde"], 2);
  });
});

describe("constrained generation on the test model", () => {
  const ajv = new Ajv({ strict: true });
  ajv.addFormat("date", /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/);
  const schemas = [
    { type: "object", properties: { name: { type: "string", maxLength: 8 }, age: { type: "integer", minimum: 0, maximum: 120 }, tags: { type: "array", items: { enum: ["a", "b", "c"] }, maxItems: 3 } }, required: ["name", "age", "tags"], additionalProperties: false },
    { type: "array", items: { type: "object", properties: { ok: { type: "boolean" }, n: { type: "integer", minimum: -5, maximum: 5 }, when: { type: "string", format: "date" } }, required: ["ok", "when"], additionalProperties: false }, minItems: 1, maxItems: 3 },
  ];
  const run = async (req: GenerateRequest) => {
    let text = "";
    let finish = "";
    for await (const ev of generate(m, req)) {
      text += ev.text;
      if (ev.type === "done") finish = ev.finishReason;
    }
    return { text, finish };
  };

  it.each(schemas.map((s, i) => [i, s] as const))("schema %i: every seed's output parses and validates; unconstrained, none does", async (_, schema) => {
    const validate = ajv.compile(schema);
    let unconstrainedValid = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const req = { prompt: { text: "Give me JSON:" }, maxTokens: 120, sampling: { temperature: 1, seed } };
      const r = await run({ ...req, constraint: await engine.constrain({ type: "json_schema", schema }, "f") });
      expect(r.finish, r.text).toBe("stop");
      const v = JSON.parse(r.text);
      expect(validate(v), `${r.text}: ${JSON.stringify(validate.errors)}`).toBe(true);
      // the layout: outside strings, whitespace is exactly one space after each ':' and ','
      const bare = r.text.replace(/"(\\.|[^"\\])*"/g, '""');
      expect(bare.replace(/([:,]) /g, "$1"), r.text).not.toMatch(/\s/);
      expect(bare.match(/[:,](?! )/g), r.text).toBeNull();
      const free = await run({ ...req, maxTokens: 40 });
      try {
        if (validate(JSON.parse(free.text))) unconstrainedValid++;
      } catch {
        // not JSON at all
      }
    }
    expect(unconstrainedValid).toBe(0);
  });

  it("a constrained answer cut by max_tokens finishes with length", async () => {
    const r = await run({ prompt: { text: "x" }, maxTokens: 3, sampling: { temperature: 1, seed: 1 }, constraint: await engine.constrain({ type: "json_schema", schema: schemas[0] }, "f") });
    expect(r.finish).toBe("length");
    expect(() => JSON.parse(r.text)).toThrow();
  });
});

describe("logit bias", () => {
  it("+100 makes a token the greedy choice, -100 takes the argmax away; logprobs stay the model's", () => {
    const logits = Float32Array.from({ length: 16 }, (_, i) => Math.sin(i) * 3);
    const best = new Sampler({ temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0 }).sample(logits);
    const greedy = (logitBias: [number, number][]) => new Sampler({ temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0, logitBias }).sample(logits);
    const worst = logits.indexOf(Math.min(...logits));
    expect(greedy([[worst, 100]]).id).toBe(worst);
    expect(greedy([[worst, 100]]).logprob).toBeCloseTo(best.logprob + logits[worst]! - logits[best.id]!, 5);
    const second = [...logits.keys()].filter((i) => i !== best.id).sort((a, b) => logits[b]! - logits[a]!)[0];
    expect(greedy([[best.id, -100]]).id).toBe(second);
  });
});
