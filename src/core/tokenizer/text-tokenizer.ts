import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { CommvqError } from '../errors.js';
import { readTextFile } from '../io/read-text.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * A model folder's tokenizer: `tokenizer.json` + `tokenizer_config.json` through tokenizers.js, and the chat
 * template (from `tokenizer_config.json` or `chat_template.jinja`) through @huggingface/jinja.
 *
 *   const tok = TextTokenizer.fromFolder('Llama-3.1-8B-Instruct');
 *   const ids = tok.encode(tok.applyChatTemplate([{ role: 'user', content: 'hi' }]), { addSpecialTokens: false });
 */
export class TextTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly config: Record<string, unknown>,
    private readonly chatTemplate: string | undefined,
    readonly source: string,
  ) {}

  static fromFolder(dir: string): TextTokenizer {
    const tokenizerJson = readJson(join(dir, 'tokenizer.json'));
    const configPath = join(dir, 'tokenizer_config.json');
    const config = existsSync(configPath) ? readJson(configPath) : {};
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(tokenizerJson, config);
    } catch (err) {
      throw new CommvqError(`${join(dir, 'tokenizer.json')}: cannot build the tokenizer: ${(err as Error).message}`);
    }
    return new TextTokenizer(tokenizer, config, readChatTemplate(dir, config), dir);
  }

  /** Token ids of `text`; special tokens (BOS, ...) are added as the tokenizer's post-processor says, by default. */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? true });
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** The id of tokenizer_config.json's `eos_token` (Llama-3-Instruct: `<|eot_id|>`), if it names one. */
  get eosTokenId(): number | undefined {
    const eos = this.special('eos_token');
    return eos === undefined ? undefined : this.tokenId(eos);
  }

  private special(key: string): string | undefined {
    return specialToken(this.config, key);
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== undefined;
  }

  /** Renders messages with the model's chat template, ending with the assistant's turn opened. */
  applyChatTemplate(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    if (!this.chatTemplate) throw new CommvqError(`${this.source}: the tokenizer has no chat template (tokenizer_config.json chat_template or chat_template.jinja)`);
    const special = (key: string) => this.special(key);
    try {
      return new Template(this.chatTemplate).render({
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: special('bos_token') ?? '',
        eos_token: special('eos_token') ?? '',
      });
    } catch (err) {
      throw new CommvqError(`${this.source}: the chat template failed to render: ${(err as Error).message}`);
    }
  }
}

/** A special token's text from tokenizer_config.json (a string, or an AddedToken object with `content`). */
function specialToken(config: Record<string, unknown>, key: string): string | undefined {
  const v = config[key];
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && 'content' in v) return String((v as { content: unknown }).content);
  return undefined;
}

function readChatTemplate(dir: string, config: Record<string, unknown>): string | undefined {
  const file = join(dir, 'chat_template.jinja');
  if (existsSync(file)) return readFileSync(file, 'utf8');
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    // a list of named templates: take 'default'
    const named = (t as { name?: string; template?: string }[]).find((x) => x.name === 'default') ?? t[0];
    return named?.template;
  }
  return undefined;
}

export function readJson(path: string): Record<string, unknown> {
  const text = readTextFile(path);
  try {
    const json = JSON.parse(text) as unknown;
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('not an object');
    return json as Record<string, unknown>;
  } catch {
    throw new CommvqError(`${path}: not a valid JSON object`);
  }
}
