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


# -- the whole path (requests, BurstReader, SSE decoding) against a raw HTTP/1.1 server -----------

SSE_BODY = (
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n'
    b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.fixture
def raw_server():
    """A one-answer-per-connection HTTP server whose reply head (framing) each test chooses."""
    import gevent
    from gevent.server import StreamServer

    state = {"head": b"", "body": SSE_BODY, "cut": 0}

    def handle(sock, _address):
        request = b""
        while b"\r\n\r\n" not in request:
            request += sock.recv(65536)
        head, _, rest = request.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            rest += sock.recv(65536)
        body = state["body"][: len(state["body"]) - state["cut"]]
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + state["head"] + b"\r\n")
        for start in range(0, len(body), 40):  # in pieces, as a provider streams
            sock.sendall(body[start:start + 40])
            gevent.sleep(0.005)
        sock.close()

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    state["url"] = f"http://127.0.0.1:{server.server_port}/v1"
    yield state
    server.stop()


def _answer(raw_server, batch_interval: float = 0.0):
    from common.providers import ChatRequest, ProviderConfig, ProviderError, get_adapter
    from tests.fake_provider.pytest_support import http_session

    adapter = get_adapter(ProviderConfig(provider="openai", base_url=raw_server["url"], api_key="sk-raw-0001"))
    stream = adapter.stream_chat(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]),
                                 http=http_session(), idle_timeout=2, first_byte_timeout=2,
                                 batch_interval=batch_interval)
    events, error = [], None
    try:
        events.extend(stream)
    except ProviderError as exc:
        error = exc
    return "".join(e.text for e in events if isinstance(e, ContentDelta)), events, error


def test_a_body_with_a_content_length_is_read_to_its_end(raw_server):
    raw_server["head"] = f"Content-Length: {len(SSE_BODY)}\r\n".encode()
    content, events, error = _answer(raw_server, batch_interval=0.02)
    assert error is None and content == "Hello" and type(events[-1]).__name__ == "EndOfStream"


def test_a_body_delimited_by_the_connection_closing_is_read_to_its_end(raw_server):
    raw_server["head"] = b"Connection: close\r\n"
    content, _events, error = _answer(raw_server)
    assert error is None and content == "Hello"


def test_a_body_shorter_than_its_content_length_is_a_truncation(raw_server):
    raw_server["head"] = f"Content-Length: {len(SSE_BODY)}\r\n".encode()
    raw_server["cut"] = len(b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
    content, _events, error = _answer(raw_server)
    assert content == "Hello" and error is not None and error.code == "upstream_truncated"


def test_a_chunked_body_cut_before_its_last_chunk_is_a_truncation(raw_server):
    events = [part + b"\n\n" for part in SSE_BODY.split(b"\n\n")[:2]]  # the two content events only
    raw_server["head"] = b"Transfer-Encoding: chunked\r\n"
    raw_server["body"] = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events)  # no 0-size chunk
    content, _events, error = _answer(raw_server)
    assert content == "Hello"  # what arrived is kept
    assert error is not None and error.code == "upstream_truncated"
