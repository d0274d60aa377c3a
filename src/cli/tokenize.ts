// `gemma-edge tokenize`: the token ids of a text, as user text (no BOS, control-token text not parsed).
import { openModelFile as open, parse, required, UsageError, type Command } from "./args.ts";

export const tokenizeCommand: Command = {
  name: "tokenize",
  summary: "print the token ids of a text",
  help: `Usage: gemma-edge tokenize --model FILE --text STR

Prints one JSON line {"ids":[...]}: the text tokenized as user text (no BOS, control-token text not parsed).`,
  run,
};

async function run(args: string[]): Promise<number> {
  const { values } = parse(args, { model: { type: "string" }, text: { type: "string" } });
  const path = required(values.model, "model");
  if (typeof values.text !== "string") throw new UsageError("--text is required");
  const src = await open(path);
  try {
    const { readGguf } = await import("../engine/gguf.ts");
    const { Tokenizer } = await import("../engine/tokenizer.ts");
    const tok = new Tokenizer(await readGguf(src));
    process.stdout.write(JSON.stringify({ ids: tok.encode(values.text) }) + "\n");
  } finally {
    await src.close();
  }
  return 0;
}
