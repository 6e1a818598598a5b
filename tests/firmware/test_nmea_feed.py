"""The reader's byte handling as a property: whatever bytes a UART delivers (sentences of the
six receiver profiles' kinds, cut lines, binary runs, bare '$', overlong lines, lone CR or LF)
and however they are split into reads, the reader gives the same fixes and the same counters
as the plain byte-at-a-time reader below, which states the rules one byte at a time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import nmea

CPYTHON_ONLY = "hypothesis draws the streams; test_nmea.py runs the reader under micropython"


class ByteReader(nmea.Reader):
    """The rules one byte at a time: CR or LF ends a line, '$' starts one whatever came
    before it (a cut sentence or noise is counted), a line longer than MAX_LINE is dropped up
    to its end or the next '$'."""

    def feed(self, data: bytes) -> None:
        buf = self.buf
        for c in data:
            if c == 10 or c == 13:
                if self.skipping:
                    self.skipping = False
                elif buf:
                    self._line(bytes(buf))
                buf[:] = b""
                continue
            if c == 36:
                if self.skipping:
                    self.skipping = False
                elif buf:
                    if buf[0] == 36:
                        self.partial += 1
                    else:
                        self.garbage += 1
                    buf[:] = b""
            elif self.skipping:
                continue
            if len(buf) >= nmea.MAX_LINE:
                self.overlong += 1
                self.skipping = True
                buf[:] = b""
                continue
            buf.append(c)


BODIES = (
    "GPRMC,123519.00,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W",
    "GPGGA,123519.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
    "GNGGA,123520.00,4807.040,N,01131.002,E,1,08,0.9,545.4,M,46.9,M,,",
    "GNRMC,123520.00,A,4807.040,N,01131.002,E,001.0,010.0,230394,,,A",
    "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1",
    "GPZDA,123521.00,23,03,1994,00,00",
    "GNGNS,123521.00,4807.041,N,01131.003,E,AN,10,0.8,545.0,46.9,,",
    "GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00",
    "GPGGA,,,,,,0,00,99.99,,,,,,",
)


def _piece(kind: str, draw: st.DrawFn) -> bytes:
    if kind == "sentence":
        return nmea.sentence(draw(st.sampled_from(BODIES)))
    if kind == "cut":
        line = nmea.sentence(draw(st.sampled_from(BODIES)))
        return line[: draw(st.integers(0, len(line)))]
    if kind == "bad checksum":
        line = nmea.sentence(draw(st.sampled_from(BODIES)))
        return line[:-4] + b"ZZ\r\n"
    if kind == "overlong":
        return b"$GPTXT," + b"9" * draw(st.integers(nmea.MAX_LINE - 10, nmea.MAX_LINE + 10))
    if kind == "binary":
        return draw(st.binary(max_size=40))
    return draw(st.sampled_from([b"$", b"\r", b"\n", b"\r\n", b"*", b"\x00"]))


KINDS = ("sentence", "cut", "bad checksum", "overlong", "binary", "byte")


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    kinds = draw(st.lists(st.sampled_from(KINDS), max_size=40))
    data = b"".join(_piece(k, draw) for k in kinds)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    return data, cuts


def _run(reader: nmea.Reader, data: bytes, cuts: list[int]) -> tuple[object, ...]:
    last = 0
    for cut in cuts + [len(data)]:
        reader.feed(data[last:cut])
        last = cut
    fixes = []
    fix = reader.take()
    while fix is not None:
        fixes.append(tuple(sorted(vars(fix).items())))
        fix = reader.take()
    counters = ("good", "checksum_errors", "overlong", "partial", "garbage", "malformed")
    counters += ("nofix", "ignored")
    return (
        fixes,
        [getattr(reader, c) for c in counters],
        bytes(reader.buf),
        reader.skipping,
    )


@settings(max_examples=400, deadline=None)
@given(streams())
def test_reads_split_anywhere_give_what_the_byte_rules_give(stream: tuple[bytes, list[int]]):
    data, cuts = stream
    assert _run(nmea.Reader(), data, cuts) == _run(ByteReader(), data, [])


def test_a_line_of_exactly_max_line_bytes_is_read_and_one_more_is_overlong():
    body = "GPTXT," + "9" * (nmea.MAX_LINE - 10)
    line = nmea.sentence(body)
    assert len(line) == nmea.MAX_LINE + 2  # the limit counts the line without CR LF
    r = nmea.Reader()
    r.feed(line[:40])
    r.feed(line[40:])
    assert r.overlong == 0 and r.ignored == 1
    longer = nmea.sentence(body + "9")
    r.feed(longer[:50])
    r.feed(longer[50:])
    assert r.overlong == 1 and r.ignored == 1
