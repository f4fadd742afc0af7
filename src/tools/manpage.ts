// knockd-fast(8) in roff, made from the text `knockd-fast --help` prints (src/cli.ts MANUAL), so the man
// page and --help cannot disagree. `npm run release` writes it into the package (package.json "man").
// MANUAL's layout: section names at column 0, text indented by 4, an option's description by 8.

/** Sections printed as they are laid out (one command or item per line). */
const VERBATIM = new Set(['SYNOPSIS', 'SIGNALS', 'EXIT STATUS', 'FILES', 'SEE ALSO']);

/** roff text: backslashes and hyphens escaped, and no line that roff would read as a request. */
const escape = (text: string): string => text.replace(/\\/g, '\\e').replace(/-/g, '\\-').replace(/^([.'])/, '\\&$1');

export function manualToRoff(manual: string, version: string): string {
  const lines = manual.replace(/\n+$/, '').split('\n');
  const title = /^([A-Z-]+)\((\d)\)$/.exec(lines[0]);
  if (!title) throw new Error(`the manual's first line is not NAME(SECTION): ${lines[0]}`);
  const out = [`.TH ${title[1]} ${title[2]} "" "knockd-fast ${version}" "System Administration"`];
  let section = '';
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    if (!line.startsWith(' ')) {
      if (VERBATIM.has(section)) out.push('.fi');
      section = line;
      out.push(`.SH ${escape(section)}`);
      if (VERBATIM.has(section)) out.push('.nf');
      continue;
    }
    const text = line.trim();
    if (VERBATIM.has(section)) out.push(escape(line.slice(4)));
    else if (line.startsWith('        ')) out.push(escape(text));
    else if (lines[i + 1]?.startsWith('        ')) out.push('.TP', `.B ${escape(text)}`);
    else {
      // a paragraph starts after a blank line, a heading or an option's description; its lines flow
      const previous = lines[i - 1];
      if (!previous.startsWith('    ') || previous.startsWith('        ')) out.push('.PP');
      out.push(escape(text));
    }
  }
  if (VERBATIM.has(section)) out.push('.fi');
  return `${out.join('\n')}\n`;
}
