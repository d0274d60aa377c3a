// The chat page's script (bundled into build/chat.html by web/build.js; no framework). It talks to the server
// like any OpenAI client: the model list from /v1/models, replies streamed from /v1/chat/completions (SSE over
// fetch), rendered as each chunk arrives. Errors from the server's envelope are shown as they are. With "Run in
// this browser" the engine itself runs in the page (local-engine.ts) on the model file the server serves.
import type { RunnableModel } from "../engine/model/load.ts";
import { generate, loadLocalModel, localConstraint, modelBytes } from "./local-engine.ts";

interface Message {
  role: "user" | "assistant";
  content: string;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const log = $<HTMLDivElement>("log");
const form = $<HTMLFormElement>("form");
const input = $<HTMLTextAreaElement>("input");
const send = $<HTMLButtonElement>("send");
const stop = $<HTMLButtonElement>("stop");
const model = $<HTMLSelectElement>("model");
const errorBox = $<HTMLDivElement>("error");
const local = $<HTMLInputElement>("local");
const localBackend = $<HTMLSelectElement>("localBackend");
const progress = $<HTMLProgressElement>("progress");
const status = $<HTMLSpanElement>("status");
const setting = (id: string) => $<HTMLInputElement>(id);

const history: Message[] = [];
let running: AbortController | undefined;

function headers(): Record<string, string> {
  const h: Record<string, string> = { "Content-Type": "application/json" };
  const key = setting("apiKey").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function showError(message: string): void {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function bubble(role: Message["role"], text: string): HTMLDivElement {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  log.append(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

/** The server's error envelope ({error: {message}}) or the status line. */
async function errorOf(res: Response): Promise<string> {
  const text = await res.text();
  try {
    return `${res.status}: ${JSON.parse(text).error.message}`;
  } catch {
    return `${res.status} ${res.statusText}: ${text.slice(0, 200)}`;
  }
}

async function loadModels(): Promise<void> {
  try {
    const res = await fetch("/v1/models", { headers: headers() });
    if (!res.ok) throw new Error(await errorOf(res));
    const { data } = (await res.json()) as { data: { id: string }[] };
    model.replaceChildren(...data.map((m) => new Option(m.id, m.id)));
    showError("");
  } catch (e) {
    showError(`could not list models: ${(e as Error).message}`);
  }
}

/** Data lines of an SSE stream, as they arrive (events split on blank lines; comments skipped). */
async function* sseData(body: ReadableStream<BufferSource>): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.search(/\r?\n\r?\n/)) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data) yield data;
    }
  }
}

interface Piece {
  delta: string;
  finish?: string;
}

/** The "answer" setting asks for a JSON object (response_format json_object; in the page, the same grammar). */
const jsonAnswer = () => $<HTMLSelectElement>("format").value === "json";

/** A reply from the server: the SSE chunks of /v1/chat/completions. */
async function* fromServer(signal: AbortSignal): AsyncGenerator<Piece> {
  const res = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: headers(),
    signal,
    body: JSON.stringify({
      model: model.value,
      messages: history,
      stream: true,
      max_tokens: Number(setting("maxTokens").value),
      temperature: Number(setting("temperature").value),
      top_p: Number(setting("topP").value),
      ...(jsonAnswer() ? { response_format: { type: "json_object" } } : {}),
    }),
  });
  if (!res.ok || !res.body) throw new Error(await errorOf(res));
  for await (const data of sseData(res.body)) {
    if (data === "[DONE]") return;
    const chunk = JSON.parse(data);
    if (chunk.error) throw new Error(chunk.error.message);
    yield { delta: chunk.choices?.[0]?.delta?.content ?? "", finish: chunk.choices?.[0]?.finish_reason ?? undefined };
  }
}

let localModel: { id: string; want: string; model: RunnableModel; backend: string } | undefined;

/** The model in this page (downloaded or taken from the cache, then loaded once per model and backend choice). */
async function ensureLocalModel(): Promise<RunnableModel> {
  const want = localBackend.value as "auto" | "webgpu" | "wasm";
  if (localModel?.id === model.value && localModel.want === want) return localModel.model;
  localModel = undefined;
  progress.hidden = false;
  const bytes = await modelBytes(`/v1/models/${encodeURIComponent(model.value)}/gguf`, headers(), (loaded, total, cached) => {
    progress.max = total;
    progress.value = loaded;
    status.textContent = cached ? "model from the browser cache" : `downloading the model: ${(loaded / 2 ** 20).toFixed(1)} of ${(total / 2 ** 20).toFixed(1)} MiB`;
  });
  status.textContent = "loading the model…";
  const { model: m, backend } = await loadLocalModel(bytes, want);
  progress.hidden = true;
  status.textContent = `running in this browser (${backend})`;
  localModel = { id: model.value, want, model: m, backend };
  return m;
}

/** A reply from the engine in this page. */
async function* fromPage(signal: AbortSignal): AsyncGenerator<Piece> {
  const m = await ensureLocalModel();
  const sampling = { temperature: Number(setting("temperature").value), topP: Number(setting("topP").value) };
  const constraint = jsonAnswer() ? await localConstraint(m, { type: "json_object" }) : undefined;
  for await (const ev of generate(m, { prompt: { messages: history.slice() }, maxTokens: Number(setting("maxTokens").value), sampling, signal, constraint })) {
    if (ev.type === "token") yield { delta: ev.text };
    else yield { delta: ev.text, finish: ev.finishReason === "abort" ? "stopped" : ev.finishReason };
  }
}

async function chat(text: string): Promise<void> {
  history.push({ role: "user", content: text });
  bubble("user", text);
  const out = bubble("assistant", "");
  out.classList.add("streaming");
  running = new AbortController();
  send.disabled = true;
  stop.disabled = false;
  showError("");
  let reply = "";
  try {
    for await (const { delta, finish } of (local.checked ? fromPage : fromServer)(running.signal)) {
      if (delta) {
        reply += delta;
        out.textContent = reply;
        log.scrollTop = log.scrollHeight;
      }
      if (finish) out.dataset.finish = finish;
    }
  } catch (e) {
    if ((e as Error).name === "AbortError") out.dataset.finish = "stopped";
    else showError((e as Error).message);
  } finally {
    progress.hidden = true;
    out.classList.remove("streaming");
    if (reply) history.push({ role: "assistant", content: reply });
    else history.pop(); // a failed turn is not sent again
    running = undefined;
    send.disabled = false;
    stop.disabled = true;
  }
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = input.value.trim();
  if (!text || running) return;
  input.value = "";
  void chat(text);
});
input.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    form.requestSubmit();
  }
});
stop.addEventListener("click", () => running?.abort());
setting("apiKey").addEventListener("change", () => void loadModels());
void loadModels();
