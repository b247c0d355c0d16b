// Build output with ANSI colours, rendered as text nodes in styled spans (never as HTML).

const SGR = /\x1b\[([0-9;]*)m/g;
// Other escape sequences (cursor moves, erase line) carry nothing for a log: drop them.
const OTHER_ESCAPES = /\x1b\[[0-9;?]*[A-Za-ln-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]/g;

export class AnsiState {
  constructor() {
    this.reset();
  }
  reset() {
    this.fg = null;
    this.bg = null;
    this.bold = false;
    this.dim = false;
    this.italic = false;
    this.underline = false;
  }
  apply(codes) {
    const list = codes === "" ? [0] : codes.split(";").map((c) => Number(c));
    for (let i = 0; i < list.length; i += 1) {
      const code = list[i];
      if (code === 0) this.reset();
      else if (code === 1) this.bold = true;
      else if (code === 2) this.dim = true;
      else if (code === 3) this.italic = true;
      else if (code === 4) this.underline = true;
      else if (code === 22) this.bold = this.dim = false;
      else if (code === 23) this.italic = false;
      else if (code === 24) this.underline = false;
      else if (code >= 30 && code <= 37) this.fg = code - 30;
      else if (code >= 90 && code <= 97) this.fg = code - 90 + 8;
      else if (code === 39) this.fg = null;
      else if (code >= 40 && code <= 47) this.bg = code - 40;
      else if (code >= 100 && code <= 107) this.bg = code - 100 + 8;
      else if (code === 49) this.bg = null;
      else if ((code === 38 || code === 48) && list[i + 1] === 5) {
        const colour = list[i + 2];
        if (colour < 16) {
          if (code === 38) this.fg = colour;
          else this.bg = colour;
        }
        i += 2;
      } else if ((code === 38 || code === 48) && list[i + 1] === 2) {
        i += 4; // 24-bit colours: not rendered
      }
    }
  }
  classes() {
    const names = [];
    if (this.fg !== null) names.push(`fg${this.fg}`);
    if (this.bg !== null) names.push(`bg${this.bg}`);
    if (this.bold) names.push("b");
    if (this.dim) names.push("d");
    if (this.italic) names.push("i");
    if (this.underline) names.push("u");
    return names.join(" ");
  }
}

/** Split `text` into [classes, text] pieces, carrying `state` across calls. */
export function pieces(text, state) {
  const out = [];
  let last = 0;
  const clean = text.replace(OTHER_ESCAPES, "");
  for (const match of clean.matchAll(SGR)) {
    if (match.index > last) out.push([state.classes(), clean.slice(last, match.index)]);
    state.apply(match[1]);
    last = match.index + match[0].length;
  }
  if (last < clean.length) out.push([state.classes(), clean.slice(last)]);
  return out;
}
