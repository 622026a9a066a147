"""The gRPC transport's header decoding (modelfleet.serve.grpcapi.h2.HeaderDecoder): with its cache of repeated
header blocks it must decode every block exactly as a plain ``hpack.Decoder`` fed the same blocks does, whatever
the encoder did to the dynamic table in between (insertions, evictions, size updates)."""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.serve.grpcapi.h2 import HeaderDecoder, frame, percent_encode

HEADER_SETS = [
    [(":method", "POST"), (":path", "/inference.GRPCInferenceService/ModelInfer"), ("content-type", "application/grpc"),
     ("te", "trailers")],
    [(":method", "POST"), (":path", "/inference.GRPCInferenceService/ModelReady"), ("grpc-timeout", "5S")],
    [(":method", "POST"), (":path", "/inference.GRPCInferenceService/ModelInfer"), ("x-big", "v" * 1500)],
    [(":method", "POST"), (":path", "/a"), ("x-big", "w" * 1500), ("x-other", "1")],
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(range(len(HEADER_SETS))), st.booleans(),
                          st.sampled_from([None, 0, 256, 4096])), min_size=1, max_size=30))
def test_cached_decoding_equals_plain_decoding(steps: list[tuple[int, bool, int | None]]) -> None:
    encoder, plain, cached = hpack.Encoder(), hpack.Decoder(), HeaderDecoder()
    for which, huffman, table_size in steps:
        if table_size is not None:
            encoder.header_table_size = table_size
        block = encoder.encode(HEADER_SETS[which], huffman=huffman)
        expected = [(str(n), str(v)) for n, v in plain.decode(block)]
        assert cached.decode(block) == expected == [(n, str(v)) for n, v in HEADER_SETS[which]]


def test_a_repeated_block_is_served_from_the_cache() -> None:
    encoder, cached = hpack.Encoder(), HeaderDecoder()
    cached.decode(encoder.encode(HEADER_SETS[0]))  # the first block indexes the fields
    again = encoder.encode(HEADER_SETS[0])  # all indexed now: the same bytes every time
    assert again == encoder.encode(HEADER_SETS[0])
    first = cached.decode(again)
    assert cached.decode(again) is first


def test_frame_and_grpc_message_encoding() -> None:
    assert frame(4, 1, 0) == bytes.fromhex("000000040100000000")
    assert frame(0, 1, 3, b"ab") == bytes.fromhex("000002000100000003") + b"ab"
    assert percent_encode("input 'x': 100% wrong ✓") == b"input 'x': 100%25 wrong %E2%9C%93"
