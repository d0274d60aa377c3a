// `gemma-edge generate`: text from a prompt on the engine in this process, streamed or as one JSON line.
import { generate } from "../engine/generate.ts";
import { engineOptions, num, openModelFile as open, parse, required, UsageError, type Command } from "./args.ts";
import { BACKEND_NAMES, loadNodeModel } from "../hosts/node-backend.ts";

export const generateCommand: Command = {
  name: "generate",
  summary: "generate text from a prompt",
  help: `Usage: gemma-edge generate --model FILE --prompt STR [options]

  --chat               send the prompt as one user message through the model's chat template
  --max-tokens N       tokens to generate at most (default 128)
  --temperature T      0 = greedy (default 0.8)
  --top-k K            keep the K most likely tokens (default 40; 0 = off)
  --top-p P            nucleus sampling (default 0.95)
  --min-p P            drop tokens below P x the top probability (default 0.05)
  --seed S             make sampling repeatable
  --stop STR           stop at this text (repeatable)
  --context N          context size to allocate (default: the model's, at most 8192)
  --backend NAME       ${BACKEND_NAMES.join(" | ")} (default wasm)
  --threads T          worker threads for the wasm backend's matrix products (default 1; Node only)
  --json               print one JSON line {"prompt_ids","ids","text","finish_reason"} instead of streaming
                       (ids: the generated tokens, without the end-of-generation token that stopped them)`,
  run,
};

async function run(args: string[]): Promise<number> {
  const { values } = parse(args, {
    model: { type: "string" }, prompt: { type: "string" }, chat: { type: "boolean" },
    "max-tokens": { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" },
    "top-p": { type: "string" }, "min-p": { type: "string" }, seed: { type: "string" },
    stop: { type: "string", multiple: true }, context: { type: "string" }, backend: { type: "string" },
    threads: { type: "string" }, json: { type: "boolean" },
  });
  const path = required(values.model, "model");
  if (typeof values.prompt !== "string") throw new UsageError("--prompt is required");
  const maxTokens = num(values["max-tokens"], "max-tokens", { min: 1, int: true }) ?? 128;
  const temperature = num(values.temperature, "temperature", { min: 0, max: 100 }) ?? 0.8;
  const sampling = {
    temperature,
    topK: num(values["top-k"], "top-k", { min: 0, int: true }) ?? 40,
    topP: num(values["top-p"], "top-p", { min: 0, max: 1 }) ?? 0.95,
    minP: num(values["min-p"], "min-p", { min: 0, max: 1 }) ?? 0.05,
    seed: num(values.seed, "seed", { min: 0, max: 2 ** 32 - 1, int: true }),
  };
  const contextSize = num(values.context, "context", { min: 1, int: true });
  const { backend, threads } = engineOptions(values);

  const src = await open(path);
  let m;
  try {
    m = await loadNodeModel(src, backend, { contextSize, threads });
  } finally {
    await src.close();
  }
  const prompt = values.chat ? { messages: [{ role: "user" as const, content: values.prompt as string }] } : { text: values.prompt as string };
  const ids: number[] = [];
  let text = "";
  let promptIds: number[] = [];
  const { encodePrompt } = await import("../engine/generate.ts");
  promptIds = encodePrompt(m, prompt);
  let finish = "length";
  for await (const ev of generate(m, { prompt: { ids: promptIds }, maxTokens, sampling, stop: values.stop as string[] | undefined })) {
    if (ev.type === "token") {
      ids.push(ev.id);
      text += ev.text;
      if (!values.json && ev.text) process.stdout.write(ev.text);
    } else {
      text += ev.text;
      finish = ev.finishReason;
      // ids are the generated tokens; the end-of-generation token that stopped them is not one (as in llama.cpp)
      if (typeof ev.stoppedBy === "number") ids.pop();
      if (!values.json) process.stdout.write(ev.text + "\n");
    }
  }
  if (values.json) process.stdout.write(JSON.stringify({ prompt_ids: promptIds, ids, text, finish_reason: finish }) + "\n");
  return 0;
}
