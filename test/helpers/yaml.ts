/**
 * A parser for the YAML the examples' configuration files use, for tests that check their
 * structure without a YAML dependency: block mappings and sequences (a sequence may sit at its
 * key's indentation), comments on lines of their own, plain, single- and double-quoted scalars,
 * `|` and `>` block scalars (with `-` chomping), and one-line flow collections (`[]`, `[a, b]`,
 * `{ a: b }`). Anything else throws, so a file that outgrows it fails loudly.
 */

export type Yaml = string | Yaml[] | { [key: string]: Yaml };

interface Line {
  readonly indent: number;
  readonly text: string;
  readonly number: number;
}

export function parseYaml(source: string): Yaml {
  const lines: Line[] = [];
  source.split('\n').forEach((raw, i) => {
    const text = raw.replace(/\s+$/, '');
    if (text.trim() === '' || text.trim().startsWith('#')) return;
    if (/^\s*\t/.test(text)) throw new Error(`line ${i + 1}: tab indentation`);
    lines.push({ indent: text.length - text.trimStart().length, text: text.trim(), number: i + 1 });
  });
  const rawLines = source.split('\n');
  let at = 0;

  function fail(line: Line | undefined, why: string): never {
    throw new Error(`line ${line?.number ?? 'end'}: ${why}`);
  }

  function block(indent: number): Yaml {
    const first = lines[at];
    if (first === undefined || first.indent < indent) fail(first, 'expected a value');
    return first.text.startsWith('- ') || first.text === '-'
      ? sequence(first.indent)
      : mapping(first.indent);
  }

  function sequence(indent: number): Yaml[] {
    const out: Yaml[] = [];
    for (let line = lines[at]; line !== undefined && line.indent === indent; line = lines[at]) {
      if (!(line.text.startsWith('- ') || line.text === '-')) break;
      const rest = line.text === '-' ? '' : line.text.slice(2);
      if (rest === '') {
        at++;
        out.push(block(indent + 1));
      } else if (isKeyValue(rest)) {
        // `- key: value` opens a mapping whose other keys sit under `key`.
        const inner = indent + 2 + (rest.length - rest.trimStart().length);
        lines[at] = { indent: inner, text: rest.trim(), number: line.number };
        out.push(mapping(inner));
      } else {
        at++;
        out.push(scalar(rest, line));
      }
    }
    return out;
  }

  function mapping(indent: number): { [key: string]: Yaml } {
    const out: { [key: string]: Yaml } = {};
    for (let line = lines[at]; line !== undefined && line.indent === indent; line = lines[at]) {
      if (line.text.startsWith('- ')) break;
      const m = /^([^:'"{}[\]]+?|"[^"]*"|'[^']*'):(?: (.*))?$/.exec(line.text);
      if (m === null) fail(line, `expected "key: value", found ${line.text}`);
      const key = unquote(m[1] as string);
      if (Object.hasOwn(out, key)) fail(line, `duplicate key ${key}`);
      const value = (m[2] ?? '').trim();
      at++;
      if (value === '') {
        const next = lines[at];
        const nested =
          next !== undefined &&
          (next.indent > indent || (next.indent === indent && next.text.startsWith('- ')));
        out[key] = nested ? block(next.indent) : '';
      } else if (/^[|>][-+]?$/.test(value)) {
        out[key] = blockScalar(value, indent, line);
      } else {
        out[key] = scalar(value, line);
      }
    }
    return out;
  }

  function blockScalar(header: string, indent: number, line: Line): string {
    const body: string[] = [];
    let inner = -1;
    // Every raw line after the header that is blank or indented deeper.
    let i = line.number;
    for (; i < rawLines.length; i++) {
      const raw = rawLines[i] as string;
      if (raw.trim() === '') {
        body.push('');
        continue;
      }
      const depth = raw.length - raw.trimStart().length;
      if (depth <= indent) break;
      if (inner === -1) inner = depth;
      body.push(raw.slice(inner).replace(/\s+$/, ''));
    }
    while (lines[at] !== undefined && (lines[at] as Line).number <= i) at++;
    while (body.length > 0 && body[body.length - 1] === '') body.pop();
    const text = header.startsWith('|')
      ? body.join('\n')
      : body.reduce((acc, l) => (acc === '' ? l : l === '' ? `${acc}\n` : `${acc} ${l}`), '');
    return header.endsWith('-') ? text : `${text}\n`;
  }

  const result = block(0);
  if (at < lines.length) fail(lines[at], 'unexpected indentation');
  return result;
}

function isKeyValue(text: string): boolean {
  return /^([^:'"{}[\]]+?|"[^"]*"|'[^']*'):(?: |$)/.test(text.trim());
}

function scalar(text: string, line: Line): Yaml {
  if (text.startsWith('[') || text.startsWith('{')) return flow(text, line);
  if (text.startsWith('"') || text.startsWith("'")) {
    const value = unquote(text);
    return value;
  }
  if (text.includes(' #')) throw new Error(`line ${line.number}: comments after values`);
  return text;
}

function unquote(text: string): string {
  if (text.startsWith('"')) {
    if (!text.endsWith('"') || text.length < 2) throw new Error(`unterminated string ${text}`);
    return JSON.parse(text) as string;
  }
  if (text.startsWith("'")) {
    if (!text.endsWith("'") || text.length < 2) throw new Error(`unterminated string ${text}`);
    return text.slice(1, -1).replaceAll("''", "'");
  }
  return text.trim();
}

function flow(text: string, line: Line): Yaml {
  const open = text[0];
  const close = open === '[' ? ']' : '}';
  if (!text.endsWith(close)) throw new Error(`line ${line.number}: unterminated ${open}`);
  const inner = text.slice(1, -1).trim();
  const items = splitFlow(inner);
  if (open === '[') return items.map((item) => scalar(item, line));
  const out: { [key: string]: Yaml } = {};
  for (const item of items) {
    const m = /^([^:]+):\s*(.*)$/.exec(item);
    if (m === null) throw new Error(`line ${line.number}: expected key: value in ${text}`);
    out[unquote(m[1] as string)] = scalar((m[2] as string).trim(), line);
  }
  return out;
}

/** Splits on the commas of the outer level of a flow collection. */
function splitFlow(text: string): string[] {
  if (text === '') return [];
  const out: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote !== null) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 0) {
      out.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(text.slice(start).trim());
  return out;
}
