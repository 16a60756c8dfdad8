"""Reading streamed provider bodies in bursts: the chunked decoder and the delta merge."""

import pytest

from common.providers import ContentDelta, Finish, ReasoningDelta
from common.providers.body import BodyFramingError, ChunkedDecoder
from common.providers.event_stream import merge_deltas

BODY = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"


def test_a_chunked_body_decodes_to_its_payload():
    decoder = ChunkedDecoder()
    assert decoder.feed(BODY) == b"hello, world"
    assert decoder.done


@pytest.mark.parametrize("cut", range(1, len(BODY)))
def test_a_chunked_body_split_anywhere_decodes_the_same(cut):
    decoder = ChunkedDecoder()
    assert decoder.feed(BODY[:cut]) + decoder.feed(BODY[cut:]) == b"hello, world"
    assert decoder.done


def test_a_chunked_body_fed_byte_by_byte_is_done_only_after_its_last_line():
    decoder = ChunkedDecoder()
    out = b""
    for index in range(len(BODY)):
        assert not decoder.done
        out += decoder.feed(BODY[index:index + 1])
    assert out == b"hello, world" and decoder.done


def test_trailer_fields_after_the_last_chunk_are_skipped():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n") == b"abc"
    assert decoder.done


def test_bare_lf_line_ends_are_accepted():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"3\nabc\n0\n\n") == b"abc" and decoder.done


@pytest.mark.parametrize("body", [b"zz\r\nabc\r\n", b"3\r\nabcXY0\r\n\r\n", b"-1\r\n"])
def test_broken_framing_is_a_framing_error(body):
    with pytest.raises(BodyFramingError):
        ChunkedDecoder().feed(body)


def test_an_endless_chunk_size_line_is_a_framing_error():
    with pytest.raises(BodyFramingError):
        ChunkedDecoder().feed(b"1" * 5000)


def test_adjacent_deltas_of_one_kind_merge_and_order_is_kept():
    events = [ReasoningDelta("a"), ReasoningDelta("b"), ContentDelta("c"), ContentDelta("d"), Finish("stop"),
              ContentDelta("e")]
    assert merge_deltas(events) == [ReasoningDelta("ab"), ContentDelta("cd"), Finish("stop"), ContentDelta("e")]
