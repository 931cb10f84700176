/**
 * The default NIAH haystack: essay-like filler text made by code from a seeded grammar, so the project ships no
 * third-party text (the reference used Paul Graham's essays). Sentences are plain declaratives ending in periods,
 * grouped in paragraphs; the word lists avoid every word of the needle's key phrase (San Francisco, sandwich,
 * Dolores Park, sunny) so the only source of the answer is the needle.
 *
 * The text is one deterministic stream per seed: a longer request extends a shorter one, paragraph by paragraph.
 *
 *   fillerText(1, 2000)  // ~2000 characters, identical on every machine
 */
import { SeededRandom } from '../../model/seeded-random.js';

export const NIAH_FILLER_SEED = 1;

const SUBJECTS = [
  'The committee',
  'A small team',
  'Most founders',
  'The old library',
  'Every careful reader',
  'Our neighbour',
  'The river town',
  'A patient gardener',
  'The research group',
  'Many engineers',
  'The village council',
  'A good teacher',
  'The city museum',
  'Young students',
  'The night train',
  'An honest critic',
  'The harbour master',
  'A quiet programmer',
  'The weekly paper',
  'Some early investors',
  'The mountain school',
  'A travelling painter',
  'The local bakery',
  'Her younger brother',
];

const PRONOUNS = ['they', 'we', 'she', 'he', 'the others', 'most people', 'nobody', 'everyone'];

const VERBS = [
  'noticed',
  'described',
  'questioned',
  'rebuilt',
  'measured',
  'ignored',
  'studied',
  'praised',
  'planned',
  'revised',
  'copied',
  'explained',
  'repaired',
  'compared',
  'postponed',
  'defended',
  'sketched',
  'counted',
  'borrowed',
  'tested',
  'organised',
  'simplified',
  'recorded',
  'collected',
];

const OBJECTS = [
  'the quiet harbour',
  'a long letter',
  'the winter schedule',
  'an unusual habit',
  'the plans for the bridge',
  'a stack of old maps',
  'the first draft',
  'a simple rule',
  'the broken clock',
  'the price of wool',
  'a list of questions',
  'the garden wall',
  'an early prototype',
  'the annual report',
  'a borrowed bicycle',
  'the coastal road',
  'a forgotten notebook',
  'the second chapter',
  'an old argument',
  'the evening lectures',
  'a wooden boat',
  'the main square',
  'a set of tools',
  'the last exam',
];

const ADVERBIALS = [
  'after the long meeting',
  'without much fuss',
  'in the early morning',
  'for several weeks',
  'despite the rain',
  'before anyone else',
  'with great care',
  'at the end of the year',
  'during the holidays',
  'in a hurry',
  'for the third time',
  'on a cold afternoon',
  'with some reluctance',
  'over the summer',
  'near the old mill',
  'by the light of a lamp',
];

const CONNECTORS = ['However,', 'Later,', 'In the end,', 'At first,', 'Meanwhile,', 'For a while,', 'Oddly enough,', 'As usual,', 'Even so,', 'Years later,'];

const ADJECTIVES = ['strange', 'obvious', 'surprising', 'useful', 'clear', 'fortunate', 'odd', 'worth noting'];

function pick<T>(rng: SeededRandom, list: readonly T[]): T {
  return list[Math.floor(rng.uniform() * list.length)];
}

function lowerFirst(s: string): string {
  return s[0].toLowerCase() + s.slice(1);
}

function sentence(rng: SeededRandom): string {
  switch (Math.floor(rng.uniform() * 4)) {
    case 0:
      return `${pick(rng, SUBJECTS)} ${pick(rng, VERBS)} ${pick(rng, OBJECTS)} ${pick(rng, ADVERBIALS)}.`;
    case 1:
      return `${pick(rng, CONNECTORS)} ${pick(rng, PRONOUNS)} ${pick(rng, VERBS)} ${pick(rng, OBJECTS)}.`;
    case 2:
      return `${pick(rng, SUBJECTS)} ${pick(rng, VERBS)} ${pick(rng, OBJECTS)}, and ${lowerFirst(pick(rng, SUBJECTS))} ${pick(rng, VERBS)} ${pick(rng, OBJECTS)}.`;
    default:
      return `It was ${pick(rng, ADJECTIVES)} that ${lowerFirst(pick(rng, SUBJECTS))} ${pick(rng, VERBS)} ${pick(rng, OBJECTS)} ${pick(rng, ADVERBIALS)}.`;
  }
}

function paragraph(rng: SeededRandom): string {
  const n = 4 + Math.floor(rng.uniform() * 4);
  return Array.from({ length: n }, () => sentence(rng)).join(' ');
}

/** At least `minChars` characters of filler (whole paragraphs, separated by blank lines), from `seed`. */
export function fillerText(seed: number, minChars: number): string {
  const rng = new SeededRandom(seed);
  const parts: string[] = [];
  let length = 0;
  while (length < minChars) {
    const p = paragraph(rng);
    parts.push(p);
    length += p.length + 2;
  }
  return parts.join('\n\n') + '\n\n';
}
