// Errors at the HTTP boundary: one error type, answered in the OpenAI envelope on /v1/* routes and in TGI's
// envelope elsewhere. Every bad input names the field; nothing a client sends produces a 500.
import type { ErrorKind, ServiceError } from "../service/contract.ts";

const OPENAI_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  404: "not_found_error",
  413: "invalid_request_error",
  415: "invalid_request_error",
  422: "invalid_request_error",
  429: "rate_limit_error",
  500: "server_error",
  503: "service_unavailable",
  504: "timeout_error",
};

export class ApiError extends Error {
  override name = "ApiError";
  readonly status: number;
  readonly param: string | null;
  readonly code: string | null;
  readonly kind: ErrorKind | "not_found" | "authentication";
  /** Seconds, for 429 and 503 answers. */
  readonly retryAfter: number | undefined;
  constructor(status: number, message: string, opts: { param?: string; code?: string; kind?: ApiError["kind"]; retryAfter?: number } = {}) {
    super(message);
    this.status = status;
    this.param = opts.param ?? null;
    this.code = opts.code ?? null;
    this.kind = opts.kind ?? (status === 404 ? "not_found" : status === 401 ? "authentication" : status === 429 ? "overloaded" : status >= 500 ? "unavailable" : "validation");
    this.retryAfter = opts.retryAfter;
  }

  static fromService(e: ServiceError): ApiError {
    const code = { validation: "invalid_value", template: "invalid_messages", overloaded: "queue_full", unavailable: "model_unavailable", timeout: "timeout", generation: "generation_failed" }[e.kind];
    const retryAfter = e.kind === "overloaded" ? 2 : e.kind === "unavailable" ? 5 : undefined;
    return new ApiError(e.status, e.message, { param: e.field, code, kind: e.kind, retryAfter });
  }

  /** {"error": {message, type, param, code}} as the OpenAI SDKs parse it. */
  openAiBody() {
    return { error: { message: this.message, type: OPENAI_TYPES[this.status] ?? "invalid_request_error", param: this.param, code: this.code } };
  }

  /** {"error": "...", "error_type": "..."} as TGI clients parse it. */
  tgiBody() {
    const errorType = { validation: "validation", template: "validation", overloaded: "overloaded", unavailable: "unavailable", timeout: "incomplete_generation", generation: "generation", not_found: "not_found", authentication: "authentication" }[this.kind];
    return { error: this.message, error_type: errorType };
  }
}

/** Route families answer errors in their own envelope. */
export function isOpenAiPath(path: string): boolean {
  return path.startsWith("/v1/");
}

export function errorBody(path: string, e: ApiError) {
  return isOpenAiPath(path) ? e.openAiBody() : e.tgiBody();
}
