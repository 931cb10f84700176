/** A PNG's text needs a font file: pngFontNote says when none is found, so a bare GPU node's unlabelled PNGs are explained. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fontDirs, pngFontNote } from '../../src/core/plot/heatmap-render.js';

const work = mkdtempSync(join(tmpdir(), 'commvq-fonts-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('pngFontNote', () => {
  it('says the PNGs have no text when no folder holds a font file', () => {
    mkdirSync(join(work, 'empty/sub'), { recursive: true });
    writeFileSync(join(work, 'empty/sub/readme.txt'), 'not a font');
    expect(pngFontNote([join(work, 'empty'), join(work, 'missing')])).toMatch(/^no fonts on this machine: the PNG plots have no text \(the SVGs do\)/);
  });

  it('finds a font a few folders down', () => {
    mkdirSync(join(work, 'fonts/truetype/dejavu'), { recursive: true });
    writeFileSync(join(work, 'fonts/truetype/dejavu/DejaVuSans.ttf'), '');
    expect(pngFontNote([join(work, 'missing'), join(work, 'fonts')])).toBeUndefined();
  });

  it('looks in COMMVQ_FONT_DIR first', () => {
    process.env.COMMVQ_FONT_DIR = ['/a', '/b'].join(process.platform === 'win32' ? ';' : ':');
    try {
      expect(fontDirs().slice(0, 3)).toEqual(['/a', '/b', '/usr/share/fonts']);
    } finally {
      delete process.env.COMMVQ_FONT_DIR;
    }
  });
});
