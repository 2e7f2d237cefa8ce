"""JSONL manifests: item and pair lines, path resolution, and ItemListError naming file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossmodal.errors import CrossmodalError, ItemListError
from crossmodal.ingest.item_list import (
    MODALITIES,
    ListItem,
    iter_item_list,
    parse_item_list_line,
    read_item_list,
    write_item_list,
)


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _by_modality(items: list[ListItem]) -> dict[str, ListItem]:
    out = {item.modality: item for item in items}
    assert len(out) == len(items)
    return out


def test_item_lines(tmp_path):
    path = _write(tmp_path / "m.jsonl", [
        json.dumps({"modality": "image", "path": "img/a.png", "label": "cat", "group": "g1"}),
        json.dumps({"modality": "audio", "path": "snd/a.wav", "label": "cat", "meta": {"speaker": "bob"}}),
        json.dumps({"modality": "text", "text": "a small cat", "id": "t1"}),
    ])
    image, audio, text = read_item_list(path)
    assert image == ListItem("image", path=tmp_path / "img" / "a.png", label="cat", group="g1")
    assert audio.modality == "audio"
    assert audio.path == tmp_path / "snd" / "a.wav"
    assert audio.label == "cat" and audio.group is None
    assert audio.meta == {"speaker": "bob"}
    assert text == ListItem("text", text="a small cat")
    assert text.path is None and text.label is None and text.group is None and text.meta == {}


def test_source_names_the_item():
    assert ListItem("image", path=Path("/d/a.png")).source == "/d/a.png"
    assert ListItem("text", text="x" * 50).source == f"text {'x' * 40!r}"


def test_pair_line_gives_items_sharing_an_auto_group(tmp_path):
    path = _write(tmp_path / "pairs.jsonl", [
        json.dumps({"image": "a.png", "text": "a cat", "audio": "a.wav", "label": "cat"}),
        json.dumps({"image": "b.png", "text": "a dog", "label": "dog"}),
    ])
    items = read_item_list(path)
    assert len(items) == 5
    first, second = _by_modality(items[:3]), _by_modality(items[3:])
    assert set(first) == set(MODALITIES)
    assert set(second) == {"image", "text"}
    assert first["image"].path == tmp_path / "a.png"
    assert first["audio"].path == tmp_path / "a.wav"
    assert first["text"].text == "a cat"
    assert {item.label for item in first.values()} == {"cat"}
    groups_first = {item.group for item in first.values()}
    groups_second = {item.group for item in second.values()}
    assert len(groups_first) == 1 and len(groups_second) == 1
    assert None not in groups_first and None not in groups_second
    assert groups_first != groups_second


def test_pair_line_keeps_explicit_group(tmp_path):
    path = _write(tmp_path / "pairs.jsonl", [
        json.dumps({"image": "a.png", "text": "a cat", "group": "shot-17", "meta": {"k": 1}}),
        json.dumps({"image": "b.png", "text": "another cat", "group": "shot-17"}),
    ])
    items = read_item_list(path)
    assert [item.group for item in items] == ["shot-17"] * 4
    assert items[0].meta == {"k": 1} and items[1].meta == {"k": 1}


def test_single_modality_pair_line_has_no_group(tmp_path):
    path = _write(tmp_path / "m.jsonl", [json.dumps({"text": "only words", "label": 3})])
    assert read_item_list(path) == [ListItem("text", text="only words", label="3")]


def test_relative_paths_resolve_against_manifest_folder_absolute_kept(tmp_path):
    elsewhere = (tmp_path / "elsewhere" / "x.wav").resolve()
    path = _write(tmp_path / "deep" / "sub" / "m.jsonl", [
        json.dumps({"modality": "image", "path": "../pics/a.png"}),
        json.dumps({"modality": "audio", "path": str(elsewhere)}),
        json.dumps({"image": "b.png", "audio": str(elsewhere)}),
    ])
    items = read_item_list(path)
    assert items[0].path == tmp_path / "deep" / "sub" / ".." / "pics" / "a.png"
    assert items[1].path == elsewhere
    pair = _by_modality(items[2:])
    assert pair["image"].path == tmp_path / "deep" / "sub" / "b.png"
    assert pair["audio"].path == elsewhere


def test_relative_manifest_path_gives_paths_relative_to_cwd(tmp_path, monkeypatch):
    _write(tmp_path / "sub" / "m.jsonl", [json.dumps({"modality": "image", "path": "a.png"})])
    monkeypatch.chdir(tmp_path)
    (item,) = read_item_list("sub/m.jsonl")
    assert item.path == Path("sub") / "a.png"
    assert item.path.resolve() == (tmp_path / "sub" / "a.png").resolve()


def test_numeric_labels_and_groups_become_strings(tmp_path):
    path = _write(tmp_path / "m.jsonl", [
        json.dumps({"modality": "text", "text": "seven", "label": 7, "group": 12}),
        json.dumps({"modality": "text", "text": "half", "label": 0.5}),
    ])
    first, second = read_item_list(path)
    assert first.label == "7" and first.group == "12"
    assert second.label == "0.5"


def test_blank_lines_ignored_and_counted(tmp_path):
    path = _write(tmp_path / "m.jsonl", [
        "",
        json.dumps({"modality": "text", "text": "one"}),
        "   ",
        "\t",
        json.dumps({"modality": "text", "text": "two"}),
        "",
    ])
    assert [item.text for item in read_item_list(path)] == ["one", "two"]
    # line numbers still count blank lines
    bad = _write(tmp_path / "bad.jsonl", ["", "", json.dumps({"modality": "text", "text": ""})])
    with pytest.raises(ItemListError) as exc:
        read_item_list(bad)
    assert exc.value.line == 3


def test_iter_manifest_is_lazy_and_yields_items_before_a_bad_line(tmp_path):
    path = _write(tmp_path / "m.jsonl", [json.dumps({"modality": "text", "text": "fine"}), "{oops"])
    it = iter_item_list(path)
    assert next(it).text == "fine"
    with pytest.raises(ItemListError) as exc:
        next(it)
    assert exc.value.line == 2


def test_parse_manifest_line_directly(tmp_path):
    items = parse_item_list_line('{"text": "hi", "image": "p.png"}', tmp_path / "x.jsonl", 9)
    assert len(items) == 2
    assert items[0].group == items[1].group is not None


GOOD = json.dumps({"modality": "text", "text": "fine"})

BAD_LINES = {
    "invalid_json": ('{"modality": "text", "text": ', "not valid JSON"),
    "trailing_garbage": ('{"modality": "text", "text": "a"} extra', "not valid JSON"),
    "array_line": ("[1, 2, 3]", "must be a JSON object"),
    "string_line": ('"just a string"', "must be a JSON object"),
    "number_line": ("42", "must be a JSON object"),
    "unknown_modality": (json.dumps({"modality": "video", "path": "v.mp4"}), "'modality' must be one of"),
    "non_string_modality": (json.dumps({"modality": 3, "path": "v.mp4"}), "'modality' must be one of"),
    "unknown_field_item": (json.dumps({"modality": "text", "text": "a", "colour": "red"}), "unknown field"),
    "unknown_field_pair": (json.dumps({"text": "a", "image": "b.png", "path": "c.png"}), "unknown field"),
    "no_modality_at_all": (json.dumps({"label": "cat"}), "neither 'modality' nor"),
    "missing_path": (json.dumps({"modality": "image", "label": "cat"}), "needs a 'path' field"),
    "missing_text": (json.dumps({"modality": "text", "label": "cat"}), "needs a 'text' field"),
    "null_path": (json.dumps({"modality": "audio", "path": None}), "needs a 'path' field"),
    "null_pair_value": (json.dumps({"image": None, "text": "a"}), "field 'image' is null"),
    "empty_text": (json.dumps({"modality": "text", "text": ""}), "empty 'text'"),
    "whitespace_text": (json.dumps({"modality": "text", "text": " \n\t"}), "empty 'text'"),
    "empty_pair_text": (json.dumps({"image": "a.png", "text": "  "}), "empty 'text'"),
    "empty_path": (json.dumps({"modality": "image", "path": ""}), "empty 'path'"),
    "empty_pair_path": (json.dumps({"image": "", "text": "a"}), "empty 'path'"),
    "list_path": (json.dumps({"modality": "image", "path": ["a.png"]}), "field 'path' must be a string, got list"),
    "dict_text": (json.dumps({"modality": "text", "text": {"a": 1}}), "field 'text' must be a string, got dict"),
    "bool_label": (json.dumps({"modality": "text", "text": "a", "label": True}),
                   "field 'label' must be a string, got bool"),
    "list_group": (json.dumps({"image": "a.png", "text": "a", "group": [1]}),
                   "field 'group' must be a string, got list"),
    "list_pair_value": (json.dumps({"audio": ["a.wav"], "text": "a"}), "field 'audio' must be a string, got list"),
    "string_meta": (json.dumps({"modality": "text", "text": "a", "meta": "x"}), "field 'meta' must be an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_line_raises_manifest_error_with_path_and_line(tmp_path, case):
    bad, reason = BAD_LINES[case]
    path = _write(tmp_path / "m.jsonl", [GOOD, "", bad, GOOD])
    with pytest.raises(ItemListError) as exc:
        read_item_list(path)
    assert isinstance(exc.value, CrossmodalError)
    assert exc.value.path == str(path)
    assert exc.value.line == 3
    assert str(exc.value).startswith(f"{path}:3: ")
    assert reason in exc.value.reason


def test_empty_manifest_raises(tmp_path):
    path = _write(tmp_path / "empty.jsonl", [])
    with pytest.raises(ItemListError) as exc:
        read_item_list(path)
    assert str(exc.value) == f"{path}:0: the item list holds no items"
    blank = _write(tmp_path / "blank.jsonl", ["", "  ", ""])
    with pytest.raises(ItemListError) as exc:
        read_item_list(blank)
    assert str(exc.value).startswith(f"{blank}:0: ")


def test_missing_manifest_raises(tmp_path):
    path = tmp_path / "nope" / "missing.jsonl"
    with pytest.raises(ItemListError) as exc:
        read_item_list(path)
    assert exc.value.path == str(path)
    assert str(exc.value).startswith(f"{path}:0: cannot open item list")


def test_manifest_that_is_a_directory_raises(tmp_path):
    path = tmp_path / "dir.jsonl"
    path.mkdir()
    with pytest.raises(ItemListError) as exc:
        read_item_list(path)
    assert str(exc.value).startswith(f"{path}:0: ")


def test_non_utf8_manifest_raises_with_the_bad_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        (GOOD + "\n" + GOOD + "\n").encode() + '{"modality": "text", "text": "café"}\n'.encode("latin-1")
    )
    with pytest.raises(ItemListError) as exc:
        read_item_list(path)
    assert exc.value.path == str(path)
    assert exc.value.line == 3
    assert str(exc.value) == f"{path}:3: line is not UTF-8 text"


def test_non_utf8_manifest_far_into_the_file_names_the_right_line(tmp_path):
    path = tmp_path / "long.jsonl"
    good = "".join(json.dumps({"modality": "text", "text": f"line {i}"}) + "\n" for i in range(1, 400))
    path.write_bytes(good.encode() + '{"modality": "text", "text": "café"}\n'.encode("latin-1"))
    with pytest.raises(ItemListError) as exc:
        read_item_list(path)
    assert exc.value.line == 400


def test_utf8_manifest_with_non_ascii_text(tmp_path):
    path = _write(tmp_path / "m.jsonl", [json.dumps({"modality": "text", "text": "naïve café 七"}, ensure_ascii=False)])
    assert read_item_list(path)[0].text == "naïve café 七"


def test_write_manifest_round_trips(tmp_path):
    rows = [
        {"modality": "image", "path": "img/a.png", "label": "cat", "group": "g"},
        {"modality": "text", "text": "une chatte, 七", "label": "cat", "meta": {"lang": "fr"}},
        {"image": "b.png", "audio": "b.wav", "text": "a dog", "label": "dog"},
    ]
    path = tmp_path / "out" / "nested" / "m.jsonl"
    assert write_item_list(path, iter(rows)) == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.jsonl"]
    raw = path.read_text(encoding="utf-8")
    assert "七" in raw  # not ASCII-escaped
    assert [json.loads(line) for line in raw.splitlines()] == rows
    items = read_item_list(path)
    assert len(items) == 5
    assert items[0] == ListItem("image", path=path.parent / "img" / "a.png", label="cat", group="g")
    assert items[1].text == "une chatte, 七" and items[1].meta == {"lang": "fr"}
    pair = _by_modality(items[2:])
    assert pair["audio"].path == path.parent / "b.wav"
    assert len({item.group for item in pair.values()}) == 1


def test_write_manifest_replaces_existing_file_atomically(tmp_path):
    path = tmp_path / "m.jsonl"
    write_item_list(path, [{"modality": "text", "text": "old"}] * 5)
    assert write_item_list(path, [{"modality": "text", "text": "new"}]) == 1
    assert [item.text for item in read_item_list(path)] == ["new"]
    assert not (tmp_path / "m.jsonl.tmp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_write_manifest_failure_leaves_previous_file_intact(tmp_path):
    path = tmp_path / "m.jsonl"
    write_item_list(path, [{"modality": "text", "text": "old"}])

    def rows():
        yield {"modality": "text", "text": "partial"}
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        write_item_list(path, rows())
    assert [item.text for item in read_item_list(path)] == ["old"]


def test_write_manifest_empty_rows(tmp_path):
    path = tmp_path / "m.jsonl"
    assert write_item_list(path, []) == 0
    assert path.read_bytes() == b""
    with pytest.raises(ItemListError):
        read_item_list(path)
