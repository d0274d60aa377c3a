// SentencePiece-BPE tokenizer from a GGUF vocab (tokenizer.ggml.model = "llama"), following llama.cpp's
// src/llama-vocab.cpp (llm_tokenizer_spm, tokenizer_st_partition, token_to_piece) so ids match it exactly.
// Text from users is not parsed for control tokens; user-defined tokens (type 4) are matched atomically.
import { GgufError, metaArray, metaBool, metaNumber, metaString, type GgufFile } from "./gguf.ts";

export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

const SPACE = "\u2581"; // ▁
/**
 * Token texts llama.cpp treats as ending generation (llama-vocab.cpp's end-of-turn and end-of-generation lists);
 * it also makes them control tokens whatever the file says, which changes how user text is tokenized.
 */
const END_OF_GENERATION_TEXTS = [
  "<end_of_turn>", "<eos>", "<|eot_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<|end_of_text|>", "<|eom_id|>",
  "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "</s>", "<end_of_utterance>", "<\uFF5Cend\u2581of\u2581sentence\uFF5C>",
];
const utf8 = new TextEncoder();

/** Length in bytes of a UTF-8 sequence from its first byte (llama.cpp unicode_len_utf8). */
function utf8Len(first: number): number {
  return [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4][first >> 4]!;
}

interface Bigram {
  left: number;
  right: number;
  score: number;
  size: number;
}

/** Max-heap of bigrams: higher score first, then the leftmost (llm_bigram_spm::comparator). */
class BigramQueue {
  private h: Bigram[] = [];
  private static before(a: Bigram, b: Bigram): boolean {
    return a.score > b.score || (a.score === b.score && a.left < b.left);
  }
  get size() {
    return this.h.length;
  }
  push(b: Bigram) {
    const h = this.h;
    h.push(b);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!BigramQueue.before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  pop(): Bigram {
    const h = this.h;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && BigramQueue.before(h[l]!, h[m]!)) m = l;
        if (r < h.length && BigramQueue.before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

export class Tokenizer {
  readonly tokens: string[];
  readonly scores: Float32Array;
  readonly types: Int32Array;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly padId: number;
  readonly addBos: boolean;
  readonly addSpacePrefix: boolean;
  /** Tokens that end generation: eos and, when the vocab has it, <end_of_turn>. */
  readonly stopIds: number[];
  /** Map from token text to id; later duplicates win, as in llama.cpp. */
  private readonly byText = new Map<string, number>();
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** Control, unknown and user-defined tokens, longest first (tokenizer_st_partition's order). */
  private readonly specials: { id: number; text: string; control: boolean; bytes: number }[];
  private readonly pieceBytes: (Uint8Array | undefined)[];

  constructor(f: GgufFile) {
    const model = metaString(f, "tokenizer.ggml.model");
    if (model !== "llama") {
      throw new GgufError(`unsupported tokenizer model "${model}" (tokenizer.ggml.model): expected "llama" (SentencePiece)`);
    }
    const toks = metaArray(f, "tokenizer.ggml.tokens");
    if (!toks || !Array.isArray(toks.items)) throw new GgufError(`missing required metadata key "tokenizer.ggml.tokens" (array of strings)`);
    this.tokens = toks.items as string[];
    const n = this.tokens.length;
    const scores = metaArray(f, "tokenizer.ggml.scores");
    this.scores = scores?.items instanceof Float32Array ? scores.items : new Float32Array(n);
    const types = metaArray(f, "tokenizer.ggml.token_type");
    this.types = types?.items instanceof Int32Array ? Int32Array.from(types.items) : new Int32Array(n).fill(TOKEN_TYPE.NORMAL);
    if (this.scores.length !== n) throw new GgufError(`tokenizer.ggml.scores has ${this.scores.length} entries, tokens has ${n}`);
    if (this.types.length !== n) throw new GgufError(`tokenizer.ggml.token_type has ${this.types.length} entries, tokens has ${n}`);

    const id = (key: string, fallback: number) => {
      const v = metaNumber(f, key, fallback);
      if (v >= n && v !== -1) throw new GgufError(`${key} = ${v} is outside the vocabulary of ${n} tokens`);
      return v;
    };
    this.bosId = id("tokenizer.ggml.bos_token_id", 1);
    this.eosId = id("tokenizer.ggml.eos_token_id", 2);
    this.unkId = id("tokenizer.ggml.unknown_token_id", 0);
    this.padId = id("tokenizer.ggml.padding_token_id", -1);
    this.addBos = metaBool(f, "tokenizer.ggml.add_bos_token", true);
    this.addSpacePrefix = metaBool(f, "tokenizer.ggml.add_space_prefix", true);

    this.pieceBytes = new Array(n);
    for (let i = 0; i < n; i++) {
      const t = this.tokens[i]!;
      if (END_OF_GENERATION_TEXTS.includes(t)) this.types[i] = TOKEN_TYPE.CONTROL;
      this.byText.set(t, i);
      if (this.types[i] === TOKEN_TYPE.BYTE) {
        const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
        if (m) this.byteIds[parseInt(m[1]!, 16)] = i;
      }
    }
    const specials: { id: number; text: string; control: boolean; bytes: number }[] = [];
    for (let i = 0; i < n; i++) {
      const ty = this.types[i]!;
      if (ty === TOKEN_TYPE.CONTROL || ty === TOKEN_TYPE.USER_DEFINED || ty === TOKEN_TYPE.UNKNOWN) {
        const text = this.tokens[i]!;
        if (text.length) specials.push({ id: i, text, control: ty !== TOKEN_TYPE.USER_DEFINED, bytes: utf8.encode(text).length });
      }
    }
    // Longest (in bytes) first, as llama.cpp sorts them; equal-length specials cannot both match at one place.
    this.specials = specials.sort((a, b) => b.bytes - a.bytes);

    const stop = new Set<number>();
    if (this.eosId >= 0) stop.add(this.eosId);
    for (const key of ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]) {
      const id = metaNumber(f, key, -1);
      if (id >= 0 && id < n) stop.add(id);
    }
    for (const text of END_OF_GENERATION_TEXTS) {
      const t = this.tokenId(text);
      if (t !== undefined) stop.add(t);
    }
    this.stopIds = [...stop];
  }

  get vocabSize(): number {
    return this.tokens.length;
  }

  tokenId(text: string): number | undefined {
    return this.byText.get(text);
  }

  /**
   * Text to ids. `parseSpecial` recognizes control tokens written as text (used for chat templates,
   * never for user content). `addBos` puts one BOS in front.
   */
  encode(text: string, opts: { addBos?: boolean; parseSpecial?: boolean } = {}): number[] {
    return this.encodeSegments([{ text, parseSpecial: opts.parseSpecial ?? false }], opts.addBos ?? false);
  }

  /**
   * Encode a text made of pieces with different trust: template text (`parseSpecial: true`) and user
   * content (`false`). Special tokens are looked for only where allowed; the raw text between special
   * tokens is then tokenized as one run across piece boundaries, exactly as if the whole text had been
   * tokenized at once by llama.cpp (when the user content holds no special-token text).
   */
  encodeSegments(segments: { text: string; parseSpecial: boolean }[], addBos = false): number[] {
    const frags: (string | number)[] = [];
    for (const seg of segments) {
      for (const f of this.partition(seg.text, seg.parseSpecial)) {
        const last = frags.length - 1;
        if (typeof f === "string" && last >= 0 && typeof frags[last] === "string") frags[last] += f;
        else frags.push(f);
      }
    }
    const out: number[] = [];
    if (addBos && this.bosId >= 0) out.push(this.bosId);
    let prevSpecial = true;
    for (const frag of frags) {
      if (typeof frag === "number") {
        out.push(frag);
        prevSpecial = true;
        continue;
      }
      let s = frag;
      if (this.addSpacePrefix && prevSpecial) s = " " + s;
      this.spm(s.replaceAll(" ", SPACE), out);
      prevSpecial = false;
    }
    return out;
  }

  /** Split text on special tokens (tokenizer_st_partition): strings are raw text, numbers are token ids. */
  private partition(text: string, parseSpecial: boolean): (string | number)[] {
    let frags: (string | number)[] = [text];
    for (const sp of this.specials) {
      if (!parseSpecial && sp.control) continue;
      const next: (string | number)[] = [];
      for (const f of frags) {
        if (typeof f === "number") {
          next.push(f);
          continue;
        }
        let start = 0;
        for (;;) {
          const at = f.indexOf(sp.text, start);
          if (at < 0) break;
          if (at > start) next.push(f.slice(start, at));
          next.push(sp.id);
          start = at + sp.text.length;
        }
        if (start < f.length) next.push(f.slice(start));
      }
      frags = next;
    }
    return frags.filter((f) => f !== "");
  }

  /**
   * llm_tokenizer_spm_session::tokenize on the escaped text. Symbols are characters (one UTF-8 sequence each in
   * llama.cpp, one code point here: the same units for any valid text); lengths count UTF-16 units, which only
   * ever get compared with each other.
   */
  private spm(text: string, out: number[]): void {
    if (text.length === 0) return;
    // symbols: a doubly linked list over the text, one character each to begin with
    const start: number[] = [];
    const len: number[] = [];
    const prev: number[] = [];
    const next: number[] = [];
    for (let off = 0, i = 0; off < text.length; i++) {
      const l = text.codePointAt(off)! > 0xffff ? 2 : 1;
      start.push(off);
      len.push(l);
      prev.push(i - 1);
      off += l;
      next.push(off === text.length ? -1 : i + 1);
    }
    const queue = new BigramQueue();
    const tryAdd = (left: number, right: number) => {
      if (left === -1 || right === -1) return;
      const id = this.byText.get(text.substr(start[left]!, len[left]! + len[right]!));
      if (id === undefined) return;
      queue.push({ left, right, score: this.scores[id]!, size: len[left]! + len[right]! });
    };
    for (let i = 1; i < start.length; i++) tryAdd(i - 1, i);
    while (queue.size) {
      const b = queue.pop();
      // skip bigrams made stale by an earlier merge
      if (len[b.left] === 0 || len[b.right] === 0 || len[b.left]! + len[b.right]! !== b.size) continue;
      len[b.left] = len[b.left]! + len[b.right]!;
      len[b.right] = 0;
      next[b.left] = next[b.right]!;
      if (next[b.right]! >= 0) prev[next[b.right]!] = b.left;
      tryAdd(prev[b.left]!, b.left);
      tryAdd(b.left, next[b.left]!);
    }
    for (let i = 0; i !== -1; i = next[i]!) {
      const piece = text.substr(start[i]!, len[i]!);
      const id = this.byText.get(piece);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      // Not in the vocab: byte fallback (a merged symbol is always in the vocab, so this is one character).
      for (const b of utf8.encode(piece)) {
        const bid = this.byteIds[b]!;
        if (bid < 0) {
          if (this.unkId < 0) throw new Error(`vocabulary has no byte token <0x${hex(b)}> and no unknown token`);
          out.push(this.unkId);
        } else out.push(bid);
      }
    }
  }

  /** The bytes a token stands for in generated text (token_to_piece; control tokens render as nothing). */
  pieceOf(id: number, renderSpecial = false): Uint8Array {
    const t = this.types[id];
    if (t === undefined) throw new RangeError(`token id ${id} is outside the vocabulary of ${this.vocabSize}`);
    if (t === TOKEN_TYPE.CONTROL || t === TOKEN_TYPE.UNKNOWN) {
      if (!renderSpecial) return t === TOKEN_TYPE.UNKNOWN ? utf8.encode("\u2585") : new Uint8Array(0);
      return utf8.encode(this.tokens[id]!);
    }
    let p = this.pieceBytes[id];
    if (p) return p;
    if (t === TOKEN_TYPE.BYTE) {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(this.tokens[id]!);
      p = m ? Uint8Array.of(parseInt(m[1]!, 16)) : utf8.encode(this.tokens[id]!);
    } else if (t === TOKEN_TYPE.USER_DEFINED) {
      p = utf8.encode(this.tokens[id]!);
    } else if (t === TOKEN_TYPE.NORMAL) {
      p = utf8.encode(this.tokens[id]!.replaceAll(SPACE, " "));
    } else {
      p = new Uint8Array(0);
    }
    this.pieceBytes[id] = p;
    return p;
  }

  isSpecial(id: number): boolean {
    const t = this.types[id];
    return t === TOKEN_TYPE.CONTROL || t === TOKEN_TYPE.UNKNOWN;
  }

  /** Whole-sequence decode (invalid UTF-8 becomes U+FFFD). */
  decode(ids: number[]): string {
    const d = new StreamingDecoder(this);
    return ids.map((i) => d.push(i)).join("") + d.flush();
  }
}

/** Incremental detokenizer: emits text only when it is whole UTF-8, holding back partial sequences. */
export class StreamingDecoder {
  private pending: number[] = [];
  // ignoreBOM: a byte-order mark the model generates is text, not a marker to drop
  private readonly dec = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  private readonly tok: Tokenizer;
  constructor(tok: Tokenizer) {
    this.tok = tok;
  }

  push(id: number): string {
    for (const b of this.tok.pieceOf(id)) this.pending.push(b);
    // emit everything up to the last complete UTF-8 sequence
    let end = this.pending.length;
    let i = end - 1;
    let back = 0;
    while (i >= 0 && back < 4 && (this.pending[i]! & 0xc0) === 0x80) {
      i--;
      back++;
    }
    if (i >= 0 && this.pending[i]! >= 0xc0) {
      const need = utf8Len(this.pending[i]!);
      if (end - i < need) end = i;
    }
    if (end === 0) return "";
    const text = this.dec.decode(Uint8Array.from(this.pending.slice(0, end)));
    this.pending = this.pending.slice(end);
    return text;
  }

  /** Whatever is still held back (an incomplete sequence at the end becomes U+FFFD). */
  flush(): string {
    if (!this.pending.length) return "";
    const t = this.dec.decode(Uint8Array.from(this.pending));
    this.pending = [];
    return t;
  }
}

function hex(b: number): string {
  return b.toString(16).toUpperCase().padStart(2, "0");
}
