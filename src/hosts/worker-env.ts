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
  /** Tokens one forward step holds (decode tokens plus prompt chunks; default 512). */
  MAX_BATCH?: string;
  /** Sequences decoding together (TGI's max_batch_size; default 4). */
  MAX_BATCH_SIZE?: string;
  /** Prompt tokens per forward step (a multiple of 4; default 128). */
  PREFILL_CHUNK?: string;
  /** Finished sequences kept for the prompt cache beyond the running ones (0: no cache; default 2). */
  PROMPT_CACHE_SLOTS?: string;
  MAX_QUEUE?: string;
  REQUEST_TIMEOUT_MS?: string;
  KEEPALIVE_MS?: string;
  MAX_BODY_BYTES?: string;
  CORS_ORIGINS?: string;
  /** "1": requests naming another model than MODEL_ID get 404 (default: the one model answers whatever they name). */
  STRICT_MODEL?: string;
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

/** A setting that must be a positive integer when set. */
export function positive(env: Env, name: keyof Env): number | undefined {
  const n = intVar(env, name);
  if (n === 0) throw new Error(`setting ${name} must be a positive integer, got "0"`);
  return n;
}
