"""The real Milvus server the tests start (tests/support/milvus_server.py): it refuses the default
password, a wrong token is a clear error naming the server, and filters become prefix-only LIKE
patterns for a Milvus 2.3 server (which refuses any other) without ever excluding a match."""

from __future__ import annotations

import shutil

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException
from support.cli import run_cli
from support.media import corpus_files

from crossmodal.cli import EXIT_ERROR, EXIT_OK
from crossmodal.storage.backends.milvus_filters import filter_expression, prefix_like
from crossmodal.storage.collection import Collection
from crossmodal.storage.filters import Filters


def test_prefix_patterns_keep_everything_the_full_pattern_matches():
    assert prefix_like("/data/audio/%_theo_%") == "/data/audio/%"
    assert prefix_like("/x/a_b") == "/x/a%"
    assert prefix_like("%/audio/%") is None
    assert prefix_like("/exact/file.png") == "/exact/file.png"
    filters = Filters(modalities=("image",), uri_glob="/m/*_7.png")
    assert filter_expression(filters, infix_like=False) == 'modality in ["image"] and (n_uris != 1 or uri like "/m/%")'
    assert filter_expression(Filters(uri_glob="*_7.png"), infix_like=False) is None
    assert "%_7.png" in filter_expression(Filters(uri_glob="*_7.png"))


def test_the_server_takes_only_its_token_and_a_wrong_one_is_a_clear_error(milvus_server, tmp_path, capsys,
                                                                          monkeypatch):
    with pytest.raises((MilvusException, grpc.RpcError)):
        MilvusClient(uri=milvus_server.uri, token="root:Milvus").list_collections()
    media = tmp_path / "media"
    media.mkdir()
    for src in corpus_files("image", "3", 2):
        shutil.copy(src, media / src.name)
    target = tmp_path / "c"
    code, _, err = run_cli(capsys, "index", str(media), "--index", str(target), "--backend", "milvus",
                           "--milvus-uri", milvus_server.uri, "--milvus-token", "root:wrong", "-q")
    assert code == EXIT_ERROR and milvus_server.uri in err, err
    code, _, err = run_cli(capsys, "index", str(media), "--index", str(target), "--backend", "milvus",
                           "--milvus-uri", milvus_server.uri, "-q")
    assert code == EXIT_OK, err
    with Collection.open(target) as coll:
        assert coll.backend.infix_like is False  # the server says v2.3.5
        assert coll.index("image").count() == 2
