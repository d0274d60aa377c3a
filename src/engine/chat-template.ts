// Chat messages -> prompt token ids. Renders the file's `tokenizer.chat_template` with @huggingface/jinja
// (the built-in Gemma template when the file has none), merges system messages into the first user turn
// (llama.cpp's policy: a blank line between them), and keeps user content apart from template text so that
// special-token text typed by a user is never read as a control token. Exactly one BOS.
import { Template } from "@huggingface/jinja";
import type { Tokenizer } from "./tokenizer.ts";

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "model";
  content: string;
}

/** The official Gemma template (tokenizer_config.json of google/gemma-2b-it). */
export const GEMMA_CHAT_TEMPLATE =
  "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" +
  "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}" +
  "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

/** A request whose messages the template cannot render (the API answers 422). */
export class ChatTemplateError extends Error {
  override name = "ChatTemplateError";
}

export interface ChatTemplateOptions {
  /** "merge" (default): system text goes in front of the first user message, separated by a blank line.
   *  "reject": a system message is an error, as in Google's template. */
  systemPolicy?: "merge" | "reject";
  addGenerationPrompt?: boolean;
}

export class ChatTemplate {
  private readonly template: Template;
  private readonly tok: Tokenizer;
  readonly source: string;
  constructor(tok: Tokenizer, source: string= GEMMA_CHAT_TEMPLATE) {
    this.tok = tok;
    this.source = source;
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new ChatTemplateError(`the model's chat template does not parse: ${(e as Error).message}`);
    }
  }

  /** Apply the system policy and check turn order (user first, then strictly alternating). */
  normalize(messages: ChatMessage[], opts: ChatTemplateOptions = {}): ChatMessage[] {
    if (!messages.length) throw new ChatTemplateError("messages must contain at least one message");
    const system: string[] = [];
    const turns: ChatMessage[] = [];
    for (const [i, m] of messages.entries()) {
      if (m.role === "system") {
        if ((opts.systemPolicy ?? "merge") === "reject") {
          throw new ChatTemplateError(`messages[${i}]: the system role is not supported by this model's template`);
        }
        if (turns.length) throw new ChatTemplateError(`messages[${i}]: a system message must come before the conversation`);
        system.push(m.content);
        continue;
      }
      const role = m.role === "model" ? "assistant" : m.role;
      const expected = turns.length % 2 === 0 ? "user" : "assistant";
      if (role !== expected) {
        throw new ChatTemplateError(
          `messages[${i}]: roles must alternate user/assistant starting with user; expected "${expected}", got "${m.role}"`,
        );
      }
      turns.push({ role, content: m.content });
    }
    if (!turns.length) throw new ChatTemplateError("messages must contain a user message");
    if (system.length) turns[0] = { role: "user", content: `${system.join("\n\n")}\n\n${turns[0]!.content}` };
    return turns;
  }

  /** Render to text (for display and debugging). */
  render(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string {
    const turns = this.normalize(messages, opts);
    try {
      return this.template.render({
        messages: turns,
        bos_token: this.tok.tokens[this.tok.bosId] ?? "",
        eos_token: this.tok.tokens[this.tok.eosId] ?? "",
        add_generation_prompt: opts.addGenerationPrompt ?? true,
      });
    } catch (e) {
      throw new ChatTemplateError(`chat template error: ${(e as Error).message}`);
    }
  }

  /**
   * Render and tokenize: template text may hold special tokens, message content may not. The template is rendered
   * once with a marker in place of each message's content, so that where each content goes is known from the
   * template itself, never found by searching the text (content that repeats the template's own markup would be
   * found in the wrong place). The marker is padded with whitespace to see whether the template trims it.
   */
  encode(messages: ChatMessage[], opts: ChatTemplateOptions = {}): number[] {
    const turns = this.normalize(messages, opts);
    const mark = (i: number) => `\uE000${i}\uE001`;
    const pad = "\n ";
    const text = this.render(turns.map((m, i) => ({ ...m, content: `${pad}${mark(i)}${[...pad].reverse().join("")}` })), { ...opts, systemPolicy: "merge" });
    const segments: { text: string; parseSpecial: boolean }[] = [];
    let pos = 0;
    for (const [i, m] of turns.entries()) {
      const at = text.indexOf(mark(i));
      // each content once, in order, as it is or trimmed: content that a template drops, repeats, reorders or
      // transforms could not be told apart from the template's own text
      if (at < pos || text.indexOf(mark(i), at + 1) >= 0) {
        throw new ChatTemplateError(`the chat template does not render messages' content once each and in order (turn ${i}); such templates are not supported`);
      }
      const end = at + mark(i).length;
      const keptLeft = text.slice(at - pad.length, at) === pad;
      const keptRight = text.slice(end, end + pad.length) === [...pad].reverse().join("");
      let c = keptLeft ? m.content : m.content.trimStart();
      c = keptRight ? c : c.trimEnd();
      segments.push({ text: text.slice(pos, keptLeft ? at - pad.length : at), parseSpecial: true }, { text: c, parseSpecial: false });
      pos = keptRight ? end + pad.length : end;
    }
    segments.push({ text: text.slice(pos), parseSpecial: true });
    const ids = this.tok.encodeSegments(segments);
    // Exactly one BOS: add it when the template did not, never twice.
    if (ids[0] !== this.tok.bosId && this.tok.addBos) ids.unshift(this.tok.bosId);
    while (ids.length > 1 && ids[0] === this.tok.bosId && ids[1] === this.tok.bosId) ids.shift();
    return ids;
  }
}
