"""The `sluice report --html` page in a real browser: headless Chromium paints the chart."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from sluice.router.v1 import spend_service_pb2 as pb

from shared.cli.report import build_report
from shared.cli.report_html import BASELINE_COLOUR, COST_COLOUR, render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (Debian: apt-get install -y chromium)",
)


def _unfilter(raw: bytes, width: int, height: int, channels: int) -> np.ndarray:
    """PNG scanlines (a filter byte, then the filtered bytes) to pixels; RFC 2083 section 6."""
    stride = width * channels
    prior = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + stride]
        row = bytearray(stride)
        for x in range(stride):
            left = row[x - channels] if x >= channels else 0
            up = prior[x]
            if kind == 0:
                predicted = 0
            elif kind == 1:
                predicted = left
            elif kind == 2:
                predicted = up
            elif kind == 3:
                predicted = (left + up) // 2
            else:
                corner = prior[x - channels] if x >= channels else 0
                p = left + up - corner
                near_left, near_up, near_corner = abs(p - left), abs(p - up), abs(p - corner)
                if near_left <= near_up and near_left <= near_corner:
                    predicted = left
                else:
                    predicted = up if near_up <= near_corner else corner
            row[x] = (line[x] + predicted) & 0xFF
        rows.append(bytes(row))
        prior = row
    pixels = np.frombuffer(b"".join(rows), dtype=np.uint8).astype(np.int32)
    return pixels.reshape(height, width, channels)


def read_png(path: Path) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) as a pixel array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    return _unfilter(zlib.decompress(idat), width, height, 3 if colour == 2 else 4)


def _pixels_of(image: np.ndarray, colour: str) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[:, :, :3] - rgb).max(axis=2) <= 8).sum())


def test_chromium_paints_a_cost_and_a_baseline_bar_for_the_days(tmp_path: Path) -> None:
    response = pb.GetUsageResponse(
        first_day="2026-03-12",
        last_day="2026-03-14",
        records=[
            pb.UsageRecord(
                day=day,
                tenant_id="acme",
                tier=1,
                model="cheap",
                requests=1,
                cost_nano_usd=cost,
                baseline_cost_nano_usd=4_000,
            )
            for day, cost in (("2026-03-12", 1_000), ("2026-03-14", 3_000))
        ],
    )
    page = tmp_path / "report.html"
    page.write_text(render_html(build_report(response)))
    shot = tmp_path / "shot.png"
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=900,700",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = read_png(shot)
    # The bars: two days of cost (1 and 3 parts of a 4-part scale) and two of baseline, each
    # some 100-200 px tall and several px wide; the legend swatches alone are ~200 px.
    assert _pixels_of(image, COST_COLOUR) > 2_000
    assert _pixels_of(image, BASELINE_COLOUR) > 2_000
