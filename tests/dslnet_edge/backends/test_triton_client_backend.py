"""The Triton client backend without a server: URLs, and a server that is not there.

The tests against a real tritonserver live in tests/export/test_triton_repo.py (one server per module).
"""

from __future__ import annotations

import socket

import pytest

from dslnet_edge.backends import BackendError, backend_for_path
from dslnet_edge.backends.triton_client_backend import parse_triton_url


@pytest.mark.parametrize("url, expected", [
    ("grpc://127.0.0.1:8001/dslnet", ("grpc", "127.0.0.1:8001", "dslnet", "")),
    ("http://server/dslnet_python/2", ("http", "server:8000", "dslnet_python", "2")),
    ("grpc://edge-7/dslnet", ("grpc", "edge-7:8001", "dslnet", "")),
])
def test_parse_url(url, expected):
    assert parse_triton_url(url) == expected
    assert backend_for_path(url) == "triton"


@pytest.mark.parametrize("url, error", [
    ("grpc://127.0.0.1:8001", "not a Triton model URL"),
    ("ftp://host/dslnet", "not a Triton model URL"),
    ("grpc://host/a/b/c", "not a Triton model URL"),
    ("http://host/dslnet/latest", "version must be a number"),
    ("grpc://host:99999/dslnet", "not a Triton model URL"),
])
def test_bad_urls_are_refused(url, error):
    with pytest.raises(ValueError, match=error):
        parse_triton_url(url)


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_no_server_is_one_clear_error(scheme):
    pytest.importorskip("tritonclient", reason="needs tritonclient (pip install 'dslnet-edge[triton-client]')")
    import dslnet_edge

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match=f"cannot reach the Triton server at {scheme}://127.0.0.1:{port}/dslnet"):
        dslnet_edge.Engine(f"{scheme}://127.0.0.1:{port}/dslnet")
    with pytest.raises(ValueError, match="does not apply to a Triton server URL"):
        dslnet_edge.Engine(f"{scheme}://127.0.0.1:{port}/dslnet", device="cuda")
