/** Chat templates render through @huggingface/jinja and feed generation without a second BOS. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeDemoModel } from '../../src/core/model/demo-model.js';
import { TextTokenizer } from '../../src/core/tokenizer/text-tokenizer.js';
import { runCli } from '../helpers/cli.js';

// Llama 3's template, shortened to what single-turn chat uses
const LLAMA3_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}" +
  '{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}';

const dir = mkdtempSync(join(tmpdir(), 'commvq-chat-'));
writeDemoModel(dir);
writeFileSync(join(dir, 'chat_template.jinja'), LLAMA3_TEMPLATE);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('chat templates', () => {
  it('renders messages with the bos token and the generation prompt', () => {
    const tok = TextTokenizer.fromFolder(dir);
    expect(tok.applyChatTemplate([{ role: 'user', content: ' hi ' }])).toBe(
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
  });

  it('generate --chat encodes the rendered template once, with exactly one BOS', () => {
    const r = runCli(['generate', '--model', dir, '--chat', '--prompt', 'hi', '--max-new-tokens', '2', '--device', 'cpu', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const ids = (JSON.parse(r.stdout) as { prompt_ids: number[] }).prompt_ids;
    expect(ids.filter((id) => id === 256)).toEqual([256]); // <|begin_of_text|> is id 256 in the demo vocabulary
    expect(ids[0]).toBe(256);
  });
});
