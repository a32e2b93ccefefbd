"""report.html: one self-contained page per run (plots embedded as data URIs) with the config,
the metrics tables and every plot. It opens from anywhere, offline, with nothing beside it."""

import base64
import html
import json
from pathlib import Path

import numpy as np

from cnnclf.atomic import write_text
from cnnclf.errors import listing
from cnnclf.measures import most_confused
from cnnclf.rundir.directory import RunDir

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { padding: 0.2rem 0.8rem; border-bottom: 1px solid #eee; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 1rem 0; }
pre { background: #f6f6f6; padding: 1rem; overflow-x: auto; font-size: 0.85rem; }
.status { font-weight: bold; } .completed { color: #1e8449; } .failed, .interrupted { color: #c0392b; }
.what { color: #555; } .warning { color: #b9770e; font-weight: bold; }
"""

# Sets data-images-loaded on <body> once every image has decoded: a check for tests and tools.
SCRIPT = """
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.images = images.length;
});
"""


def write_report(run: RunDir, plots: list[Path]) -> Path:
    status = run.status()
    metrics = run.read_metrics()
    config = run.read_config()
    parts = [
        f"<h1>{_e(run.path.name)}</h1>",
        f"<p class='what'>{_e(_what(config, status))}</p>",
        f"<p class='status {_e(status['status'])}'>{_e(status['status'])}"
        + (f": {_e(status['error'])}" if status.get("error") else "")
        + "</p>",
    ]
    parts += [f"<p class='warning'>warning: {_e(w)}</p>" for w in status.get("warnings", [])]
    if status.get("plots_error"):
        parts.append(
            f"<p class='warning'>a plot could not be drawn ({_e(status['plots_error'])}); "
            f"<code>cnnclf plot {_e(run.path)}</code> draws them again</p>"
        )
    parts.append(_table(["", ""], [[k, v] for k, v in _facts(status, metrics, _read_env(run), config).items()]))
    if metrics:
        confused = most_confused(np.array(metrics["confusion_matrix"]), metrics["class_names"])
        if confused:
            parts += [
                "<h2>Most confused (test)</h2>",
                _table(
                    ["given", "predicted as", "images", "of the given class"],
                    [[c["given"], c["predicted"], c["images"], f"{c['share']:.1%}"] for c in confused],
                ),
            ]
        parts += [
            "<h2>Per class (test)</h2>",
            _table(
                ["class", "precision", "recall", "f1", "support"],
                [
                    [name, f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", r["support"]]
                    for name, r in metrics["per_class"].items()
                ],
            ),
        ]
    parts += ["<h2>Plots</h2>"] + [
        f"<img alt='{_e(p.stem)}' src='data:image/png;base64,{base64.b64encode(Path(p).read_bytes()).decode()}'>"
        for p in plots
    ]
    parts += ["<h2>Config</h2>", f"<pre>{_e(run.config.read_text())}</pre>"]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(run.path.name)}</title>"
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>{''.join(parts)}</body></html>\n"
    )
    write_text(run.report, page)
    return run.report


def _what(config, status: dict) -> str:
    """The run in one line: dataset, model, parameters and date."""
    data, model = config.data, config.model
    where = f" ({data.source}: {data.path})" if data.path else f" ({data.source})"
    if model.backbone is not None:
        weights = model.backbone.weights or "random"
        head = f" + {len(model.layers)} head layers" if model.layers else ""
        described = (
            f"backbone {model.backbone.name} ({'imagenet' if weights == 'imagenet' else weights} weights, "
            f"{'trainable' if model.backbone.trainable else 'frozen'}){head}"
        )
    else:
        described = f"preset {model.preset}" if model.preset else f"{len(model.layers or [])} layers"
    parameters = f", {status['parameters']:,} parameters" if status.get("parameters") else ""
    return f"dataset {data.dataset}{where}; model: {described}{parameters}; started {status.get('started_at', '?')}"


def _read_env(run: RunDir) -> dict:
    try:
        return json.loads(run.env.read_text())
    except (OSError, ValueError):
        return {}


def _facts(status: dict, metrics: dict | None, env: dict, config) -> dict:
    device, compute = env.get("device", {}), env.get("compute", {})
    skipped = (env.get("data") or {}).get("skipped_files") or []
    weights = config.train.class_weight
    facts = {
        "trained on": f"{device['cpu']} ({device.get('cpu_class', '?')}, {device['cpu_cores']} cores"
        f"{', ' + ', '.join(device['gpus']) if device.get('gpus') else ''})"
        if device
        else None,
        "precision": compute.get("mixed_precision"),
        "why this precision": compute.get("precision_reason"),
        "epochs": f"{status.get('epochs_done', 0)} of {config.train.epochs}",
        "smoke run": "yes: a few images per class, one epoch (--smoke)" if status.get("smoke") else None,
        "parameters": f"{status['parameters']:,}" if status.get("parameters") else None,
        "wall time (s)": status.get("wall_seconds"),
        "of which fitting (s)": status.get("fit_seconds"),
        "training images/s": status.get("train_images_per_second"),
        "class weights": None if weights == "none" else weights if isinstance(weights, str) else "as the config gives",
        "skipped files": f"{len(skipped):,}: {listing(skipped, 3)}" if skipped else None,
    }
    if metrics:
        facts |= {
            "test accuracy": f"{metrics['test_accuracy']:.4f}",
            "test loss": f"{metrics['test_loss']:.4f}",
            **{
                name.replace("_", " "): f"{metrics[name]:.4f}"
                for name in ("balanced_accuracy", "macro_f1")
                if name in metrics
            },
            **{f"top-{k} accuracy": f"{v:.4f}" for k, v in metrics.get("top_k_accuracy", {}).items()},
            "expected calibration error": f"{metrics['expected_calibration_error']:.4f}",
            **_calibration(metrics.get("calibration") or {}),
        }
    return {k: v for k, v in facts.items() if v is not None}


def _calibration(fitted: dict) -> dict:
    """The calibration's facts: the temperature and what it did, the threshold and what it costs."""
    if not fitted.get("fitted_on"):
        return {"calibration": f"none ({fitted['why']})"} if fitted.get("why") else {}
    return {
        "calibration": f"temperature {fitted['temperature']:.3g}, fitted on {fitted['fitted_on']}: calibration "
        f"error {fitted['expected_calibration_error_before']:.4f} -> {fitted['expected_calibration_error_after']:.4f}",
        "unknown answers": f"top probability below {fitted['threshold']:.3f}: {fitted['test_flagged_unknown']:.1%} "
        f"of the test images; the others {fitted['test_accuracy_of_the_rest']:.1%} right",
    }


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header) if any(header) else ""
    body = "".join(
        "<tr>"
        + "".join(f"<td class='n'>{_e(c)}</td>" if i else f"<td>{_e(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _e(value) -> str:
    return html.escape(str(value))
