"""bench/gpu_eval.py runs anywhere at the tiny shape: both loops evaluate the split and generate the same tokens
(greedy, the same prompts), and the figures it prints are written."""

from __future__ import annotations

import json
from pathlib import Path

from bench.gpu_eval import SHAPES, main


def test_both_loops_generate_the_same_tokens_and_the_figures_are_written(tmp_path: Path):
    out = tmp_path / "figures.json"
    figures = main(["--shape", "tiny", "--device", "cpu", "--dtype", "float32", "--image-tokens", "16",
                    "--identities", "10", "--max-new-tokens", "4", "--warmup", "0", "--json", str(out)])
    assert figures["qas"] == 5 and figures["ours"]["generated_tokens"] > 0
    assert figures["ours"]["generated_tokens"] == figures["original"]["generated_tokens"]
    assert json.loads(out.read_text()) == figures


def test_the_7b_shape_is_llava_1_5_7b():
    text, vision = SHAPES["7b"]["text"], SHAPES["7b"]["vision"]
    assert (text["num_hidden_layers"], text["hidden_size"], text["intermediate_size"], text["vocab_size"]) == (
        32, 4096, 11008, 32064)
    assert (vision["num_hidden_layers"], vision["hidden_size"]) == (24, 1024)
