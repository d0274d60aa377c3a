// Calling the Worker inside workerd, with the real R2 bucket and Durable Object bindings of wrangler.toml.
import { env } from "cloudflare:workers";
import worker from "../../src/index.ts";
import type { Env } from "../../src/hosts/worker-env.ts";
import { GGML_TYPE } from "../../src/engine/ggml-types.ts";
import { makeTestModelBytes, SHAPES } from "../../src/tools/make-test-model.ts";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { readGguf } from "../../src/engine/gguf.ts";
import { Tokenizer } from "../../src/engine/tokenizer.ts";
import { ChatTemplate } from "../../src/engine/chat-template.ts";

export const MODEL = "gemma-edge-tiny";
export const baseEnv = env as unknown as Env;
const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} };

let seeded: Promise<{ bytes: Uint8Array; tok: Tokenizer; tpl: ChatTemplate }> | undefined;

/** Put the tiny model (and a corrupt copy) into the bucket; returns its tokenizer for expectations. */
export function seedModels() {
  seeded ??= (async () => {
    const bytes = await makeTestModelBytes({ shape: SHAPES.tiny!, type: GGML_TYPE.Q4_0, seed: 1 });
    await baseEnv.MODELS.put("gemma-edge-tiny.gguf", bytes);
    await baseEnv.MODELS.put("corrupt.gguf", bytes.slice(0, 4000));
    const tok = new Tokenizer(await readGguf(new MemoryByteSource(bytes)));
    return { bytes, tok, tpl: new ChatTemplate(tok, String((await readGguf(new MemoryByteSource(bytes))).metadata.get("tokenizer.chat_template"))) };
  })();
  return seeded;
}

const envs = new Map<string, Env>();
/** The Worker's env with some settings changed (each distinct set is its own app and, by MODEL_ID, its own Durable Object). */
export function envWith(over: Partial<Record<keyof Env, string>> = {}): Env {
  const k = JSON.stringify(over);
  let e = envs.get(k);
  if (!e) envs.set(k, (e = { ...baseEnv, ...over } as Env));
  return e;
}

export async function call(path: string, init: RequestInit & { json?: unknown } = {}, e: Env = envWith()): Promise<Response> {
  const { json, ...rest } = init;
  const req = new Request(`http://localhost${path}`, {
    ...rest,
    ...(json !== undefined ? { method: rest.method ?? "POST", body: JSON.stringify(json), headers: { "Content-Type": "application/json", ...(rest.headers as Record<string, string>) } } : {}),
  });
  return worker.fetch(req, e, ctx);
}

/** Parse an SSE body into its events: data payloads (JSON or "[DONE]") and comments. */
export async function readSse(res: Response): Promise<{ data: string[]; comments: string[]; raw: string }> {
  const raw = await res.text();
  const data: string[] = [];
  const comments: string[] = [];
  for (const block of raw.split("\n\n")) {
    if (!block) continue;
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) comments.push(line);
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
  }
  return { data, comments, raw };
}

export async function waitReady(e: Env = envWith()) {
  for (let i = 0; i < 200; i++) {
    const r = await call("/health", {}, e);
    if (r.status === 200) return;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error("model did not become ready");
}
