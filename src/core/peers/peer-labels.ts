/**
 * The one name of each peer cache, as results, the measure-memory report and its plots record it: KIVI by bits, group
 * and residual; intN by group, and by residual where it is not HF's; fp8 alone.
 *
 *   kiviLabel(2, 32, 128)        // 'kivi-2bit-g32-r128'
 *   intLabel('int4', 64, 128)    // 'int4-g64'
 *   intLabel('int2', 32, 64)     // 'int2-g32-r64'
 */
import { INT_DEFAULTS } from '../cache-spec.js';

export function kiviLabel(bits: number, group: number, residual: number): string {
  return `kivi-${bits}bit-g${group}-r${residual}`;
}

export function intLabel(kind: 'int4' | 'int2', group: number, residual: number): string {
  return `${kind}-g${group}${residual === INT_DEFAULTS.residual ? '' : `-r${residual}`}`;
}
