// The Worker's bindings and settings (wrangler.toml [vars], secrets), read in one place.
import type { DurableObjectNamespace, R2Bucket } from "@cloudflare/workers-types";

export interface Env {
  MODELS: R2Bucket;
  MODEL_HOST: DurableObjectNamespace;
  /** The name clients send as "model". */
  MODEL_ID: string;
  /** The GGUF file's key in the MODELS bucket. */
  MODEL_KEY: string;
  /** Pull-through: where to download MODEL_KEY from when it is missing from R2, and the file's SHA-256 (hex). */
  MODEL_SOURCE_URL?: string;
  MODEL_SOURCE_SHA256?: string;
  /** Secret: the Authorization header value for MODEL_SOURCE_URL (e.g. "Bearer hf_..."). */
  MODEL_SOURCE_AUTH?: string;
  CONTEXT_SIZE?: string;
  MAX_BATCH?: string;
  MAX_QUEUE?: string;
  REQUEST_TIMEOUT_MS?: string;
  KEEPALIVE_MS?: string;
  MAX_BODY_BYTES?: string;
  CORS_ORIGINS?: string;
  /** Secret: when set, every route but /health needs "Authorization: Bearer <API_KEY>". */
  API_KEY?: string;
  /** "1" in test configurations only: POST /__test/reset-shard/<i> resets shard <i> (see durable-object.ts). */
  ALLOW_SHARD_RESET?: string;
}

export function intVar(env: Env, name: keyof Env): number | undefined {
  const v = env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`setting ${name} must be a non-negative integer, got "${String(v)}"`);
  return n;
}
