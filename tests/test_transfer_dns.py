"""DNS failures: a name that does not exist fails at once, a temporary one retries."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from asynchub._transfer.failures import is_retryable, network_error
from asynchub.config import RetryPolicy
from asynchub.errors import HostNotFoundError, NetworkError


def _dns_error(code: int) -> aiohttp.ClientConnectorDNSError:
    key = ConnectionKey("nowhere.invalid", 443, True, True, None, None, None, None)
    return aiohttp.ClientConnectorDNSError(key, OSError(code, "resolver says no"))


def test_unknown_name_is_not_retried() -> None:
    err = network_error(_dns_error(socket.EAI_NONAME), "https://nowhere.invalid/x")
    assert isinstance(err, HostNotFoundError) and isinstance(err, NetworkError)
    assert not is_retryable(err, RetryPolicy())
    assert "check the host name" in str(err)


@pytest.mark.parametrize("code", [socket.EAI_AGAIN])
def test_temporary_dns_failure_is_retried(code: int) -> None:
    err = network_error(_dns_error(code), "https://nowhere.invalid/x")
    assert not isinstance(err, HostNotFoundError)
    assert is_retryable(err, RetryPolicy())
