# Flash filesystems for firmware tests, in both runtimes, with power cuts.
# MicroPython: littlefs (vfs.VfsLfs2) on a RAM block device whose writes can be cut after N
# block operations (a real torn write at the block layer; littlefs must recover).
# CPython (no littlefs): a directory whose Files operations can be cut after N steps, with
# the interrupted append or write left torn at half its bytes, which is harsher than littlefs
# (littlefs never exposes a partial append).
import sys

from firmware.files import Files

MICRO = sys.implementation.name == "micropython"
_count = [0]


# A cut raises OSError(EIO) from the layer below, as a failing flash write would.
PowerCut = OSError


class CutFiles(Files):
    """Files whose mutating steps stop after `budget` of them (CPython power cuts)."""

    def __init__(self, root):
        Files.__init__(self, root)
        self.budget = -1
        self.writes = 0

    def _spend(self):
        if self.budget == 0:
            return False
        if self.budget > 0:
            self.budget -= 1
        self.writes += 1
        return True

    def append(self, name, data):
        if not self._spend():
            Files.append(self, name, data[: len(data) // 2])
            raise OSError(5, "power cut")
        Files.append(self, name, data)

    def replace(self, name, data):
        if not self._spend():
            with open(self.path(name + ".tmp"), "wb") as f:
                f.write(data[: len(data) // 2])
            raise OSError(5, "power cut")
        Files.replace(self, name, data)

    def remove(self, name):
        if not self._spend():
            raise OSError(5, "power cut")
        Files.remove(self, name)


class Flash:
    """A fresh flash filesystem; files() mounts it (again, after a cut) and returns Files."""

    def __init__(self, blocks=256, block_size=512):
        _count[0] += 1
        self.name = "flash%d" % _count[0]
        self.mounted = False
        if MICRO:
            import vfs

            from firmware.blockfile import BlockFile

            path = "/tmp/tw-flash-%d-%d.img" % (_pid(), _count[0])
            try:
                import os

                os.remove(path)
            except OSError:
                pass
            self.dev = BlockFile(path, block_size, blocks)
            vfs.VfsLfs2.mkfs(self.dev)
        else:
            import tempfile

            self.dir = tempfile.mkdtemp(prefix="tw-flash-")
        self.cut_files = None

    def files(self):
        if MICRO:
            import vfs

            if self.mounted:
                vfs.umount("/" + self.name)
            vfs.mount(vfs.VfsLfs2(self.dev), "/" + self.name)
            self.mounted = True
            return Files("/" + self.name + "/tw")
        f = CutFiles(self.dir + "/tw")
        self.cut_files = f
        return f

    def cut_after(self, n):
        """Power goes after n more write steps (-1: never)."""
        if MICRO:
            self.dev.budget = n
        elif self.cut_files is not None:
            self.cut_files.budget = n

    def writes(self):
        if MICRO:
            return self.dev.writes
        return self.cut_files.writes if self.cut_files is not None else 0

    def snapshot(self):
        if MICRO:
            f = self.dev.f
            f.seek(0)
            return f.read()
        return _snap_dir(self.dir)

    def restore(self, snap):
        if self.mounted:
            import vfs

            vfs.umount("/" + self.name)
            self.mounted = False
        if MICRO:
            f = self.dev.f
            f.seek(0)
            f.write(snap)
            f.flush()
            self.dev.budget = -1
        else:
            _restore_dir(self.dir, snap)

    def close(self):
        if MICRO:
            import os

            import vfs

            if self.mounted:
                vfs.umount("/" + self.name)
                self.mounted = False
            self.dev.close()
            os.remove(self.dev.path)
        else:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)


def _pid():
    # The unix port has no os.getpid; a random tag keeps parallel runs apart.
    import os

    return int.from_bytes(os.urandom(3), "big")


def _snap_dir(d):
    import os

    out = {}
    for root, _dirs, names in os.walk(d):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, d)] = f.read()
    return out


def _restore_dir(d, snap):
    import os
    import shutil

    shutil.rmtree(d)
    os.makedirs(d)
    for rel, data in snap.items():
        p = os.path.join(d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
