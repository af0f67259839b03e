"""Checks of loadtest/lib/charts.py, run by `loadtest/charts --test` (and so by scripts/test):
every chart draws from the committed result files, the committed SVGs are exactly what the
script draws from them (none edited by hand, none left stale after a new result file), and a
malformed result file fails the script, naming the file, instead of drawing half a chart."""
import contextlib
import glob
import io
import json
import os
import re
import shutil
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import charts  # noqa: E402

NAMES = {"throughput.svg", "tls.svg", "faults.svg", "drill.svg", "propagation.svg", "cdn.svg", "soak.svg"}


def run(results, out):
    """charts.main on RESULTS into OUT: (exit status, what it printed on stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = charts.main(["--results", results, "--out", out])
    return rc, err.getvalue()


class Charts(unittest.TestCase):
    def setUp(self):
        charts.setup()
        self.tmp = tempfile.mkdtemp(prefix="charts-test.")
        self.out = os.path.join(self.tmp, "out")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_every_chart_draws_from_the_committed_results(self):
        rc, err = run(charts.RESULTS, self.out)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(set(os.listdir(self.out)), NAMES)
        for name in NAMES:
            root = ET.parse(os.path.join(self.out, name)).getroot()
            self.assertTrue(root.tag.endswith("svg"), name)
            text = "".join(root.itertext())
            self.assertIn("drawn by loadtest/charts", text, name)
            self.assertRegex(text, r"data: [a-z-]+-\d{4}-\d\d-\d\dT\d{6}Z\.md", name)

    def test_committed_charts_are_what_the_script_draws(self):
        rc, err = run(charts.RESULTS, self.out)
        self.assertEqual((rc, err), (0, ""))
        committed = os.path.join(charts.RESULTS, "charts")
        self.assertEqual(set(os.listdir(committed)), NAMES,
                         "loadtest/results/charts/ holds exactly the charts loadtest/charts draws")
        for name in sorted(NAMES):
            with open(os.path.join(self.out, name), "rb") as a, open(os.path.join(committed, name), "rb") as b:
                self.assertTrue(a.read() == b.read(),
                                f"loadtest/results/charts/{name} is not what loadtest/charts draws from the "
                                "committed result files: run loadtest/charts and commit the SVGs")

    def corrupt(self, tool, old, new, case="results"):
        """A copy of the committed results (in the directory CASE) in which the newest TOOL file
        (for wrk-ab, the newest that ran every scenario) has OLD (a regex, matched once) replaced by NEW."""
        results = os.path.join(self.tmp, case)
        if not os.path.isdir(results):
            shutil.copytree(charts.RESULTS, results, ignore=shutil.ignore_patterns("charts", "smoke"))
        if tool == "wrk-ab":
            path = charts.newest_full_ab(results).path  # the file the throughput chart reads
        else:
            path = sorted(glob.glob(os.path.join(results, f"{tool}-*.md")))[-1]
        with open(path, encoding="utf-8") as f:
            text = f.read()
        changed, n = re.subn(old, new, text, count=1, flags=re.M)
        self.assertEqual(n, 1, f"{tool}: pattern {old!r} not in {os.path.basename(path)}")
        with open(path, "w", encoding="utf-8") as f:
            f.write(changed)
        return results, os.path.basename(path)

    def assert_fails(self, results, name, chart, why):
        """The chart refuses the file, naming it and what is wrong, and writes nothing. (One chart
        only: drawing all of them for every case would make this test slow.)"""
        out = os.path.join(results, "out")
        os.makedirs(out)
        with self.assertRaises(charts.Malformed) as e:
            getattr(charts, chart)(results, out)
        self.assertTrue(str(e.exception).startswith(f"{name}: "), str(e.exception))
        self.assertIn(why, str(e.exception))
        self.assertEqual(os.listdir(out), [])

    # (what is broken, tool, regex in its newest result, replacement, chart, what the error says)
    MALFORMED = [
        ("a ratio that is not statusd / baseline", "wrk-ab", r"(\| lookup [^|]*\| [0-9]+ \| [0-9]+ \| )[0-9.]+",
         r"\g<1>0.500", "throughput", "is not statusd / baseline"),
        ("a summary row with a missing cell", "wrk-ab", r"^(\| list 304 [^|]*\|[^|]*\|)[^|]*\|", r"\1",
         "throughput", "row has"),
        ("a TLS table with other columns", "tls-ab", r"TLS ÷ plain", "TLS / plain", "tls", "unexpected columns"),
        ("a phase without its max latency", "faults", r"^(\| down \|[^|]*\|[^|]*\| [0-9.]+ / [0-9.]+) / [0-9.]+",
         r"\1", "faults", "is not p50 / p99 / max"),
        ("a latency that is not a number", "faults", r"^(\| steady \|[^|]*\|[^|]*\| )[0-9.]+", r"\1none",
         "faults", "no number in 'none'"),
        ("a drill without its acknowledgement", "drill", r'"acknowledged_seconds"', '"acked"', "drill",
         "drill JSON: 'acknowledged_seconds'"),
        ("a drill lookup row without p99", "drill", r"p99_us=[0-9]+ ", "", "drill", "lacks p99_us="),
        ("a histogram without its +Inf bucket", "propagation",
         r'^statusd_propagation_seconds_bucket\{le="\+Inf"\}.*\n', "", "propagation", "histogram incomplete"),
        ("a histogram that is not cumulative", "propagation", r'(le="0\.01"\}) [0-9]+', r"\1 1", "propagation",
         "not cumulative"),
        ("a CDN run without origin offload", "cdn", r"^\| origin offload.*\n", "", "cdn", "no 'origin offload' row"),
    ]

    def test_malformed_result_files_are_refused(self):
        for n, (what, tool, old, new, chart, why) in enumerate(self.MALFORMED):
            with self.subTest(what):
                results, name = self.corrupt(tool, old, new, case=f"case-{n}")
                self.assert_fails(results, name, chart, why)

    def sidecar(self, tool, ext, text):
        """A copy of the committed results with TEXT as the machine-readable file beside the
        newest TOOL result (what the tools write since they write one)."""
        results, name = self.corrupt(tool, r"^#", "#")
        with open(os.path.join(results, name[: -len(".md")] + ext), "w", encoding="utf-8") as f:
            f.write(text)
        return results, name

    def test_a_series_beside_the_result_is_what_the_chart_plots(self):
        series = [{"t": i + 0.5, "p50_ms": 0.3, "p99_ms": 20.0 + i, "max_ms": 50.0 + i} for i in range(80)]
        results, name = self.sidecar("faults", ".json", json.dumps({"series": series}))
        os.makedirs(self.out)
        path = charts.faults(results, self.out)
        text = "".join(ET.parse(path).getroot().itertext())
        self.assertIn(name[: -len(".md")] + ".json", text)
        self.assertIn("p99 (per second)", text)
        results, name = self.sidecar("drill", ".csv", "t,rps,p50_us,p99_us,max_us,errors,requests\n"
                                     + "".join(f"{i}.5,20000,900,{5000 + i},9000,0,20000\n" for i in range(40)))
        text = "".join(ET.parse(charts.drill(results, self.out)).getroot().itertext())
        self.assertIn(name[: -len(".md")] + ".csv", text)
        self.assertIn("lookups through the drill", text)
        results, name = self.sidecar("propagation", ".csv", "latency_ms\n" + "".join(f"{i / 10}\n" for i in range(1, 500)))
        text = "".join(ET.parse(charts.propagation(results, self.out)).getroot().itertext())
        self.assertIn("every one of 499 changes", text)

    def test_a_series_that_does_not_parse(self):
        results, name = self.sidecar("faults", ".json", '{"series": [{"t": 0.5, "p50_ms": 1}]}')
        self.assert_fails(results, name, "faults", "no per-second series ('p99_ms')")

    def test_a_drill_series_with_a_missing_number(self):
        results, name = self.sidecar("drill", ".csv", "t,rps,p50_us,p99_us\n0.5,100,900,\n")
        self.assert_fails(results, name, "drill", "lacks a number in column p99_us")

    def test_aa_calibration_and_paced_runs_are_not_the_throughput_picture(self):
        for knob in ("B_SERVER=baseline", "PACE_MS=1"):
            results = os.path.join(self.tmp, knob.split("=")[0])
            shutil.copytree(charts.RESULTS, results, ignore=shutil.ignore_patterns("charts", "smoke"))
            full = charts.newest_full_ab(results).path
            with open(full, encoding="utf-8") as f:
                text = f.read()
            # The same file, newer, as an A/A run (side B a second baseline) or a paced run.
            other, n = re.subn(r"(`[^`\n]*)(loadtest/wrk-ab`)", rf"\g<1>{knob} \2", text, count=1)
            self.assertEqual(n, 1, "the command line of the newest full A/B")
            with open(os.path.join(results, "wrk-ab-2999-01-01T000000Z.md"), "w", encoding="utf-8") as f:
                f.write(other)
            self.assertEqual(charts.newest_full_ab(results).path, full, knob)

    def test_no_result_files_at_all(self):
        empty = os.path.join(self.tmp, "empty")
        os.mkdir(empty)
        rc, err = run(empty, self.out)
        self.assertEqual(rc, 1)
        for tool in ("wrk-ab", "tls-ab", "faults", "drill", "propagation", "cdn", "soak"):
            self.assertIn(f"no {tool}-<UTC time>.md in {empty}", err)
        self.assertEqual(os.listdir(self.out), [])

    def test_one_malformed_file_fails_the_script_and_spares_the_other_charts(self):
        results, name = self.corrupt("cdn", r"^\| origin offload.*\n", "")
        rc, err = run(results, self.out)
        self.assertEqual(rc, 1)
        self.assertEqual(err, f"charts: cdn: malformed result: {name}: no 'origin offload' row\n")
        self.assertEqual(set(os.listdir(self.out)), NAMES - {"cdn.svg"})

    def test_readiness_spans_follow_each_replica_across_phases(self):
        # r2 turned 503 late in one phase and was back at 200 when the next phase was first
        # sampled (a code alone): it is ready from that phase's start. The span ends only when
        # every replica answers 200 again (r1, 1.8 s into that phase).
        cells = [
            "r1 200; r2 200",
            "r1 200→503 at +5.3 s; r2 200→503 at +5.4 s",
            "r1 503→200 at +1.8 s; r2 200",
            "r1 200; r2 200",
            "r1 200→503 at +2.0 s; r2 200",
        ]
        self.assertEqual(charts.unready_spans(cells, 10.0), [(15.3, 21.8), (42.0, 50.0)])
        self.assertEqual(charts.unready_spans(["r1 200", "no samples"], 10.0), [])


if __name__ == "__main__":
    unittest.main()
