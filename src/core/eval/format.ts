import { CommvqError } from '../errors.js';

/**
 * Python's `template.format(**fields)` for the prompt templates of §8: `{name}` is replaced by the field, `{{` and
 * `}}` are literal braces. Only the template is parsed, never the values (a book full of braces stays as it is).
 *
 *   pyFormat('Question: {input}\nAnswer:', { input: 'Who?' })  // 'Question: Who?\nAnswer:'
 */
export function pyFormat(template: string, fields: Record<string, unknown>): string {
  return template.replace(/\{\{|\}\}|\{([^{}]*)\}/g, (whole, name: string | undefined) => {
    if (whole === '{{') return '{';
    if (whole === '}}') return '}';
    if (name === undefined || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new CommvqError(`prompt template: unsupported replacement field '${whole}'`);
    }
    if (!(name in fields)) throw new CommvqError(`prompt template: the example has no field '${name}'`);
    return pyStr(fields[name]);
  });
}

/** `str(value)` for the JSON values an example can hold. */
export function pyStr(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'number' && Number.isInteger(value)) return String(value);
  throw new CommvqError(`prompt template: a field used in the template is not text (${JSON.stringify(value)?.slice(0, 40)})`);
}
