// A synthetic SentencePiece-BPE vocabulary for generated test models: Gemma's special tokens at their real
// ids (pad 0, eos 1, bos 2, unk 3, <start_of_turn> 106, <end_of_turn> 107), user-defined tokens, the 256
// byte tokens, the characters of a built-in corpus and BPE merges learned from it (score = -merge rank),
// padded to the requested size with pieces that no text can reach.
import { TOKEN_TYPE } from "../engine/tokenizer.ts";

const SP = "\u2581";

/** Text the merges are learned from: prose, code, whitespace runs, several scripts, emoji. */
export const CORPUS = [
  "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs into the forest.",
  "Once upon a time there was a little model that wanted to answer every question on the edge of the network.",
  "Hello, world! Hello there. How are you today? I am fine, thank you. What is the weather like?",
  "function add(a, b) {\n  return a + b;\n}\n\nconst result = add(1, 2);\nconsole.log(result);\n",
  "def main():\n    for i in range(10):\n        print(i)\n\nif __name__ == '__main__':\n    main()\n",
  "\tTabs\tand\tspaces    mixed   together\n\n\nnew lines\r\nand carriage returns.\r\n",
  "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000 2026 3.14159 -17 +8",
  "Gemma is a family of lightweight, state-of-the-art open models built from the same research and technology.",
  "日本語のテキストです。東京は日本の首都です。中文文本，北京是中国的首都。한국어 텍스트입니다.",
  "Ελληνικά κείμενα. Русский текст: привет, мир! مرحبا بالعالم. שלום עולם.",
  "Emoji: 😀 😃 🎉 👍 ❤️ 👨‍👩‍👧 🏳️‍🌈 and accents: café naïve résumé façade Zürich.",
  "Markdown: # Title\n## Subtitle\n- item one\n- item two\n**bold** and _italic_ and `code`.",
  "JSON: {\"name\": \"gemma\", \"size\": 2, \"tags\": [\"edge\", \"wasm\"], \"ok\": true}",
  "the of and to in is that for it as with was on be by this are from at or an which",
].join("\n");

export interface Vocab {
  tokens: string[];
  scores: number[];
  types: number[];
}

export function buildVocab(size: number): Vocab {
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const add = (t: string, score: number, type: number) => {
    tokens.push(t);
    scores.push(score);
    types.push(type);
  };
  add("<pad>", 0, TOKEN_TYPE.CONTROL);
  add("<eos>", 0, TOKEN_TYPE.CONTROL);
  add("<bos>", 0, TOKEN_TYPE.CONTROL);
  add("<unk>", 0, TOKEN_TYPE.UNKNOWN);
  for (let i = 4; i < 106; i++) add(`<unused${i - 4}>`, 0, i < 8 ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED);
  add("<start_of_turn>", 0, TOKEN_TYPE.CONTROL);
  add("<end_of_turn>", 0, TOKEN_TYPE.CONTROL);
  // user-defined pieces, matched atomically in any text (Gemma has whitespace runs and markup like these)
  for (const t of ["<table>", "<tr>", "</td>", "\n\n\n\n"]) add(t, 0, TOKEN_TYPE.USER_DEFINED);
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, 0, TOKEN_TYPE.BYTE);

  const seen = new Set(tokens);
  const chars = [...new Set([...CORPUS.replaceAll(" ", SP)])].sort();
  chars.forEach((c, i) => {
    if (!seen.has(c)) {
      add(c, -1e6 - i, TOKEN_TYPE.NORMAL);
      seen.add(c);
    }
  });

  // BPE over space-prefixed words (SentencePiece style): repeatedly merge the most frequent pair.
  const words = new Map<string, number>();
  for (const line of CORPUS.split("\n")) {
    for (const w of line.split(" ")) if (w) words.set(SP + w, (words.get(SP + w) ?? 0) + 1);
  }
  let segs = [...words].map(([w, n]) => ({ syms: [...w], n }));
  let rank = 0;
  while (tokens.length < size) {
    const pairs = new Map<string, number>();
    for (const { syms, n } of segs) {
      for (let i = 0; i + 1 < syms.length; i++) {
        const p = syms[i]! + "\u0000" + syms[i + 1]!;
        pairs.set(p, (pairs.get(p) ?? 0) + n);
      }
    }
    let best = "";
    let bestN = 0;
    for (const [p, n] of pairs) if (n > bestN || (n === bestN && p < best)) [best, bestN] = [p, n];
    if (!bestN) break;
    const [a, b] = best.split("\u0000") as [string, string];
    const merged = a + b;
    if (!seen.has(merged)) {
      add(merged, -rank, TOKEN_TYPE.NORMAL);
      seen.add(merged);
    }
    rank++;
    segs = segs.map(({ syms, n }) => {
      const out: string[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          out.push(merged);
          i++;
        } else out.push(syms[i]!);
      }
      return { syms: out, n };
    });
  }
  // Filler: a private-use character that no merge produces keeps these unreachable from text.
  for (let i = 0; tokens.length < size; i++) add(`\uE000${i}`, -2e6 - i, TOKEN_TYPE.NORMAL);
  return { tokens, scores, types };
}
