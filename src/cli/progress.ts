import cliProgress from 'cli-progress';

/**
 * A progress bar with ETA on stderr, shown only on a terminal (and never with --json), so piped and JSON output
 * stays clean. The core reports progress through callbacks; commands turn them into bars here.
 *
 *   const bar = progressBar('loading weights', quiet); bar.update(3, 10); bar.stop();
 */
export interface ProgressBar {
  /** `detail` is shown after the ETA, e.g. `1234 tokens/s` */
  update(done: number, total: number, detail?: string): void;
  stop(): void;
}

export function progressBar(label: string, quiet: boolean): ProgressBar {
  if (quiet || !process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {value}/{total} {percentage}% | ETA {eta_formatted} {detail}`, stream: process.stderr, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total, detail = '') {
      if (!started) {
        bar.start(total, done, { detail });
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(done, { detail });
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
