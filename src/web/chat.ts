// The chat page's script (bundled into build/chat.html by web/build.js; no framework). It talks to the server
// like any OpenAI client: the model list from /v1/models, replies streamed from /v1/chat/completions (SSE over
// fetch), rendered as Markdown as each chunk arrives (markdown-it with raw HTML off: model text cannot inject
// markup). Conversations live in localStorage, with a list to switch between them; each reply shows its tokens
// and tok/s; the last reply can be regenerated and the last message edited. With "Run in this browser" the
// engine itself runs in the page (local-engine.ts) on the model file the server serves.
import MarkdownIt from "markdown-it";
import type { RunnableModel } from "../engine/model/load.ts";
import { generate, loadLocalModel, localConstraint, modelBytes } from "./local-engine.ts";

interface Stats {
  tokens: number;
  /** From the first token to the last. */
  seconds: number;
}

interface Message {
  role: "user" | "assistant";
  content: string;
  stats?: Stats;
  finish?: string;
}

interface Conversation {
  id: string;
  title: string;
  messages: Message[];
  updated: number;
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
const system = $<HTMLTextAreaElement>("system");
const chatList = $<HTMLUListElement>("chatList");
const setting = (id: string) => $<HTMLInputElement>(id);

// raw HTML off (the default): text like <script> in a reply is shown, never parsed; markdown-it also refuses
// javascript:, vbscript: and file: links
const md = new MarkdownIt({ html: false, linkify: true, breaks: true });

// --- conversations, kept in localStorage
const STORE = "gemma-edge.conversations.v1";
const SYSTEM_STORE = "gemma-edge.system-prompt";
let conversations: Conversation[] = [];
let current: Conversation;

function loadStore(): void {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE) ?? "null") as { conversations: Conversation[]; current: string } | null;
    if (saved && Array.isArray(saved.conversations)) {
      conversations = saved.conversations;
      current = conversations.find((c) => c.id === saved.current) ?? conversations[0]!;
    }
  } catch {
    conversations = []; // unreadable: start over
  }
  if (!current) newConversation();
  system.value = localStorage.getItem(SYSTEM_STORE) ?? "";
}

function saveStore(): void {
  try {
    localStorage.setItem(STORE, JSON.stringify({ conversations, current: current.id }));
  } catch (e) {
    showError(`could not save the conversation in this browser: ${(e as Error).message}`);
  }
}

function newConversation(): void {
  current = { id: crypto.randomUUID(), title: "New chat", messages: [], updated: Date.now() };
  conversations.unshift(current);
}

/** Start a new conversation, unless the current one is still empty. */
function startNew(): void {
  if (running) return;
  if (current.messages.length) newConversation();
  saveStore();
  render();
  input.focus();
}

function renderList(): void {
  chatList.replaceChildren(
    ...conversations.map((c) => {
      const li = document.createElement("li");
      li.setAttribute("aria-current", String(c === current));
      const open = document.createElement("button");
      open.className = "open";
      open.type = "button";
      open.textContent = c.title;
      open.title = c.title;
      open.addEventListener("click", () => {
        if (running || c === current) return;
        current = c;
        saveStore();
        render();
      });
      const del = document.createElement("button");
      del.className = "delete";
      del.type = "button";
      del.textContent = "×";
      del.title = `Delete "${c.title}"`;
      del.setAttribute("aria-label", `Delete conversation ${c.title}`);
      del.addEventListener("click", () => {
        if (running) return;
        conversations = conversations.filter((x) => x !== c);
        if (c === current) {
          if (!conversations.length) newConversation();
          current = conversations[0]!;
        }
        saveStore();
        render();
      });
      li.append(open, del);
      return li;
    }),
  );
}

// --- messages on the page
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

/** Markdown into a message's body, with a copy button on each code block. */
function renderMarkdown(body: HTMLElement, text: string): void {
  body.innerHTML = md.render(text);
  for (const a of body.querySelectorAll("a")) {
    a.target = "_blank";
    a.rel = "noopener noreferrer";
  }
  for (const pre of body.querySelectorAll("pre")) {
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.addEventListener("click", () => {
      void navigator.clipboard?.writeText(pre.querySelector("code")?.textContent ?? "").then(() => (copy.textContent = "Copied"), () => (copy.textContent = "Copy failed"));
    });
    pre.append(copy);
  }
}

/** A message's element: the text (Markdown for replies) in `.body`, its raw text in data-raw, stats and actions in `.meta`. */
function bubble(m: Message): HTMLDivElement {
  const div = document.createElement("div");
  div.className = `msg ${m.role}`;
  const body = document.createElement("div");
  body.className = "body";
  const meta = document.createElement("div");
  meta.className = "meta";
  div.append(body, meta);
  fill(div, m);
  log.append(div);
  return div;
}

function fill(div: HTMLDivElement, m: Message): void {
  const body = div.querySelector<HTMLElement>(".body")!;
  div.dataset.raw = m.content;
  if (m.role === "assistant") renderMarkdown(body, m.content);
  else body.textContent = m.content;
  if (m.finish) div.dataset.finish = m.finish;
}

function stat(m: Message): string {
  if (!m.stats) return "";
  const { tokens, seconds } = m.stats;
  const rate = tokens > 1 && seconds > 0 ? ` · ${((tokens - 1) / seconds).toFixed(1)} tok/s` : "";
  return `${tokens} token${tokens === 1 ? "" : "s"}${rate}${m.finish && m.finish !== "stop" ? ` · ${m.finish}` : ""}`;
}

function action(label: string, run: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = label.toLowerCase();
  b.textContent = label;
  b.addEventListener("click", run);
  return b;
}

/** The whole conversation, with the stats of each reply, Edit on the last message and Regenerate on the last reply. */
function render(): void {
  renderList();
  log.replaceChildren();
  const msgs = current.messages;
  msgs.forEach((m, i) => {
    const div = bubble(m);
    const meta = div.querySelector<HTMLElement>(".meta")!;
    const s = stat(m);
    if (s) meta.append(Object.assign(document.createElement("span"), { className: "stats", textContent: s }));
    const last = i === msgs.length - 1;
    if (m.role === "assistant" && last) meta.append(action("Regenerate", () => void regenerate()));
    if (m.role === "user" && (last || i === msgs.length - 2)) meta.append(action("Edit", () => edit(i)));
  });
  log.scrollTop = log.scrollHeight;
}

/** The last message back into the input: it and the reply to it leave the conversation, to be sent again. */
function edit(i: number): void {
  if (running) return;
  input.value = current.messages[i]!.content;
  current.messages.splice(i);
  saveStore();
  render();
  input.focus();
}

async function regenerate(): Promise<void> {
  if (running || current.messages.at(-1)?.role !== "assistant") return;
  current.messages.pop();
  render();
  await reply();
}

// --- replies
/** The server's error envelope ({error: {message}}) or the status line. */
async function errorOf(res: Response): Promise<string> {
  const text = await res.text();
  try {
    return `${res.status}: ${JSON.parse(text).error.message}`;
  } catch {
    return `${res.status} ${res.statusText}: ${text.slice(0, 200)}`;
  }
}

/** fetch, with a network failure said as what it is. */
async function call(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new Error(`cannot reach the server (${(e as Error).message}): is it running?`);
  }
}

async function loadModels(): Promise<void> {
  try {
    const res = await call("/v1/models", { headers: headers() });
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
  /** Tokens generated so far, when the source says (the server's usage chunk, the page's token count). */
  tokens?: number;
}

/** The "answer" setting asks for a JSON object (response_format json_object; in the page, the same grammar). */
const jsonAnswer = () => $<HTMLSelectElement>("format").value === "json";

/** What is sent: the system prompt (when there is one) and the conversation. */
function promptMessages(): { role: "system" | "user" | "assistant"; content: string }[] {
  const sys = system.value.trim();
  return [...(sys ? [{ role: "system" as const, content: sys }] : []), ...current.messages.map((m) => ({ role: m.role, content: m.content }))];
}

/** A reply from the server: the SSE chunks of /v1/chat/completions. */
async function* fromServer(signal: AbortSignal): AsyncGenerator<Piece> {
  const res = await call("/v1/chat/completions", {
    method: "POST",
    headers: headers(),
    signal,
    body: JSON.stringify({
      model: model.value,
      messages: promptMessages(),
      stream: true,
      stream_options: { include_usage: true },
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
    if (chunk.usage) yield { delta: "", tokens: chunk.usage.completion_tokens };
    const choice = chunk.choices?.[0];
    if (choice) yield { delta: choice.delta?.content ?? "", finish: choice.finish_reason ?? undefined };
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
  let tokens = 0;
  for await (const ev of generate(m, { prompt: { messages: promptMessages() }, maxTokens: Number(setting("maxTokens").value), sampling, signal, constraint })) {
    if (ev.type === "token") yield { delta: ev.text, tokens: ++tokens };
    else yield { delta: ev.text, finish: ev.finishReason === "abort" ? "stopped" : ev.finishReason, tokens: ev.completionTokens };
  }
}

/** Stream a reply to the conversation as it stands; it joins the conversation when anything came back. */
async function reply(): Promise<void> {
  const conv = current;
  const m: Message = { role: "assistant", content: "" };
  const out = bubble(m);
  out.classList.add("streaming");
  log.scrollTop = log.scrollHeight;
  running = new AbortController();
  send.disabled = true;
  stop.disabled = false;
  showError("");
  let first = 0;
  let last = 0;
  let tokens: number | undefined;
  try {
    for await (const piece of (local.checked ? fromPage : fromServer)(running.signal)) {
      if (piece.tokens !== undefined) tokens = piece.tokens;
      if (piece.delta) {
        last = performance.now();
        first ||= last;
        m.content += piece.delta;
        fill(out, m);
        log.scrollTop = log.scrollHeight;
      }
      if (piece.finish) m.finish = piece.finish;
    }
  } catch (e) {
    if ((e as Error).name === "AbortError") m.finish = "stopped";
    else showError((e as Error).message);
  } finally {
    progress.hidden = true;
    running = undefined;
    send.disabled = false;
    stop.disabled = true;
    if (m.content) {
      m.finish ??= "stop";
      m.stats = { tokens: tokens ?? 0, seconds: (last - first) / 1000 };
      conv.messages.push(m);
    } else if (conv.messages.at(-1)?.role === "user") {
      // a failed turn is not kept: its text goes back into the input, to be sent again
      if (!input.value) input.value = conv.messages.pop()!.content;
      else conv.messages.pop();
    }
    conv.updated = Date.now();
    saveStore();
    if (conv === current) render(); // (the reply's element, now with its stats and data-finish, replaces `out`)
  }
}

async function chat(text: string): Promise<void> {
  current.messages.push({ role: "user", content: text });
  if (current.messages.length === 1) current.title = text.replace(/\s+/g, " ").slice(0, 48);
  // the conversation moves to the top of the list
  conversations = [current, ...conversations.filter((c) => c !== current)];
  saveStore();
  render();
  await reply();
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
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && running) running.abort();
});
stop.addEventListener("click", () => running?.abort());
$<HTMLButtonElement>("newChat").addEventListener("click", startNew);
system.addEventListener("change", () => localStorage.setItem(SYSTEM_STORE, system.value));
setting("apiKey").addEventListener("change", () => void loadModels());
loadStore();
render();
void loadModels();
