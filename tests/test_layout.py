import json

import pytest

from metaworld.layout import LayoutError, load_layout


def test_sample_clinic_has_the_rooms_the_clinic_needs():
    layout = load_layout()
    kinds = [room.kind for room in layout.rooms]
    assert len(layout.rooms) >= 10
    assert kinds.count("consultation") >= 4
    for kind in ("lobby", "waiting", "therapy", "training", "staff"):
        assert kind in kinds
    assert all(room.spawn for room in layout.rooms)


def write(tmp_path, text, name="bad.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """
name = "t"
lobby = "lobby"
[[rooms]]
id = "lobby"
name = "Lobby"
kind = "lobby"
bounds = { min = [0.0, 0.0, 0.0], max = [10.0, 3.0, 10.0] }
capacity = 5
spawn = [[1.0, 0.0, 1.0]]
"""


def test_a_minimal_layout_loads(tmp_path):
    assert load_layout(write(tmp_path, BASE)).rooms[0].id == "lobby"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("capacity = 5", 'capacity = "five"'), "$.rooms[0].capacity"),
        (('kind = "lobby"', 'kind = "ballroom"'), "$.rooms[0].kind"),
        (("spawn = [[1.0, 0.0, 1.0]]", "spawn = [[11.0, 0.0, 1.0]]"), "$.rooms[0].spawn[0]"),
        (("max = [10.0", "max = [-1.0"), "$.rooms[0].bounds"),
        (("max = [10.0", "max = [70.0"), "$.rooms[0].bounds"),
        (('lobby = "lobby"', 'lobby = "hall"'), "$.lobby"),
        (('name = "Lobby"', 'name = "Lobby"\ncolour = "red"'), "colour"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path, change, expected):
    path = write(tmp_path, BASE.replace(*change))
    with pytest.raises(LayoutError) as info:
        load_layout(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_doors_must_join_known_rooms(tmp_path):
    text = (
        BASE
        + '[[doors]]\nid = "d"\na = "lobby"\nb = "nowhere"\na_at = [1.0, 1.0]\nb_at = [1.0, 1.0]\n'
    )
    with pytest.raises(LayoutError, match=r"doors\[0\].b"):
        load_layout(write(tmp_path, text))


def test_overlapping_rooms_are_rejected(tmp_path):
    second = BASE.split("[[rooms]]")[1].replace('id = "lobby"', 'id = "other"')
    with pytest.raises(LayoutError, match="overlap"):
        load_layout(write(tmp_path, BASE + "[[rooms]]" + second))


def test_syntax_errors_and_json_layouts(tmp_path):
    with pytest.raises(LayoutError, match=r"bad\.toml"):
        load_layout(write(tmp_path, "name = "))
    layout = load_layout()
    import msgspec

    path = tmp_path / "clinic.json"
    path.write_bytes(msgspec.json.encode(layout))
    assert load_layout(path) == layout
    with pytest.raises(LayoutError, match="cannot read"):
        load_layout(tmp_path / "missing.toml")
    assert json.loads(path.read_text())["lobby"] == "lobby"
