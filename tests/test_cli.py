import json
import os
import subprocess
import sys

import pytest

from tests.conftest import fresh_python


def splitmesh(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "splitmesh.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "120"},
        timeout=600,
    )


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    """A small creditcard.csv with 5 % fraud: every split holds both classes."""
    from splitmesh.data.datasets.creditcard import synthetic_creditcard, write_creditcard_csv

    path = tmp_path_factory.mktemp("data") / "creditcard.csv"
    write_creditcard_csv(path, synthetic_creditcard(2000, 0, fraud_rate=0.05))
    return str(path)


def test_fraud_writes_its_mesh_results_and_report(tmp_path, small_csv):
    out = tmp_path / "run"
    p = splitmesh("fraud", "--data", small_csv, "--epochs", "3", "--smote-ratio",
                  "none", "--set", "training.patience=null", "--out", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["mesh"] == "credit-fraud" and res["task"] == "binary"
    assert (
        res["config"]["training"]["epochs"] == 3
        and res["config"]["resample"]["smote_ratio"] is None
    )
    assert [r["mode"] for r in res["runs"]] == ["centralized", "label-sharing", "label-preserving"]
    for run in res["runs"]:
        assert {"mode", "domains", "metrics", "train_seconds", "wire_bytes"} <= run.keys()
        assert {"precision_1", "recall_1", "f1_1", "roc_auc", "average_precision"} <= run[
            "metrics"
        ].keys()
    assert "| Precision |" in (out / "report.md").read_text()
    assert "Class 1" in p.stdout and "AUPRC" in p.stdout and "linear (reference)" in p.stdout
    # what ran is a mesh file anyone can run again
    assert "fraud-labels" in (out / "mesh.yaml").read_text()


def test_fraud_takes_protections_and_attacks_its_own_run(tmp_path, small_csv):
    out = tmp_path / "run"
    p = splitmesh("fraud", "--data", small_csv, "--epochs", "2", "--mode", "label-preserving",
                  "--protect", "secure-aggregation", "--protect", "labels=2",
                  "--privacy-audit", "--out", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    run = json.loads((out / "results.json").read_text())["runs"][0]
    applied = run["privacy"]["applied"]
    assert applied["fraud-labels"]["labels"] == {"epsilon": 2.0}
    assert all("secure_aggregation" in applied[d] for d in ("payments", "cardholder", "security"))
    attacks = run["privacy_attacks"]
    assert 0.5 <= attacks["label_inference_auc"] <= 1.0
    assert set(attacks["feature_reconstruction_r2"]) == {"payments", "cardholder", "security"}
    card = json.loads((out / "payments" / "model.json").read_text())  # its product's facts
    assert card["protection"] == {"secure_aggregation": {"precision_bits": 20}}
    assert (
        "Label inference AUC" in p.stdout
        and "Privacy: what attacks" in (out / "report.md").read_text()
    )


@pytest.mark.parametrize(
    ("args", "code", "pattern"),
    [
        (["--data", "missing.csv"], 3, "DataError: file missing.csv: no such file"),
        (["--domains", "4", "--synthetic-rows", "1000"], 2, "ConfigError: The 'domains' parameter"),
        (["--wire-dtype", "int4", "--synthetic-rows", "1000"], 2, "field 'wire_dtype'"),
        (["--set", "split.validation=0", "--synthetic-rows", "1000"], 2, "'split.validation'"),
        (["--set", "training.select_metric=nope", "--synthetic-rows", "1000"], 2, "select_metric"),
        (
            ["--mode", "federated", "--synthetic-rows", "1000"],
            2,
            "ConfigError: The 'mode' parameter",
        ),
        (["--protect", "marvell=1", "--synthetic-rows", "1000"], 2, "'protect' parameter"),
        (["--protect", "nopeek=-1", "--synthetic-rows", "1000"], 2, "privacy.nopeek.weight"),
    ],
)
def test_bad_input_gives_a_clear_error_and_no_traceback(tmp_path, args, code, pattern):
    p = splitmesh("fraud", "--out", str(tmp_path / "o"), *args, cwd=tmp_path)
    assert p.returncode == code, p.stderr
    assert pattern in p.stderr.splitlines()[0]
    assert "Traceback" not in p.stderr


def test_bad_cell_is_named(tmp_path):
    path = tmp_path / "cc.csv"
    header = ",".join(["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"])
    row = ",".join(["0"] * 30 + ["0"])
    path.write_text("\n".join([header, row, row.replace("0", "x", 1), row]) + "\n")
    p = splitmesh("fraud", "--data", str(path), "--out", str(tmp_path / "o"))
    assert p.returncode == 3
    assert "column 'Time', row 2: non-numeric value 'x'" in p.stderr.splitlines()[0]


def test_domains_sweep_writes_a_plot(tmp_path, small_csv):
    out = tmp_path / "sweep"
    p = splitmesh(
        "fraud", "--domains-sweep", "--seeds", "1", "--mode", "label-sharing",
        "--data", small_csv, "--epochs", "2", "--smote-ratio", "none", "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    assert [len(r["domains"]) for r in res["runs"]] == [2, 3, 4]  # the labels' domain too
    png = (out / "domains.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_certs_init_prints_fingerprints_and_refuses_to_overwrite(tmp_path):
    p = splitmesh("certs", "init", "--out", str(tmp_path), "--parties", "coordinator,payments")
    assert p.returncode == 0, p.stderr
    prints = json.loads((tmp_path / "fingerprints.json").read_text())
    assert prints["payments"] in p.stdout and len(prints["coordinator"]) == 64
    again = splitmesh("certs", "init", "--out", str(tmp_path), "--parties", "coordinator")
    assert again.returncode == 2 and "refusing to replace" in again.stderr


def test_node_serve_with_a_bad_node_file_names_it(tmp_path):
    bad = tmp_path / "node.yaml"
    bad.write_text("name: payments\nlisten: 127.0.0.1:0\nmesh: {file: x.yaml, domain: p}\n")
    p = splitmesh("node", "serve", "--config", str(bad))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "plaintext not asked for" in p.stderr or "x.yaml" in p.stderr


def test_version_prints_the_package_version():
    from splitmesh import __version__

    p = splitmesh("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"splitmesh {__version__}"


def test_reading_a_catalog_that_is_not_there_creates_nothing(tmp_path):
    typo = tmp_path / "typo.db"
    p = splitmesh("catalog", "list", "--catalog", str(typo))
    assert p.returncode == 12 and "no catalog at" in p.stderr
    assert not typo.exists()


def test_product_init_names_a_pii_column_no_domain_holds(tmp_path):
    from tests.split.test_star import write_star

    mesh = write_star(tmp_path)
    p = splitmesh("product", "init", str(mesh), "--out", str(tmp_path / "p"), "--pii", "nope")
    assert p.returncode == 2 and "'nope' is not a column" in p.stderr
    p = splitmesh("product", "init", str(mesh), "--out", str(tmp_path / "p"), "--pii", "age")
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in (tmp_path / "p").iterdir()) == ["customers", "products"]
    assert "classification: pii" in (tmp_path / "p" / "customers" / "input.odcs.yaml").read_text()
    assert (
        "classification: pii" not in (tmp_path / "p" / "products" / "input.odcs.yaml").read_text()
    )


def test_ctrl_c_stops_a_run_with_a_resume_hint_and_records_it(tmp_path, small_csv):
    import signal
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-m", "splitmesh.cli", "fraud", "--data", small_csv, "--mode",
            "label-sharing", "--epochs", "500", "--set", "training.patience=null",
            "--set", "training.batch_size=16", "--out", str(out), "--no-progress"]  # fmt: skip
    # a shell's background jobs ignore SIGINT, and children inherit that: not this one
    reset = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=reset)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("checkpoints/*/checkpoint.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (stdout[-2000:], stderr[-2000:])
    assert stderr.startswith("Stopped: stopped by Ctrl-C") and "--resume" in stderr
    assert "Traceback" not in stderr
    events = [json.loads(x) for x in (out / "audit.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "run.fail" and "Ctrl-C" in events[-1]["reason"]


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_none_of_the_heavy_libraries(flag):
    """What makes `splitmesh --help` answer in a fraction of a second: no torch, no
    scikit-learn, no pandas, no grpc until a command needs them."""
    code = (
        "import sys\nimport splitmesh.cli as cli\ntry:\n"
        f"    cli.app([{flag!r}])\nexcept SystemExit:\n    pass\n"
        "print('loaded', sorted(m for m in ('torch', 'sklearn', 'pandas', 'grpc') "
        "if m in sys.modules))"
    )
    assert "loaded []" in fresh_python(code)
