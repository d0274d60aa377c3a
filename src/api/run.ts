// Running one request against a ModelService for the HTTP routes: wait for the first event (so that a bad
// request still gets its 4xx before any streaming starts), then hand the rest to the route's writer.
import type { Context } from "hono";
import { stream } from "hono/streaming";
import type { ModelService, ServiceEvent, ServiceRequest } from "../service/contract.ts";
import { ApiError } from "./errors.ts";

export interface Started {
  promptTokens: number;
  maxTokens: number;
  seed: number;
  events: AsyncGenerator<ServiceEvent>;
  abort: AbortController;
}

/** Start a generation. Throws ApiError when the service refuses it (validation, full queue, model down). */
export async function start(c: Context, service: ModelService, req: ServiceRequest): Promise<Started> {
  const abort = new AbortController();
  // non-streaming requests notice a client that went away through the request's signal
  c.req.raw.signal?.addEventListener("abort", () => abort.abort());
  const events = service.generate(req, abort.signal)[Symbol.asyncIterator]() as AsyncGenerator<ServiceEvent>;
  const first = await events.next();
  if (first.done) throw new ApiError(500, "the model service ended the request without an answer", { kind: "generation" });
  const ev = first.value;
  if (ev.type === "error") throw ApiError.fromService(ev);
  if (ev.type !== "accepted") throw new ApiError(500, `unexpected first event ${ev.type}`, { kind: "generation" });
  return { promptTokens: ev.promptTokens, maxTokens: ev.maxTokens, seed: ev.seed, events, abort };
}

export const SSE_HEADERS = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache",
  "X-Accel-Buffering": "no",
  // compressed streams get buffered by proxies and by wrangler dev
  "Content-Encoding": "identity",
};

/**
 * Stream a started generation as Server-Sent Events. `write` turns each event into SSE text (or "" for none);
 * keep-alives become comment lines. A client that disconnects aborts the generation within one token.
 */
export function sse(c: Context, run: Started, write: (ev: ServiceEvent) => string | Promise<string>, end?: () => string) {
  for (const [k, v] of Object.entries(SSE_HEADERS)) c.header(k, v);
  return stream(c, async (s) => {
    s.onAbort(() => run.abort.abort());
    try {
      for await (const ev of run.events) {
        if (s.aborted || s.closed) break;
        const text = ev.type === "keepalive" ? ": keep-alive\n\n" : await write(ev);
        if (text) await s.write(text);
        if (ev.type === "done" || ev.type === "error") break;
      }
      if (end && !s.aborted) await s.write(end());
    } finally {
      run.abort.abort();
      await run.events.return(undefined);
    }
  });
}

/** Collect a whole generation (non-streaming answers). Mid-generation failures become ApiErrors. */
export async function collect(run: Started) {
  const tokens: Extract<ServiceEvent, { type: "token" }>[] = [];
  try {
    for await (const ev of run.events) {
      if (ev.type === "token") tokens.push(ev);
      else if (ev.type === "error") throw ApiError.fromService(ev);
      else if (ev.type === "done") return { tokens, done: ev, text: tokens.map((t) => t.text).join("") + ev.text };
    }
  } finally {
    await run.events.return(undefined);
  }
  throw new ApiError(500, "the model service ended the request early", { kind: "generation" });
}
