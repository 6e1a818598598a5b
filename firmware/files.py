# The few filesystem operations the firmware needs, over whatever VFS is mounted (littlefs on
# a board, VfsLfs2 on a RAM or file block device in simulation, a directory on CPython).
# Everything that must survive power loss goes through here, so tests can cut power at any
# of these steps by wrapping this class.
import os


class Files:
    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        try:
            os.mkdir(self.root)
        except OSError:  # already there
            pass

    def path(self, name: str) -> str:
        return self.root + "/" + name

    def listdir(self) -> "list[str]":
        return os.listdir(self.root)

    def size(self, name: str) -> int:
        try:
            return os.stat(self.path(name))[6]
        except OSError:
            return -1

    def read(self, name: str, offset: int = 0, n: int = -1) -> bytes:
        with open(self.path(name), "rb") as f:
            if offset:
                f.seek(offset)
            return f.read() if n < 0 else f.read(n)

    def append(self, name: str, data: bytes) -> None:
        # littlefs commits an append atomically at close; a cut before leaves the old length.
        with open(self.path(name), "ab") as f:
            f.write(data)

    def replace(self, name: str, data: bytes) -> None:
        """Atomic whole-file write: a temporary file, then rename over the old one."""
        tmp = self.path(name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, self.path(name))

    def remove(self, name: str) -> None:
        try:
            os.remove(self.path(name))
        except OSError:  # already gone (a cut after the remove, before the bookkeeping)
            pass
