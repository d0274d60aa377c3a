// Constrained decoding: a JSON schema, a regex, an EBNF grammar or a structural tag (tool calls) becomes, at each
// step, a mask over the vocabulary that the sampler applies before it draws; the drawn token then advances the
// grammar. The grammar engine is xgrammar (@mlc-ai/web-xgrammar, the one web-llm uses), compiled to WebAssembly:
// it precomputes, per grammar position, which tokens are decided by the position alone, so a step's mask costs
// well under a millisecond on Gemma's 256k vocabulary (README "Structured outputs", `npm run bench:grammar`).
// build/xgrammar.js is the package made loadable in workerd (wasm/build-xgrammar.js); the host hands in its
// compiled WebAssembly with provideGrammarWasm().
//
// What a spec may ask is checked here first (enforceableSchema): xgrammar ignores the JSON Schema keywords it does not
// know, and an ignored keyword would be a promise the output does not keep, so those are refused by name.
// Whitespace in generated JSON is fixed (`{"a": 1, "b": [2, 3]}`: one space after ':' and ','), so the model can
// never run on in blanks.
import * as xg from "../../build/xgrammar.js";
import { GRAMMAR_MEMORY_BYTES } from "./grammar-memory.ts";
import { TOKEN_TYPE, type Tokenizer } from "./tokenizer.ts";
import { CALL_END, CALL_SEPARATOR, CALL_TRIGGER, callBegin } from "./tools.ts";

/** What a request constrains its output to (plain JSON: it travels between hosts). */
export type ConstraintSpec =
  | { type: "json_object" }
  | { type: "json_schema"; schema: unknown }
  | { type: "regex"; pattern: string }
  | { type: "grammar"; grammar: string }
  /** Calls of these functions in tools.ts's shape; auto: text or calls, required: calls only. */
  | { type: "tool_calls"; tools: { name: string; parameters: unknown; index: number }[]; mode: "auto" | "required"; parallel: boolean };

/** A constraint that cannot be compiled or asks for what is not supported (the API answers 400). */
export class ConstraintError extends Error {
  override name = "ConstraintError";
  readonly field?: string;
  constructor(message: string, field?: string) {
    super(message);
    this.field = field;
  }
}

let provided = false;
/** The host's compiled build/xgrammar.wasm (Node and browsers compile it; workerd imports it). */
export function provideGrammarWasm(module: WebAssembly.Module): void {
  xg.provideWasm(module);
  provided = true;
}
export const grammarWasmProvided = () => provided;
export { GRAMMAR_MEMORY_BYTES };

/** Bytes of the grammar engine's WebAssembly memory (0 before its first use). */
export function grammarMemoryBytes(): number {
  return xg.wasmMemory()?.buffer.byteLength ?? 0;
}

/** How generated JSON is laid out: compact, one space after ':' and ',' (bounded whitespace, by construction). */
const JSON_LAYOUT = { anyWhitespace: false, indent: -1, separators: [", ", ": "] as [string, string] };

/**
 * The JSON Schema keywords the grammar enforces, as checked by test/unit/grammar.test.ts. Left out, because
 * xgrammar 0.1.27 turns them into grammars that break their promise: `pattern` (a pattern may match a quote or a
 * control character, which ends or breaks the JSON string), ranges on non-integer numbers (`maximum: 5` lets 5.18
 * through), and the formats whose grammars allow quotes (email, uri and the like). `minLength`/`maxLength` are
 * rewritten here into a pattern of characters that need no escape (xgrammar's own rule for them lets control
 * characters through).
 */
const ENFORCED = new Set([
  "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "enum", "const",
  "anyOf", "oneOf", "$ref", "$defs", "definitions", "minLength", "maxLength", "minimum", "maximum",
  "exclusiveMinimum", "exclusiveMaximum", "format",
]);
/** Keywords that only describe (they change nothing the grammar must enforce). */
const ANNOTATIONS = new Set(["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "strict"]);
/** String formats whose grammars are fixed character sets (no quote, backslash or control character). */
const FORMATS = new Set(["date", "time", "date-time", "duration", "uuid", "ipv4", "ipv6"]);
const TYPES = new Set(["object", "array", "string", "number", "integer", "boolean", "null"]);
/** The largest minLength/maxLength taken (compiling one costs about 40 ms per character on a 256k vocabulary). */
export const MAX_LENGTH_BOUND = 256;
/** The most characters of length bounds in one constraint, all strings together (about 20 s of compiling at most). */
export const MAX_LENGTH_TOTAL = 512;
/** The largest count of a repetition in a regex or grammar. */
export const MAX_REPETITION = 1024;

/**
 * `schema` as given to xgrammar, or a ConstraintError naming the first keyword the grammar would not enforce,
 * with its path (`field` is the request field the schema came in).
 */
export function enforceableSchema(schema: unknown, field: string, budget = { left: MAX_LENGTH_TOTAL }): unknown {
  const fail = (path: string, what: string): never => {
    throw new ConstraintError(`${field}${path}: ${what}`, field);
  };
  const walk = (s: unknown, path: string): unknown => {
    if (s === true || s === false) return s;
    if (typeof s !== "object" || s === null || Array.isArray(s)) fail(path, `a schema must be an object or a boolean, got ${JSON.stringify(s)?.slice(0, 40)}`);
    const o = s as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o)) {
      const at = `${path}.${k}`;
      out[k] = v;
      if (ANNOTATIONS.has(k)) continue;
      if (!ENFORCED.has(k)) fail(at, `the JSON Schema keyword '${k}' is not supported (supported: ${[...ENFORCED].join(", ")})`);
      switch (k) {
        case "type": {
          const list = Array.isArray(v) ? v : [v];
          for (const t of list) if (typeof t !== "string" || !TYPES.has(t)) fail(at, `unknown type ${JSON.stringify(t)}`);
          break;
        }
        case "properties":
        case "$defs":
        case "definitions":
          if (typeof v !== "object" || v === null || Array.isArray(v)) fail(at, `'${k}' must be an object`);
          out[k] = Object.fromEntries(Object.entries(v as object).map(([name, sub]) => [name, walk(sub, `${at}.${name}`)]));
          break;
        case "items":
        case "additionalProperties":
          out[k] = walk(v, at);
          break;
        case "prefixItems":
        case "anyOf":
        case "oneOf":
          if (!Array.isArray(v) || !v.length) fail(at, `'${k}' must be a non-empty array of schemas`);
          out[k] = (v as unknown[]).map((sub, i) => walk(sub, `${at}[${i}]`));
          break;
        case "required":
          if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) fail(at, `'required' must be an array of property names`);
          break;
        case "enum":
          if (!Array.isArray(v) || !v.length) fail(at, `'enum' must be a non-empty array`);
          break;
        case "$ref":
          if (typeof v !== "string" || !/^#(\/(\$defs|definitions)\/[^/]+)?$/.test(v)) fail(at, `only local references are supported ("#", "#/$defs/<name>", "#/definitions/<name>"), got ${JSON.stringify(v)}`);
          break;
        case "format":
          if (typeof v !== "string" || !FORMATS.has(v)) fail(at, `the string format ${JSON.stringify(v)} is not supported (supported: ${[...FORMATS].join(", ")})`);
          break;
        case "minItems":
        case "maxItems":
        case "minLength":
        case "maxLength":
          if (!Number.isInteger(v) || (v as number) < 0) fail(at, `'${k}' must be a non-negative integer`);
          break;
        case "minimum":
        case "maximum":
        case "exclusiveMinimum":
        case "exclusiveMaximum":
          if (typeof v !== "number") fail(at, `'${k}' must be a number`);
          if (o.type !== "integer") fail(at, `'${k}' is supported on integers only (type "integer")`);
          break;
      }
    }
    // integers stay within what a JSON parser in JavaScript reads exactly (and never run on in digits)
    if (out.type === "integer") {
      if (out.minimum === undefined && out.exclusiveMinimum === undefined) out.minimum = -Number.MAX_SAFE_INTEGER;
      if (out.maximum === undefined && out.exclusiveMaximum === undefined) out.maximum = Number.MAX_SAFE_INTEGER;
    }
    if (out.minLength !== undefined || out.maxLength !== undefined) {
      if (out.type !== "string") fail(path, `'minLength'/'maxLength' are supported on strings only (type "string")`);
      if (out.format !== undefined) fail(path, `'minLength'/'maxLength' together with 'format' are not supported`);
      const min = (out.minLength as number | undefined) ?? 0;
      const max = out.maxLength as number | undefined;
      if (max !== undefined && max < min) fail(path, `'maxLength' ${max} is below 'minLength' ${min}`);
      // each character of the bound is a grammar state whose mask is precomputed: ~40 ms each on 256k tokens
      if ((max ?? min) > MAX_LENGTH_BOUND) fail(path, `'${max !== undefined ? "maxLength" : "minLength"}' above ${MAX_LENGTH_BOUND} is not supported (a bounded string compiles in time proportional to its bound)`);
      budget.left -= max ?? min;
      if (budget.left < 0) fail(path, `the length bounds of this constraint's strings add up past ${MAX_LENGTH_TOTAL} characters, which is not supported (each character of a bound is compiled ahead)`);
      delete out.minLength;
      delete out.maxLength;
      out.pattern = `^[^"\\\\\\x00-\\x1f]{${min},${max ?? ""}}$`;
    }
    return out;
  };
  return walk(schema, "");
}

/** The per-step interface the decoding loop uses (generate.ts Decoding). */
export interface TokenConstraint {
  /** The mask of the next token: bit i of word i >> 5 set when token i is allowed. */
  nextMask(): Promise<Int32Array>;
  /** Advance by the drawn token; false when the grammar refuses it. */
  accept(id: number): boolean;
  /** The grammar reached its end and took a stop token. */
  readonly terminated: boolean;
  dispose(): void;
}

// The xgrammar instance's lifetime. The package's wrappers all use one module-level instance, so objects of an
// instance must never meet another: the instance is replaced (after a fatal error, which leaves it with leaked
// state, or when its memory grew past GRAMMAR_MEMORY_BYTES) only when nothing of it is in use, that is when no
// compile is under way and no matcher is alive. Engines notice the new epoch and rebuild their tables.
let inUse = 0;
let restartWanted = false;
let epoch = 0;
let memoryCap = GRAMMAR_MEMORY_BYTES;
/** A different cap on the engine's memory (tests make it tiny to see instances replaced under load). */
export function setGrammarMemoryCap(bytes: number): void {
  memoryCap = bytes;
}
function release(): void {
  inUse--;
  if (restartWanted && inUse === 0) {
    xg.resetInstance();
    restartWanted = false;
    epoch++;
  }
}

interface CacheEntry {
  grammar: Promise<xg.CompiledGrammar>;
  /** Requests between compile and matcher (a grammar evicted meanwhile is disposed after the last of them). */
  users: number;
  evicted: boolean;
}

/** The grammar engine of one vocabulary: compiles specs (keeping the last few) and starts matchers. */
export class GrammarEngine {
  private compiler!: Promise<xg.GrammarCompiler>;
  private epoch = -1;
  private readonly tok: Tokenizer;
  private readonly vocabSize: number;
  private readonly stopIds: number[];
  /** Compiled grammars by spec, most recently used last. */
  private readonly cache = new Map<string, CacheEntry>();
  private static readonly CACHE_SIZE = 16;

  /**
   * The engine for a tokenizer (its tables are built on first use: a quarter of a second for 256k tokens).
   * Control, unknown and unused tokens are never allowed (they are given xgrammar as empty strings, which it
   * excludes); the tokenizer's stop tokens are allowed where the grammar may end.
   */
  constructor(tok: Tokenizer, vocabSize = tok.vocabSize) {
    if (!provided) throw new Error("the grammar engine's WebAssembly was not provided (provideGrammarWasm)");
    this.tok = tok;
    this.vocabSize = vocabSize;
    this.stopIds = tok.stopIds;
  }

  /** The tables of the current instance (rebuilt after a replacement; what the cache held belonged to the old one). */
  private current(): void {
    if (this.epoch === epoch) return;
    this.epoch = epoch;
    this.cache.clear();
    const tok = this.tok;
    const vocab = tok.tokens.map((t, i) => {
      const ty = tok.types[i];
      if (ty === TOKEN_TYPE.NORMAL) return t;
      // bytes that begin no UTF-8 character (C0, C1, F5-FF) are never valid text; xgrammar would let them start one
      if (ty === TOKEN_TYPE.BYTE) return /^<0x(C[01]|F[5-9A-F])>$/i.test(t) ? "" : t;
      // user-defined tokens are their literal text (llama.cpp does not read U+2581 in them as a space)
      if (ty === TOKEN_TYPE.USER_DEFINED && !t.includes("\u2581")) return t;
      return "";
    });
    this.compiler = (async () => {
      const info = await xg.TokenizerInfo.createTokenizerInfo(vocab, "byte_fallback", false, this.vocabSize, this.stopIds);
      return xg.GrammarCompiler.createGrammarCompiler(info, false); // (compiled grammars are kept by this.cache)
    })();
    this.compiler.catch(() => {});
  }

  /** The cache entry of a spec, compiling it when it is not there; a bad spec is a ConstraintError naming `field`. */
  private entry(spec: ConstraintSpec, field: string): CacheEntry {
    const key = JSON.stringify(spec);
    let e = this.cache.get(key);
    if (e) {
      this.cache.delete(key);
      this.cache.set(key, e);
      return e;
    }
    e = { grammar: this.compileNew(spec, field), users: 0, evicted: false };
    const made = e;
    this.cache.set(key, made);
    made.grammar.then(
      () => {
        if (grammarMemoryBytes() > memoryCap) restartWanted = true;
      },
      () => {
        if (this.cache.get(key) === made) this.cache.delete(key);
      },
    );
    while (this.cache.size > GrammarEngine.CACHE_SIZE) {
      const [oldest, old] = this.cache.entries().next().value!;
      this.cache.delete(oldest);
      old.evicted = true;
      if (old.users === 0) disposeWhenDone(old);
    }
    return made;
  }

  private async compileNew(spec: ConstraintSpec, field: string): Promise<xg.CompiledGrammar> {
    const c = await this.compiler;
    const L = JSON_LAYOUT;
    try {
      switch (spec.type) {
        case "json_object":
          // any JSON object, laid out as schemas are ({"type": "object"} in xgrammar's strict mode allows any member)
          return await c.compileJSONSchema(JSON.stringify({ type: "object" }), L.anyWhitespace, L.indent, L.separators, false);
        case "json_schema":
          return await c.compileJSONSchema(JSON.stringify(enforceableSchema(spec.schema, field)), L.anyWhitespace, L.indent, L.separators, true);
        case "regex":
          if (typeof spec.pattern !== "string" || !spec.pattern) throw new ConstraintError(`${field}: the regex must be a non-empty string`, field);
          try {
            new RegExp(spec.pattern, "u"); // most syntax errors, caught before they reach the C++
          } catch (e) {
            throw new ConstraintError(`${field}: ${(e as Error).message}`, field);
          }
          checkRepetitions(spec.pattern, field);
          return await c.compileStructuralTag({ type: "structural_tag", format: { type: "regex", pattern: spec.pattern } });
        case "grammar":
          if (typeof spec.grammar !== "string" || !spec.grammar.trim()) throw new ConstraintError(`${field}: the grammar must be a non-empty string`, field);
          checkRepetitions(spec.grammar, field);
          return await c.compileGrammar(spec.grammar, "root");
        case "tool_calls": {
          // one tag per function: its call's fixed start, its arguments' grammar (the layout above), the call's end
          const budget = { left: MAX_LENGTH_TOTAL };
          const schemas = spec.tools.map((t) => enforceableSchema(t.parameters, `${field}[${t.index}].function.parameters`, budget));
          const tags = [];
          for (const [i, t] of spec.tools.entries()) {
            // (the JSON Schema converter xgrammar exposes for tests: its structural tags' own JSON has unbounded whitespace)
            const args = await xg.Testings._jsonSchemaToEBNF(JSON.stringify(schemas[i]), L.anyWhitespace, L.indent, L.separators, true);
            tags.push({ type: "tag" as const, begin: callBegin(t.name), content: { type: "grammar" as const, grammar: args }, end: CALL_END });
          }
          if (!tags.length) throw new ConstraintError(`${field}: no function to call`, field);
          const format = spec.mode === "auto"
            ? { type: "triggered_tags" as const, triggers: [CALL_TRIGGER], tags, stop_after_first: !spec.parallel }
            : { type: "tags_with_separator" as const, tags, separator: CALL_SEPARATOR, at_least_one: true, stop_after_first: !spec.parallel };
          return await c.compileStructuralTag({ type: "structural_tag", format });
        }
      }
    } catch (e) {
      if (e instanceof ConstraintError) throw e;
      const fatal = xg.takeFatalError();
      if (fatal) {
        restartWanted = true; // the instance aborted: it is replaced once nothing uses it
        throw new ConstraintError(`${field}: ${fatal}`, field);
      }
      throw new ConstraintError(`${field}: ${grammarMessage(e)}`, field);
    }
    throw new ConstraintError(`${field}: unknown constraint type ${JSON.stringify((spec as { type: unknown }).type)}`, field);
  }

  /** A matcher for one generation under `spec` (dispose it when the generation ends; disposing twice is harmless). */
  async constrain(spec: ConstraintSpec, field: string): Promise<TokenConstraint> {
    inUse++; // from the compile to the matcher's end
    let m: xg.GrammarMatcher;
    try {
      this.current();
      const e = this.entry(spec, field);
      e.users++;
      try {
        m = await xg.GrammarMatcher.createGrammarMatcher(await e.grammar, this.stopIds);
      } finally {
        e.users--;
        if (e.evicted && e.users === 0) disposeWhenDone(e);
      }
    } catch (err) {
      release();
      throw err;
    }
    let terminated = false;
    let disposed = false;
    return {
      nextMask: () => m.getNextTokenBitmask(),
      accept: (id) => {
        const ok = m.acceptToken(id);
        terminated = m.isTerminated();
        return ok;
      },
      get terminated() {
        return terminated;
      },
      dispose: () => {
        if (disposed) return;
        disposed = true;
        try {
          m.dispose();
        } catch {
          // (an object of an instance that aborted: nothing left to free)
        }
        release();
      },
    };
  }
}

/** A compiled grammar no request will use any more (a matcher holds its own reference: disposing is safe). */
function disposeWhenDone(e: CacheEntry): void {
  void e.grammar.then((g) => g.dispose(), () => {});
}

/** Counted repetitions in a regex or grammar (`{m}`, `{m,}`, `{m,n}`): each count is a state to precompute. */
function checkRepetitions(text: string, field: string): void {
  for (const m of text.matchAll(/\{(\d+)(?:,(\d*))?\}/g)) {
    const n = Math.max(Number(m[1]), Number(m[2] || 0));
    if (n > MAX_REPETITION) throw new ConstraintError(`${field}: the repetition ${m[0]} counts past ${MAX_REPETITION}, which is not supported (each count is a grammar state compiled ahead)`, field);
  }
}

/** xgrammar's errors arrive as C++ exceptions (a pointer) or Errors; either way, a readable message. */
function grammarMessage(e: unknown): string {
  if (e instanceof Error) return e.message.replace(/^RuntimeError: /, "");
  if (typeof e === "string") return e;
  return `the grammar engine refused it (${String(e)})`;
}
