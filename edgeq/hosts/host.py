"""One device reachable over SSH, as a recipe, an inventory or ``--host`` names it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Host(BaseModel):
    """One device reachable over SSH."""

    model_config = ConfigDict(extra="forbid")

    address: str
    name: str | None = Field(default=None, description="the device's name in an inventory (defaults to its address)")
    port: int = Field(default=22, gt=0, lt=65536)
    user: str | None = None
    key: Path | None = None
    known_hosts: Path | None = None
    target: str | None = None
    python: str = "python3"
    workdir: str = "~/.edgeq"
    groups: list[str] = Field(default_factory=list)

    @property
    def label(self) -> str:
        """user@address:port, as people write it."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != 22 else ""
        return f"{user}{self.address}{port}"
