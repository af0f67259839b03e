"""Checks of hottext.py (run by `loadtest/charts --test`, so by scripts/test), on a real binary
compiled here with the C compiler every Rust build on Linux needs."""
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hottext  # noqa: E402

SOURCE = """
int hot_a(int x) { return x * 3 + 1; }
int hot_b(int x) { return x * 5 + 2; }
int warm_c(int x) { return x * 7 + 3; }
int cold_d(int x) { return x * 11 + 4; }
int main(int argc, char **argv) { return hot_a(argc) + hot_b(argc) + warm_c(argc) + cold_d(argc); }
"""


class HotText(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hottext-test.")
        src = os.path.join(self.tmp, "prog.c")
        self.binary = os.path.join(self.tmp, "prog")
        with open(src, "w") as f:
            f.write(SOURCE)
        subprocess.run(["cc", "-O1", "-o", self.binary, src], check=True)
        starts, _, names = hottext.text_symbols(self.binary)
        self.addr = dict(zip(names, starts))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def profile(self, obj, per_fn, requests=100):
        """A callgrind file of `requests` requests: executions of the first two instructions of
        each function in per_fn, in object obj, plus a libc line that must not count."""
        lines = ["# callgrind format", "positions: instr line", "events: Ir", f"ob={obj}", "fl=prog.c"]
        for fn, n in per_fn.items():
            lines.append(f"fn={fn}")
            lines.append(f"0x{self.addr[fn]:x} 1 {n}")
            lines.append(f"0x{self.addr[fn] + 1:x} 1 {n}")
        lines += ["ob=/lib/x86_64-linux-gnu/libc.so.6", "fn=memcpy", f"0x{self.addr['hot_a']:x} 1 100000"]
        path = os.path.join(self.tmp, f"cg.{len(os.listdir(self.tmp))}")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def test_functions_run_per_request_are_ordered_hottest_first(self):
        one = self.profile(self.binary, {"hot_a": 300, "hot_b": 100, "warm_c": 2, "cold_d": 0})
        two = self.profile(self.binary, {"hot_a": 100, "hot_b": 500})
        # hot_b: (200 + 1000) / 100 per request, hot_a: (600 + 200) / 100, warm_c: 4 / 100
        # (once in 50 requests, above the one-in-100 floor), cold_d: never. libc's lines are
        # another object's, at the same addresses.
        self.assertEqual(hottext.order(self.binary, [(one, 100), (two, 100)]), ["hot_b", "hot_a", "warm_c"])
        # Below the floor: warm_c at 2 executions in 1,000 requests is left out.
        self.assertEqual(hottext.order(self.binary, [(one, 1000)]), ["hot_a", "hot_b"])

    def test_write_and_coverage(self):
        order = os.path.join(self.tmp, "hot.order")
        one = self.profile(self.binary, {"hot_a": 300, "hot_b": 100})
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            self.assertEqual(hottext.main(["hottext.py", "write", self.binary, order, one, "100"]), 0)
        self.assertEqual(printed.getvalue(), "2 functions\n")
        with open(order) as f:
            listed = [line.strip() for line in f if not line.startswith("#")]
        self.assertEqual(listed, ["hot_a", "hot_b"])
        with open(order, "a") as f:
            f.write("renamed_since\n")
        out = subprocess.run([sys.executable, hottext.__file__, "coverage", self.binary, order],
                             check=True, capture_output=True, text=True).stdout
        self.assertEqual(out.split(), ["2", "3"])

    def test_a_profile_of_another_binary_is_refused(self):
        other = self.profile("/srv/another-build/statusd", {"hot_a": 300})
        with self.assertRaises(SystemExit) as e:
            hottext.order(self.binary, [(other, 100)])
        self.assertIn("no instruction of", str(e.exception))


if __name__ == "__main__":
    unittest.main()
