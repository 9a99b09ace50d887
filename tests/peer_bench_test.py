"""tools/peer_bench.py: a peer's refusal becomes one readable table cell (FLA's Triton refusal
keeps its reason, drops its upgrade advice), never longer than 160 characters; a run cut short
after its first peer row leaves an --out file that --join reads, with that row."""
import json
import os
import sys
import tempfile
import types
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))

import peer_bench  # noqa: E402
from peer_bench import short_error  # noqa: E402


class ShortError(unittest.TestCase):
    def test_first_sentence_kept(self):
        e = RuntimeError("Triton >= 3.4.0 and < 3.7.1 on Hopper GPUs produces incorrect results "
                         "for gated chunk_bwd_dqkwg (see #640). Please upgrade Triton.\nmore")
        self.assertEqual(short_error(e), "RuntimeError: Triton >= 3.4.0 and < 3.7.1 on Hopper "
                         "GPUs produces incorrect results for gated chunk_bwd_dqkwg (see #640).")

    def test_long_and_empty_messages(self):
        self.assertEqual(len(short_error(ValueError("x" * 500))), 160)
        self.assertTrue(short_error(ValueError("x" * 500)).endswith("..."))
        self.assertEqual(short_error(KeyError()), "KeyError: ")


class CutShort(unittest.TestCase):
    """The second peer row never comes (a time limit kills the run): the first is on disk."""

    def test_out_file_keeps_the_rows_timed(self):
        ours = {"mixers": [{"mixer": m, "T": 8192, "B": 8, "H": 16, "D": 128, "fwd_ms": 1.0,
                            "fwd_bwd_ms": 4.0} for m in ("kda", "deltanet")]}
        fake_torch = types.SimpleNamespace(
            __version__="fake", cuda=types.SimpleNamespace(get_device_name=lambda: "none"))
        calls = []

        def time_peer(torch, mixer, B, T, H, D, reps):
            calls.append(mixer)
            if len(calls) == 2:
                raise KeyboardInterrupt  # what a SIGTERM / SIGINT looks like mid-row
            return {"mixer": mixer, "peer": "p", "B": B, "T": T, "H": H, "D": D,
                    "fwd_ms": 2.0, "fwd_bwd_ms": 6.0}

        saved = (sys.modules.get("torch"), peer_bench.run_ours, peer_bench.time_peer)
        sys.modules["torch"] = fake_torch
        peer_bench.run_ours = lambda a: ours
        peer_bench.time_peer = time_peer
        try:
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "peers.json")
                with self.assertRaises(KeyboardInterrupt):
                    peer_bench.main(["--mixers", "kda,deltanet", "--out", out])
                with open(out) as f:
                    got = json.load(f)
                self.assertEqual([r["mixer"] for r in got["peers"]["rows"]], ["kda"])
                rows = peer_bench.joint_rows(got["ours"], got["peers"])
                self.assertEqual(rows[0][5], "2.00x")            # kda: peer 2.0 / ours 1.0
                self.assertEqual(rows[1][-1], "peer not timed")  # deltanet never came
        finally:
            if saved[0] is None:
                sys.modules.pop("torch", None)
            else:
                sys.modules["torch"] = saved[0]
            peer_bench.run_ours, peer_bench.time_peer = saved[1], saved[2]


if __name__ == "__main__":
    unittest.main()
