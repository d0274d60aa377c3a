// The ModelService of a model that lives in a Durable Object: the same interface, spoken as JSON and
// newline-delimited JSON events over the Durable Object's fetch. Cancelling the event stream (a client that
// went away) cancels the generation in the Durable Object.
import type { ModelInfo, ModelService, ModelStatus, ServiceEvent, ServiceRequest } from "../service/contract.ts";

export interface FetchTarget {
  fetch(input: string, init?: RequestInit): Promise<Response>;
}

const BASE = "https://model-host";

export class RemoteModelService implements ModelService {
  readonly modelId: string;
  private readonly target: FetchTarget;
  private readonly headers: Record<string, string>;

  /** `headers` go with every call (the Durable Object learns what to serve from them). */
  constructor(modelId: string, target: FetchTarget, headers: Record<string, string> = {}) {
    this.modelId = modelId;
    this.target = target;
    this.headers = headers;
  }

  private async json<T>(path: string, body?: unknown): Promise<T> {
    const init: RequestInit = body === undefined ? { headers: this.headers } : { method: "POST", body: JSON.stringify(body), headers: this.headers };
    const res = await this.target.fetch(`${BASE}${path}`, init);
    // failures of the host itself come as {host_error} (a model status may carry an "error" of its own)
    const data = (await res.json()) as T & { host_error?: string };
    if (!res.ok || typeof data.host_error === "string") throw new Error(data.host_error ?? `model host answered ${res.status}`);
    return data;
  }

  status(): Promise<ModelStatus> {
    return this.json("/status");
  }
  /** Load the model in the Durable Object; resolves when it is loaded or failed. */
  async warmUp(): Promise<void> {
    await this.json("/load").catch(() => {});
  }
  info(): Promise<ModelInfo> {
    return this.json("/info");
  }
  tokenize(text: string): Promise<{ ids: number[]; pieces: string[] }> {
    return this.json("/tokenize", { text });
  }
  async metrics(): Promise<string> {
    const res = await this.target.fetch(`${BASE}/metrics`, { headers: this.headers });
    if (!res.ok) throw new Error(`model host answered ${res.status} to /metrics`);
    return res.text();
  }

  async *generate(req: ServiceRequest, signal?: AbortSignal): AsyncGenerator<ServiceEvent> {
    const res = await this.target.fetch(`${BASE}/generate`, { method: "POST", body: JSON.stringify(req), headers: this.headers });
    if (!res.body) throw new Error("model host sent no event stream");
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    const cancel = () => void reader.cancel().catch(() => {});
    signal?.addEventListener("abort", cancel);
    let buf = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += value;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line) yield JSON.parse(line) as ServiceEvent;
        }
      }
    } finally {
      signal?.removeEventListener("abort", cancel);
      cancel();
    }
  }
}
