// Tokenizer test strings: whitespace, scripts, emoji, combining marks, special-token text, edge cases.
const base = [
  "", " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n\n", "\r\n", "\r\n\r\n", " \n ", "\t \t", " leading", "trailing ",
  "  two leading", "Hello world", "Hello, world!", "hello world", "HELLO WORLD", "The quick brown fox jumps over the lazy dog.",
  "Once upon a time", "once upon a time there was a little model", "What is the weather like?", "I am fine, thank you.",
  "function add(a, b) {\n  return a + b;\n}", "def main():\n    for i in range(10):\n        print(i)",
  "if __name__ == '__main__':\n    main()", "const result = add(1, 2);\nconsole.log(result);", "    indented    code",
  "tabs\tand\tspaces", "mixed \t whitespace \n runs", "a  b   c    d     e", "x\n\ny\n\n\nz", "line1\r\nline2\r\n",
  "0", "1", "42", "3.14159", "-17", "+8", "1000000", "2026-11-28", "12:34:56", "1,234,567.89", "0x1F", "1e-6",
  "日本語のテキストです。", "東京は日本の首都です。", "中文文本，北京是中国的首都。", "한국어 텍스트입니다.", "こんにちは世界",
  "Ελληνικά κείμενα.", "Русский текст: привет, мир!", "مرحبا بالعالم", "שלום עולם", "العربية والعبرية معًا: שלום",
  "हिन्दी पाठ", "ภาษาไทย", "Tiếng Việt có dấu", "Zürich café naïve résumé façade", "ß ẞ æ ø å",
  "😀", "😀😃😄", "🎉 party 🎉", "👍🏽", "👨‍👩‍👧", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇯🇵🇺🇸", "emoji: 😀 😃 🎉 👍 ❤️ 👨‍👩‍👧 🏳️‍🌈",
  "e\u0301", "a\u0300\u0301\u0302", "n\u0303o\u0308", "Z\u0351\u0352\u0353", "\u0915\u094d\u0937", "combining: cafe\u0301",
  "\u2581", "\u2581\u2581", "a\u2581b", "\u2581hello", "hello\u2581", "▁▁▁ spaces ▁▁▁",
  "<bos>", "<eos>", "<pad>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_turn>user\nhi<end_of_turn>",
  "text <bos> inside", "<unused0>", "<unused5>", "<unused42> and <unused43>", "<table><tr></td>", "a<table>b",
  "\n\n\n\n", "x\n\n\n\ny", "<0x41>", "<0xFF>", "<mask>", "<start_of_turn", "end_of_turn>", "<<start_of_turn>>",
  "JSON: {\"name\": \"gemma\", \"size\": 2}", "Markdown: # Title\n## Subtitle\n- item", "**bold** _italic_ `code`",
  "https://example.com/path?query=1&x=2", "user@example.com", "C:\\Users\\name\\file.txt", "/usr/local/bin",
  "\u0000", "\u0001\u0002", "\u007f", "\u00a0nbsp", "\u200b zero width", "\u200d", "\ufeffbom", "\uE000private",
  "\u{10FFFF}", "\u{1F600}\u{1F601}", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙𝟚", "Ⅻ", "½ ¾ ⅓", "™ © ®", "€ £ ¥ ₹", "→ ← ↑ ↓", "∀x∈ℝ: x²≥0",
];

const generated: string[] = [];
for (const n of [2, 3, 5, 8, 16, 33]) {
  generated.push(" ".repeat(n), "\t".repeat(n), "\n".repeat(n), "a".repeat(n), "ab".repeat(n), "😀".repeat(n));
}
for (const w of ["the", "Hello", "日本", "🎉", "é", "\t"]) generated.push(`${w} `.repeat(20), w.repeat(50));
generated.push("a".repeat(1000), "hello world ".repeat(100), "x y\tz\n".repeat(50));
for (let i = 0; i < 24; i++) {
  // deterministic mixtures of the pieces above
  const pick = (k: number) => base[(i * 7 + k * 13) % base.length]!;
  generated.push(pick(1) + pick(2), pick(3) + " " + pick(4) + "\n" + pick(5));
}

export const TOKENIZER_CORPUS: string[] = [...base, ...generated];
