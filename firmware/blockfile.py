# A block device backed by an image file, for VfsLfs2 on the unix port: the simulator board's
# flash, which persists across firmware restarts (a reboot or a power cut is a process kill).
# The image lives outside the MicroPython heap, so a 1 MB flash costs no RAM.

_EIO = -5  # LFS_ERR_IO


class BlockFile:
    def __init__(self, path: str, block_size: int = 4096, blocks: int = 256) -> None:
        self.path = path
        self.bs = block_size
        self.n = blocks
        try:
            self.f = open(path, "r+b")  # noqa: SIM115 - open for the device's lifetime
        except OSError:
            self.f = open(path, "w+b")  # noqa: SIM115 - as above
        self.f.seek(0, 2)
        have = self.f.tell()
        want = block_size * blocks
        if have < want:
            pad = b"\xff" * 512
            while have < want:
                k = min(512, want - have)
                self.f.write(pad[:k])
                have += k
            self.f.flush()
        self.budget = -1  # block writes allowed before a simulated power cut (-1: no limit)
        self.writes = 0

    def _spend(self) -> bool:
        if self.budget == 0:
            return False  # the power is off: this and every later write fails
        if self.budget > 0:
            self.budget -= 1
        self.writes += 1
        return True

    # A failed write is reported by returning littlefs's negative error code, never by raising:
    # the VFS calls these methods from inside littlefs, and an exception would unwind through
    # it mid-operation and leave its state (and an open file) behind, which a later garbage
    # collection then writes to the device. Returned, littlefs fails the call with EIO cleanly.
    def readblocks(self, block: int, buf: bytearray, off: int = 0) -> None:
        self.f.seek(block * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, block: int, buf: bytes, off: "int | None" = None) -> int:
        if not self._spend():
            return _EIO
        self.f.seek(block * self.bs + (off or 0))
        self.f.write(buf)
        self.f.flush()
        return 0

    def ioctl(self, op: int, arg: int) -> int:
        if op == 4:  # block count
            return self.n
        if op == 5:  # block size
            return self.bs
        if op == 6 and not self._spend():  # erase: littlefs rewrites the block whole
            return _EIO
        return 0

    def close(self) -> None:
        self.f.close()
