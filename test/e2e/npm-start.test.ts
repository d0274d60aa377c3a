// End to end: `npm start` (wrangler dev, the Worker, its Durable Object and local R2) on a free loopback port in
// its own process group, driven by the official openai client, by raw HTTP and by the chat page in headless
// Chromium (Debian's, through playwright-core), then stopped by process group.
import { spawn, type ChildProcess, execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../helpers/wrangler-dev.ts";

const root = resolve(import.meta.dirname, "../..");
let child: ChildProcess;
let base = "";
let log = "";
const MODEL = "gemma-edge-tiny";

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  child = spawn("npm", ["start"], {
    cwd: root,
    detached: true, // its own process group, stopped as a whole
    env: { ...process.env, PORT: String(port), MODEL: "", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(`${base}/health`);
      if (r.status === 200) return;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) throw new Error(`npm start exited early:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the server did not become ready:\n${log}`);
}, 180_000);

afterAll(async () => {
  if (child?.pid) {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      // already gone
    }
    await new Promise((r) => setTimeout(r, 500));
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

describe("the official openai client against npm start", () => {
  const client = () => new OpenAI({ baseURL: `${base}/v1`, apiKey: "not-needed", maxRetries: 0 });

  it("creates a chat completion", async () => {
    const r = await client().chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Hello" }], max_tokens: 8, temperature: 0 });
    expect(r.object).toBe("chat.completion");
    expect(typeof r.choices[0]!.message.content).toBe("string");
    expect(r.choices[0]!.finish_reason).toBe("length");
    expect(r.usage!.completion_tokens).toBe(8);
  });

  it("streams the same greedy answer token by token, with usage", async () => {
    const whole = (await client().chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 12, temperature: 0 })).choices[0]!.message.content;
    const stream = await client().chat.completions.create({
      model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    let text = "";
    let chunks = 0;
    let usage;
    for await (const c of stream) {
      chunks++;
      if (c.choices[0]?.delta.content) text += c.choices[0].delta.content;
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(whole);
    expect(chunks).toBeGreaterThan(3);
    expect(usage!.completion_tokens).toBe(12);
  });

  it("runs concurrent greedy and sampled streams together, each the text it gets alone; /metrics saw them share steps", async () => {
    const reqs = [0, 1, 2, 3, 4, 5].map((i) => ({
      model: MODEL, messages: [{ role: "user" as const, content: `Tell story ${i}` }], max_tokens: 20,
      ...(i % 2 ? { temperature: 1, seed: 100 + i } : { temperature: 0 }), cache_prompt: false,
    }));
    const text = async (r: (typeof reqs)[number]) => {
      let out = "";
      for await (const c of await client().chat.completions.create({ ...r, stream: true } as never) as unknown as AsyncIterable<{ choices: { delta: { content?: string } }[] }>) out += c.choices[0]?.delta.content ?? "";
      return out;
    };
    const alone: string[] = [];
    for (const r of reqs) alone.push(await text(r));
    const before = await (await fetch(`${base}/metrics`)).text();
    expect(await Promise.all(reqs.map(text))).toEqual(alone);
    const after = await (await fetch(`${base}/metrics`)).text();
    // steps of more than one sequence happened during the concurrent run (the histogram's count above le="1")
    const multi = (t: string) => {
      const v = (re: RegExp) => Number(t.split("\n").find((l) => re.test(l))!.split(" ").at(-1));
      return v(/^gemma_edge_batch_step_sequences_count /) - v(/^gemma_edge_batch_step_sequences_bucket\{le="1"\}/);
    };
    expect(multi(after)).toBeGreaterThan(multi(before));
  });

  it("calls a tool and parses a schema-shaped answer (the Worker's grammar engine)", async () => {
    const parameters = { type: "object", properties: { city: { type: "string", maxLength: 12 } }, required: ["city"], additionalProperties: false };
    const r = await client().chat.completions.create({
      model: MODEL, messages: [{ role: "user", content: "Weather in Paris?" }], max_tokens: 60, seed: 1,
      tools: [{ type: "function", function: { name: "get_weather", parameters } }], tool_choice: "required",
    });
    expect(r.choices[0]!.finish_reason).toBe("tool_calls");
    const call = r.choices[0]!.message.tool_calls![0] as { id: string; function: { name: string; arguments: string } };
    expect(call.id).toMatch(/^call_/);
    expect(call.function.name).toBe("get_weather");
    const args = JSON.parse(call.function.arguments);
    expect(Object.keys(args)).toEqual(["city"]);
    expect([...args.city].length).toBeLessThanOrEqual(12);
    const schema = { type: "object", properties: { n: { type: "integer", minimum: 1, maximum: 5 } }, required: ["n"], additionalProperties: false };
    const o = await client().chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "n?" }], max_tokens: 30, seed: 2, response_format: { type: "json_schema", json_schema: { name: "n", schema, strict: true } } });
    const v = JSON.parse(o.choices[0]!.message.content!);
    expect(Number.isInteger(v.n) && v.n >= 1 && v.n <= 5).toBe(true);
  });

  it("creates completions", async () => {
    const r = await client().completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 5, temperature: 0 });
    expect(r.object).toBe("text_completion");
    expect(r.choices[0]!.finish_reason).toBe("length");
  });

  it("turns errors into the SDK's error classes", async () => {
    await expect(client().chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "x" }], max_tokens: 100000 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(client().models.retrieve("gpt-4o")).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client().chat.completions.create({ model: MODEL, messages: [{ role: "assistant", content: "x" }] })).rejects.toBeInstanceOf(OpenAI.UnprocessableEntityError);
    const e = await client().chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "x" }], n: 3 }).catch((x) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect(e.param).toBe("n");
  });
});

describe("raw HTTP against npm start", () => {
  it("greedy /v1/completions equals gemma-edge generate --temperature 0 on the same file", async () => {
    const r = (await (await fetch(`${base}/v1/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "The quick brown fox", max_tokens: 16, temperature: 0 }),
    })).json()) as any;
    const { stdout } = await promisify(execFile)(process.execPath, [resolve(root, "bin/gemma-edge.js"), "generate", "--model", resolve(root, "models/gemma-edge-tiny.gguf"), "--prompt", "The quick brown fox", "--max-tokens", "16", "--temperature", "0", "--json"]);
    const cli = JSON.parse(stdout);
    expect(r.choices[0].text).toBe(cli.text);
    expect(r.usage.completion_tokens).toBe(cli.ids.length);
    expect(r.usage.prompt_tokens).toBe(cli.prompt_ids.length);
  });

  it("streams SSE incrementally and keeps serving after a client disconnects", async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" }, signal: ac.signal,
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Hello" }], max_tokens: 300, stream: true }),
    });
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toMatch(/^data: /);
    ac.abort();
    await reader.cancel().catch(() => {});
    let health: any;
    for (let i = 0; i < 50; i++) {
      health = await (await fetch(`${base}/health`)).json();
      if (health.queue_length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(health.queue_length).toBe(0);
    const after = await fetch(`${base}/v1/models`);
    expect(after.status).toBe(200);
  });
});

describe("the chat page in headless Chromium", () => {
  const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"; // set by test/setup/system.ts
  let browser: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    if (process.env.GEMMA_EDGE_CHROMIUM_ERROR) throw new Error(`no Chromium for the browser tests: ${process.env.GEMMA_EDGE_CHROMIUM_ERROR}`);
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: set CHROMIUM_PATH`);
    browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "gemma-edge-chromium-")), {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    page = browser.pages()[0] ?? (await browser.newPage());
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  /** The page on a new, empty conversation (the last one is restored on every visit). */
  async function fresh(p: Page = page): Promise<void> {
    await p.goto(`${base}/`);
    await p.locator("#model option").first().waitFor({ state: "attached" });
    await p.click("#newChat");
    expect(await p.locator(".msg").count()).toBe(0);
  }

  /** Send a message from the page; resolves with the reply (its raw text) once its bubble is marked finished. */
  async function sendFromPage(text: string): Promise<{ reply: string; partials: number; finish: string }> {
    const before = await page.locator(".msg.assistant").count();
    await page.evaluate(() => {
      // every text the reply bubble shows while it streams, recorded as the DOM changes
      const w = window as unknown as { seen: string[] };
      w.seen = [];
      new MutationObserver(() => {
        const all = document.querySelectorAll(".msg.assistant .body");
        w.seen.push(all[all.length - 1]?.innerHTML ?? "");
      }).observe(document.getElementById("log")!, { subtree: true, childList: true, characterData: true });
    });
    await page.fill("#input", text);
    await page.click("#send");
    const bubble = page.locator(".msg.assistant").nth(before);
    await bubble.and(page.locator("[data-finish]")).waitFor({ timeout: 60_000 });
    const reply = (await bubble.getAttribute("data-raw")) ?? "";
    const html = (await bubble.locator(".body").innerHTML()) ?? "";
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    return { reply, partials: new Set(seen.filter((t) => t && t !== html)).size, finish: (await bubble.getAttribute("data-finish")) ?? "" };
  }

  it("lists the models, streams a greedy reply as it arrives (the API's own answer), and saves a screenshot", async () => {
    await fresh();
    expect(await page.locator("#model").inputValue()).toBe(MODEL);
    await page.fill("#temperature", "0");
    await page.fill("#maxTokens", "48");
    const { reply, partials, finish } = await sendFromPage("Hello");
    const api = (await (await fetch(`${base}/v1/chat/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Hello" }], max_tokens: 48, temperature: 0, top_p: 0.95 }),
    })).json()) as any;
    expect(reply).toBe(api.choices[0].message.content);
    expect(finish).toBe(api.choices[0].finish_reason);
    expect(partials, "the reply was shown in pieces while it streamed").toBeGreaterThan(1);
    mkdirSync(resolve(root, "test-results"), { recursive: true });
    await page.screenshot({ path: resolve(root, "test-results/chat-page.png"), fullPage: true });
    expect(existsSync(resolve(root, "test-results/chat-page.png"))).toBe(true);
  });

  it("shows the server's error message, and Stop ends a reply", async () => {
    await page.fill("#maxTokens", "0");
    await page.fill("#input", "Hi");
    await page.click("#send");
    await page.locator("#error:not([hidden])").waitFor();
    expect(await page.textContent("#error")).toMatch(/^400: .*max_tokens/);
    await page.fill("#maxTokens", "400");
    // the tiny model streams 400 tokens in about a second: slow the stream down in the page (each SSE event 30 ms
    // after the one before) so that Stop is clicked while the reply is still streaming, however loaded the machine
    await page.evaluate(() => {
      const w = window as unknown as { fetch: typeof fetch; realFetch?: typeof fetch };
      w.realFetch = w.fetch;
      w.fetch = async (...a: Parameters<typeof fetch>) => {
        const r = await w.realFetch!(...a);
        if (!String(a[0]).includes("/v1/chat/completions") || !r.body) return r;
        let held = "";
        const slow = r.body.pipeThrough(new TextDecoderStream()).pipeThrough(new TransformStream<string, string>({
          async transform(text, ctl) {
            held += text;
            for (let at = held.indexOf("\n\n"); at >= 0; at = held.indexOf("\n\n")) {
              await new Promise((res) => setTimeout(res, 30));
              ctl.enqueue(held.slice(0, at + 2));
              held = held.slice(at + 2);
            }
          },
        })).pipeThrough(new TextEncoderStream());
        return new Response(slow, { status: r.status, headers: r.headers });
      };
    });
    await page.fill("#input", "Tell me a long story");
    await page.click("#send");
    const bubble = page.locator(".msg.assistant.streaming");
    await bubble.waitFor();
    await page.waitForFunction(() => (document.querySelector(".msg.assistant.streaming")?.textContent ?? "").length > 0);
    await page.click("#stop");
    await page.locator(".msg.assistant[data-finish=stopped]").waitFor();
    expect(await page.isDisabled("#stop")).toBe(true);
    expect(await page.isHidden("#error")).toBe(true);
    await page.evaluate(() => {
      const w = window as unknown as { fetch: typeof fetch; realFetch?: typeof fetch };
      w.fetch = w.realFetch!;
    });
  });

  /** Make the page's fetch of /v1/chat/completions answer `events` (SSE data payloads), 20 ms apart. */
  async function scriptReplies(events: string[]): Promise<void> {
    await page.evaluate((evs) => {
      const w = window as unknown as { fetch: typeof fetch; realFetch?: typeof fetch };
      w.realFetch ??= w.fetch;
      w.fetch = async (...a: Parameters<typeof fetch>) => {
        if (!String(a[0]).includes("/v1/chat/completions")) return w.realFetch!(...a);
        const enc = new TextEncoder();
        const body = new ReadableStream<Uint8Array>({
          async start(ctl) {
            for (const e of evs) {
              await new Promise((r) => setTimeout(r, 20));
              ctl.enqueue(enc.encode(`data: ${e}\n\n`));
            }
            ctl.close();
          },
        });
        return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
      };
    }, events);
  }
  const unscript = () => page.evaluate(() => {
    const w = window as unknown as { fetch: typeof fetch; realFetch?: typeof fetch };
    if (w.realFetch) w.fetch = w.realFetch;
  });
  const delta = (content: string) => JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: null }] });

  it("renders Markdown as it streams, with copy buttons on code, and never the model's HTML", async () => {
    await fresh();
    const text = "**Bold** and `code`.\n\n```js\nlet x = 1;\n```\n\n<img src=x onerror=\"document.title='pwned'\"> [link](javascript:alert(1)) <script>window.bad=1</script>";
    const pieces = text.match(/[\s\S]{1,6}/g)!;
    await scriptReplies([...pieces.map(delta), JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }), JSON.stringify({ choices: [], usage: { completion_tokens: pieces.length } }), "[DONE]"]);
    try {
      const { reply, partials } = await sendFromPage("Show me Markdown");
      expect(reply).toBe(text);
      expect(partials, "rendered while it streamed").toBeGreaterThan(3);
      const body = page.locator(".msg.assistant .body").last();
      expect(await body.locator("strong").textContent()).toBe("Bold");
      expect(await body.locator("pre code").textContent()).toBe("let x = 1;\n");
      expect(await body.locator("pre button.copy").count()).toBe(1);
      expect(await body.locator("img, script").count()).toBe(0);
      expect(await body.locator('a[href^="javascript"]').count()).toBe(0);
      expect(await body.textContent()).toContain("<img src=x");
      expect(await page.title()).toBe("gemma-edge chat");
      expect(await page.evaluate(() => (window as unknown as { bad?: number }).bad)).toBeUndefined();
      expect(await page.locator(".msg.assistant .stats").last().textContent()).toMatch(new RegExp(`^${pieces.length} tokens · [0-9.]+ tok/s$`));
      // a phone's width: the conversation list above, the messages across
      await page.setViewportSize({ width: 390, height: 800 });
      await page.screenshot({ path: resolve(root, "test-results/chat-page-phone.png"), fullPage: true });
      const list = await page.locator("aside").boundingBox();
      const log = await page.locator("#log").boundingBox();
      expect(list!.y + list!.height).toBeLessThanOrEqual(log!.y + 1);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
      await page.setViewportSize({ width: 1280, height: 720 });
    } finally {
      await unscript();
    }
  });

  it("keeps conversations across a reload, lists them, and switches between them", async () => {
    await fresh();
    await page.fill("#temperature", "0");
    await page.fill("#maxTokens", "12");
    const first = await sendFromPage("Remember me");
    await page.reload();
    await page.locator(".msg.assistant").first().waitFor();
    expect(await page.locator(".msg.user").first().getAttribute("data-raw")).toBe("Remember me");
    expect(await page.locator(".msg.assistant").first().getAttribute("data-raw")).toBe(first.reply);
    expect(await page.locator('#chatList li[aria-current="true"] .open').textContent()).toBe("Remember me");
    await page.click("#newChat");
    expect(await page.locator(".msg").count()).toBe(0);
    await page.locator("#chatList .open", { hasText: "Remember me" }).first().click();
    expect(await page.locator(".msg.assistant").first().getAttribute("data-raw")).toBe(first.reply);
    // regenerate (greedy: the same reply again, in place) and edit the last message (back into the input)
    await page.fill("#temperature", "0");
    await page.fill("#maxTokens", "12");
    await page.click(".msg.assistant button.regenerate");
    await page.locator(".msg.assistant[data-finish]").waitFor();
    expect(await page.locator(".msg.assistant").count()).toBe(1);
    expect(await page.locator(".msg.assistant").first().getAttribute("data-raw")).toBe(first.reply);
    await page.click(".msg.user button.edit");
    expect(await page.inputValue("#input")).toBe("Remember me");
    expect(await page.locator(".msg").count()).toBe(0);
    await page.fill("#input", "");
  });

  it("sends the system prompt, and says so when the server cannot be reached", async () => {
    await fresh();
    await page.fill("#temperature", "0");
    await page.fill("#maxTokens", "12");
    await page.fill("#system", "Answer briefly.");
    const api = (await (await fetch(`${base}/v1/chat/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "system", content: "Answer briefly." }, { role: "user", content: "Hi" }], max_tokens: 12, temperature: 0, top_p: 0.95 }),
    })).json()) as any;
    expect((await sendFromPage("Hi")).reply).toBe(api.choices[0].message.content);
    await page.fill("#system", "");
    await page.evaluate(() => {
      const w = window as unknown as { fetch: typeof fetch; realFetch?: typeof fetch };
      w.realFetch ??= w.fetch;
      w.fetch = async () => {
        throw new TypeError("Failed to fetch");
      };
    });
    try {
      await page.fill("#input", "Are you there?");
      await page.click("#send");
      await page.locator("#error:not([hidden])").waitFor();
      expect(await page.textContent("#error")).toMatch(/^cannot reach the server \(Failed to fetch\)/);
      expect(await page.inputValue("#input")).toBe("Are you there?"); // the failed message, back to be sent again
    } finally {
      await unscript();
      await page.fill("#input", "");
    }
  });

  const cliGreedy = async (prompt: string, maxTokens: number) => {
    const { stdout } = await promisify(execFile)(process.execPath, [resolve(root, "bin/gemma-edge.js"), "generate", "--model", resolve(root, "models/gemma-edge-tiny.gguf"), "--prompt", prompt, "--chat", "--max-tokens", String(maxTokens), "--temperature", "0", "--json"]);
    return JSON.parse(stdout) as { text: string; finish_reason: string };
  };

  it("runs the engine in the page on WebAssembly: the CLI's greedy reply; a second visit loads the model from the browser cache", async () => {
    const ggufRequests: string[] = [];
    page.on("request", (r) => {
      if (r.url().endsWith(`/v1/models/${MODEL}/gguf`)) ggufRequests.push(r.method());
    });
    const cli = await cliGreedy("Hello", 24);
    for (const visit of [1, 2]) {
      ggufRequests.length = 0;
      await fresh();
      await page.check("#local");
      await page.selectOption("#localBackend", "wasm");
      await page.fill("#temperature", "0");
      await page.fill("#maxTokens", "24");
      const { reply } = await sendFromPage("Hello");
      expect(await page.textContent("#error")).toBe("");
      expect(reply, `visit ${visit}`).toBe(cli.text);
      expect(await page.textContent("#status")).toMatch(/^running in this browser \(wasm-(relaxed|simd)\)$/);
      // the first visit downloads the file; the second only asks for its ETag
      expect(ggufRequests, `visit ${visit}`).toEqual(visit === 1 ? ["HEAD", "GET"] : ["HEAD"]);
    }
  });

  it("answers a JSON object, from the server and from the engine in the page: the same greedy object", async () => {
    const api = (await (await fetch(`${base}/v1/chat/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "JSON please" }], max_tokens: 64, temperature: 0, top_p: 0.95, response_format: { type: "json_object" } }),
    })).json()) as any;
    const object = api.choices[0].message.content as string;
    // greedy on random weights may run on inside a string: then a valid start of an object, cut by max_tokens
    if (api.choices[0].finish_reason === "stop") expect(typeof JSON.parse(object)).toBe("object");
    else expect(object.startsWith("{")).toBe(true);
    const free = (await (await fetch(`${base}/v1/chat/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "JSON please" }], max_tokens: 64, temperature: 0, top_p: 0.95 }),
    })).json()) as any;
    expect(free.choices[0].message.content.startsWith("{")).toBe(false);
    for (const local of [false, true]) {
      await fresh();
      if (local) {
        await page.check("#local");
        await page.selectOption("#localBackend", "wasm");
      }
      await page.selectOption("#format", "json");
      await page.fill("#temperature", "0");
      await page.fill("#maxTokens", "64");
      const { reply, finish } = await sendFromPage("JSON please");
      expect(await page.textContent("#error")).toBe("");
      expect(reply, local ? "in the page" : "from the server").toBe(object);
      expect(finish).toBe(api.choices[0].finish_reason);
    }
  });

  it("runs the engine in the page on WebGPU (SwiftShader): the same greedy reply", async () => {
    const gpuBrowser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "gemma-edge-chromium-gpu-")), {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    try {
      const p = gpuBrowser.pages()[0] ?? (await gpuBrowser.newPage());
      await p.goto(`${base}/`);
      expect(await p.evaluate(async () => !!(await (navigator as any).gpu?.requestAdapter())), "Chromium offers a WebGPU adapter").toBe(true);
      await p.locator("#model option").first().waitFor({ state: "attached" });
      await p.check("#local");
      await p.selectOption("#localBackend", "webgpu");
      await p.fill("#temperature", "0");
      await p.fill("#maxTokens", "24");
      await p.fill("#input", "Hello");
      await p.click("#send");
      const bubble = p.locator(".msg.assistant[data-finish]");
      await bubble.waitFor({ timeout: 90_000 });
      expect(await p.textContent("#error")).toBe("");
      expect(await p.textContent("#status")).toBe("running in this browser (webgpu)");
      expect(await bubble.getAttribute("data-raw")).toBe((await cliGreedy("Hello", 24)).text);
      await p.screenshot({ path: resolve(root, "test-results/chat-page-webgpu.png"), fullPage: true });
    } finally {
      await gpuBrowser.close();
    }
  }, 180_000);
});

