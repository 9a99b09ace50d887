"""tools/peer_bench.py: a peer's refusal becomes one readable table cell (FLA's Triton refusal
keeps its reason, drops its upgrade advice), never longer than 160 characters."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))

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


if __name__ == "__main__":
    unittest.main()
