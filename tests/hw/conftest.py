"""Fixtures for the hardware tooling tests: one virtual-board image built per session."""

from __future__ import annotations

import pytest

from hw import image as img


@pytest.fixture(scope="session")
def virtual_image(tmp_path_factory: pytest.TempPathFactory) -> img.Image:
    return img.build("virtual", tmp_path_factory.mktemp("image") / "virtual")
