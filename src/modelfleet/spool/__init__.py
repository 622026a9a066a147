"""The payload spool: sampled request/response records on local disk, from the server to the drift exporter.

Layout, per model version: ``<spool_dir>/<model>/<version>/<seq>.jsonl`` where ``<seq>`` is a
20-digit, strictly increasing segment number. The newest segment is the one being appended; older
ones are complete. Each line is one JSON record (see :mod:`modelfleet.spool.record`); a line is
complete only once its ``\\n`` is written, so readers stop at a trailing partial line.
"""
