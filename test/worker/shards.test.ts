// The plan inside workerd: the unsharded Durable Object is the plan with one part (and says so on /health); a
// budget that needs shards a deployment does not have is a clear 503; a shard Worker serves nothing of its own and
// its Durable Object answers only a WebSocket (the coordinator's).
import { describe, expect, it } from "vitest";
import shardWorker from "../../src/entries/shard.ts";
import { CONFIG_HEADER, ModelHost } from "../../src/hosts/durable-object.ts";
import { ModelShard } from "../../src/hosts/shard-host.ts";
import { baseEnv, call, MODEL, seedModels, waitReady } from "./helpers.ts";

describe("the unsharded Durable Object is the plan with one part", () => {
  it("/health lists one part holding every layer and the whole vocabulary, its WebAssembly memory, no budget", async () => {
    await seedModels();
    await waitReady();
    const h = (await (await call("/health")).json()) as any;
    expect(h.shards).toHaveLength(1);
    expect(h.shards[0]).toMatchObject({ index: 0, layers: [0, 2], vocab: [0, 1024], status: "ready", budget_bytes: null, sequences_in_use: 0 });
    expect(h.shards[0].wasm_memory_bytes).toBeGreaterThan(3e6);
  });
});

describe("a coordinator whose budget needs more shards than its deployment binds", () => {
  it("answers 503 naming the plan, the budget and the missing bindings", async () => {
    await seedModels();
    const host = new ModelHost({} as never, { ...baseEnv, SHARD_BUDGET_MB: "0.6", SHARD_COUNT: "0" } as never);
    const headers = { [CONFIG_HEADER]: JSON.stringify({ modelId: MODEL, key: "gemma-edge-tiny.gguf" }) };
    const status = (await (await host.fetch(new Request("https://model-host/load", { headers }))).json()) as any;
    expect(status.status).toBe("error");
    expect(status.error).toMatch(/the model needs \d+ shards for a budget of 0\.6 MB; this deployment has 0/);
  });
  it("and a budget below even one layer names the layer and the budget", async () => {
    const host = new ModelHost({} as never, { ...baseEnv, SHARD_BUDGET_MB: "0.2", SHARD_COUNT: "9" } as never);
    const headers = { [CONFIG_HEADER]: JSON.stringify({ modelId: MODEL, key: "gemma-edge-tiny.gguf" }) };
    const status = (await (await host.fetch(new Request("https://model-host/load", { headers }))).json()) as any;
    expect(status.error).toMatch(/layer 0 does not fit the budget of 0\.20 MB even alone/);
  });
});

describe("a shard is reachable only by its coordinator", () => {
  it("the shard Worker answers 404 to any request", async () => {
    const r = await shardWorker.fetch();
    expect(r.status).toBe(404);
  });
  it("its Durable Object refuses anything but a WebSocket upgrade with 403", async () => {
    const shard = new ModelShard({} as never, baseEnv as never);
    const r = await shard.fetch(new Request("https://shard/anything", { method: "POST", body: "{}" }));
    expect(r.status).toBe(403);
  });
});
