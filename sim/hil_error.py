"""The error of the HIL rig (sim/hil.py and its bridges): the firmware, the broker or a home
unit did not do what the lock-step protocol needs of it."""


class HilError(RuntimeError):
    pass
