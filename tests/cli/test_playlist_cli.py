"""``tastemaker playlist`` and ``tastemaker radio``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from conftest import run_cli
from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.synth import synthetic_listens
from tastemaker.data.top_tracks import attach_tracks
from tastemaker.models import create_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    listens = synthetic_listens(users=50, artists=100, listens=15_000, seed=8, bots=0).lazy()
    data = attach_tracks(listens, interactions_from_listens(listens))
    model = create_model("als", factors=8, iterations=5, seed=0).fit(data)
    return model.save(tmp_path_factory.mktemp("m") / "als"), model


def test_playlist_as_a_table_and_as_files(model_dir, tmp_path, capsys):
    directory, model = model_dir
    user = model.interactions_.users.id(3)
    code, out, err = run_cli(
        capsys, "playlist", directory, "--user", user, "--n", "12", "--day", "2025-02-01"
    )
    assert code == 0, err
    assert f"Jams for {user}, 2025-02-01" in out and "why" in out
    target = tmp_path / "jams.jspf"
    code, _, err = run_cli(
        capsys, "playlist", directory, "--user", user, "--out", target, "--day", "2025-02-01"
    )
    assert code == 0, err
    document = json.loads(target.read_text())
    assert len(document["playlist"]["track"]) == 50
    # Same day, same seed: the same file; an existing file is replaced only with --force.
    code, _, err = run_cli(capsys, "playlist", directory, "--user", user, "--out", target)
    assert code == 2 and "--force" in err
    code, out, _ = run_cli(
        capsys, "playlist", directory, "--user", user, "--mode", "exploration", "--format", "xspf"
    )
    assert code == 0 and ET.fromstring(out.encode()).tag.endswith("playlist")


def test_radio_to_m3u8(model_dir, capsys):
    directory, model = model_dir
    artist = model.interactions_.item_names[0]
    code, out, err = run_cli(
        capsys,
        "radio",
        directory,
        f"artist:({artist}):2 user:({model.interactions_.users.id(1)})",
        "--mode",
        "medium",
        "--n",
        "20",
        "--format",
        "m3u8",
    )
    assert code == 0, err
    assert out.startswith("#EXTM3U") and out.count("#EXTINF") == 20


@pytest.mark.parametrize(
    "args, message",
    [
        (["playlist", "{m}", "--user", "nobody"], "unknown user"),
        (["playlist", "{m}", "--user", "{u}", "--mode", "daily"], "--mode must be one of"),
        (["playlist", "{m}", "--user", "{u}", "--n", "0"], "--n must be between"),
        (["playlist", "{m}", "--user", "{u}", "--format", "mp3"], "--format must be one of"),
        (["playlist", "{m}", "--user", "{u}", "--day", "tomorrow"], "--day must be a date"),
        (["radio", "{m}", "genre:(x)"], "unknown radio term"),
        (["radio", "{m}", "tag:(rock)"], "need tags"),
        (["radio", "{m}", "artist:(x)", "--mode", "extreme"], "--mode must be one of"),
    ],
)
def test_bad_arguments_are_one_line_errors(model_dir, capsys, args, message):
    directory, model = model_dir
    filled = [a.format(m=directory, u=model.interactions_.users.id(0)) for a in args]
    code, _, err = run_cli(capsys, *filled)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
