# Small persistent settings and counters (boot counter, last accepted command sequence,
# configuration overrides, tamper latches, records lost to overflow), kept as one JSON file
# replaced atomically, so a power cut leaves either the old or the new version.
import json

NAME = "state.json"


class State:
    def __init__(self, files: "object") -> None:
        self.files = files
        self.data: dict[str, object] = {}
        self.load()

    def load(self) -> None:
        f = self.files
        try:
            raw = f.read(NAME)  # type: ignore[attr-defined]
            d = json.loads(raw)
            if isinstance(d, dict):
                self.data = d
        except (OSError, ValueError):  # first boot, or a file we cannot read: defaults
            self.data = {}

    def get(self, key: str, default: "object" = None) -> "object":
        return self.data.get(key, default)

    def int(self, key: str, default: int = 0) -> int:
        v = self.data.get(key, default)
        return v if type(v) is int else default

    def set(self, key: str, value: "object", save: bool = True) -> None:
        self.data[key] = value
        if save:
            self.save()

    def save(self) -> None:
        self.files.replace(NAME, json.dumps(self.data).encode())  # type: ignore[attr-defined]
