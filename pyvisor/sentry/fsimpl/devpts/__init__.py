"""devpts: the sandbox's own pseudo-terminals (devpts.py) and their line discipline (ldisc.py)."""
