// Hugging Face's own client (`@huggingface/inference`'s InferenceClient) against `gemma-edge serve`, as its users
// call a TGI endpoint: textGeneration and textGenerationStream with `endpointUrl` post to /v1/completions with the
// endpoint URL as `model`, which the one model answers (TGI's and llama.cpp's policy).
import type { ServerType } from "@hono/node-server";
import { InferenceClient } from "@huggingface/inference";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNodeServer } from "../src/hosts/node-server.ts";
import { testModel } from "./helpers/models.ts";

let server: ServerType;
let url = "";
beforeAll(async () => {
  const { path } = await testModel("tiny", "q4_0");
  const s = await startNodeServer({ model: path, port: 0, modelId: "tiny" });
  server = s.server;
  url = s.url;
  await s.service.load();
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("@huggingface/inference against gemma-edge serve", () => {
  const hf = new InferenceClient();
  const args = () => ({ endpointUrl: url, inputs: "Once upon a time", parameters: { max_new_tokens: 12, temperature: 0 } });

  it("textGeneration gets the greedy text that /v1/completions gives", async () => {
    const out = await hf.textGeneration(args());
    const direct = (await (await fetch(`${url}/v1/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "tiny", prompt: "Once upon a time", max_tokens: 12, temperature: 0 }),
    })).json()) as { choices: { text: string }[] };
    expect(out.generated_text).toBe(direct.choices[0]!.text);
    expect(out.generated_text.length).toBeGreaterThan(0);
  });

  it("textGenerationStream streams the same text chunk by chunk", async () => {
    const whole = (await hf.textGeneration(args())).generated_text;
    let text = "";
    let chunks = 0;
    for await (const c of hf.textGenerationStream(args()) as AsyncIterable<{ choices?: { text: string }[] }>) {
      text += c.choices?.[0]?.text ?? "";
      chunks++;
    }
    expect(chunks).toBeGreaterThan(3);
    expect(text).toBe(whole);
  });

  it("a strict server (--strict-model) refuses the endpoint URL as a model name", async () => {
    const { path } = await testModel("tiny", "q4_0");
    const s = await startNodeServer({ model: path, port: 0, modelId: "tiny", strictModel: true });
    try {
      const e = (await hf.textGeneration({ ...args(), endpointUrl: s.url }).catch((x) => x)) as { httpResponse?: { status: number; body: unknown } };
      expect(e.httpResponse?.status).toBe(404);
      expect(JSON.stringify(e.httpResponse?.body)).toMatch(/does not exist/);
    } finally {
      await new Promise<void>((r) => s.server.close(() => r()));
    }
  });
});
