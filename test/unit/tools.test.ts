// Tool calling's own parts: the exact prompt Gemma sees (README "Tool calls" shows the same text), the parser that
// reads calls out of streamed text in any split, and the grammar of tool_choice "auto" once the model starts a call.
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { ChatTemplate } from "../../src/engine/chat-template.ts";
import { readGguf } from "../../src/engine/gguf.ts";
import { GrammarEngine, provideGrammarWasm } from "../../src/engine/grammar.ts";
import { Tokenizer } from "../../src/engine/tokenizer.ts";
import { CALL_TRIGGER, layoutJson, lowerToolMessages, toolCallConstraint, ToolCallParser, ToolMessageError, type ToolStreamEvent } from "../../src/engine/tools.ts";
import { testModel } from "../helpers/models.ts";

let tok: Tokenizer;
let tpl: ChatTemplate;
beforeAll(async () => {
  tok = new Tokenizer(await readGguf(new MemoryByteSource((await testModel("tiny", "q4_0")).bytes)));
  tpl = new ChatTemplate(tok);
});

const weather = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };

describe("the prompt", () => {
  it("puts the definitions and Google's instruction in the first user turn, calls as the model's text, results as a user turn", () => {
    const turns = lowerToolMessages(
      [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Weather in Paris?" },
        { role: "assistant", content: "", toolCalls: [{ id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' }] },
        { role: "tool", content: '{"temp":21}', toolCallId: "call_1" },
      ],
      [{ name: "get_weather", description: "The weather in a city", parameters: weather }],
    );
    expect(tpl.render(turns)).toBe(
      "<bos><start_of_turn>user\n" +
        "You have access to functions. If you decide to invoke any of the function(s), you MUST put it in the format of\n" +
        '{"name": function name, "parameters": dictionary of argument name and its value}\n\n' +
        "You SHOULD NOT include any other text in the response if you call a function\n" +
        "[\n" +
        '{"name": "get_weather", "description": "The weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}\n' +
        "]\n\n" +
        "Be brief.\n\n" +
        "Weather in Paris?<end_of_turn>\n" +
        "<start_of_turn>model\n" +
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<end_of_turn>\n' +
        "<start_of_turn>user\n" +
        '{"name": "get_weather", "response": {"temp": 21}}<end_of_turn>\n' +
        "<start_of_turn>model\n",
    );
  });

  it("joins parallel calls and their results one per line, keeps text results as strings, and names an unanswered id", () => {
    const turns = lowerToolMessages(
      [
        { role: "user", content: "Both?" },
        { role: "assistant", content: "", toolCalls: [{ id: "a", name: "f", arguments: "{}" }, { id: "b", name: "g", arguments: '{"x": [1,2]}' }] },
        { role: "tool", content: "sunny", toolCallId: "a" },
        { role: "tool", content: "3", toolCallId: "b" },
        { role: "user", content: "Thanks" },
      ],
      undefined,
    );
    expect(turns).toEqual([
      { role: "user", content: "Both?" },
      { role: "assistant", content: '{"name": "f", "parameters": {}}\n{"name": "g", "parameters": {"x": [1, 2]}}' },
      { role: "user", content: '{"name": "f", "response": "sunny"}\n{"name": "g", "response": 3}\n\nThanks' },
    ]);
    expect(() => lowerToolMessages([{ role: "user", content: "x" }, { role: "tool", content: "1", toolCallId: "zz" }], undefined)).toThrow(ToolMessageError);
  });

  it("with tool_choice none shows the definitions without asking for a call", () => {
    const [first] = lowerToolMessages([{ role: "user", content: "Hi" }], [{ name: "f" }], false);
    expect(first!.content).toBe('You have access to these functions, but do not call any of them now: answer in text\n[\n{"name": "f", "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}\n]');
  });

  it("writes JSON in the layout constrained output has", () => {
    expect(layoutJson({ a: [1, { b: null }], c: "x\"y" })).toBe('{"a": [1, {"b": null}], "c": "x\\"y"}');
  });
});

describe("ToolCallParser", () => {
  const text = 'Let me look.\n{"name": "get_weather", "parameters": {"city": "Pa}ris", "n": [1, {"d": 2}]}}\n{"name": "f", "parameters": {}}';
  const parse = (pieces: string[]) => {
    let n = 0;
    const p = new ToolCallParser(() => `id${n++}`);
    const events: ToolStreamEvent[] = [];
    for (const piece of pieces) events.push(...p.push(piece));
    events.push(...p.finish());
    return { p, events };
  };

  it("reads content and parallel calls the same in one piece and in single characters", () => {
    const whole = parse([text]);
    const chars = parse([...text]);
    for (const { p } of [whole, chars]) {
      expect(p.content).toBe("Let me look.");
      expect(p.calls).toEqual([
        { id: "id0", name: "get_weather", arguments: '{"city": "Pa}ris", "n": [1, {"d": 2}]}' },
        { id: "id1", name: "f", arguments: "{}" },
      ]);
    }
    // the stream: the name before any argument, fragments that add up to the arguments
    const ev = chars.events.filter((e) => e.type !== "content");
    expect(ev[0]).toEqual({ type: "call", index: 0, id: "id0", name: "get_weather" });
    expect(ev.filter((e) => e.type === "arguments" && e.index === 0).map((e) => (e as { text: string }).text).join("")).toBe(chars.p.calls[0]!.arguments);
    expect(chars.events.filter((e) => e.type === "content").map((e) => (e as { text: string }).text).join("")).toBe("Let me look.");
  });

  it("holds back a tail that may start a call, and lets it go as text when it does not", () => {
    const p = new ToolCallParser(() => "x");
    expect(p.push('a {"na')).toEqual([{ type: "content", text: "a" }]); // (the space waits: it may be layout)
    expect(p.push("me is")).toEqual([{ type: "content", text: ' {"name is' }]);
    expect(p.calls).toHaveLength(0);
  });

  it("keeps text after a call as it was, in any split; whitespace that is only the calls' layout is dropped", () => {
    const text = '\n{"name": "f", "parameters": {}}\n\nDone.\n\nNext line\n';
    for (const pieces of [[text], [...text], text.split("\n").flatMap((l) => [l, "\n"])]) {
      const { p, events } = parse(pieces);
      expect(p.content).toBe("Done.\n\nNext line");
      expect(events.filter((e) => e.type === "content").map((e) => (e as { text: string }).text).join("")).toBe(p.content);
    }
    expect(parse(['  {"name": "f", "parameters": {}}\n']).p.content).toBe("");
    expect(parse(["Hi\n\nthere\n"]).p.content).toBe("Hi\n\nthere\n");
  });

  it("announces a call only once its name and the gap are there; a text that is not a call is content", () => {
    const p = new ToolCallParser(() => "x");
    expect(p.push('{"name": "f"')).toEqual([]);
    expect(p.push(', "parameters": ')).toEqual([{ type: "call", index: 0, id: "x", name: "f" }]);
    const notCall = parse(['{"name": "Ada", "age": 3}']);
    expect(notCall.p.calls).toHaveLength(0);
    expect(notCall.p.content).toBe('{"name": "Ada", "age": 3}');
    const cut = parse(['ok {"name": "get_wea']);
    expect(cut.p.calls).toHaveLength(0);
    expect(cut.p.content).toBe('ok {"name": "get_wea');
  });

  it("keeps the arguments an unfinished call had when the text ends", () => {
    const { p } = parse(['{"name": "f", "parameters": {"a": 1']);
    expect(p.calls).toEqual([{ id: "id0", name: "f", arguments: '{"a": 1' }]);
  });
});

describe("tool_choice auto, as a grammar", () => {
  it("allows text or a stop first, and once the text starts a call, only a listed call with valid arguments", async () => {
    provideGrammarWasm(await WebAssembly.compile(readFileSync(new URL("../../build/xgrammar.wasm", import.meta.url))));
    const engine = new GrammarEngine(tok);
    const spec = toolCallConstraint([{ name: "t", parameters: { type: "object", properties: { u: { enum: ["c", "f"] } }, required: ["u"], additionalProperties: false } }], "auto", false);
    const allowed = (mask: Int32Array, id: number) => ((mask[id >> 5]! >>> (id & 31)) & 1) === 1;
    const c = await engine.constrain(spec, "tools");
    const first = await c.nextMask();
    expect(tok.stopIds.every((id) => allowed(first, id))).toBe(true);
    // the model writes some text, then the start of a call
    for (const id of tok.encode(`ok ${CALL_TRIGGER}`)) {
      expect(allowed(await c.nextMask(), id), tok.tokens[id]).toBe(true);
      expect(c.accept(id)).toBe(true);
    }
    // from here the language is the rest of the two calls, then a stop (one call: parallel_tool_calls false)
    const rest = ['t", "parameters": {"u": "c"}}', 't", "parameters": {"u": "f"}}'].map((s) => Buffer.from(s));
    let text = Buffer.alloc(0);
    for (let step = 0; step < 40 && !c.terminated; step++) {
      const mask = await c.nextMask();
      const ok: number[] = [];
      for (let id = 0; id < tok.vocabSize; id++) {
        const expected = tok.stopIds.includes(id)
          ? rest.some((s) => s.equals(text))
          : !tok.isSpecial(id) && tok.pieceOf(id).length > 0 && rest.some((s) => { const n = Buffer.concat([text, tok.pieceOf(id)]); return s.length >= n.length && s.subarray(0, n.length).equals(n); });
        expect(allowed(mask, id), `after ${text}: ${tok.tokens[id]}`).toBe(expected);
        if (expected) ok.push(id);
      }
      const id = ok[step % ok.length]!;
      c.accept(id);
      if (!tok.stopIds.includes(id)) text = Buffer.concat([text, tok.pieceOf(id)]);
    }
    expect(c.terminated).toBe(true);
  });
});
