import argparse
import json

import pytest

from titans.evaluation import cli_babilong, cli_niah


def run(module, argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="suite", required=True)
    module.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_dump_without_model(tmp_path):
    run(cli_niah, ["niah", "--tokenizer", "byte", "--lengths", "600", "--depths", "2", "--samples", "1",
                   "--dump", str(tmp_path / "n.jsonl")])
    rows = [json.loads(x) for x in (tmp_path / "n.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 2 and {r["variant"] for r in rows} == {"passkey", "number", "uuid"}
    assert all(len(r["input_ids"]) <= 600 and r["answer"] in r["prompt"] for r in rows)
    run(cli_babilong, ["babilong", "--tokenizer", "byte", "--tasks", "qa1", "qa4", "--lengths", "0", "900",
                       "--samples", "2", "--dump", str(tmp_path / "b.jsonl")])
    rows = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2 and all(r["prompt"].endswith("\nAnswer:") for r in rows)
    with pytest.raises(ValueError, match="--model"):
        run(cli_niah, ["niah", "--tokenizer", "byte", "--lengths", "600"])


def test_evaluate_saved_model(tmp_path):
    from titans.data.tokenizer import ByteTokenizer
    from titans.models import TitansLM, get_config

    model_dir = tmp_path / "m"
    TitansLM(get_config("tiny-transformer", vocab_size=256)).save_pretrained(model_dir)
    ByteTokenizer().save(model_dir)
    run(cli_niah, ["niah", "--model", str(model_dir), "--variants", "passkey", "--lengths", "500",
                   "--depths", "2", "--samples", "1", "--device", "cpu", "--out", str(tmp_path / "n.json")])
    res = json.loads((tmp_path / "n.json").read_text())
    assert res["accuracy"][0]["count"] == 2 and len(res["heatmap"]) == 2
    assert all(r["score"] in (0.0, 1.0) and isinstance(r["prediction"], str) for r in res["records"])
    run(cli_babilong, ["babilong", "--model", str(model_dir), "--tasks", "qa4", "--lengths", "0",
                       "--samples", "2", "--device", "cpu", "--out", str(tmp_path / "b.json")])
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["accuracy"][0]["count"] == 2
