/**
 * oclif's own flag and argument errors (a missing required flag, a missing argument, a value outside `options`) as
 * one line: their lines joined, without the "The following error occurred:" header and the "See more help" footer.
 *
 *   parseErrorLine('Parsing --seq-len \n\tExpected an integer greater than or equal to 1 but received: 0\nSee more help with --help')
 *   // 'Parsing --seq-len: Expected an integer greater than or equal to 1 but received: 0'
 *   parseErrorLine('Missing 1 required arg:\nrunDir  run folder written by collect-kv\nSee more help with --help')
 *   // 'Missing 1 required arg: runDir run folder written by collect-kv'
 */
const NOISE = [/^The following errors? occurred:?$/, /^See more help with --help$/];

export function parseErrorLine(message: string): string {
  const lines = message
    .split('\n')
    .map((l) => l.trim().replace(/\s{2,}/g, ' '))
    .filter((l) => l !== '' && !NOISE.some((n) => n.test(l)));
  let out = '';
  for (const line of lines) {
    if (out === '') out = line;
    else if (out.endsWith(':')) out += ` ${line}`;
    else if (/^Parsing --\S+$/.test(out)) out += `: ${line}`;
    else out += `; ${line}`;
  }
  return out || message.trim();
}
