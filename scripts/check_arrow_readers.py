"""Reads every Arrow output of a run folder with pyarrow and polars, and prints what each holds.

Stage outputs are Arrow IPC: files (`*.arrow`: scales, codebooks) and streams (`kv/*.arrows`: collected keys and
values). Exits 1 if either library fails on one of them.

    python3 scripts/check_arrow_readers.py runs/pipeline-2026-11-23
"""
import glob
import os
import sys

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc


def read_both(path: str) -> tuple[pa.Table, pl.DataFrame]:
    with open(path, "rb") as f:
        is_file = f.read(6) == b"ARROW1"  # IPC files start with this magic; streams do not
    if is_file:
        return ipc.open_file(path).read_all(), pl.read_ipc(path)
    return ipc.open_stream(path).read_all(), pl.read_ipc_stream(path)


def main(run_dir: str) -> int:
    paths = sorted(glob.glob(os.path.join(run_dir, "**", "*.arrow*"), recursive=True))
    if not paths:
        print(f"{run_dir}: no Arrow files", file=sys.stderr)
        return 1
    failed = 0
    for path in paths:
        try:
            table, frame = read_both(path)
        except Exception as err:  # report every file, then fail
            print(f"FAIL {path}: {err}")
            failed += 1
            continue
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        kind = meta.get("commvq.format", "?")
        print(f"ok   {os.path.relpath(path, run_dir)}: {kind}, {table.num_rows} rows, columns {table.column_names}, polars {frame.shape}")
    print(f"pyarrow {pa.__version__}, polars {pl.__version__}: {len(paths) - failed} of {len(paths)} files read")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
