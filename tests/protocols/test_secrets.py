"""The tiled API key comes from a key file or the environment and is never written down."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import yaml

from insitu.protocols.cli import main
from insitu.protocols.cli.common import add_storage_options, open_store
from insitu.protocols.errors import InputNotFoundError, InvalidInputError
from insitu.protocols.experiment_config import ExperimentConfigError, load_config, validate_config
from insitu.protocols.secrets import API_KEY_ENV, ZMQ_KEY_ENV, read_api_key, read_zmq_private_key

URI = "http://127.0.0.1:9/api"  # never contacted: the store connects lazily


def key_file(tmp_path, text: str = "s3cret\n", mode: int = 0o600):
    path = tmp_path / "tiled.key"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_read_api_key(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert read_api_key() is None
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert read_api_key() == "from-env"
    assert read_api_key(key_file(tmp_path)) == "s3cret"  # the file wins over the environment
    with pytest.raises(InvalidInputError, match="chmod 600"):
        read_api_key(key_file(tmp_path, mode=0o644))
    with pytest.raises(InvalidInputError, match="empty"):
        read_api_key(key_file(tmp_path, text="\n"))
    with pytest.raises(InputNotFoundError, match="no API key file"):
        read_api_key(tmp_path / "missing.key")


def test_experiment_file_never_carries_the_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    cfg = validate_config({"material": "A-LPS", "catalog": {"uri": URI}})
    assert cfg.catalog.api_key == "from-env"
    dumped = json.dumps(cfg.to_dict())
    assert "from-env" not in dumped and "from-env" not in repr(cfg)
    # A key file named in the experiment: read at validation, again when the journal's copy
    # (which holds only the file's path) is validated on resume.
    path = key_file(tmp_path)
    cfg = validate_config({"material": "A-LPS", "catalog": {"uri": URI, "api_key_file": str(path)}})
    assert cfg.catalog.api_key == "s3cret" and "s3cret" not in json.dumps(cfg.to_dict())
    assert validate_config(cfg.to_dict()).catalog.api_key == "s3cret"
    # A literal key still works, with a warning, and is not copied on.
    with pytest.warns(UserWarning, match="api_key_file"):
        cfg = validate_config(
            {"material": "A-LPS", "catalog": {"uri": URI, "api_key": "literal-k3y"}}
        )
    assert cfg.catalog.api_key == "literal-k3y"
    assert "literal-k3y" not in json.dumps(cfg.to_dict())
    # A key file others can read is refused, naming the key in the file.
    (tmp_path / "e.yaml").write_text(
        yaml.safe_dump(
            {
                "material": "A-LPS",
                "catalog": {"uri": URI, "api_key_file": str(key_file(tmp_path, mode=0o644))},
            }
        )
    )
    with pytest.raises(ExperimentConfigError, match="catalog"):
        load_config(tmp_path / "e.yaml")


def test_command_line_key_file(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    parser = argparse.ArgumentParser()
    add_storage_options(parser)
    args = parser.parse_args(["--catalog", URI, "--api-key-file", str(key_file(tmp_path))])
    with open_store(args) as store:
        assert store.api_key == "s3cret"
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    with open_store(parser.parse_args(["--catalog", URI])) as store:
        assert store.api_key == "from-env"
    # Through the command line: a readable-by-all key file is one line, exit 2.
    loose = key_file(tmp_path, mode=0o644)
    assert main(["runs", "--catalog", URI, "--api-key-file", str(loose)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("insitu: error:") and "chmod 600" in err and err.count("\n") == 1
    assert os.stat(loose).st_mode & 0o777 == 0o644  # the file is left as it was


def test_read_zmq_private_key(tmp_path, monkeypatch) -> None:
    from bluesky_queueserver import generate_zmq_keys

    monkeypatch.delenv(ZMQ_KEY_ENV, raising=False)
    assert read_zmq_private_key() is None
    _, private = generate_zmq_keys()
    assert read_zmq_private_key(key_file(tmp_path, private + "\n")) == private
    monkeypatch.setenv(ZMQ_KEY_ENV, private)
    assert read_zmq_private_key() == private
    with pytest.raises(InvalidInputError, match="qserver-zmq-keys"):
        read_zmq_private_key(key_file(tmp_path, "not-a-key\n"))
    with pytest.raises(InvalidInputError, match="chmod 600"):
        read_zmq_private_key(key_file(tmp_path, private, mode=0o640))


def test_a_key_file_that_is_not_a_path_is_one_user_error(tmp_path) -> None:
    # Found by benchmarks/bench_fuzz_readers.py: an experiment file with api_key_file: 12.
    with pytest.raises(InvalidInputError, match="must be a path"):
        read_api_key(12)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not a usable path"):
        read_api_key("x" * 5000)
