// One request end to end on the tiny model: stop tokens, stop strings across token boundaries, max tokens,
// holdback of text that could start a stop string, aborts, and context limits.
import { beforeAll, describe, expect, it } from "vitest";
import { ReferenceBackend } from "../../src/engine/backend/reference.ts";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { generate, RequestError, StopMatcher, type DoneEvent, type GenerateRequest, type TokenEvent } from "../../src/engine/generate.ts";
import { loadModel, type LoadedModel } from "../../src/engine/model/load.ts";
import { testModel } from "../helpers/models.ts";

let m: LoadedModel;
beforeAll(async () => {
  m = await loadModel(new MemoryByteSource((await testModel("tiny", "q4_0")).bytes), new ReferenceBackend(), { contextSize: 128 });
});

async function run(req: GenerateRequest) {
  const tokens: TokenEvent[] = [];
  let done: DoneEvent | undefined;
  for await (const ev of generate(m, req)) {
    if (ev.type === "token") tokens.push(ev);
    else done = ev;
  }
  return { tokens, done: done!, text: tokens.map((t) => t.text).join("") + done!.text };
}

describe("StopMatcher", () => {
  it("matches a stop string split across pieces and drops it", () => {
    const s = new StopMatcher(["END"]);
    expect(s.push("abc E")).toEqual({ text: "abc " });
    expect(s.push("N")).toEqual({ text: "" });
    expect(s.push("Dxyz")).toEqual({ text: "", stop: "END" });
  });
  it("releases held text once it can no longer start a stop string", () => {
    const s = new StopMatcher(["END"]);
    expect(s.push("E").text).toBe("");
    expect(s.push("x").text).toBe("Ex");
  });
  it("picks the earliest of several stop strings", () => {
    expect(new StopMatcher(["bb", "a"]).push("xbba")).toEqual({ text: "x", stop: "bb" });
  });
});

describe("generate", () => {
  const prompt = { text: "The quick brown fox" };

  it("stops at max tokens with finish reason length and exact usage", async () => {
    const r = await run({ prompt, maxTokens: 12, sampling: { temperature: 0 } });
    expect(r.tokens).toHaveLength(12);
    expect(r.done.finishReason).toBe("length");
    expect(r.done.promptTokens).toBe(m.tokenizer.encode(prompt.text, { addBos: true }).length);
    expect(r.done.completionTokens).toBe(12);
  });

  it("cuts at a stop string that spans tokens, leaving it out of the text", async () => {
    const full = await run({ prompt, maxTokens: 24, sampling: { temperature: 0 } });
    // a stop string made of the end of one token's text and the start of the next
    const pieces = full.tokens.map((t) => m.tokenizer.decode([t.id]));
    const k = pieces.findIndex((p, i) => i > 2 && p.length >= 2 && (pieces[i + 1] ?? "").length >= 1);
    const before = pieces.slice(0, k).join("");
    const stop = pieces[k]!.slice(-2) + pieces[k + 1]!.slice(0, 1);
    const r = await run({ prompt, maxTokens: 24, sampling: { temperature: 0 }, stop: [stop] });
    expect(r.done.finishReason).toBe("stop");
    expect(r.done.stoppedBy).toBe(stop);
    expect(full.text.startsWith(r.text)).toBe(true);
    expect(r.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
    expect(r.text.length).toBeGreaterThanOrEqual(before.length - 2);
    expect(r.text).not.toContain(stop);
  });

  it("never emits text that could still become a stop string", async () => {
    const full = await run({ prompt, maxTokens: 16, sampling: { temperature: 0 } });
    const stop = full.text.slice(3, 6) + "\u0000"; // a prefix that appears, then a character that never comes
    const r = await run({ prompt, maxTokens: 16, sampling: { temperature: 0 }, stop: [stop] });
    const streamed = r.tokens.map((t) => t.text).join("");
    expect(streamed).toBe(full.text.slice(0, streamed.length));
    expect(r.text).toBe(full.text);
  });

  it("reproduces a seeded sampling run", async () => {
    const req = { prompt, maxTokens: 10, sampling: { temperature: 1, seed: 3 } };
    expect((await run(req)).tokens.map((t) => t.id)).toEqual((await run(req)).tokens.map((t) => t.id));
  });

  it("stops within one token when aborted", async () => {
    const ac = new AbortController();
    const seen: number[] = [];
    let done: DoneEvent | undefined;
    for await (const ev of generate(m, { prompt, maxTokens: 50, sampling: { temperature: 0 }, signal: ac.signal })) {
      if (ev.type === "token") {
        seen.push(ev.id);
        if (seen.length === 3) ac.abort();
      } else done = ev;
    }
    expect(seen).toHaveLength(3);
    expect(done!.finishReason).toBe("abort");
  });

  it("refuses prompts longer than the context, naming the limits", async () => {
    await expect(run({ prompt: { ids: new Array(200).fill(5) }, maxTokens: 1 })).rejects.toThrow(/the prompt has 200 tokens; the context holds 128/);
    await expect(run({ prompt, maxTokens: 0 })).rejects.toThrow(RequestError);
  });

  it("stops on <end_of_turn> (finish reason stop) and streams no special-token text", async () => {
    // a scripted model: greedy picks "H", then <start_of_turn> (special, renders nothing), then <end_of_turn>
    const script = [m.tokenizer.tokenId("H")!, 106, 107, 5];
    let step = 0;
    const fake: LoadedModel = {
      ...m,
      forward: () => {
        const l = new Float32Array(m.tokenizer.vocabSize);
        l[script[step++]!] = 10;
        return l;
      },
    };
    const events = [];
    for await (const ev of generate(fake, { prompt, maxTokens: 10, sampling: { temperature: 0 } })) events.push(ev);
    expect(events.map((e) => (e.type === "token" ? [e.id, e.text, e.special] : [e.finishReason, e.stoppedBy, e.completionTokens]))).toEqual([
      [script[0], "H", false],
      [106, "", true],
      [107, "", true],
      ["stop", 107, 3],
    ]);
  });
});
