/**
 * User input quoted for an error answer or a log line, never much longer than
 * `max` characters: a 1 MiB name sent ten thousand times must not become ten
 * thousand 1 MiB log lines. A cut value ends with "…" and says how long it was.
 * JSON quoting escapes control characters, so nothing sent can forge a line.
 */
export const QUOTE_MAX = 64;

function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  // Never split a surrogate pair.
  const end = /[\uD800-\uDBFF]/.test(text[max - 1]!) ? max - 1 : max;
  return text.slice(0, end);
}

export function quote(value: unknown, max = QUOTE_MAX): string {
  if (typeof value === 'string') {
    return value.length <= max ? JSON.stringify(value) : `${JSON.stringify(cut(value, max))}… (${value.length} characters)`;
  }
  if (value === undefined) return 'nothing';
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  const kind = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
  if (value === null) return kind;
  return text.length <= max ? `${kind} ${text}` : `${kind} ${cut(text, max)}… (${text.length} characters)`;
}
