// ggml tensor types this engine knows: ids and block layouts as in ggml/include/ggml.h and ggml-common.h.

export const GGML_TYPE = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q8_1: 9,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  Q8_K: 15,
  BF16: 30,
} as const;

const NAMES = new Map<number, string>(Object.entries(GGML_TYPE).map(([k, v]) => [v, k]));

export function ggmlTypeName(t: number): string {
  return NAMES.get(t) ?? `type#${t}`;
}

/** Block size (values) and bytes per block of the types whose data this engine can compute with. */
const LAYOUT: Record<number, { blockSize: number; blockBytes: number }> = {
  [GGML_TYPE.F32]: { blockSize: 1, blockBytes: 4 },
  [GGML_TYPE.F16]: { blockSize: 1, blockBytes: 2 },
  [GGML_TYPE.BF16]: { blockSize: 1, blockBytes: 2 },
  [GGML_TYPE.Q8_0]: { blockSize: 32, blockBytes: 34 },
  [GGML_TYPE.Q4_0]: { blockSize: 32, blockBytes: 18 },
  [GGML_TYPE.Q4_1]: { blockSize: 32, blockBytes: 20 },
  [GGML_TYPE.Q5_0]: { blockSize: 32, blockBytes: 22 },
  [GGML_TYPE.Q5_1]: { blockSize: 32, blockBytes: 24 },
  [GGML_TYPE.Q4_K]: { blockSize: 256, blockBytes: 144 },
  [GGML_TYPE.Q5_K]: { blockSize: 256, blockBytes: 176 },
  [GGML_TYPE.Q6_K]: { blockSize: 256, blockBytes: 210 },
};

export function isSupportedType(t: number): boolean {
  return t in LAYOUT;
}

export function typeLayout(t: number): { blockSize: number; blockBytes: number } {
  const l = LAYOUT[t];
  if (!l) throw new Error(`unsupported ggml type ${ggmlTypeName(t)}`);
  return l;
}

/** Bytes of one row of `n` values; `n` must be a multiple of the block size. */
export function rowBytes(t: number, n: number): number {
  const { blockSize, blockBytes } = typeLayout(t);
  return (n / blockSize) * blockBytes;
}

/**
 * llama.cpp's llama_ftype, written to general.file_type, for files whose 2-D weights all have one type (all-Q4_K and
 * all-Q5_K files are written as the _S ftypes, their nearest names).
 */
export const LLAMA_FTYPE: Record<number, number> = {
  [GGML_TYPE.F32]: 0, [GGML_TYPE.F16]: 1, [GGML_TYPE.Q4_0]: 2, [GGML_TYPE.Q8_0]: 7, [GGML_TYPE.BF16]: 32,
  [GGML_TYPE.Q4_K]: 14, [GGML_TYPE.Q5_K]: 16, [GGML_TYPE.Q6_K]: 18, [GGML_TYPE.Q4_1]: 3, [GGML_TYPE.Q5_0]: 8, [GGML_TYPE.Q5_1]: 9,
};

/** The types whose data this engine computes with, by name (for error messages). */
export function supportedTypeNames(): string {
  return Object.keys(LAYOUT).map((t) => ggmlTypeName(Number(t))).join(", ");
}
/** llama_ftype LLAMA_FTYPE_MOSTLY_Q4_K_M. */
export const LLAMA_FTYPE_Q4_K_M = 15;

/** The K-quant types' names as quant-k.ts takes them, or undefined for other types. */
export function kQuantName(t: number): "q4_K" | "q5_K" | "q6_K" | undefined {
  return t === GGML_TYPE.Q4_K ? "q4_K" : t === GGML_TYPE.Q5_K ? "q5_K" : t === GGML_TYPE.Q6_K ? "q6_K" : undefined;
}
