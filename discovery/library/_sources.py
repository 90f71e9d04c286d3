"""Source text of the library losses, read from the `losses/` directory shipped with the package."""

from importlib import resources


def _read_all() -> dict[str, str]:
    folder = resources.files("discovery.library") / "losses"
    return {
        entry.name[:-3]: entry.read_text()
        for entry in folder.iterdir()
        if entry.name.endswith(".py") and not entry.name.startswith("_")
    }


SOURCES: dict[str, str] = _read_all()
