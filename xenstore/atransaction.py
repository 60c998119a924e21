"""The trio client's transactions: its node operations bound to one transaction id."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class NodeRequests(Protocol):
    """What a transaction asks of its :class:`~xenstore.aclient.AsyncClient`."""

    async def read(self, path: str, tx: int = 0) -> bytes: ...

    async def write(self, path: str, value: bytes | str, tx: int = 0) -> None: ...

    async def mkdir(self, path: str, tx: int = 0) -> None: ...

    async def rm(self, path: str, tx: int = 0) -> None: ...

    async def exists(self, path: str, tx: int = 0) -> bool: ...

    async def directory(self, path: str | bytes, tx: int = 0) -> list[str]: ...

    async def get_perms(self, path: str, tx: int = 0) -> list[str]: ...

    async def set_perms(self, path: str, perms: Iterable[str], tx: int = 0) -> None: ...


class AsyncTransaction:
    """An :class:`AsyncClient`'s node operations bound to one open transaction."""

    __slots__ = ("client", "tx_id")

    def __init__(self, client: NodeRequests, tx_id: int) -> None:
        self.client = client
        self.tx_id = tx_id

    async def read(self, path: str) -> bytes:
        return await self.client.read(path, self.tx_id)

    async def write(self, path: str, value: bytes | str) -> None:
        await self.client.write(path, value, self.tx_id)

    async def mkdir(self, path: str) -> None:
        await self.client.mkdir(path, self.tx_id)

    async def rm(self, path: str) -> None:
        await self.client.rm(path, self.tx_id)

    async def exists(self, path: str) -> bool:
        return await self.client.exists(path, self.tx_id)

    async def directory(self, path: str) -> list[str]:
        return await self.client.directory(path, self.tx_id)

    async def get_perms(self, path: str) -> list[str]:
        return await self.client.get_perms(path, self.tx_id)

    async def set_perms(self, path: str, perms: Iterable[str]) -> None:
        await self.client.set_perms(path, perms, self.tx_id)
