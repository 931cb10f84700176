/**
 * Prints the benchmark table from the two sides' JSON files.
 *
 *   node dist/bench/llama-report-cli.js ours.json torch.json
 */
import { readFileSync } from 'node:fs';
import { llamaReport, type OurResult, type TorchResult } from './llama-report.js';

const [oursPath, torchPath] = process.argv.slice(2);
if (!oursPath || !torchPath) {
  console.error('usage: node dist/bench/llama-report-cli.js OURS.json TORCH.json');
  process.exit(2);
}
const read = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;
console.log(llamaReport(read<OurResult>(oursPath), read<TorchResult>(torchPath)));
