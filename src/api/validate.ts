// Request bodies into the engine's request: each field checked for type and range, and named when wrong.
import { ApiError } from "./errors.ts";

export type Json = Record<string, unknown>;

export const bad = (param: string, message: string) => new ApiError(400, message, { param, code: "invalid_value" });

export function object(v: unknown, name = "body"): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad(name, `${name} must be a JSON object`);
  return v as Json;
}

interface NumOpts {
  min?: number;
  max?: number;
  /** exclusive lower bound */
  above?: number;
  int?: boolean;
}

/** An optional number (null counts as absent, as the OpenAI API treats it). */
export function num(b: Json, field: string, o: NumOpts = {}): number | undefined {
  const v = b[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw bad(field, `'${field}' must be a number, got ${describe(v)}`);
  if (o.int && !Number.isInteger(v)) throw bad(field, `'${field}' must be an integer, got ${v}`);
  if (o.min !== undefined && v < o.min) throw bad(field, `'${field}' must be >= ${o.min}, got ${v}`);
  if (o.above !== undefined && v <= o.above) throw bad(field, `'${field}' must be > ${o.above}, got ${v}`);
  if (o.max !== undefined && v > o.max) throw bad(field, `'${field}' must be <= ${o.max}, got ${v}`);
  return v;
}

export function bool(b: Json, field: string): boolean | undefined {
  const v = b[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw bad(field, `'${field}' must be a boolean, got ${describe(v)}`);
  return v;
}

export function str(b: Json, field: string, required = false): string | undefined {
  const v = b[field];
  if (v === undefined || v === null) {
    if (required) throw bad(field, `'${field}' is required`);
    return undefined;
  }
  if (typeof v !== "string") throw bad(field, `'${field}' must be a string, got ${describe(v)}`);
  return v;
}

/** stop: a string or up to `max` strings. */
export function stops(b: Json, field: string, max = 4): string[] | undefined {
  const v = b[field];
  if (v === undefined || v === null) return undefined;
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string")) throw bad(field, `'${field}' must be a string or an array of strings`);
  if (list.length > max) throw bad(field, `'${field}' may hold at most ${max} strings, got ${list.length}`);
  if (list.some((s) => s === "")) throw bad(field, `'${field}' must not contain empty strings`);
  return list as string[];
}

/** A field this server does not implement: refused when it would change the answer. */
export function unsupported(b: Json, field: string, what: string, allowed: (v: unknown) => boolean = () => false): void {
  const v = b[field];
  if (v === undefined || v === null || allowed(v)) return;
  throw bad(field, `'${field}' is not supported by this server (${what})`);
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v === null) return "null";
  return `${typeof v} ${JSON.stringify(v)?.slice(0, 40)}`;
}
