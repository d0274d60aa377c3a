// Tool calling for Gemma, which has no tool tokens: Google's guidance ("Function calling with Gemma") puts the
// function definitions as JSON in the first user turn, with an instruction to answer a call as
//   {"name": function name, "parameters": dictionary of argument name and its value}
// and the caller recognizes a call by that shape. Here the shape is also enforced: the grammar (grammar.ts, a
// structural tag) makes every call the model starts a valid call of a listed function with arguments that
// match its schema. The whole exchange as the model sees it is in README "Tool calls".
//   - history: an assistant message's tool calls are its content, one call per line, in the same shape; the
//     results of `tool` messages become the next user turn, one line each: {"name": …, "response": …}.
//   - output: ToolCallParser reads calls out of the text as it streams (content before a call stays content).
import type { ChatMessage } from "./chat-template.ts";
import type { ConstraintSpec } from "./grammar.ts";

export interface ToolDefinition {
  name: string;
  description?: string;
  /** JSON Schema of the arguments (an object schema); absent: no arguments. */
  parameters?: unknown;
}

export interface ToolCall {
  id: string;
  name: string;
  /** The arguments, a JSON text. */
  arguments: string;
}

/** auto: text or calls; required: at least one call; a name: one call of that function. */
export type ToolChoice = "auto" | "required" | { name: string };

/** What the model is told (Google's JSON variant), followed by the definitions. */
export const TOOLS_INSTRUCTION =
  "You have access to functions. If you decide to invoke any of the function(s), you MUST put it in the format of\n" +
  '{"name": function name, "parameters": dictionary of argument name and its value}\n\n' +
  "You SHOULD NOT include any other text in the response if you call a function\n";

/** With tool_choice "none": the definitions (the history may hold calls of them), and no call now. */
export const TOOLS_NOT_NOW = "You have access to these functions, but do not call any of them now: answer in text\n";

/** The text every call starts with, and a call's parts (the grammar and the parser agree on these). */
export const CALL_TRIGGER = '{"name": "';
/** Between a call's name and its arguments. */
export const CALL_GAP = ', "parameters": ';
export const callBegin = (name: string) => `${CALL_TRIGGER.slice(0, -1)}${JSON.stringify(name)}${CALL_GAP}`;
export const CALL_END = "}";
export const CALL_SEPARATOR = "\n";

/** JSON in the layout constrained output has (grammar.ts): one space after each ':' and ','. */
export function layoutJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(layoutJson).join(", ")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => `${JSON.stringify(k)}: ${layoutJson(x)}`).join(", ")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

/** A function's arguments when it declares none. */
const NO_PARAMETERS = { type: "object", properties: {}, additionalProperties: false };

/** The definitions after the instruction (`callable`) or after TOOLS_NOT_NOW. */
export function toolsText(tools: ToolDefinition[], callable = true): string {
  const defs = tools.map((t) => ({ name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.parameters ?? NO_PARAMETERS }));
  // a JSON array, one function per line (Google's example indents it; the same JSON in fewer tokens)
  return `${callable ? TOOLS_INSTRUCTION : TOOLS_NOT_NOW}[\n${defs.map(layoutJson).join(",\n")}\n]`;
}

/** One call as the model writes it. */
export function callText(c: { name: string; arguments: string }): string {
  let args: unknown;
  try {
    args = JSON.parse(c.arguments || "{}");
  } catch {
    args = c.arguments; // a client's malformed arguments, kept as they were sent
  }
  return `${callBegin(c.name)}${layoutJson(args)}${CALL_END}`;
}

/** A chat message as the API receives it, with the tool parts OpenAI's format has. */
export interface ToolChatMessage {
  role: ChatMessage["role"] | "tool";
  content: string;
  toolCalls?: { id: string; name: string; arguments: string }[];
  /** For role tool: the call it answers. */
  toolCallId?: string;
}

/**
 * Messages with tool calls and results, and the tool definitions, as the plain turns Gemma's template takes: the
 * definitions are a system message in front (chat-template.ts merges system messages into the first user turn),
 * calls become the assistant's text, and each run of tool results becomes a user turn. A result's function is
 * found from its tool_call_id; an id that no earlier call has is an error naming the message. `callable` false
 * (tool_choice "none") shows the definitions without the instruction to call.
 */
export function lowerToolMessages(messages: ToolChatMessage[], tools: ToolDefinition[] | undefined, callable = true): ChatMessage[] {
  const out: ChatMessage[] = [];
  const names = new Map<string, string>();
  if (tools?.length) out.push({ role: "system", content: toolsText(tools, callable) });
  for (const [i, m] of messages.entries()) {
    if (m.role === "tool") {
      const name = m.toolCallId !== undefined ? names.get(m.toolCallId) : undefined;
      if (name === undefined) throw new ToolMessageError(`messages[${i}]: tool_call_id ${JSON.stringify(m.toolCallId)} does not answer any earlier tool call`, i);
      let response: unknown = m.content;
      try {
        response = JSON.parse(m.content);
      } catch {
        // plain text stays a string
      }
      const line = layoutJson({ name, response });
      const last = out.at(-1);
      if (last?.role === "user" && messages[i - 1]?.role === "tool") last.content += `\n${line}`;
      else out.push({ role: "user", content: line });
      continue;
    }
    if (m.role === "assistant" && m.toolCalls?.length) {
      for (const c of m.toolCalls) names.set(c.id, c.name);
      const calls = m.toolCalls.map(callText).join(CALL_SEPARATOR);
      out.push({ role: "assistant", content: m.content ? `${m.content}\n${calls}` : calls });
      continue;
    }
    // a user message right after tool results joins their turn (roles must alternate)
    const last = out.at(-1);
    if (m.role === "user" && last?.role === "user" && messages[i - 1]?.role === "tool") last.content += `\n\n${m.content}`;
    else out.push({ role: m.role as ChatMessage["role"], content: m.content });
  }
  return out;
}

/** Tool messages that do not fit together (the API checks them first and answers 400 naming the message). */
export class ToolMessageError extends Error {
  override name = "ToolMessageError";
  readonly index: number;
  constructor(message: string, index: number) {
    super(message);
    this.index = index;
  }
}

/** The grammar of the calls a choice allows (grammar.ts compiles it). */
export function toolCallConstraint(tools: ToolDefinition[], choice: ToolChoice, parallel: boolean): ConstraintSpec {
  const listed = tools.map((t, index) => ({ name: t.name, parameters: t.parameters ?? NO_PARAMETERS, index })).filter((t) => typeof choice !== "object" || t.name === choice.name);
  return {
    type: "tool_calls",
    tools: listed,
    mode: choice === "auto" ? "auto" : "required",
    // a named function is called once
    parallel: typeof choice === "object" ? false : parallel,
  };
}

/** What the parser reads out of the streamed text. */
export type ToolStreamEvent =
  | { type: "content"; text: string }
  | { type: "call"; index: number; id: string; name: string }
  | { type: "arguments"; index: number; text: string };

/**
 * Reads calls out of generated text as it arrives, the same whatever the pieces. Text before a call is content
 * (a tail that could begin a call is held back until it is clear); a call is announced once its name and the gap
 * after it are complete, then its arguments follow in fragments, as OpenAI streams them. Whitespace next to a call
 * is the calls' layout, not content: it is held until text follows and dropped if a call or the end comes first.
 * The grammar guarantees the shape; text that breaks it (only possible without a constraint) is content.
 */
export class ToolCallParser {
  private state: "text" | "name" | "args" | "end" = "text";
  private buf = "";
  /** Whitespace held back from the content (see above). */
  private blank = "";
  private depth = 0;
  private inString = false;
  private escaped = false;
  private readonly newId: () => string;
  readonly calls: ToolCall[] = [];
  content = "";

  constructor(newId: () => string) {
    this.newId = newId;
  }

  push(text: string): ToolStreamEvent[] {
    this.buf += text;
    const out: ToolStreamEvent[] = [];
    for (;;) {
      if (this.state === "text") {
        const at = this.buf.indexOf(CALL_TRIGGER);
        if (at < 0) {
          const keep = heldTail(this.buf, CALL_TRIGGER);
          this.text(out, this.buf.slice(0, this.buf.length - keep));
          this.buf = this.buf.slice(this.buf.length - keep);
          return out;
        }
        this.text(out, this.buf.slice(0, at));
        this.buf = this.buf.slice(at + CALL_TRIGGER.length);
        this.state = "name";
      } else if (this.state === "name") {
        // the name, its closing quote and the gap after it: then the call is certain
        const end = closingQuote(this.buf);
        if (end < 0 || this.buf.length < end + 1 + CALL_GAP.length) return out;
        if (this.buf.slice(end + 1, end + 1 + CALL_GAP.length) !== CALL_GAP) {
          this.buf = CALL_TRIGGER + this.buf; // not a call after all: its text is content
          this.text(out, this.buf.slice(0, CALL_TRIGGER.length));
          this.buf = this.buf.slice(CALL_TRIGGER.length);
          this.state = "text";
          continue;
        }
        this.blank = ""; // whitespace before a call is layout
        const call: ToolCall = { id: this.newId(), name: JSON.parse(`"${this.buf.slice(0, end)}"`) as string, arguments: "" };
        this.calls.push(call);
        out.push({ type: "call", index: this.calls.length - 1, id: call.id, name: call.name });
        this.buf = this.buf.slice(end + 1 + CALL_GAP.length);
        this.state = "args";
        this.depth = 0;
        this.inString = false;
        this.escaped = false;
      } else if (this.state === "args") {
        let i = 0;
        let done = false;
        for (; i < this.buf.length; i++) {
          const ch = this.buf[i]!;
          if (this.inString) {
            if (this.escaped) this.escaped = false;
            else if (ch === "\\") this.escaped = true;
            else if (ch === '"') this.inString = false;
          } else if (ch === '"') this.inString = true;
          else if (ch === "{" || ch === "[") this.depth++;
          else if (ch === "}" || ch === "]") {
            if (this.depth === 0) {
              done = true; // a scalar's end: the call's own brace
              break;
            }
            this.depth--;
            if (this.depth === 0) {
              i++;
              done = true;
              break;
            }
          }
        }
        const frag = this.buf.slice(0, i);
        if (frag) {
          this.calls.at(-1)!.arguments += frag;
          out.push({ type: "arguments", index: this.calls.length - 1, text: frag });
        }
        this.buf = this.buf.slice(i);
        if (!done) return out;
        this.state = "end";
      } else {
        if (!this.buf.length) return out;
        if (this.buf.startsWith(CALL_END)) this.buf = this.buf.slice(CALL_END.length);
        this.state = "text";
      }
    }
  }

  /** The end of the text: what was held back is content, unless it is layout (an unfinished call keeps its arguments). */
  finish(): ToolStreamEvent[] {
    const out: ToolStreamEvent[] = [];
    if (this.state === "text") this.text(out, this.buf);
    else if (this.state === "name") this.text(out, CALL_TRIGGER + this.buf); // cut before the call was certain
    if (!this.calls.length && this.blank) this.emit(out, this.blank);
    this.buf = "";
    this.blank = "";
    return out;
  }

  /** Content text: whitespace at its end is held (it may be the layout before a call, or after one). */
  private text(out: ToolStreamEvent[], text: string): void {
    const body = text.trimEnd();
    if (!body) {
      this.blank += text;
      return;
    }
    // held whitespace goes out with the text that follows it; content that starts after a call starts at its text
    const first = this.calls.length > 0 && !this.content;
    this.emit(out, first ? body.trimStart() : this.blank + body);
    this.blank = text.slice(body.length);
  }

  private emit(out: ToolStreamEvent[], text: string): void {
    if (!text) return;
    this.content += text;
    out.push({ type: "content", text });
  }
}

/** Length of the longest tail of `s` that is a proper prefix of `word`. */
function heldTail(s: string, word: string): number {
  for (let k = Math.min(word.length - 1, s.length); k > 0; k--) if (s.endsWith(word.slice(0, k))) return k;
  return 0;
}

/** Index of the first unescaped '"' in a JSON string's body, or -1. */
function closingQuote(s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\\") i++;
    else if (s[i] === '"') return i;
  }
  return -1;
}
