"""The workspace's base-model catalogue (registry/base_models.py) and `tuneforge models`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_user_error
from tuneforge.errors import ModelError
from tuneforge.registry.base_models import (
    BaseModelError,
    add,
    catalogue_path,
    is_base,
    list_bases,
    remove,
    resolve_base,
)


@pytest.fixture()
def hf_folder(tmp_path: Path) -> Path:
    """What `add` checks in a model folder (a config transformers reads, safetensors weights, a tokenizer); the
    weights are not loaded, so a placeholder file is enough (and no model needs building)."""
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    config = {"model_type": "llama", "hidden_size": 16, "num_attention_heads": 4}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "tokenizer.json").write_text("{}")
    return folder


def _gguf(path: Path) -> Path:
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 16)
    return path


def test_add_list_resolve_remove(tmp_path: Path, hf_folder: Path) -> None:
    ws = tmp_path / "ws"
    assert [b.name for b in list_bases(ws)] == ["default"] and resolve_base(ws, "default") == "default"
    folder = add(ws, "tiny", hf_folder)
    gguf = add(ws, "smol", _gguf(tmp_path / "m.gguf"))
    assert (folder.kind, folder.path) == ("hf_dir", str(hf_folder.resolve()))
    assert (gguf.kind, gguf.path) == ("gguf", str((tmp_path / "m.gguf").resolve()))
    assert [b.name for b in list_bases(ws)] == ["default", "smol", "tiny"]
    assert resolve_base(ws, "tiny") == str(hf_folder.resolve()) and is_base(ws, "smol")
    stored = json.loads(catalogue_path(ws).read_text())["models"]
    assert set(stored) == {"smol", "tiny"}
    remove(ws, "smol")
    assert not is_base(ws, "smol")
    with pytest.raises(BaseModelError, match=r"no base model 'smol'.*known: default, tiny"):
        resolve_base(ws, "smol")


def test_bad_paths_and_names_are_refused(tmp_path: Path, hf_folder: Path) -> None:
    ws = tmp_path / "ws"
    with pytest.raises(ModelError, match=f"{tmp_path / 'missing'} does not exist"):
        add(ws, "m", tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match=r"has no config\.json"):
        add(ws, "m", empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    (broken / "model.safetensors").write_bytes(b"")
    (broken / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match=f"{broken}: transformers cannot read"):
        add(ws, "m", broken)
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": 16, "num_attention_heads": 5}')
    with pytest.raises(ModelError, match="not a multiple of the number of attention heads"):
        add(ws, "m", broken)
    (tmp_path / "fake.gguf").write_bytes(b"PK\x03\x04")
    with pytest.raises(ModelError, match="is not a GGUF file"):
        add(ws, "m", tmp_path / "fake.gguf")
    for name in ("default", "ft:x", "a/b", ""):
        with pytest.raises(BaseModelError):
            add(ws, name, hf_folder)
    (ws / "intent").mkdir(parents=True)  # a run's folder: its name is taken
    with pytest.raises(BaseModelError, match="already a folder"):
        add(ws, "intent", hf_folder)
    with pytest.raises(BaseModelError, match="cannot be removed"):
        remove(ws, "default")
    assert [b.name for b in list_bases(ws)] == ["default"]  # nothing was written by the refusals


def test_moved_model_is_named_when_resolved(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    add(ws, "smol", _gguf(tmp_path / "m.gguf"))
    (tmp_path / "m.gguf").unlink()
    with pytest.raises(ModelError, match=r"base model 'smol'.*m\.gguf does not exist.*models add smol"):
        resolve_base(ws, "smol")


def test_damaged_catalogue_is_a_clear_error(tmp_path: Path) -> None:
    catalogue_path(tmp_path).parent.mkdir(parents=True)
    catalogue_path(tmp_path).write_text("{not json")
    with pytest.raises(BaseModelError, match="damaged base-model catalogue"):
        list_bases(tmp_path)


def test_models_cli(cli, tmp_path: Path, hf_folder: Path) -> None:
    ws = str(tmp_path / "ws")
    res = cli("models", "add", "tiny", str(hf_folder), "--workspace", ws)
    assert res.code == 0 and "added base model tiny (hf_dir)" in res.out
    res = cli("models", "list", "--workspace", ws)
    assert res.code == 0
    assert [line.split("\t")[:2] for line in res.out.splitlines()] == [["default", "bundled"], ["tiny", "hf_dir"]]
    assert_user_error(cli("models", "add", "other", str(tmp_path / "nope"), "--workspace", ws), "does not exist",
                      fix="give a local Hugging Face model folder")
    assert_user_error(cli("models", "add", "default", str(hf_folder), "--workspace", ws), "cannot be overwritten")
    assert_user_error(cli("models", "remove", "ghost", "--workspace", ws), "no base model 'ghost'")
    res = cli("models", "remove", "tiny", "--workspace", ws)
    assert res.code == 0 and "removed base model tiny" in res.out
    assert cli("models", "list", "--workspace", ws).out.splitlines() == ["default\tbundled\tdefault"]
