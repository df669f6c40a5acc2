"""The Account Manager's view of the Clientmodul's (Fachdienst's) accounts: the one store of KIM passwords.

A registration creates the mail account there, a password change changes the POP3/SMTP login there. In
``python -m tisim run`` and in tests the CM runs in the same process (:class:`SimulatorAccounts`); a standalone
Account Manager edits the CM's config file instead (:class:`ConfigAccounts`; a CM in another process reads it on
its next start).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tisim.config import CMConfig

if TYPE_CHECKING:
    from tisim.cm.server import CMSimulator


class CmAccounts(Protocol):
    @property
    def data_dir(self) -> Path: ...

    def password(self, address: str) -> str | None: ...

    def set_password(self, address: str, password: str) -> None: ...

    def mailbox_bytes(self, address: str) -> int: ...


class SimulatorAccounts:
    def __init__(self, cm: CMSimulator) -> None:
        self.cm = cm

    @property
    def data_dir(self) -> Path:
        return self.cm.data_dir

    def password(self, address: str) -> str | None:
        return self.cm.accounts.get(address.lower())

    def set_password(self, address: str, password: str) -> None:
        # add_account replaces the password in the live table; the config file is where `tisim send` and the next
        # start read it (a CM started with --config does not write it itself), so it changes too.
        self.cm.add_account(address, password)
        path = self.cm.config_path
        if path.exists():
            config = CMConfig.load(path)
            config.accounts[address.lower()] = password
            config.save()

    def mailbox_bytes(self, address: str) -> int:
        return sum(m.size for m in self.cm.context.store.list(address))


class ConfigAccounts:
    def __init__(self, config_path: Path) -> None:
        self.config_path = Path(config_path)

    @property
    def data_dir(self) -> Path:
        return CMConfig.load(self.config_path, create=True).data_dir

    def password(self, address: str) -> str | None:
        return CMConfig.load(self.config_path, create=True).accounts.get(address.lower())

    def set_password(self, address: str, password: str) -> None:
        config = CMConfig.load(self.config_path, create=True)
        config.accounts[address.lower()] = password
        config.save()

    def mailbox_bytes(self, address: str) -> int:
        from tisim.cm.maildrop import MaildropStore

        return sum(m.size for m in MaildropStore(self.data_dir / "maildrops").list(address))
