"""The peer: pyarrow + Python's json on one core.
  to_parquet IN.jsonl OUT.parquet  -- JSONL -> Parquet (pyarrow.json reader, snappy, 65536-row groups)
  to_jsonl   IN.parquet OUT.jsonl  -- Parquet -> JSONL, a row group at a time, json.dumps per record
"""
import json
import sys

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

pa.set_cpu_count(1)
pa.set_io_thread_count(1)
mode, src, dst = sys.argv[1:4]
if mode == "to_parquet":
    table = pj.read_json(src, read_options=pj.ReadOptions(use_threads=False))
    pq.write_table(table, dst, compression="snappy", row_group_size=65536, use_dictionary=True)
else:
    pf = pq.ParquetFile(dst if False else src)
    with open(dst, "w", encoding="utf-8") as f:
        for batch in pf.iter_batches(batch_size=65536, use_threads=False):
            for rec in batch.to_pylist():
                f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
                f.write("\n")
