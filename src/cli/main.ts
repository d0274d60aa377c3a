// The `gemma-edge` command line: a dispatcher over the commands, each a module of its own (its options, help and
// run). One clear line on stderr and a non-zero exit code for every error; `--help` for each command.
import { UsageError, type Command } from "./args.ts";
import { benchCommand } from "./bench.ts";
import { convertCommand } from "./convert.ts";
import { deployCommand } from "./deploy.ts";
import { generateCommand } from "./generate.ts";
import { makeTestModelCommand } from "./make-test-model.ts";
import { quantizeCommand } from "./quantize.ts";
import { r2Command } from "./r2.ts";
import { serveCommand } from "./serve.ts";
import { shardPlanCommand } from "./shard-plan.ts";
import { tokenizeCommand } from "./tokenize.ts";

export const COMMANDS: Command[] = [
  serveCommand, benchCommand, quantizeCommand, convertCommand, r2Command, tokenizeCommand, generateCommand, makeTestModelCommand,
  shardPlanCommand, deployCommand,
];

const HELP = `gemma-edge: Gemma inference on WebAssembly, checked against llama.cpp

Usage: gemma-edge <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(17)}${c.summary}`).join("\n")}
Run "gemma-edge <command> --help" for the options of a command.`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") return (process.stdout.write(HELP + "\n"), 0);
    const c = COMMANDS.find((x) => x.name === cmd);
    if (!c) throw new UsageError(`unknown command "${cmd}" (commands: ${COMMANDS.map((x) => x.name).join(", ")})`);
    if (rest.includes("--help") || rest.includes("-h")) return (process.stdout.write(c.help + "\n"), 0);
    return await c.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`gemma-edge ${cmd ?? ""}: ${e.message} (see --help)\n`);
      return 2;
    }
    throw e;
  }
}
