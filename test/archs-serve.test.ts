// `gemma-edge serve` on Gemma 2 and Gemma 3 files, through the official OpenAI client: what the server reports,
// several requests batched together each getting the tokens it gets alone, and a chat's second turn that
// starts from the first turn's KV (the prompt cache over sliding-window rings).
import type { ServerType } from "@hono/node-server";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryByteSource } from "../src/engine/byte-source.ts";
import { generate } from "../src/engine/generate.ts";
import { KvCache } from "../src/engine/model/kv-cache.ts";
import { loadModel, type LoadedModel } from "../src/engine/model/load.ts";
import { startNodeServer } from "../src/hosts/node-server.ts";
import { loadWasmBackend } from "../src/hosts/node-wasm.ts";
import { SHAPES } from "../src/tools/make-test-model.ts";
import { testModel } from "./helpers/models.ts";

describe.each(["gemma2", "gemma3"] as const)("gemma-edge serve on a %s file", (arch) => {
  const shape = { ...SHAPES[`tiny-${arch}`]!, contextLength: 1024 };
  let server: ServerType;
  let url = "";
  let alone: LoadedModel;
  let client: OpenAI;
  beforeAll(async () => {
    const file = await testModel(shape, "q8_0");
    const s = await startNodeServer({ model: file.path, port: 0, modelId: arch, maxBatchSize: 3, promptCacheSlots: 2, prefillChunk: 64 });
    server = s.server;
    url = s.url;
    await s.service.load();
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "none" });
    alone = await loadModel(new MemoryByteSource(file.bytes), await loadWasmBackend(), { contextSize: 1024 });
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const aloneText = async (prompt: string, maxTokens: number) => {
    const ids = alone.tokenizer.encode(prompt, { addBos: true });
    const out: number[] = [];
    for await (const ev of generate(alone, { prompt: { ids }, maxTokens, sampling: { temperature: 0 } })) if (ev.type === "token") out.push(ev.id);
    return alone.tokenizer.decode(out);
  };

  it("reports its architecture and the KV memory its rings need", async () => {
    const health = (await (await fetch(`${url}/health`)).json()) as Record<string, unknown>;
    // global layers hold all 1024 positions; local ones a ring of 768 (window 16 + 513, rounded up to 256)
    const local = shape.nLayers - (arch === "gemma2" ? shape.nLayers / 2 : 1);
    const perPosition = 2 * shape.nKvHeads * shape.headDim * 2;
    const kv = ((shape.nLayers - local) * 1024 + local * 768) * perPosition;
    expect(health).toMatchObject({ status: "ready", architecture: arch, context_size: 1024, kv_bytes_per_sequence: kv, kv_slots: 5 });
    expect(kv).toBe(KvCache.bytes(alone.cfg, 1024));
    const info = (await (await fetch(`${url}/info`)).json()) as Record<string, unknown>;
    expect(info).toMatchObject({ model_architecture: arch, kv_bytes_per_sequence: kv });
    const models = await client.models.list();
    expect((models.data[0] as unknown as { meta: unknown }).meta).toEqual({ architecture: arch, context_size: 1024 });
  });

  it("three requests at once, past the window, each get the text they get alone", async () => {
    const prompts = [
      "The quick brown fox jumps over the lazy dog and keeps running through the field until night falls",
      "Once upon a time",
      "def main():\n    for i in range(10):\n        print(i)\n    return 0\n\nif __name__ == '__main__':",
    ];
    const got = await Promise.all(prompts.map((prompt) => client.completions.create({ model: arch, prompt, max_tokens: 40, temperature: 0 })));
    for (const [i, r] of got.entries()) expect(r.choices[0]!.text, prompts[i]).toBe(await aloneText(prompts[i]!, 40));
  });

  it("a chat's second turn reuses the first turn's KV", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Tell me a story about a fox and a dog in a field." }];
    const first = await client.chat.completions.create({ model: arch, messages, max_tokens: 30, temperature: 0 });
    messages.push({ role: "assistant", content: first.choices[0]!.message.content! }, { role: "user", content: "And then?" });
    const second = await client.chat.completions.create({ model: arch, messages, max_tokens: 10, temperature: 0 });
    const cached = (second.usage as unknown as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens;
    expect(cached).toBeGreaterThan(first.usage!.prompt_tokens);
    expect(second.choices[0]!.finish_reason).toBe("length");
  });
});
