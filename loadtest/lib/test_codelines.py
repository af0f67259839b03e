"""Checks of codelines.py (run by `loadtest/charts --test`, so by scripts/test)."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codelines  # noqa: E402

# Ten requests. Per instruction: executions. A call's line is followed by the call's inclusive
# cost, which is not an execution of the calling instruction's line.
CALLGRIND = """# callgrind format
positions: instr line
events: Ir
ob=/srv/bin
fl=a.rs
fn=hot
0x1000 1 10
0x1004 1 10
0x1040 2 5
calls=10 0x3000 9
0x1044 2 1000000
fn=cold
0x2000 3 4
ob=/lib/libc.so.6
fn=memcpy
0x1000 1 20
"""


class CodeLines(unittest.TestCase):
    def test_lines_and_pages_run_per_request(self):
        with tempfile.NamedTemporaryFile("w", suffix=".cg", delete=False) as f:
            f.write(CALLGRIND)
        try:
            hot, counts, owner = codelines.per_request(f.name, 10)
        finally:
            os.unlink(f.name)
        # Half a run per request or more is "per request"; a call's inclusive cost is not.
        self.assertEqual(
            hot,
            {("/srv/bin", 0x1000), ("/srv/bin", 0x1004), ("/srv/bin", 0x1040),
             ("/lib/libc.so.6", 0x1000)},
        )
        self.assertEqual(counts[("/srv/bin", 0x1044)], 0)
        self.assertEqual(owner[("/srv/bin", 0x1040)], "hot")
        # The same address in two objects is two lines.
        self.assertEqual(len({(o, a >> 6) for o, a in hot}), 3)
        self.assertEqual(len({(o, a >> 12) for o, a in hot}), 2)


if __name__ == "__main__":
    unittest.main()
